"""Candidates for the time loop of one engine, timed side by side.

PyTorch (`--backend torch`): one IndRNN layer's recurrence, forward and
backward (`keras_indrnn.recurrence.indrnn_recurrence` under autograd),
with the engine's fused kernels swapped for each candidate:

- `torchscript`: the kernels compiled by `torch.jit.script` (what the
  engine uses);
- `python`: the same kernels run by the Python interpreter;
- `torch.compile`: the same kernels compiled by `torch.compile` (Inductor
  needs a C++ compiler at run time on CPUs);
- `keras.ops`: no fused kernels: the generic loop of `keras.ops` calls.

TensorFlow (`--backend tensorflow`): a training step of the benchmark's
IndRNN model with only the time loop XLA-compiled (what the engine does
inside a plain graph) against the whole step XLA-compiled
(`jit_compile=True`: projection, loop and backward in one XLA function).

    python benchmarks/loop_candidates.py --backend torch
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _median_ms(fn, repeats):
    import numpy as np

    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def torch_candidates(args):
    import keras
    import numpy as np
    import torch

    from keras_indrnn import recurrence
    from keras_indrnn.engines import torch as engine

    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.timesteps, args.units)
    z = torch.tensor(rng.normal(size=shape), dtype=torch.float32)
    u = torch.tensor(rng.uniform(0, 1, size=args.units), dtype=torch.float32)
    h0 = torch.zeros(args.batch_size, args.units)
    probe = torch.tensor(rng.normal(size=shape), dtype=torch.float32)

    def step():
        zz = z.clone().requires_grad_()
        uu = u.clone().requires_grad_()
        _, outputs, _ = recurrence.indrnn_recurrence(
            zz, uu, h0, keras.activations.relu
        )
        (outputs * probe).sum().backward()

    kernels = dict(engine._KERNELS)
    compiled = {}

    def with_kernels(make):
        def fused(name):
            if name not in compiled:
                compiled[name] = make(kernels[name])
            return compiled[name]

        return fused

    candidates = {
        "torchscript": engine._scripted,
        "python": lambda name: kernels[name],
        "torch.compile": with_kernels(torch.compile),
    }
    results = {}
    saved = (engine._scripted, engine.fused_forward, engine.fused_backward)
    for name, scripted in candidates.items():
        if name in args.skip:
            results[name] = {"skipped": "--skip"}
            continue
        compiled.clear()
        engine._scripted = scripted
        try:
            start = time.perf_counter()
            step()
            first = time.perf_counter() - start
            results[name] = {
                "ms": _median_ms(step, args.repeats),
                "first_call_s": first,
            }
        except Exception as error:  # noqa: BLE001 - a loser, recorded
            results[name] = {"error": f"{type(error).__name__}: {error}"}
        engine._scripted = saved[0]
        print(name, results[name], file=sys.stderr, flush=True)
    engine.fused_forward = engine.fused_backward = None
    results["keras.ops"] = {"ms": _median_ms(step, args.repeats)}
    engine.fused_forward, engine.fused_backward = saved[1:]
    return results


def tensorflow_candidates(args):
    import numpy as np
    from models import build_model

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch_size, args.timesteps, 2)).astype("float32")
    y = rng.uniform(size=(args.batch_size, 1)).astype("float32")
    results = {}
    for name, jit in (("loop only XLA", False), ("whole step XLA", True)):
        models = {
            model: build_model(model, args.timesteps, 2, args.units, 2, jit)
            for model in ("indrnn_sequential", "dense_floor")
        }
        times = {
            model: _median_ms(lambda m=m: m.train_on_batch(x, y), args.repeats)
            for model, m in models.items()
        }
        results[name] = {
            "ms": times["indrnn_sequential"],
            "dense_floor_ms": times["dense_floor"],
            "ratio": times["indrnn_sequential"] / times["dense_floor"],
        }
        print(name, results[name], file=sys.stderr, flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["torch", "tensorflow"])
    parser.add_argument("--timesteps", type=int, default=784)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated candidates not to time (torch.compile "
        "unrolls the whole loop and compiles for many minutes)",
    )
    parser.add_argument("--worker", action="store_true")
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE / "results" / "loop-candidates.json",
    )
    args = parser.parse_args(argv)
    args.skip = set(filter(None, args.skip.split(",")))
    if args.worker:
        run = {"torch": torch_candidates, "tensorflow": tensorflow_candidates}
        print(json.dumps(run[args.backend](args)))
        return
    env = dict(os.environ, KERAS_BACKEND=args.backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE.parent), env.get("PYTHONPATH")) if p
    )
    command = [sys.executable, __file__, "--worker", *sys.argv[1:]]
    done = subprocess.run(
        command, env=env, stdout=subprocess.PIPE, text=True, check=True
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    document = (
        json.loads(args.output.read_text()) if args.output.exists() else {}
    )
    document[args.backend] = {
        "config": {
            "timesteps": args.timesteps,
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
