"""Times one recurrent layer's forward and backward pass alone: the IndRNN
papers' kernel comparison, without an optimizer or a Keras train step.

The Deep IndRNN paper (§3.3) reports its CUDA kernel training a 1-layer
IndRNN of 128 units (batch 50, the adding problem's 2 input features)
4.3x, 7.6x and 12.9x faster than a 1-layer cuDNN LSTM at T = 256, 512 and
1024. This script measures the same thing for this package's layer: the
loss is `sum(outputs * probe)` over the whole output sequence, with `probe`
a fixed random tensor, so that every timestep sends a gradient back, and
each step computes the gradients with respect to the inputs and all of the
layer's weights.

- torch: the Keras `IndRNN` layer called eagerly on torch tensors,
  `implementation="sequential"` with the engine's fused loop (a Triton
  kernel on CUDA when triton imports, Numba's on CPUs), the same with
  `KERAS_INDRNN_TRITON=0 KERAS_INDRNN_NUMBA=0` (the TorchScript loop),
  and `"parallel"`;
  against `torch.nn.LSTM` (cuDNN on CUDA) and the dense floor,
  `relu(Linear(x))` over time: the input projection without a recurrence.
- jax: the layer's `stateless_call` under
  `jax.jit(jax.value_and_grad(...))`, sequential and parallel, against
  `keras.layers.LSTM` and `keras.layers.Dense(relu)` called the same way.
  On a GPU Keras's LSTM takes cuDNN (`jax.experimental.rnn`) where it can;
  each LSTM row records which path it traced.
- tensorflow: the layers under one `tf.function` with a `GradientTape`.

One worker subprocess per backend (Keras fixes its backend at import), each
with a time limit; a worker past it is stopped and the rows it finished are
kept. After warm-up (the first call's seconds, compilation included, are
reported) the models are timed round-robin, so that load on a shared
machine hits all of them alike, and medians are kept. A model whose warm
step takes longer than `--slow-seconds` is timed once and dropped for the
longer sequences.

    python benchmarks/layer_level.py                  # T = 256 ... 5000
    python benchmarks/layer_level.py --quick          # a smoke run
    python benchmarks/layer_level.py --backends torch,jax --timeout 90
    python benchmarks/layer_level.py --report benchmarks/results/X.json

Writes one JSON file (default
`benchmarks/results/layer-level-<machine>.json`) and prints its Markdown
tables; `--report` (or `benchmarks/report.py`) renders a file again and
writes the tables beside it. The file holds

    benchmark: "layer_level"; machine, processor, cores, date
    config: layers, units, batch_size, features, timesteps, repeats,
        warmup, slow_seconds, timeout_s, loss, gradients
    paper_speedup: {"256": 4.3, ...}  (the paper's LSTM / IndRNN)
    results: one per backend:
        backend, device, versions {...}, notes {...} (precision settings),
        status ("complete", "failed (exit code N)", "stopped at its N s
        limit"), wall_s, stderr_tail (unless complete),
        kernels_per_step (torch on CUDA: {timesteps, <model>: count}),
        rows: one per (T, model):
            timesteps, model, status ("timed"; "slow": timed once, dropped
            for longer T; "dropped", "skipped", "error": not timed), path
            (the implementation taken, where decided at run time),
            median_ms, min_ms, samples, first_call_s, speedup_vs_lstm
            (LSTM ms / its ms), vs_floor (its ms / floor ms), and error or
            reason where not timed.
"""

import argparse
import contextlib
import datetime
import functools
import gc
import json
import os
import platform
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import device_name  # noqa: E402
from measure import engine_version  # noqa: E402
from measure import machine_name  # noqa: E402

# The papers' network: 1 layer of 128 units, batch 50, 2 input features.
CONFIG = {"layers": 1, "units": 128, "batch_size": 50, "features": 2}
TIMESTEPS = (256, 512, 1024, 5000)
QUICK_TIMESTEPS = (16, 64)
# Deep IndRNN, §3.3: cuDNN LSTM time / IndRNN CUDA kernel time, on a P100.
PAPER_SPEEDUP = {256: 4.3, 512: 7.6, 1024: 12.9}

