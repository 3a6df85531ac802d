"""Data-parallel training of IndRNN on each engine's own runtime, with the
devices and hosts simulated by CPU devices and local processes: JAX's
`keras.distribution.DataParallel` on one and on two processes,
TensorFlow's `MirroredStrategy` and `MultiWorkerMirroredStrategy`, and
PyTorch's DistributedDataParallel under torchrun.

Each mode trains the case of `distributed_case` and proves that:
  - the losses of every step and the final weights are those of one device
    trained on the same global batches, to float32 rounding;
  - after every step every replica's copy of each u is within
    `recurrent_max_abs`, and the case did push u onto the bound;
  - the `.keras` file saved by process 0 (the chief) reloads and predicts
    what the trained weights predict.

Each test runs only under its own engine's KERAS_BACKEND.
"""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from distributed_case import BOUND
from distributed_case import build_model
from distributed_case import read_data
from distributed_case import read_result
from distributed_case import read_weights
from distributed_case import recurrent_kernels
from distributed_case import train_single_device
from distributed_case import write_case

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SEED = 0
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def engine(name):
    return pytest.mark.skipif(
        keras.backend.backend() != name,
        reason=f"runs on {name}'s own distributed runtime",
    )


class WorkerFailed(AssertionError):
    """A worker process exited with an error or ran out of time."""


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_workers(directory, *commands, timeout=150):
    """Runs the commands at once, as the processes of one job, their
    output in files: a pipe that fills up would stop a process that the
    others wait for."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), str(HERE), os.environ.get("PYTHONPATH")])
        ),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    logs = [directory / f"log_{i}.txt" for i in range(len(commands))]
    processes = []
    for command, log in zip(commands, logs, strict=True):
        with open(log, "w") as out:
            processes.append(
                subprocess.Popen(
                    [sys.executable, *map(str, command)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    # A group of its own, so that a stuck job goes with
                    # everything it started (torchrun's ranks).
                    start_new_session=True,
                )
            )
    failed = []
    for process, log in zip(processes, logs, strict=True):
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # The others of the job may be waiting for this one forever.
            for other in processes:
                if other.poll() is None:
                    os.killpg(other.pid, signal.SIGKILL)
            process.wait()
        if process.returncode != 0:
            failed.append(f"{log.name}, exit {process.returncode}:\n")
            failed[-1] += log.read_text()[-4000:]
    if failed:
        raise WorkerFailed("\n====\n".join(failed))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One device, the same global batches."""
    directory = write_case(tmp_path_factory.mktemp("single"), SEED)
    recorder, model = train_single_device(directory)
    return {
        "losses": np.array(recorder.losses),
        "max_abs_u": np.array(recorder.max_abs_u),
        "weights": model.get_weights(),
    }


@pytest.fixture
def case(tmp_path):
    return write_case(tmp_path, SEED)


def check(case, reference, replicas_per_result, results=2):
    """The three claims of the module docstring, on the files the
    workers wrote to `case`."""
    found = [read_result(case / f"result_{i}.npz") for i in range(results)]
    # Both bounds and clipping mean something only if the case starts
    # inside the bound and the reference run reaches it.
    start = max(np.max(np.abs(u)) for u in initial_u(case))
    assert start < BOUND
    assert np.max(reference["max_abs_u"]) == pytest.approx(BOUND, abs=1e-7)
    for result in found:
        np.testing.assert_allclose(
            result["losses"], reference["losses"], **TOLERANCE
        )
        for got, want in zip(
            result["weights"], reference["weights"], strict=True
        ):
            np.testing.assert_allclose(got, want, **TOLERANCE)
        max_abs_u = result["max_abs_u"]  # (step, layer, replica)
        assert max_abs_u.shape == (4, 2, replicas_per_result)
        assert np.all(max_abs_u <= BOUND + 1e-7), max_abs_u
        assert np.max(max_abs_u) == pytest.approx(BOUND, abs=1e-7)
    # The processes' copies stay in step: each applied the same update.
    for result in found[1:]:
        for got, want in zip(
            result["weights"], found[0]["weights"], strict=True
        ):
            np.testing.assert_array_equal(got, want)
    probe = read_data(case)["probe"]
    trained = build_model()
    trained.set_weights(found[0]["weights"])
    loaded = keras.saving.load_model(case / "trained.keras")
    np.testing.assert_allclose(
        loaded.predict(probe, verbose=0),
        trained.predict(probe, verbose=0),
        **TOLERANCE,
    )
    return found


def initial_u(case):
    model = build_model()
    model.set_weights(read_weights(case))
    return [keras.ops.convert_to_numpy(u) for u in recurrent_kernels(model)]


@engine("jax")
def test_jax_data_parallel_one_host(case, reference):
    run_workers(case, [HERE / "jax_worker.py", case, "one_host"])
    (result,) = check(case, reference, replicas_per_result=2, results=1)
    assert list(result["devices"]) == [2, 2]
    # A global batch the devices cannot split evenly: JAX refuses it and
    # says which dimension.
    message = str(result["indivisible_error"])
    assert message.startswith("IndivisibleError"), message
    assert "partitioned 2 times" in message
    assert "the dimension size is 3" in message


@engine("jax")
def test_jax_data_parallel_several_hosts(case, reference):
    (port,) = free_ports(1)
    run_workers(
        case,
        *(
            [HERE / "jax_worker.py", case, "several_hosts", process, port]
            for process in (0, 1)
        ),
    )
    results = check(case, reference, replicas_per_result=1)
    for result in results:
        assert list(result["devices"]) == [2, 1]


@engine("tensorflow")
def test_tf_mirrored_strategy(case, reference):
    run_workers(case, [HERE / "tf_worker.py", case, "mirrored", "fit"])
    check(case, reference, replicas_per_result=2, results=1)


def multi_worker(case, loop):
    ports = free_ports(2)
    run_workers(
        case,
        *(
            [HERE / "tf_worker.py", case, "multi_worker", loop, index, *ports]
            for index in (0, 1)
        ),
    )


# Keras 3.15's TensorFlow trainer reduces the first batch with
# `strategy.reduce` before the first step; MultiWorkerMirroredStrategy
# cannot reduce a nest of per-replica values and fit fails with "Attempt to
# convert a value (PerReplica:{...}) with an unsupported type" (open:
# keras-team/keras#20585). Strict: it fails here until Keras fixes it.
UNSUPPORTED_PER_REPLICA = (
    "with an unsupported type "
    "(<class 'tensorflow.python.distribute.values.PerReplica'>) to a Tensor"
)


@engine("tensorflow")
@pytest.mark.xfail(
    strict=True,
    raises=WorkerFailed,
    reason="Keras 3 model.fit cannot run MultiWorkerMirroredStrategy "
    "(keras-team/keras#20585)",
)
def test_tf_multi_worker_mirrored_strategy_fit(case, reference):
    try:
        multi_worker(case, "fit")
    except WorkerFailed as failure:
        # Any other failure is a plain one, not the expected one.
        if UNSUPPORTED_PER_REPLICA not in str(failure):
            raise AssertionError(str(failure)) from None
        raise
    check(case, reference, replicas_per_result=1)


@engine("tensorflow")
def test_tf_multi_worker_mirrored_strategy_custom_loop(case, reference):
    multi_worker(case, "custom")
    check(case, reference, replicas_per_result=1)


@engine("torch")
def test_torch_distributed_data_parallel(case, reference):
    (port,) = free_ports(1)
    run_workers(
        case,
        [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
            HERE / "torch_worker.py",
            case,
        ],
    )
    results = check(case, reference, replicas_per_result=1)
    for result in results:
        assert int(result["ranks"]) == 2
