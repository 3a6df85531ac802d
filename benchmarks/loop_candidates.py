"""Candidates for the recurrence's time loops, timed side by side.

For one engine, this times a training step (`train_on_batch`: forward,
backward, Adam) and an inference step (`predict_on_batch`) of the
benchmark's model (`benchmarks/models.py`: T=784, 2 IndRNN layers of 128,
batch 32 by default) with each candidate swapped in, against the dense
floor: one worker subprocess per candidate (Keras fixes its backend at
import, and no candidate's memory traffic disturbs another's timings),
timing the candidate and the floor round-robin after warm-up, medians
kept. The candidates:

- `engine`: what the package does on this engine today;
- `chunked K`: the chunked scan of `benchmarks/chunked_scan.py` with
  chunks of K steps, in place of the sequential loops (every engine);
- PyTorch: `torchscript` (the TorchScript loops that Numba's kernels
  replace on CPUs), `python` (the same loops run by the interpreter) and
  `keras.ops` (no fused kernels: the generic loop of `keras.ops` calls);
- TensorFlow: `xla loop` (the XLA-compiled `tf.while_loop` that Numba's
  kernels replace on CPUs), `gather` (the same loop reading each step with
  `tf.gather`, as before a slice) and `whole step XLA` (the model
  compiled with `jit_compile=True`: projection, loop and backward in one
  XLA function).

    python benchmarks/loop_candidates.py --backend torch

writes `benchmarks/results/loop-candidates.json`, one entry per engine.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CHUNKS = (4, 16, 64)


@contextlib.contextmanager
def _patched(obj, **attributes):
    saved = {name: getattr(obj, name) for name in attributes}
    for name, value in attributes.items():
        setattr(obj, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(obj, name, value)


@contextlib.contextmanager
def _environment(**variables):
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def candidates(backend):
    """`{name: (context, jit_compile)}`: the context swaps the candidate in
    while a model is built, traced and run."""
    import chunked_scan

    from keras_indrnn import recurrence

    found = {"engine": (contextlib.nullcontext, "auto")}
    for chunk in CHUNKS:
        states, backward = chunked_scan.patched_recurrence(chunk)
        found[f"chunked {chunk}"] = (
            lambda s=states, b=backward: _patched(
                recurrence, _sequential_states=s, _sequential_backward=b
            ),
            "auto",
        )
    if backend == "torch":
        from keras_indrnn.engines import torch as engine

        kernels = dict(engine._KERNELS)
        found["torchscript"] = (
            lambda: _environment(KERAS_INDRNN_NUMBA="0"),
            "auto",
        )

        @contextlib.contextmanager
        def python_loops():
            with _environment(KERAS_INDRNN_NUMBA="0"):
                with _patched(engine, _scripted=lambda name: kernels[name]):
                    yield

        found["python"] = (python_loops, "auto")
        found["keras.ops"] = (
            lambda: _patched(engine, fused_forward=None, fused_backward=None),
            "auto",
        )
    if backend == "tensorflow":
        import tensorflow as tf

        from keras_indrnn.engines import tensorflow as engine

        found["xla loop"] = (
            lambda: _environment(KERAS_INDRNN_NUMBA="0"),
            "auto",
        )

        @contextlib.contextmanager
        def gathered():
            # A new compiled loop, so that the variant is traced anew.
            loop = tf.function(
                engine._compiled_loop.python_function,
                jit_compile=True,
                autograph=False,
            )
            with _environment(KERAS_INDRNN_NUMBA="0"):
                with _patched(
                    engine,
                    _read_step=lambda x, t: tf.gather(x, t, axis=1),
                    _compiled_loop=loop,
                ):
                    yield

        found["gather"] = (gathered, "auto")
        found["whole step XLA"] = (contextlib.nullcontext, True)
    return found


def _median_ms(times):
    import numpy as np

    return 1000 * float(np.median(times))


def run(args):
    """Times the dense floor and one candidate, `args.candidate`,
    round-robin in this process: a candidate's ratio to the floor comes
    from one process, and no other candidate's memory traffic (the chunked
    scans' is heavy) disturbs its timings."""
    import keras
    import numpy as np
    from models import build_model

    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.timesteps, args.features)
    x = rng.uniform(size=shape).astype("float32")
    y = rng.uniform(size=(args.batch_size, 1)).astype("float32")
    context, jit = candidates(keras.backend.backend())[args.candidate]
    entries = {
        "dense floor": (contextlib.nullcontext, "auto", "dense_floor"),
        args.candidate: (context, jit, "indrnn_sequential"),
    }
    models, times, results = {}, {}, {}
    for name, (context, jit, model_name) in entries.items():
        with context():
            keras.utils.set_random_seed(0)
            start = time.perf_counter()
            model = build_model(
                model_name,
                args.timesteps,
                args.layers,
                args.units,
                args.features,
                jit,
            )
            for _ in range(3):  # the first call compiles
                model.train_on_batch(x, y)
                model.predict_on_batch(x)
                if name not in results:
                    results[name] = {
                        "first_call_s": time.perf_counter() - start
                    }
        models[name] = model
        times[name] = {"train": [], "infer": []}
    for _ in range(args.repeats):
        for name, model in models.items():
            with entries[name][0]():
                t0 = time.perf_counter()
                model.train_on_batch(x, y)
                t1 = time.perf_counter()
                model.predict_on_batch(x)
                t2 = time.perf_counter()
            times[name]["train"].append(t1 - t0)
            times[name]["infer"].append(t2 - t1)
    floor = {k: _median_ms(v) for k, v in times["dense floor"].items()}
    for name, measured in times.items():
        for kind, values in measured.items():
            ms = _median_ms(values)
            results[name][f"{kind}_ms"] = ms
            results[name][f"{kind}_over_floor"] = ms / floor[kind]
    return results


