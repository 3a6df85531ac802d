"""Times IndRNN against Keras's recurrent layers and the dense floor.

For each backend (one subprocess each, since the backend is fixed at import)
and each sequence length T, this builds the same small model around every
recurrent layer under test,

    Input(T, features) -> layer(units) x L -> Dense(1)

and times one training step (`train_on_batch`: forward, backward, Adam) and
one inference step (`predict_on_batch`). The models are timed round-robin,
after warm-up, and the medians are reported, so that load on a shared
machine hits all of them alike. "dense floor" replaces each recurrent layer
by `Dense(units, relu)` over time: the same matmuls without a recurrence,
which no recurrent layer can beat.

Peak memory at the longest T is measured in a fresh subprocess per model:
device memory on a GPU, the growth of the process's peak RSS on a CPU.

Usage:
    python benchmarks/bench_recurrent.py                  # full sweep
    python benchmarks/bench_recurrent.py --quick          # a smoke run
    python benchmarks/bench_recurrent.py --backends jax --timesteps 784

Writes `benchmarks/results/<machine>.md`, `<machine>.json` and
`<machine>.png`.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = [
    "indrnn_sequential",
    "indrnn_parallel",
    "indrnn_cell_rnn",
    "simple_rnn",
    "gru",
    "lstm",
    "dense_floor",
]
LABELS = {
    "indrnn_sequential": "IndRNN (sequential)",
    "indrnn_parallel": "IndRNN (parallel)",
    "indrnn_cell_rnn": "RNN(IndRNNCell)",
    "simple_rnn": "SimpleRNN",
    "gru": "GRU",
    "lstm": "LSTM",
    "dense_floor": "dense floor",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", default="tensorflow,torch,jax", help="comma-separated"
    )
    parser.add_argument(
        "--timesteps", default="128,784,1024,5000", help="comma-separated T"
    )
    parser.add_argument("--layers", default="1,2", help="comma-separated")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--features", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=10.0,
        help="a model whose first timed step takes longer is timed once "
        "and then dropped for longer T (the table says so)",
    )
    parser.add_argument("--machine", default=None, help="name for the files")
    parser.add_argument("--output", type=Path, default=HERE / "results")
    parser.add_argument(
        "--quick", action="store_true", help="T=128 and 784, 3 repeats"
    )
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="replace only the rerun backends in an existing results file",
    )
    # Internal: run one backend's sweep, or one memory probe, in this process.
    parser.add_argument("--worker", choices=["sweep", "memory"])
    parser.add_argument("--model")
    args = parser.parse_args(argv)
    if args.quick:
        args.timesteps, args.repeats = "128,784", 3
    for name in ("backends", "timesteps", "layers", "models"):
        setattr(args, name, getattr(args, name).split(","))
    args.timesteps = [int(t) for t in args.timesteps]
    args.layers = [int(n) for n in args.layers]
    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(f"unknown --models {sorted(unknown)}; known: {MODELS}")
    return args


# -- inside one backend ------------------------------------------------------


def build_model(name, timesteps, layers, units, features):
    import keras

    from keras_indrnn import IndRNN
    from keras_indrnn import IndRNNCell

    def recurrent(return_sequences):
        common = dict(return_sequences=return_sequences)
        bound = 2 ** (1 / timesteps)
        if name == "indrnn_sequential":
            return IndRNN(
                units,
                recurrent_max_abs=bound,
                implementation="sequential",
                **common,
            )
        if name == "indrnn_parallel":
            return IndRNN(
                units,
                recurrent_max_abs=bound,
                implementation="parallel",
                **common,
            )
        if name == "indrnn_cell_rnn":
            return keras.layers.RNN(
                IndRNNCell(units, recurrent_max_abs=bound), **common
            )
        if name == "simple_rnn":
            return keras.layers.SimpleRNN(units, **common)
        if name == "gru":
            return keras.layers.GRU(units, **common)
        if name == "lstm":
            return keras.layers.LSTM(units, **common)
        raise ValueError(name)

    inputs = keras.Input((timesteps, features), batch_size=None)
    h = inputs
    for i in range(layers):
        last = i == layers - 1
        if name == "dense_floor":
            h = keras.layers.Dense(units, activation="relu")(h)
        else:
            h = recurrent(return_sequences=not last)(h)
    if name == "dense_floor":
        h = h[:, -1]
    model = keras.Model(inputs, keras.layers.Dense(1)(h), name=name)
    model.compile(keras.optimizers.Adam(1e-4), "mse")
    return model


def device_name():
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return getattr(device, "device_kind", str(device))
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
        return "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return details.get("device_name", "GPU")
    return "cpu"


def block(result):
    import keras

    # Wait for asynchronous engines (JAX, CUDA) to finish the step.
    keras.ops.convert_to_numpy(result if not isinstance(result, dict) else 0.0)
    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def run_sweep(args):
    import keras
    import numpy as np

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    rows = []
    dropped = set()
    for layers in args.layers:
        for timesteps in args.timesteps:
            x = rng.uniform(size=(args.batch_size, timesteps, args.features))
            x = x.astype("float32")
            y = rng.uniform(size=(args.batch_size, 1)).astype("float32")
            models = {}
            for name in args.models:
                if (name, layers) in dropped:
                    rows.append(_row(backend, name, layers, timesteps, None))
                    continue
                keras.utils.set_random_seed(0)
                models[name] = build_model(
                    name, timesteps, layers, args.units, args.features
                )
            times = {name: {"train": [], "infer": []} for name in models}
            # Warm up (compiles), and drop models that are far too slow.
            for name, model in list(models.items()):
                for _ in range(2):
                    start = time.perf_counter()
                    block(model.train_on_batch(x, y))
                    block(model.predict_on_batch(x))
                    elapsed = time.perf_counter() - start
                    if elapsed > args.slow_seconds:
                        break
                if elapsed > args.slow_seconds:
                    dropped.add((name, layers))
                    t0 = time.perf_counter()
                    block(model.train_on_batch(x, y))
                    times[name]["train"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    block(model.predict_on_batch(x))
                    times[name]["infer"].append(time.perf_counter() - t0)
            for _ in range(args.repeats):
                for name, model in models.items():
                    if (name, layers) in dropped:
                        continue
                    t0 = time.perf_counter()
                    block(model.train_on_batch(x, y))
                    t1 = time.perf_counter()
                    block(model.predict_on_batch(x))
                    t2 = time.perf_counter()
                    times[name]["train"].append(t1 - t0)
                    times[name]["infer"].append(t2 - t1)
            for name in models:
                rows.append(_row(backend, name, layers, timesteps, times[name]))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            del models
            keras.utils.clear_session()
    return {"backend": backend, "device": device_name(), "rows": rows}


def _row(backend, name, layers, timesteps, times):
    import numpy as np

    row = {
        "backend": backend,
        "model": name,
        "layers": layers,
        "timesteps": timesteps,
        "train_s": None,
        "infer_s": None,
        "samples": 0,
    }
    if times and times["train"]:
        row["train_s"] = float(np.median(times["train"]))
        row["infer_s"] = float(np.median(times["infer"]))
        row["samples"] = len(times["train"])
    return row


def run_memory_probe(args):
    """Peak memory of one training step of one model at the longest T."""
    import resource

    import keras
    import numpy as np

    timesteps, layers = max(args.timesteps), max(args.layers)
    x = np.random.default_rng(0).uniform(
        size=(args.batch_size, timesteps, args.features)
    )
    x, y = x.astype("float32"), np.zeros((args.batch_size, 1), "float32")
    model = build_model(
        args.model, timesteps, layers, args.units, args.features
    )
    backend = keras.backend.backend()
    gpu = (
        device_name() != "cpu"
        and backend != "jax"
        or (backend == "jax" and device_name().lower() != "cpu")
    )
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if gpu and backend == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats()
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    if gpu:
        if backend == "torch":
            import torch

            peak = torch.cuda.max_memory_allocated()
        elif backend == "jax":
            import jax

            peak = jax.devices()[0].memory_stats()["peak_bytes_in_use"]
        else:
            import tensorflow as tf

            peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        kind = "device"
    else:
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline
        peak, kind = grown * 1024, "host RSS growth"
    return {"model": args.model, "peak_bytes": int(peak), "kind": kind}


# -- the driver ----------------------------------------------------------------


def worker_command(args, backend, mode, model=None):
    command = [
        sys.executable,
        __file__,
        "--worker",
        mode,
        "--timesteps",
        ",".join(map(str, args.timesteps)),
        "--layers",
        ",".join(map(str, args.layers)),
        "--batch-size",
        str(args.batch_size),
        "--units",
        str(args.units),
        "--features",
        str(args.features),
        "--repeats",
        str(args.repeats),
        "--models",
        ",".join(args.models),
        "--slow-seconds",
        str(args.slow_seconds),
    ]
    if model:
        command += ["--model", model]
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    root = str(HERE.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, env.get("PYTHONPATH")) if p
    )
    return command, env


def run_worker(args, backend, mode, model=None):
    command, env = worker_command(args, backend, mode, model)
    done = subprocess.run(
        command, env=env, stdout=subprocess.PIPE, text=True, check=False
    )
    if done.returncode != 0:
        print(f"{backend} {mode} {model or ''} failed", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine_name():
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            check=True,
        ).stdout.splitlines()[0]
        return gpu.strip().replace(" ", "-")
    except (OSError, subprocess.CalledProcessError, IndexError):
        return f"cpu-{os.cpu_count()}core-{platform.machine()}"


def markdown(results, args, machine):
    lines = [
        f"# Recurrent layers on {machine}",
        "",
        f"Batch {args.batch_size}, {args.units} units per layer, "
        f"{args.features} input features, `train_on_batch` (forward, "
        "backward, Adam) and `predict_on_batch`; medians of "
        f"{args.repeats} round-robin repeats after warm-up, in milliseconds. "
        "'/floor' is the training time over the dense floor's; 'LSTM/x' "
        "how many times faster than LSTM. '-' means skipped as too slow.",
        "",
    ]
    for result in results:
        backend, device = result["backend"], result["device"]
        rows = result["rows"]
        for layers in args.layers:
            lines += [
                f"## {backend} on {device}, {layers} layer(s)",
                "",
                "| model | "
                + " | ".join(
                    f"T={t} train | T={t} infer" for t in args.timesteps
                )
                + " |",
                "|---|" + "---|---|" * len(args.timesteps),
            ]
            lookup = {
                (r["model"], r["timesteps"]): r
                for r in rows
                if r["layers"] == layers
            }
            for name in args.models:
                cells = []
                for t in args.timesteps:
                    r = lookup.get((name, t))
                    floor = lookup.get(("dense_floor", t))
                    lstm = lookup.get(("lstm", t))
                    if not r or r["train_s"] is None:
                        cells += ["-", "-"]
                        continue
                    text = f"{1000 * r['train_s']:.1f}"
                    notes = []
                    if floor and floor["train_s"] and name != "dense_floor":
                        notes.append(
                            f"{r['train_s'] / floor['train_s']:.2f}/floor"
                        )
                    if lstm and lstm["train_s"] and name.startswith("indrnn"):
                        notes.append(
                            f"LSTM/{lstm['train_s'] / r['train_s']:.1f}"
                        )
                    if r["samples"] == 1:
                        notes.append("1 sample")
                    if notes:
                        text += " (" + ", ".join(notes) + ")"
                    cells += [text, f"{1000 * r['infer_s']:.1f}"]
                lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
            lines.append("")
        memory = result.get("memory")
        if memory:
            t, n = max(args.timesteps), max(args.layers)
            lines += [
                f"Peak memory of a training step at T={t}, {n} layer(s), "
                f"{backend} ({memory[0]['kind']}):",
                "",
                "| model | peak MiB |",
                "|---|---|",
            ]
            for m in memory:
                lines.append(
                    f"| {LABELS[m['model']]} | {m['peak_bytes'] / 2**20:.0f} |"
                )
            lines.append("")
    return "\n".join(lines)


def plot(results, args, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(r, n) for r in results for n in args.layers]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False
    )
    for ax, (result, layers) in zip(axes[0], panels, strict=True):
        for name in args.models:
            points = [
                (r["timesteps"], r["train_s"])
                for r in result["rows"]
                if r["model"] == name and r["layers"] == layers and r["train_s"]
            ]
            if points:
                ts, ss = zip(*sorted(points), strict=True)
                style = "--" if name == "dense_floor" else "-"
                ax.plot(
                    ts,
                    [1000 * s for s in ss],
                    style,
                    marker="o",
                    label=LABELS[name],
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("timesteps T")
        ax.set_ylabel("training step (ms)")
        ax.set_title(f"{result['backend']}, {layers} layer(s)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    args = parse_args(argv)
    if args.worker == "sweep":
        print(json.dumps(run_sweep(args)))
        return
    if args.worker == "memory":
        print(json.dumps(run_memory_probe(args)))
        return
    machine = args.machine or machine_name()
    results = []
    for backend in args.backends:
        print(f"== {backend}", file=sys.stderr, flush=True)
        result = run_worker(args, backend, "sweep")
        if result is None:
            continue
        if not args.no_memory:
            # Models dropped as too slow before the longest T would take
            # minutes per step there: not probed either.
            longest = {
                row["model"]
                for row in result["rows"]
                if row["timesteps"] == max(args.timesteps)
                and row["layers"] == max(args.layers)
            }
            result["memory"] = [
                m
                for m in (
                    run_worker(args, backend, "memory", name)
                    for name in args.models
                    if name in longest
                )
                if m
            ]
        results.append(result)
    args.output.mkdir(parents=True, exist_ok=True)
    stem = args.output / machine
    if args.merge and stem.with_suffix(".json").exists():
        # Keep the other backends' results from an earlier run.
        rerun = {r["backend"] for r in results}
        kept = json.loads(stem.with_suffix(".json").read_text())
        results = [r for r in kept if r["backend"] not in rerun] + results
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1))
    stem.with_suffix(".md").write_text(markdown(results, args, machine))
    plot(results, args, stem.with_suffix(".png"))
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
