"""Trains the distributed case with `keras.distribution.DataParallel`.

    python jax_worker.py DIRECTORY one_host
    python jax_worker.py DIRECTORY several_hosts PROCESS_ID PORT

`one_host`: one process, two simulated CPU devices. `several_hosts`: two
processes of one CPU device each, joined by `keras.distribution.initialize`
on localhost:PORT. Writes DIRECTORY/result_<process id>.npz and saves the
model, process 0 to DIRECTORY/trained.keras.
"""

import os
import sys

MODE = sys.argv[2]
# Read by XLA when JAX starts, so before Keras imports it.
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=" + (
    "2" if MODE == "one_host" else "1"
)
os.environ["KERAS_BACKEND"] = "jax"

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from distributed_case import FEATURES  # noqa: E402
from distributed_case import GLOBAL_BATCH  # noqa: E402
from distributed_case import TIMESTEPS  # noqa: E402
from distributed_case import case_model  # noqa: E402
from distributed_case import fit_case  # noqa: E402
from distributed_case import process_rows  # noqa: E402
from distributed_case import read_data  # noqa: E402
from distributed_case import write_result  # noqa: E402


def replica_copies(variable):
    return [
        np.asarray(shard.data) for shard in variable.value.addressable_shards
    ]


def main():
    directory = Path(sys.argv[1])
    process = 0
    processes = 1
    if MODE == "several_hosts":
        process, port = int(sys.argv[3]), int(sys.argv[4])
        processes = 2
        # JAX 0.10's CPU collectives are gloo's by default
        # (jax_cpu_collectives_implementation): nothing to set.
        keras.distribution.initialize(
            job_addresses=f"localhost:{port}",
            num_processes=processes,
            process_id=process,
        )
    devices = jax.devices()
    assert len(devices) == 2, devices
    distribution = keras.distribution.DataParallel(devices=devices)
    # The arrays below are this process's part already; Keras shards only
    # tf.data datasets itself.
    distribution.auto_shard_dataset = False
    keras.distribution.set_distribution(distribution)
    data = read_data(directory)
    # Each process feeds its own part of every global batch; Keras
    # assembles the global batch across processes.
    rows = process_rows(len(data["x"]), process, processes)
    model = case_model(directory)
    recorder = fit_case(
        model,
        data["x"][rows],
        data["y"][rows],
        GLOBAL_BATCH // processes,
        replica_copies,
    )
    # Every process saves: `model.save` builds a fresh optimizer, whose
    # variable JAX places across both processes with a collective check
    # that its value is the same everywhere, so a save on process 0 alone
    # waits for process 1 forever. Process 0's file is the one kept.
    model.save(
        directory / ("trained.keras" if process == 0 else "scratch.keras")
    )
    more = {}
    if MODE == "one_host":
        # On a model of its own: a fit that fails leaves the model's
        # variables without values (Keras's JAX trainer frees them while
        # it trains and puts them back only at the end).
        more["indivisible_error"] = np.array(
            indivisible_batch_error(case_model(directory))
        )
    write_result(
        directory / f"result_{process}.npz",
        recorder,
        model,
        devices=np.array([len(devices), jax.local_device_count()]),
        **more,
    )


def indivisible_batch_error(model):
    """The message of `fit` on a global batch of 3 over the 2 devices."""
    x = np.zeros((3, TIMESTEPS, FEATURES), "float32")
    try:
        model.fit(x, np.zeros((3, 1), "float32"), batch_size=3, verbose=0)
    except Exception as error:  # the test reads which
        return f"{type(error).__name__}: {error}"
    return ""


if __name__ == "__main__":
    main()
