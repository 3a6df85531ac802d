"""Unit-parallel training of one wide IndRNN layer on N devices against one.

For each device count, a worker process (JAX on N simulated CPU devices,
`--xla_force_host_platform_device_count`) builds

    Input(T, features) -> IndRNN(units) -> Dense(1)

with its units split by `keras_indrnn.distribution.UnitParallel` (no
distribution for one device), times `train_on_batch`, and inspects the
compiled gradient program: whether its time loops communicate, and the
memory one device holds. Simulated devices share the host's cores, so the
step times show the cost of the split, not a speed-up; on real devices each
would run 1/N of the recurrence.

    python benchmarks/unit_parallel.py --devices 1,2,4
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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="1,2,4", help="comma-separated")
    parser.add_argument("--units", type=int, default=4096)
    parser.add_argument("--timesteps", type=int, default=256)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE / "results" / "unit-parallel-cpu.json",
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_worker(args):
    """One device count, in this process; prints one JSON line."""
    devices = args.worker
    os.environ["XLA_FLAGS"] = (
        f"--xla_force_host_platform_device_count={devices}"
    )
    os.environ["KERAS_BACKEND"] = "jax"
    import keras
    import numpy as np

    from keras_indrnn import IndRNN
    from keras_indrnn.distribution import UnitParallel
    from keras_indrnn.distribution import program_report

    if devices > 1:
        keras.distribution.set_distribution(UnitParallel())
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((args.timesteps, args.features)),
            IndRNN(args.units, recurrent_max_abs=2 ** (1 / args.timesteps)),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-4), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, args.timesteps, args.features))
    x = x.astype("float32")
    y = rng.normal(size=(args.batch_size, 1)).astype("float32")
    model.train_on_batch(x, y)  # compiles
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        seconds.append(time.perf_counter() - start)
    report = program_report(model, x)
    print(
        json.dumps(
            {
                "devices": devices,
                "train_s": float(np.median(seconds)),
                **report,
            }
        )
    )


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    rows = []
    for devices in map(int, args.devices.split(",")):
        print(f"== {devices} device(s)", file=sys.stderr, flush=True)
        command = [sys.executable, __file__, "--worker", str(devices)]
        for flag in ("units", "timesteps", "features", "batch_size"):
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        command += ["--repeats", str(args.repeats)]
        done = subprocess.run(
            command, capture_output=True, text=True, check=False
        )
        if done.returncode:
            sys.exit(done.stderr[-3000:])
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    document = {
        "machine": f"cpu-{os.cpu_count()}core-{platform.machine()}",
        "date": datetime.date.today().isoformat(),
        "model": {
            key: getattr(args, key)
            for key in ("units", "timesteps", "features", "batch_size")
        },
        "repeats": args.repeats,
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=1) + "\n")
    args.output.with_suffix(".md").write_text(markdown(document))
    print(args.output)


def markdown(document):
    model = document["model"]
    lines = [
        "# Unit-parallel IndRNN on simulated devices",
        "",
        f"`Input({model['timesteps']}, {model['features']}) -> "
        f"IndRNN({model['units']}) -> Dense(1)`, batch "
        f"{model['batch_size']}, JAX, `keras_indrnn.distribution."
        "UnitParallel` over N devices that XLA simulates on the "
        f"{document['machine']} host ({document['date']}); training step "
        f"(`train_on_batch`, Adam), median of {document['repeats']}. The "
        "simulated devices share the host's cores, so the times show the "
        "cost of the split, not the speed-up of real devices.",
        "",
        "| devices | train step (s) | loops | collectives inside the loops "
        "| memory per device (MiB) |",
        "|---|---|---|---|---|",
    ]
    for row in document["rows"]:
        collectives = ", ".join(row["collectives_in_loops"]) or "none"
        lines.append(
            f"| {row['devices']} | {row['train_s']:.3f} | {row['loops']} "
            f"| {collectives} | {row['bytes_per_device'] / 2**20:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
