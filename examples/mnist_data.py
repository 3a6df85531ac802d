"""MNIST for the examples: the four standard IDX files, or Keras's copy
of MNIST (downloaded on first use), as sequences of pixels."""

import gzip
from pathlib import Path

import numpy as np

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# IDX magic numbers: two zero bytes, the type (0x08 = uint8), the rank.
_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}


def missing_idx_files(directory):
    return [
        name
        for name in IDX_FILES.values()
        if not (Path(directory) / name).is_file()
    ]


def read_idx(path):
    """The uint8 array in a gzipped IDX file; `ValueError` if it is not one."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:  # not gzip, or cut short
        raise ValueError(f"{path}: {error}") from error
    if len(data) < 4:
        raise ValueError(f"{path} is not an IDX file: too short")
    magic = int.from_bytes(data[:4], "big")
    rank = data[3]
    if magic != _IDX_MAGIC.get(rank):
        raise ValueError(f"{path} is not a uint8 IDX file (magic {magic:#x})")
    header = 4 + 4 * rank
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)
    )
    if len(data) != header + int(np.prod(shape)):
        raise ValueError(f"{path}: size does not match its shape {shape}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def write_idx(path, array):
    array = np.ascontiguousarray(array, np.uint8)
    header = _IDX_MAGIC[array.ndim].to_bytes(4, "big") + b"".join(
        n.to_bytes(4, "big") for n in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def load_mnist_idx(directory):
    """`((x_train, y_train), (x_test, y_test))` from the four IDX files:
    images `(n, 28, 28)` and labels `(n,)`, uint8."""
    arrays = {
        key: read_idx(Path(directory) / name) for key, name in IDX_FILES.items()
    }
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or len(images) != len(labels):
            raise ValueError(
                f"{split} images {images.shape} and labels {labels.shape} "
                "do not match"
            )
    return (
        (arrays["train_images"], arrays["train_labels"]),
        (arrays["test_images"], arrays["test_labels"]),
    )


def load_mnist_keras():
    """MNIST as `keras.datasets.mnist` has it: downloaded on first use into
    `~/.keras/datasets`, on any backend (no TensorFlow needed)."""
    import keras

    try:
        return keras.datasets.mnist.load_data()
    except Exception as error:  # noqa: BLE001 - any failure of the download
        raise OSError(
            f"could not download MNIST through keras.datasets.mnist ({error})"
        ) from error


def load_mnist(directory=None):
    """`((x_train, y_train), (x_test, y_test))`, uint8, from the IDX files
    in `directory`, or from Keras's copy of MNIST without one."""
    if directory is None:
        return load_mnist_keras()
    return load_mnist_idx(directory)


# -- pixels as sequences ------------------------------------------------------

TIMESTEPS = 28 * 28
# The pixel order of permuted MNIST: fixed, so that all runs share it.
PERMUTATION_SEED = 2018


def pixel_order(permuted):
    """The order in which the pixels are read: row by row, or one fixed
    permutation."""
    if not permuted:
        return np.arange(TIMESTEPS)
    return np.random.default_rng(PERMUTATION_SEED).permutation(TIMESTEPS)


# How a pixel k in 0..255 enters the network: "unit" k / 255, in [0, 1];
# "signed" k / 128 - 1, in [-1, 0.992], as the authors' code has it.
PIXEL_SCALES = ("unit", "signed")


def pixel_sequences(images, order, scale="unit"):
    """uint8 images `(n, 28, 28)` as float sequences `(n, 784, 1)`, each
    pixel scaled as `scale` (one of `PIXEL_SCALES`) says."""
    if scale not in PIXEL_SCALES:
        raise ValueError(
            f"Invalid value for argument `scale`: expected one of "
            f"{PIXEL_SCALES}, got {scale!r}."
        )
    flat = images.reshape(len(images), TIMESTEPS)[:, order].astype("float32")
    pixels = flat / 255.0 if scale == "unit" else flat / 128.0 - 1.0
    return pixels[..., None]


def split_validation(x, y, fraction, seed):
    """Holds out `fraction` of (x, y), at least one example, drawn with
    `seed`: `((x_train, y_train), (x_val, y_val))`."""
    order = np.random.default_rng(seed).permutation(len(x))
    held_out = max(1, round(fraction * len(x)))
    val, train = order[:held_out], order[held_out:]
    return (x[train], y[train]), (x[val], y[val])
