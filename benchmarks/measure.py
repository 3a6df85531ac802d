"""Times IndRNN against Keras's recurrent layers and the dense floor.

For each backend (one worker subprocess each, since Keras fixes its backend
at import) and each configuration, this builds the models of
`benchmarks/models.py` and times one training step (`train_on_batch`:
forward, backward, Adam) and one inference step (`predict_on_batch`).
The models are timed round-robin after warm-up, so that load on a shared
machine hits all of them alike, and medians are kept. A model whose step
takes longer than `--slow-seconds` is timed once and dropped for the
longer configurations of the same depth.

Peak memory of a training step at the longest T is measured in a fresh
subprocess per model: device memory on a GPU, the growth of the process's
peak RSS on a CPU.

Writes one JSON file; `benchmarks/report.py` renders it.

    python benchmarks/measure.py                      # the full sweep
    python benchmarks/measure.py --quick              # a smoke run
    python benchmarks/measure.py --targets            # the targets' configs
    python benchmarks/measure.py --gpu --backends torch,jax
    python benchmarks/measure.py --backends torch --merge
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from models import MODELS  # noqa: E402
from models import build_model  # noqa: E402
from models import environment  # noqa: E402

# The sweep: sequence lengths at the size of the papers' tasks, and one
# wide and deep network at a short length, where the matmuls dominate.
SWEEP = [
    {"timesteps": t, "layers": n, "units": 128, "batch_size": 32, "features": 2}
    for n in (1, 2)
    for t in (128, 784, 1024, 5000)
] + [
    {
        "timesteps": 100,
        "layers": 6,
        "units": 512,
        "batch_size": 64,
        "features": 64,
    }
]
QUICK = [c for c in SWEEP if c["timesteps"] in (128, 784) and c["layers"] == 2]
# On a GPU: the papers' speed comparison (Deep IndRNN, Fig. 2: the adding
# problem's network, 128 units, against cuDNN LSTM), 1 layer at each T and
# 2 layers at T=1024.
GPU = [
    {"timesteps": t, "layers": 1, "units": 128, "batch_size": 50, "features": 2}
    for t in (256, 512, 1024, 5000)
] + [
    {
        "timesteps": 1024,
        "layers": 2,
        "units": 128,
        "batch_size": 50,
        "features": 2,
    }
]
# The configurations the project's speed targets name: T=784 with 2 layers
# (against the dense floor), T=1024 with 1 layer (against LSTM), the wide one.
TARGETS = [
    c
    for c in SWEEP
    if (c["timesteps"], c["layers"]) in ((784, 2), (1024, 1), (100, 6))
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", default="tensorflow,torch,jax", help="comma-separated"
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=10.0,
        help="drop a model whose step takes longer, for longer T",
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 layers, T=128 and 784"
    )
    parser.add_argument(
        "--targets",
        action="store_true",
        help="only the configurations of the speed targets",
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="the papers' GPU comparison: 128 units, T=256 to 5000",
    )
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="the JSON file (default: benchmarks/results/<machine>.json)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="replace only the measured backends in an existing file",
    )
    # Internal: one worker, reading its JSON job on stdin.
    parser.add_argument("--worker", choices=["sweep", "memory"])
    args = parser.parse_args(argv)
    args.backends = args.backends.split(",")
    args.models = args.models.split(",")
    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(
            f"unknown --models {sorted(unknown)}; known: {list(MODELS)}"
        )
    return args


# -- inside one worker ---------------------------------------------------------


def block(result):
    """Waits for asynchronous engines (JAX, CUDA) to finish the step."""
    import keras

    keras.ops.convert_to_numpy(result if not isinstance(result, dict) else 0.0)
    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def device_name():
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return "cpu" if device.platform == "cpu" else device.device_kind
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


def engine_version():
    import keras

    backend = keras.backend.backend()
    module = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}[
        backend
    ]
    return __import__(module).__version__


def run_sweep(job):
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    rows, dropped = [], set()
    for config in job["configs"]:
        shape = (config["batch_size"], config["timesteps"], config["features"])
        x = rng.uniform(size=shape).astype("float32")
        y = rng.uniform(size=(config["batch_size"], 1)).astype("float32")
        models = {}
        for name in job["models"]:
            if (name, config["layers"]) in dropped:
                rows.append(_row(config, name, None))
                continue
            keras.utils.set_random_seed(0)
            models[name] = build_model(
                name,
                config["timesteps"],
                config["layers"],
                config["units"],
                config["features"],
            )
        times = {name: {"train": [], "infer": []} for name in models}
        failed = {}
        # Warm up (compiles), and drop models that are far too slow.
        for name, model in models.items():
            for warm_up in range(2):
                start = time.perf_counter()
                try:
                    with environment(name):
                        block(model.train_on_batch(x, y))
                        block(model.predict_on_batch(x))
                except Exception as error:  # recorded, and the sweep goes on
                    failed[name] = f"{type(error).__name__}: {error}"[:500]
                    dropped.add((name, config["layers"]))
                    break
                elapsed = time.perf_counter() - start
                # The first pass also compiles.
                if warm_up and elapsed > job["slow_seconds"]:
                    dropped.add((name, config["layers"]))
                    _time_step(name, model, x, y, times[name])
                    break
        for _ in range(job["repeats"]):
            for name, model in models.items():
                if (name, config["layers"]) not in dropped:
                    _time_step(name, model, x, y, times[name])
        for name in models:
            rows.append(_row(config, name, times[name]))
            if name in failed:
                rows[-1]["error"] = failed[name]
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        del models
        keras.utils.clear_session()
    return {
        "backend": keras.backend.backend(),
        "device": device_name(),
        "versions": {
            "keras": keras.__version__,
            keras.backend.backend(): engine_version(),
        },
        "rows": rows,
    }


def _time_step(name, model, x, y, times):
    with environment(name):
        t0 = time.perf_counter()
        block(model.train_on_batch(x, y))
        t1 = time.perf_counter()
        block(model.predict_on_batch(x))
        t2 = time.perf_counter()
    times["train"].append(t1 - t0)
    times["infer"].append(t2 - t1)


def _row(config, name, times):
    import numpy as np

    row = {**config, "model": name, "train_s": None, "infer_s": None}
    row["samples"] = 0
    if times and times["train"]:
        row["train_s"] = float(np.median(times["train"]))
        row["infer_s"] = float(np.median(times["infer"]))
        row["samples"] = len(times["train"])
    return row


def run_memory_probe(job):
    """Peak memory of one training step of one model."""
    import resource

    import keras
    import numpy as np

    config = job["config"]
    shape = (config["batch_size"], config["timesteps"], config["features"])
    x = np.random.default_rng(0).uniform(size=shape).astype("float32")
    y = np.zeros((config["batch_size"], 1), "float32")
    model = build_model(
        job["model"],
        config["timesteps"],
        config["layers"],
        config["units"],
        config["features"],
    )
    backend = keras.backend.backend()
    gpu = device_name() != "cpu"
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if gpu and backend == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats()
    with environment(job["model"]):
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
    return {"model": job["model"], "peak_bytes": int(peak), "kind": kind}


# -- the driver ----------------------------------------------------------------


def run_worker(backend, mode, job):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE.parent), env.get("PYTHONPATH")) if p
    )
    done = subprocess.run(
        [sys.executable, __file__, "--worker", mode],
        input=json.dumps(job),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(
            f"{backend} {mode} {job.get('model', '')} failed", file=sys.stderr
        )
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


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        job = json.loads(sys.stdin.read())
        run = run_sweep if args.worker == "sweep" else run_memory_probe
        print(json.dumps(run(job)))
        return
    configs = SWEEP
    for flag, chosen in (("quick", QUICK), ("targets", TARGETS), ("gpu", GPU)):
        if getattr(args, flag):
            configs = chosen
    results = []
    for backend in args.backends:
        print(f"== {backend}", file=sys.stderr, flush=True)
        job = {
            "configs": configs,
            "models": args.models,
            "repeats": 3 if args.quick else args.repeats,
            "slow_seconds": args.slow_seconds,
        }
        result = run_worker(backend, "sweep", job)
        if result is None:
            continue
        if not args.no_memory:
            longest = max(
                (c for c in configs if c["units"] == 128),
                key=lambda c: (c["timesteps"], c["layers"]),
            )
            # Models dropped as too slow there would take minutes a step.
            timed = {
                row["model"]
                for row in result["rows"]
                if row["train_s"] is not None
                and all(row[k] == v for k, v in longest.items())
            }
            result["memory"] = {
                "config": longest,
                "models": [
                    m
                    for m in (
                        run_worker(
                            backend,
                            "memory",
                            {"config": longest, "model": name},
                        )
                        for name in args.models
                        if name in timed
                    )
                    if m
                ],
            }
        results.append(result)

    machine = machine_name()
    path = args.output or HERE / "results" / f"{machine}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.merge and path.exists():
        measured = {r["backend"] for r in results}
        kept = json.loads(path.read_text())["results"]
        results = [r for r in kept if r["backend"] not in measured] + results
    document = {
        "machine": machine,
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "date": datetime.date.today().isoformat(),
        "repeats": args.repeats,
        "results": results,
    }
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(path)


if __name__ == "__main__":
    main()