# The TorchScript loop: the compiled kernels of both other paths off.
TORCHSCRIPT_ONLY = {"KERAS_INDRNN_TRITON": "0", "KERAS_INDRNN_NUMBA": "0"}
# The IndRNN paths and the two baselines each engine times, in table order.
MODELS = {
    "torch": {
        "indrnn_sequential": "IndRNN sequential (fused)",
        "indrnn_sequential_torchscript": "IndRNN sequential, TorchScript",
        "indrnn_parallel": "IndRNN parallel",
        "lstm": "torch.nn.LSTM",
        "dense_floor": "dense floor",
    },
    "jax": {
        "indrnn_sequential": "IndRNN sequential",
        "indrnn_parallel": "IndRNN parallel",
        "lstm": "keras LSTM",
        "dense_floor": "dense floor",
    },
    "tensorflow": {
        "indrnn_sequential": "IndRNN sequential",
        "indrnn_parallel": "IndRNN parallel",
        "lstm": "keras LSTM",
        "dense_floor": "dense floor",
    },
}
ALL_MODELS = list(dict.fromkeys(m for ms in MODELS.values() for m in ms))
# Worker output lines that carry results start with this; anything else
# on stdout (a library's chatter) is ignored.
MARK = "@layer_level "


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", default="torch,jax", help="comma-separated"
    )
    parser.add_argument(
        "--timesteps",
        default=None,
        help="comma-separated (default: 256,512,1024,5000)",
    )
    parser.add_argument(
        "--models",
        default=",".join(ALL_MODELS),
        help="comma-separated; each backend times those it has",
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="untimed calls first (at least 2): TorchScript optimizes its "
        "graph on the second",
    )
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=10.0,
        help="time a model once, and drop it for longer T, where its warm "
        "step takes longer",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds for each backend's worker, imports included; a "
        "worker near it starts no further T, and one past it is stopped "
        "with its finished rows kept",
    )
    parser.add_argument(
        "--no-kernel-count",
        action="store_true",
        help="skip counting the CUDA kernels of one step (torch on CUDA)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="T = 16 and 64, 3 repeats"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="the JSON file (default: "
        "benchmarks/results/layer-level-<machine>.json)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="only render these files' tables, into <JSON>.md",
    )
    # Internal: one worker, reading its JSON job on stdin.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    unknown = set(args.backends) - set(MODELS)
    if unknown or not args.backends:
        parser.error(f"unknown --backends {sorted(unknown)}: {list(MODELS)}")
    args.models = [m for m in args.models.split(",") if m]
    unknown = set(args.models) - set(ALL_MODELS)
    if unknown:
        parser.error(f"unknown --models {sorted(unknown)}: {ALL_MODELS}")
    if args.timesteps:
        args.timesteps = [int(t) for t in args.timesteps.split(",")]
    else:
        args.timesteps = list(QUICK_TIMESTEPS if args.quick else TIMESTEPS)
    if args.quick:
        args.repeats = min(args.repeats, 3)
    if args.warmup < 2:
        parser.error("--warmup must be at least 2")
    return args


# -- one layer's forward and backward, per engine -----------------------------


def make_inputs(timesteps, config, seed=0):
    """The inputs (uniform in [0, 1), as the adding problem's) and the fixed
    probe that weights the outputs in the loss, as float32 NumPy arrays."""
    import numpy as np

    rng = np.random.default_rng(seed)
    batch, units = config["batch_size"], config["units"]
    x = rng.uniform(size=(batch, timesteps, config["features"]))
    probe = rng.normal(size=(batch, timesteps, units))
    return x.astype("float32"), probe.astype("float32")


class Step:
    """One forward and backward pass, ready to be called.

    `run()` returns `(loss, [d loss / d inputs, d loss / d weight, ...])` as
    the engine's tensors, possibly still being computed; calling the step
    runs it and waits for the device, so that a clock read after the call
    includes the work. `weights` are the layer's weights as NumPy arrays, in
    the order of their gradients; `path` says which implementation the
    engine runs where that is decided at run time: a string, or a function
    that says it once the step has run (`describe`).
    """

    def __init__(self, run, sync, weights, env=None, path=None):
        self.run, self.sync, self.weights = run, sync, weights
        self.env, self.path = env or {}, path

    def describe(self):
        if not callable(self.path):
            return self.path
        with _environ(self.env):
            return self.path()

    def __call__(self):
        with _environ(self.env):
            result = self.run()
            self.sync(result)
        return result

    def numpy(self):
        """The loss and gradients of one step, as float64 NumPy."""
        import keras
        import numpy as np

        loss, grads = self()
        convert = keras.ops.convert_to_numpy
        return float(convert(loss)), [
            np.asarray(convert(g), np.float64) for g in grads
        ]


@contextlib.contextmanager
def _environ(values):
    """Sets environment variables for the duration of one step (the engines
    read `KERAS_INDRNN_TRITON` at call time), and restores them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_step(model, timesteps, config=CONFIG, seed=0):
    """The `Step` of `model` (a key of `MODELS[backend]`) at `timesteps`,
    on the backend Keras runs on, with seeded weights and inputs."""
    import keras

    backend = keras.backend.backend()
    if model not in MODELS[backend]:
        raise ValueError(f"{backend} has no model {model!r}")
    keras.utils.set_random_seed(seed)
    x, probe = make_inputs(timesteps, config, seed)
    build = {"torch": _torch_step, "jax": _jax_step, "tensorflow": _tf_step}
    return build[backend](model, timesteps, config, x, probe)


def _keras_layer(model, timesteps, config, use_cudnn="auto"):
    """The Keras layer of `model`, with its whole output sequence."""
    import keras

    from keras_indrnn import IndRNN

    units = config["units"]
    if model.startswith("indrnn"):
        # The papers' bound on the recurrent weights (it shapes their
        # initial values only: no optimizer runs here).
        return IndRNN(
            units,
            recurrent_max_abs=2 ** (1 / timesteps),
            implementation=model.split("_")[1],
            return_sequences=True,
        )
    if model == "lstm":
        return keras.layers.LSTM(
            units, return_sequences=True, use_cudnn=use_cudnn
        )
    return keras.layers.Dense(units, activation="relu")


def _weights_of(layer):
    import keras

    return [keras.ops.convert_to_numpy(v) for v in layer.trainable_variables]


def _torch_step(model, timesteps, config, x, probe):
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    x = torch.tensor(x, device=device, requires_grad=True)
    probe = torch.tensor(probe, device=device)
    units, features = config["units"], config["features"]
    path = None
    if model.startswith("indrnn"):
        layer = _keras_layer(model, timesteps, config)
        layer.build(tuple(x.shape))
        params = [v.value for v in layer.trainable_variables]
        forward = layer
        weights = _weights_of(layer)
        if model.startswith("indrnn_sequential"):
            path = functools.partial(_torch_fused_path, device)
    elif model == "lstm":
        module = torch.nn.LSTM(features, units, batch_first=True).to(device)
        cudnn = cuda and torch.backends.cudnn.is_available()
        path = "cuDNN" if cudnn and torch.backends.cudnn.enabled else "ATen"

        def forward(x):
            return module(x)[0]

    else:
        module = torch.nn.Linear(features, units).to(device)

        def forward(x):
            return torch.relu(module(x))

    if not model.startswith("indrnn"):
        params = list(module.parameters())
        weights = [p.detach().cpu().numpy() for p in params]

    def run():
        loss = (forward(x) * probe).sum()
        return loss, torch.autograd.grad(loss, [x, *params])

    def sync(result):
        if cuda:
            torch.cuda.synchronize()

    env = TORCHSCRIPT_ONLY if model == "indrnn_sequential_torchscript" else None
    return Step(run, sync, weights, env=env, path=path)


def _torch_fused_path(device):
    """The loop the engine took for tensors on `device`, asked after the
    step ran: a compiled kernel stops serving after its first failure
    (with a `RuntimeWarning`, which the row records). The CUDA kernel count
    (`kernels_per_step`) confirms it: a fused loop launches a few kernels
    per step, not several per timestep."""
    from keras_indrnn.engines import torch_numba
    from keras_indrnn.engines import torch_triton

    if torch_triton.serves(device):
        return "Triton"
    if torch_numba.serves(device):
        return "Numba"
    return "TorchScript"


def _jax_step(model, timesteps, config, x, probe, use_cudnn="auto"):
    import jax
    import jax.numpy as jnp

    layer = _keras_layer(model, timesteps, config, use_cudnn)
    layer.build(x.shape)
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss_fn(trainable, x, probe, non_trainable):
        outputs, _ = layer.stateless_call(trainable, non_trainable, x)
        return jnp.sum(outputs * probe)

    # The probe is an argument: a closed-over array would be folded into
    # the compiled program as a constant of up to 128 MB.
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(1, 0)))
    x, probe = jnp.asarray(x), jnp.asarray(probe)
    path = None
    if model == "lstm" and use_cudnn == "auto":
        # Keras's JAX LSTM binds cuDNN's RNN (`rnn_fwd`, from
        # `jax.experimental.rnn`) on a GPU, and a `lax.scan` otherwise.
        # It falls back to the scan only for some errors while tracing;
        # any other, or a failure to compile, would lose the row.
        args = (trainable, x, probe, non_trainable)
        try:
            cudnn = "rnn_fwd" in str(jax.make_jaxpr(loss_fn)(*args))
            if cudnn:
                grad_fn.lower(*args).compile()
        except Exception as error:
            step = _jax_step(
                model, timesteps, config, x, probe, use_cudnn=False
            )
            step.path = f"lax.scan (cuDNN failed: {error})"[:300]
            return step
        path = "cuDNN" if cudnn else "lax.scan"
    elif model == "lstm":
        path = "lax.scan"

    def run():
        loss, (dx, dweights) = grad_fn(trainable, x, probe, non_trainable)
        return loss, [dx, *dweights]

    return Step(run, jax.block_until_ready, _weights_of(layer), path=path)


def _tf_step(model, timesteps, config, x, probe):
    import tensorflow as tf

    layer = _keras_layer(model, timesteps, config)
    layer.build(x.shape)
    variables = [v.value for v in layer.trainable_variables]

    # A plain graph, not XLA: Keras's cuDNN LSTM cannot be XLA-compiled
    # (the IndRNN engine compiles its own loop with XLA either way).
    @tf.function
    def grad_fn(x, probe):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * probe)
        return loss, tape.gradient(loss, [x, *variables])

    x, probe = tf.constant(x), tf.constant(probe)
    gpu = bool(tf.config.list_logical_devices("GPU"))

    def sync(result):
        if gpu:
            tf.test.experimental.sync_devices()

    def run():
        return grad_fn(x, probe)

    return Step(run, sync, _weights_of(layer))


# -- inside one worker ---------------------------------------------------------


def default_job(**overrides):
    job = {
        "config": CONFIG,
        "timesteps": list(TIMESTEPS),
        "models": ALL_MODELS,
        "repeats": 7,
        "warmup": 3,
        "slow_seconds": 10.0,
        "deadline": None,  # time.time() after which no further T starts
        "count_kernels": True,
    }
    return {**job, **overrides}


def run_backend(job, emit=None):
    """Times the models of `job` on the backend Keras runs on, in this
    process; returns the backend's entry of the file's `results` (without
    status and ratios, which the driver adds). `emit(kind, payload)`
    receives the header and each row as soon as they exist."""
    import keras

    emit = emit or (lambda kind, payload: None)
    backend = keras.backend.backend()
    models = [m for m in job["models"] if m in MODELS[backend]]
    header = {
        "backend": backend,
        "device": device_name(),
        "versions": _versions(backend),
        "notes": _notes(backend),
    }
    emit("header", header)
    rows, dropped, previous = [], {}, None
    for timesteps in sorted(job["timesteps"]):
        if previous and not _fits(job, previous, timesteps):
            # Starting this T would likely run past the worker's limit,
            # where it would be stopped halfway and leave nothing.
            for model in models:
                rows.append(_row(timesteps, model, status="skipped"))
                rows[-1]["reason"] = "time limit"
                emit("row", rows[-1])
            continue
        new = _time_length(job, timesteps, models, dropped)
        for row in new:
            emit("row", row)
        rows += new
        previous = new
    result = {**header, "rows": rows}
    if job["count_kernels"] and backend == "torch":
        result["kernels_per_step"] = _count_kernels(job, models, dropped)
        emit("kernels", result["kernels_per_step"])
    return result


def _fits(job, previous, timesteps):
    """Whether timing `timesteps` likely ends before the job's deadline,
    from the rows of the previous length: compilation as it was, each run
    longer in proportion to T."""
    if job["deadline"] is None:
        return True
    scale = timesteps / previous[0]["timesteps"]
    estimate = 0.0
    for row in previous:
        # Rows timed once as too slow are dropped for longer T.
        if row["status"] == "timed" and row["median_ms"] is not None:
            step = row["median_ms"] / 1000
            calls = job["warmup"] + job["repeats"]
            if step * scale > job["slow_seconds"]:
                calls = 2  # timed once after the first call, and dropped
            estimate += (
                max(row["first_call_s"] - step, 0) + calls * step * scale
            )
    return time.time() + estimate < job["deadline"]


def _time_length(job, timesteps, models, dropped):
    """The rows of one length: warm-up, then round-robin repeats."""
    import keras

    steps, samples, rows = {}, {}, {}
    for model in models:
        if model in dropped:
            rows[model] = _row(timesteps, model, status="dropped")
            rows[model]["reason"] = dropped[model]
            continue
        row = rows[model] = _row(timesteps, model)
        try:
            with warnings.catch_warnings(record=True) as caught:
                # Recorded: an engine that falls back to another path
                # (Triton's kernels failing, say) warns, and goes on.
                warnings.simplefilter("always")
                step = build_step(model, timesteps, job["config"])
                start = time.perf_counter()
                step()
                row["first_call_s"] = time.perf_counter() - start
                for _ in range(job["warmup"] - 1):
                    start = time.perf_counter()
                    step()
                    warm = time.perf_counter() - start
                    # A step past the limit is the one sample: a slow
                    # model costs two calls (the first one compiles).
                    if warm > job["slow_seconds"]:
                        break
            row["path"] = step.describe()
        except Exception as error:  # recorded, and the others go on
            _fail(row, error, dropped, model, timesteps)
            continue
        alarms = [
            f"{w.category.__name__}: {w.message}"[:300]
            for w in caught
            if issubclass(w.category, RuntimeWarning)
        ]
        if alarms:
            row["warnings"] = list(dict.fromkeys(alarms))[:3]
        samples[model] = [warm]  # kept only for a model too slow to repeat
        if warm > job["slow_seconds"]:
            row["status"] = "slow"
            dropped[model] = (
                f"a step took {warm:.1f} s at T={timesteps} "
                f"(over --slow-seconds {job['slow_seconds']})"
            )
        else:
            steps[model] = step
            samples[model] = []
    # The garbage collector pauses at unpredictable times; freed graphs go
    # by reference counting in the meantime.
    gc.collect()
    gc.disable()
    try:
        for repeat in range(job["repeats"]):
            # Each repeat starts at another model, so that no model always
            # runs right after the same one.
            order = list(steps)
            first = repeat % max(len(order), 1)
            order = order[first:] + order[:first]
            for model in order:
                start = time.perf_counter()
                try:
                    steps[model]()
                except Exception as error:
                    _fail(rows[model], error, dropped, model, timesteps)
                    del steps[model]
                    continue
                samples[model].append(time.perf_counter() - start)
    finally:
        gc.enable()
    for model, row in rows.items():
        if row["status"] in ("timed", "slow") and samples.get(model):
            _summarize(row, samples[model])
        print(
            f"T={timesteps} {model}: {row['status']}, "
            f"{_ms(row) or '-'} ms, first call {row['first_call_s'] or 0:.2f} s"
            + (f", {row['error']}" if row.get("error") else ""),
            file=sys.stderr,
            flush=True,
        )
    del steps
    keras.utils.clear_session()
    gc.collect()
    return list(rows.values())


def _row(timesteps, model, status="timed"):
    return {
        "timesteps": timesteps,
        "model": model,
        "status": status,
        "path": None,
        "median_ms": None,
        "min_ms": None,
        "samples": 0,
        "first_call_s": None,
    }


def _summarize(row, seconds):
    import numpy as np

    row["median_ms"] = 1000 * float(np.median(seconds))
    row["min_ms"] = 1000 * float(np.min(seconds))
    row["samples"] = len(seconds)


def _fail(row, error, dropped, model, timesteps):
    row["status"] = "error"
    row["error"] = f"{type(error).__name__}: {error}"[:500]
    dropped[model] = f"failed at T={timesteps}"


def _count_kernels(job, models, dropped):
    """How many kernels (and copies) one step runs on the GPU, at the
    shortest T: a fused loop runs a handful, a loop of small kernels
    several per timestep, so this tells which loop ran. Counted after all
    timing: the profiler may leave hooks behind that slow later launches."""
    import torch

    if not torch.cuda.is_available():
        return None
    if job["deadline"] is not None and time.time() + 30 > job["deadline"]:
        return {"skipped": "time limit"}
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile

    timesteps = min(job["timesteps"])
    counts = {"timesteps": timesteps}
    for model in models:
        if dropped.get(model, "").startswith("failed"):
            continue
        try:
            step = build_step(model, timesteps, job["config"])
            for _ in range(job["warmup"]):
                step()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                step()
            cuda = torch.autograd.DeviceType.CUDA
            counts[model] = sum(e.device_type == cuda for e in prof.events())
        except Exception as error:  # a diagnostic only: never fatal
            counts[model] = f"{type(error).__name__}: {error}"[:300]
    return counts


def _versions(backend):
    import importlib.metadata

    import keras
    import numpy

    import keras_indrnn

    versions = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        backend: engine_version(),
        "keras_indrnn": keras_indrnn.__version__,
        "numpy": numpy.__version__,
    }
    for name in {"torch": ["triton"], "jax": ["jaxlib"]}.get(backend, []):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    if backend == "torch":
        import torch

        versions["cuda"] = torch.version.cuda
        versions["cudnn"] = torch.backends.cudnn.version()
    return versions


def _notes(backend):
    """Settings that change what the rows measure."""
    if backend == "torch":
        import torch

        return {
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "KERAS_INDRNN_TRITON": os.environ.get("KERAS_INDRNN_TRITON"),
        }
    if backend == "jax":
        import jax

        return {
            "platform": jax.default_backend(),
            "default_matmul_precision": jax.config.jax_default_matmul_precision,
        }
    return {}


# -- ratios and tables ---------------------------------------------------------


def add_ratios(result):
    """Each timed row's `speedup_vs_lstm` (LSTM ms / its ms) and `vs_floor`
    (its ms / the dense floor's ms) at its T, where both were timed."""
    by_length = {}
    for row in result["rows"]:
        by_length.setdefault(row["timesteps"], {})[row["model"]] = row
    for row in result["rows"]:
        same = by_length[row["timesteps"]]
        row["speedup_vs_lstm"] = _ratio(same.get("lstm"), row)
        row["vs_floor"] = _ratio(row, same.get("dense_floor"))
    return result


def _ratio(a, b):
    if not a or not b or not a["median_ms"] or not b["median_ms"]:
        return None
    return a["median_ms"] / b["median_ms"]


INDRNN_SHORT = {
    "indrnn_sequential": "seq.",
    "indrnn_sequential_torchscript": "seq. TorchScript",
    "indrnn_parallel": "par.",
}


def _ms(row):
    if row is None:
        return ""
    if row["median_ms"] is None:
        return {"error": "failed", "skipped": "skipped (time limit)"}.get(
            row["status"], "dropped (slow)"
        )
    value = row["median_ms"]
    text = f"{value:.{0 if value >= 100 else 1 if value >= 10 else 2}f}"
    return text + (" (1 sample)" if row["samples"] == 1 else "")


def _times(value, digits=1):
    if value is None:
        return ""
    return f"{value:.{max(digits, 2) if value < 1 else digits}f}x"


def backend_tables(result):
    """The Markdown of one backend's result."""
    rows = {(r["timesteps"], r["model"]): r for r in result["rows"]}
    lengths = sorted({r["timesteps"] for r in result["rows"]})
    present = {r["model"] for r in result["rows"]}
    indrnns = [m for m in INDRNN_SHORT if m in present]
    labels = MODELS[result["backend"]]
    versions = ", ".join(
        f"{k} {v}" for k, v in result.get("versions", {}).items() if v
    )
    lines = [f"## {result['backend']} on {result.get('device', '?')}", ""]
    if versions:
        lines += [f"{versions}.", ""]
    if result.get("status") != "complete":
        lines += [f"**Worker {result.get('status')}**: finished rows only.", ""]
    if not result["rows"]:
        return lines + _log_tail(result)
    paths = {}
    for r in result["rows"]:
        if r.get("path"):
            paths.setdefault(r["model"], {})[r["path"]] = None
    if paths:
        lines += [
            "Paths taken: "
            + "; ".join(
                f"{labels[m]}: {', '.join(p)}" for m, p in paths.items()
            )
            + ".",
            "",
        ]
    header = (
        ["T"]
        + [f"IndRNN {INDRNN_SHORT[m]} ms" for m in indrnns]
        + ["LSTM ms", "floor ms"]
        + [f"LSTM / {INDRNN_SHORT[m]}" for m in indrnns]
        + [f"{INDRNN_SHORT[m]} / floor" for m in indrnns]
        + ["paper: LSTM / IndRNN"]
    )
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for t in lengths:
        cells = [str(t)]
        cells += [_ms(rows.get((t, m))) for m in indrnns]
        cells += [_ms(rows.get((t, m))) for m in ("lstm", "dense_floor")]
        cells += [
            _times((rows.get((t, m)) or {}).get("speedup_vs_lstm"))
            for m in indrnns
        ]
        cells += [
            _times((rows.get((t, m)) or {}).get("vs_floor"), 2) for m in indrnns
        ]
        cells.append(_times(PAPER_SPEEDUP.get(t)))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    models = [m for m in labels if m in present]
    lines += [
        "First call in seconds (compilation included):",
        "",
        "| T | " + " | ".join(labels[m] for m in models) + " |",
        "|---" * (len(models) + 1) + "|",
    ]
    for t in lengths:
        cells = [str(t)]
        for m in models:
            first = (rows.get((t, m)) or {}).get("first_call_s")
            cells.append("" if first is None else f"{first:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    kernels = result.get("kernels_per_step")
    if kernels and "timesteps" in kernels:
        counted = ", ".join(
            f"{labels[m]} {n}" for m, n in kernels.items() if m in labels
        )
        lines += [
            f"GPU kernels per step at T={kernels['timesteps']}: {counted}.",
            "",
        ]
    for r in result["rows"]:
        for note in [r.get("error"), *r.get("warnings", [])]:
            if note:
                lines.append(f"- {labels[r['model']]}, T={r['timesteps']}: ")
                lines[-1] += f"`{note}`"
    return lines + _log_tail(result)


def _log_tail(result):
    if not result.get("stderr_tail"):
        return [""]
    return ["", "Its log ended:", "", "```", *result["stderr_tail"], "```", ""]


def markdown(document):
    config = document["config"]
    lines = [
        f"# One recurrent layer, forward and backward, on "
        f"{document['machine']}",
        "",
        f"Measured {document['date']} on {document['cores']} cores "
        f"({document['processor']}) by `benchmarks/layer_level.py`: "
        f"{config['layers']} layer x {config['units']} units, batch "
        f"{config['batch_size']}, {config['features']} input features; "
        "loss `sum(outputs * probe)`, gradients with respect to the inputs "
        "and all weights, no optimizer. Medians of "
        f"{config['repeats']} round-robin repeats after {config['warmup']} "
        "warm-up calls. 'LSTM / X' is how many times faster than the LSTM X "
        "runs; 'X / floor' divides X's time by the dense floor's (the input "
        "projection and relu without a recurrence). 'paper' is the Deep "
        "IndRNN paper's CUDA kernel against cuDNN LSTM on a P100 (§3.3). "
        "On torch the IndRNN rows include the Keras layer's per-call Python "
        "overhead, which `torch.nn` modules do not have.",
        "",
    ]
    for result in document["results"]:
        lines += backend_tables(result)
    return "\n".join(lines)


def write_report(path):
    """Renders the JSON file `path` into `<path>.md`; returns the text."""
    text = markdown(json.loads(Path(path).read_text())) + "\n"
    Path(path).with_suffix(".md").write_text(text)
    return text


# -- the driver ----------------------------------------------------------------


def run_worker(backend, job, timeout):
    """One backend's worker subprocess, stopped after `timeout` seconds;
    returns its result with what it finished."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env.update(PYTHONUNBUFFERED="1")
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE.parent), env.get("PYTHONPATH")) if p
    )
    # The worker starts no further T that would likely end in the last
    # seconds, which teardown needs.
    job = {**job, "deadline": time.time() + timeout - 10}
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, __file__, "--worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    received = {"header": {}, "rows": [], "kernels": None}
    tail = []

    def read_results():
        for line in process.stdout:
            if not line.startswith(MARK):
                sys.stderr.write(line)
                continue
            message = json.loads(line[len(MARK) :])
            if message["kind"] == "row":
                received["rows"].append(message["payload"])
            else:
                received[message["kind"]] = message["payload"]

    def read_log():
        for line in process.stderr:
            sys.stderr.write(line)
            tail[:] = [*tail[-29:], line.rstrip("\n")]

    readers = [
        threading.Thread(target=read, daemon=True)
        for read in (read_results, read_log)
    ]
    for reader in readers:
        reader.start()
    process.stdin.write(json.dumps(job))
    process.stdin.close()
    try:
        code = process.wait(timeout=timeout)
        status = "complete" if code == 0 else f"failed (exit code {code})"
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        status = f"stopped at its {timeout:g} s limit"
    for reader in readers:
        reader.join(timeout=10)
    result = {
        "backend": backend,
        **received["header"],
        "status": status,
        "wall_s": round(time.perf_counter() - start, 1),
        "rows": received["rows"],
    }
    if received["kernels"] is not None:
        result["kernels_per_step"] = received["kernels"]
    if status != "complete":
        result["stderr_tail"] = tail
    return result


def make_document(job, results, timeout=None):
    """The JSON document of a run: the machine, the job's configuration,
    and each backend's result (with its ratios)."""
    return {
        "benchmark": "layer_level",
        "machine": machine_name(),
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "date": datetime.date.today().isoformat(),
        "config": {
            **job["config"],
            "timesteps": sorted(job["timesteps"]),
            "repeats": job["repeats"],
            "warmup": job["warmup"],
            "slow_seconds": job["slow_seconds"],
            "timeout_s": timeout,
            "loss": "sum(outputs * probe), probe ~ N(0, 1) fixed",
            "gradients": "inputs and all weights",
        },
        "paper_speedup": {str(t): s for t, s in PAPER_SPEEDUP.items()},
        "results": [add_ratios(r) for r in results],
    }


def _emit(kind, payload):
    print(MARK + json.dumps({"kind": kind, "payload": payload}), flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.report:
        for path in args.report:
            print(write_report(path))
        return
    if args.worker:
        run_backend(json.loads(sys.stdin.read()), emit=_emit)
        return
    job = default_job(
        timesteps=args.timesteps,
        models=args.models,
        repeats=args.repeats,
        warmup=args.warmup,
        slow_seconds=args.slow_seconds,
        count_kernels=not args.no_kernel_count,
    )
    path = (
        args.output or HERE / "results" / f"layer-level-{machine_name()}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for backend in args.backends:
        print(f"== {backend}", file=sys.stderr, flush=True)
        results.append(run_worker(backend, job, args.timeout))
        print(f"== {backend}: {results[-1]['status']}", file=sys.stderr)
        # Written after each backend, so that a run stopped from outside
        # keeps the backends it finished.
        document = make_document(job, results, timeout=args.timeout)
        path.write_text(json.dumps(document, indent=1) + "\n")
    print(markdown(document))
    print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