def measure(args, candidate, env):
    """One worker subprocess for `candidate`; its results, or the error."""
    command = [
        sys.executable,
        __file__,
        *sys.argv[1:],
        "--worker",
        "--candidate",
        candidate,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1][:300]}
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    row = measured[candidate]
    row["dense_floor_train_ms"] = measured["dense floor"]["train_ms"]
    row["dense_floor_infer_ms"] = measured["dense floor"]["infer_ms"]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["torch", "tensorflow", "jax"])
    parser.add_argument("--timesteps", type=int, default=784)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--features", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated candidates not to time",
    )
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--candidate", help=argparse.SUPPRESS)
    parser.add_argument("--list", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE / "results" / "loop-candidates.json",
    )
    args = parser.parse_args(argv)
    args.skip = set(filter(None, args.skip.split(",")))
    if args.worker and args.list:
        import keras

        print(json.dumps(list(candidates(keras.backend.backend()))))
        return
    if args.worker:
        print(json.dumps(run(args)))
        return
    env = dict(os.environ, KERAS_BACKEND=args.backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE.parent), env.get("PYTHONPATH")) if p
    )
    listed = subprocess.run(
        [sys.executable, __file__, *sys.argv[1:], "--worker", "--list"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    measured = {}
    for candidate in json.loads(listed.stdout.strip().splitlines()[-1]):
        if candidate in args.skip:
            continue
        measured[candidate] = measure(args, candidate, env)
        print(candidate, measured[candidate], file=sys.stderr, flush=True)
    document = (
        json.loads(args.output.read_text()) if args.output.exists() else {}
    )
    document[args.backend] = {
        "config": {
            "timesteps": args.timesteps,
            "layers": args.layers,
            "units": args.units,
            "batch_size": args.batch_size,
            "cores": os.cpu_count(),
        },
        "candidates": measured,
    }
    args.output.write_text(json.dumps(document, indent=1) + "\n")
    print(json.dumps(document[args.backend], indent=1))


if __name__ == "__main__":
    main()
