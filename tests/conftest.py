import importlib.util

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
    # A different, reproducible stream per test.
    return np.random.default_rng(abs(hash(request.node.nodeid)) % 2**32)
