"""Unit-parallel training (`keras_indrnn.distribution.UnitParallel`) on
simulated CPU devices: the same outputs and training step as one device,
and no communication inside the time loops."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_indrnn.distribution import program_report

jax_only = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="keras.distribution is implemented for JAX only",
)
WORKER = Path(__file__).with_name("unit_parallel_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def run(devices, units):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
        ),
    }
    done = subprocess.run(
        [sys.executable, str(WORKER), str(devices), str(units)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@jax_only
@pytest.mark.parametrize("devices", [2, 4])
def test_units_split_across_devices_train_as_on_one(devices):
    # 16 units: the second layer's 16 input features are more than
    # recurrence.PROJECTION_IN_LOOP_FEATURES, so it projects outside its
    # loop, in one tensor-parallel matmul (inside, each step would gather
    # the previous layer's units).
    report = run(devices, units=16)
    # Each device holds its columns of the first layer's (3, 16) kernel.
    assert report["kernel_shards"] == [[3, 16 // devices]]
    assert report["output_error"] < 1e-5
    assert max(report["weight_errors"]) < 1e-5
    # The recurrence's loops (forward and backward of each layer) exchange
    # nothing: every unit's past is on its own device.
    assert report["loops"] >= 4
    assert report["collectives_in_loops"] == []


@jax_only
def test_units_that_do_not_divide_among_the_devices():
    report = run(devices=4, units=6)
    assert "6 units do not divide into 4" in report["error"]
    assert "indrnn_cell/kernel" in report["error"]


@pytest.mark.skipif(
    keras.backend.backend() == "jax", reason="JAX implements it"
)
def test_program_report_names_the_backend_it_needs():
    model = keras.Sequential([keras.Input((4, 1)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="KERAS_BACKEND=jax"):
        program_report(model, np.zeros((2, 4, 1), "float32"))
