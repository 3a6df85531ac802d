"""`--distribute` of the example scripts: data-parallel training on every
local device with the engine's own runtime trains as one device does, on
two simulated JAX devices and on TensorFlow's MirroredStrategy; PyTorch
and a batch that does not divide among the devices get a usage error."""

import json

import keras
import numpy as np
import pytest
from example_runs import assert_usage_error
from example_runs import run_script

BACKEND = keras.backend.backend()
TWO_JAX_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
FLAGS = (
    "--timesteps 20 --units 8 --steps-per-epoch 10 --steps 30 "
    "--batch-size 8 --lr 1e-3 --quiet"
).split()


def mnist_run(data, output, *more):
    code, err = run_script(
        "sequential_mnist.py",
        "--data-dir",
        data,
        "--units",
        "8",
        "--epochs",
        "1",
        "--quiet",
        "--output",
        output,
        *more,
        env=TWO_JAX_DEVICES,
    )
    assert code == 0, err[-3000:]
    return json.loads((output / "summary.json").read_text())


@pytest.mark.skipif(BACKEND == "torch", reason="refused on PyTorch, below")
def test_distributed_run_trains_as_on_one_device(mnist_idx_dir, tmp_path):
    one = mnist_run(mnist_idx_dir, tmp_path / "one")
    spread = mnist_run(mnist_idx_dir, tmp_path / "spread", "--distribute")
    assert spread["steps"] == one["steps"] == 6
    # The same global batches, gradients averaged over the replicas: the
    # same training up to float32 summation order.
    np.testing.assert_allclose(spread["test_loss"], one["test_loss"], rtol=1e-4)


@pytest.mark.skipif(BACKEND != "jax", reason="two simulated JAX devices")
def test_a_batch_that_does_not_divide_among_the_devices(tmp_path):
    code, err = run_script(
        "adding_problem.py",
        *FLAGS,
        "--batch-size",
        "5",
        "--distribute",
        "--output",
        tmp_path,
        env=TWO_JAX_DEVICES,
    )
    assert code == 2
    assert_usage_error(err, "--batch-size 5", "2 devices")
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's own launcher")
def test_pytorch_points_to_torchrun(tmp_path):
    code, err = run_script(
        "adding_problem.py", *FLAGS, "--distribute", "--output", tmp_path
    )
    assert code == 2
    assert_usage_error(err, "--distribute", "torchrun")
    assert not any(tmp_path.iterdir())
