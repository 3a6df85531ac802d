import importlib.util
import os
import zlib

# With TensorFlow and PyTorch in one process, torch must be imported first.
if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401

import keras
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def rng(request):
    # A different stream per test, the same in every run (str hashes are
    # salted per process). INDRNN_TEST_SEED shifts all of them, to probe
    # the tolerances with other data.
    salt = os.environ.get("INDRNN_TEST_SEED", "")
    return np.random.default_rng(
        zlib.crc32((salt + request.node.nodeid).encode())
    )
