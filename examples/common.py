"""What the example scripts share: flags, device report, the IndRNN stack
of the papers, MNIST files, and the bookkeeping of a resumable run.

A run lives in one output directory:

    flags.json    the flags of the first invocation, to refuse a resume
                  with a different model or recipe
    backup/       keras.callbacks.BackupAndRestore: weights, optimizer
                  state and the number of finished epochs
    metrics.csv   one row per epoch, appended across invocations
    summary.json  the final numbers, rewritten by every invocation
    curves.png    the learning curves in metrics.csv
    model.keras   the trained model
"""

import argparse
import csv
import gzip
import json
import os
import time
from pathlib import Path

import keras
import numpy as np

from keras_indrnn import IndRNN
from keras_indrnn import RecurrentUniform

# -- flags ------------------------------------------------------------------


def positive_int(text):
    return _parse(int, text, "a positive integer", lambda v: v > 0)


def positive_float(text):
    return _parse(
        float, text, "a positive number", lambda v: 0 < v < float("inf")
    )


def seed_int(text):
    # NumPy's and Keras's seeding take 32-bit unsigned integers.
    return _parse(
        int, text, "an integer in [0, 2**32)", lambda v: 0 <= v < 2**32
    )


def _parse(kind, text, expected, valid):
    """argparse `type=`: `kind(text)` if `valid`, else argparse's error."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def add_run_flags(parser, batch_size, lr):
    """The flags every script has, with the script's paper defaults."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_size,
        help=f"examples per step (default: {batch_size})",
    )
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=lr,
        help=f"Adam's initial learning rate (default: {lr:g})",
    )
    parser.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        help="seed of the weights and the data (default: 0)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        metavar="DIR",
        help="where the run's files go; rerunning with the same DIR resumes",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def flags_dict(flags):
    """The parsed flags as a JSON-ready dict."""
    return {
        key: str(value) if isinstance(value, Path) else value
        for key, value in vars(flags).items()
    }


# -- engine and device --------------------------------------------------------


def describe_device():
    """The device Keras computes on, in words.

    Every engine places work on a GPU by itself when it sees one; this only
    reports what it chose.
    """
    backend = keras.backend.backend()
    cpu = f"CPU ({os.cpu_count()} cores)"
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return f"{device.platform.upper()} ({device.device_kind})"
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"GPU ({details.get('device_name', gpus[0].name)})"
    elif backend == "torch":
        import torch
        from keras.src.backend.torch.core import get_device

        device = str(get_device())
        if device.startswith("cuda"):
            return f"GPU ({torch.cuda.get_device_name(0)})"
        if not device.startswith("cpu"):
            return device.upper()
    return cpu


def print_engine():
    """Prints and returns `(backend, device)`."""
    backend, device = keras.backend.backend(), describe_device()
    print(f"Keras {keras.__version__}, backend {backend}, device {device}")
    return backend, device


# -- the model ----------------------------------------------------------------


def indrnn_stack(
    timesteps,
    layers,
    units,
    batch_norm=False,
    dropout=0.0,
    return_sequences=True,
    **indrnn_kwargs,
):
    """The papers' stack of ReLU IndRNN layers for `timesteps` steps.

    Every `|u|` is bounded by `2 ** (1 / timesteps)`, so a unit can neither
    blow up nor forget faster than by a factor of 2 over the sequence. The
    first layers start with `u ~ U(0, bound)`, the last with
    `u ~ U(1 / bound, bound)` so that every unit of the output layer starts
    with a long memory. With `batch_norm`, each layer is followed by batch
    normalization, over batch and time on sequences (the default of
    `BatchNormalization` on a `(batch, time, units)` tensor); with `dropout`,
    by dropout whose mask is shared over time. All but the last layer return
    sequences; the last does if `return_sequences`.
    """
    bound = 2.0 ** (1.0 / timesteps)
    stack = []
    for index in range(layers):
        last = index == layers - 1
        sequences = return_sequences or not last
        stack.append(
            IndRNN(
                units,
                recurrent_max_abs=bound,
                recurrent_initializer=RecurrentUniform(
                    bound, minval=1.0 / bound if last else 0.0
                ),
                return_sequences=sequences,
                **indrnn_kwargs,
            )
        )
        if batch_norm:
            stack.append(keras.layers.BatchNormalization())
        if dropout:
            stack.append(
                keras.layers.Dropout(
                    dropout, noise_shape=(None, 1, units) if sequences else None
                )
            )
    return stack


def last_step(timesteps):
    """Layers that keep only the last step of a `(batch, time, units)`
    tensor, in built-in layers so the saved model needs no custom code."""
    return [
        keras.layers.Cropping1D((timesteps - 1, 0)),
        keras.layers.Flatten(),
    ]


# -- MNIST as IDX files -------------------------------------------------------

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


def load_mnist_tfds():
    """MNIST from tensorflow-datasets (downloads it on first use)."""
    # Imported here: only this path needs TensorFlow and tfds.
    import tensorflow_datasets as tfds

    train, test = tfds.as_numpy(
        tfds.load(
            "mnist",
            split=["train", "test"],
            batch_size=-1,
            as_supervised=True,
        )
    )
    return (
        (train[0][..., 0], train[1].astype(np.uint8)),
        (test[0][..., 0], test[1].astype(np.uint8)),
    )


# -- the run ------------------------------------------------------------------


class Run:
    """The output directory of a resumable training run."""

    # Flags that may change between invocations of the same run.
    MUTABLE_FLAGS = ("steps", "epochs", "quiet", "output", "data_dir")

    def __init__(self, output):
        self.dir = Path(output)
        self.backup_dir = self.dir / "backup"
        self.metrics_path = self.dir / "metrics.csv"
        self.started = time.time()
        self.first_epoch = self.finished_epochs()

    def check_flags(self, parser, flags):
        """Records the flags of a new run, or, resuming, makes sure that
        those that define the model and recipe are the same as before."""
        fixed = {
            key: value
            for key, value in flags_dict(flags).items()
            if key not in self.MUTABLE_FLAGS
        }
        path = self.dir / "flags.json"
        if path.exists() and self.finished_epochs():
            before = json.loads(path.read_text())
            changed = sorted(
                key
                for key in fixed.keys() | before.keys()
                if fixed.get(key) != before.get(key)
            )
            if changed:
                parser.error(
                    f"{self.dir} holds a run with other flags ("
                    + ", ".join(
                        f"--{k.replace('_', '-')} was {before.get(k)!r}"
                        for k in changed
                    )
                    + "); pass those or use another --output"
                )
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(fixed, indent=2) + "\n")

    def finished_epochs(self):
        """Epochs that the backup holds, 0 for a new run."""
        path = self.backup_dir / "training_metadata.json"
        if not path.exists():
            return 0
        return json.loads(path.read_text())["epoch"]

    def callbacks(self, *extra):
        """`extra` callbacks, then the run's logging and backup."""
        return [
            *extra,
            _StepLog(),
            keras.callbacks.CSVLogger(str(self.metrics_path), append=True),
            # Kept after training so that a larger --steps/--epochs trains on.
            keras.callbacks.BackupAndRestore(
                str(self.backup_dir), delete_checkpoint=False
            ),
        ]

    def metrics(self):
        """metrics.csv as a dict of float columns."""
        return read_metrics(self.metrics_path)

    def finish(self, model, summary, panels, x_key, baseline=None):
        """Saves the model, summary.json and the learning curves (see
        `plot_runs` for `panels`, `x_key` and `baseline`).

        summary.json lists every invocation of the run that got this far,
        so that a resume, say on another backend, adds to the record
        instead of replacing it: `backend` and `device` are those that
        trained, `wall_seconds` sums the invocations, and `train_seconds`
        sums the epochs in metrics.csv (interrupted invocations included).
        """
        model.save(self.dir / "model.keras")
        path = self.dir / "summary.json"
        earlier = []
        if self.first_epoch and path.exists():  # a resumed run
            earlier = json.loads(path.read_text()).get("invocations", [])
        invocations = [
            *earlier,
            {
                "backend": summary["backend"],
                "device": summary["device"],
                "epochs": [self.first_epoch, self.finished_epochs()],
                "wall_seconds": round(time.time() - self.started, 1),
            },
        ]
        trained = [i for i in invocations if i["epochs"][1] > i["epochs"][0]]
        metrics = self.metrics()
        summary = {
            **summary,
            "backend": _distinct(trained or invocations, "backend"),
            "device": _distinct(trained or invocations, "device"),
            "wall_seconds": round(
                sum(i["wall_seconds"] for i in invocations), 1
            ),
            "train_seconds": round(float(sum(metrics.get("seconds", []))), 1),
            "invocations": invocations,
        }
        path.write_text(json.dumps(summary, indent=2) + "\n")
        plot_runs(
            [(summary["task"], metrics)],
            panels,
            x_key,
            self.dir / "curves.png",
            baseline=baseline,
        )
        print(json.dumps(summary, indent=2))
        return summary


def _distinct(invocations, key):
    """The values of `key`, each once, in order."""
    return ", ".join(dict.fromkeys(i[key] for i in invocations))


class _StepLog(keras.callbacks.Callback):
    """Adds the optimizer's step count, the learning rate in use and the
    epoch's duration to the logs that CSVLogger writes.

    The step count comes from the optimizer, which the backup restores, so
    it keeps counting across resumed invocations.
    """

    def on_epoch_begin(self, epoch, logs=None):
        # Read now: a plateau callback may lower it at the epoch's end.
        self._learning_rate = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs["step"] = int(
            keras.ops.convert_to_numpy(self.model.optimizer.iterations)
        )
        logs["learning_rate"] = self._learning_rate
        logs["seconds"] = time.time() - self._start


def read_metrics(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {key: np.array([float(row[key]) for row in rows]) for key in rows[0]}


def plot_runs(runs, panels, x_key, path, baseline=None, title=None):
    """Plots the learning curves of several runs into one PNG.

    Args:
        runs: List of `(label, metrics)`, metrics as from `read_metrics`.
        panels: List of lists of metrics.csv columns, one panel per list.
        x_key: The column for the x axis, e.g. `"step"` or `"epoch"`.
        path: The PNG file to write.
        baseline: Optional `(value, label)`, a dashed horizontal line.
        title: Optional figure title.
    """
    import matplotlib

    matplotlib.use("Agg")  # Files only: no display needed.
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False
    )
    for ax, keys in zip(axes[0], panels, strict=True):
        for label, metrics in runs:
            # metrics.csv counts epochs from 0; plot the epochs finished.
            x = metrics[x_key] + 1 if x_key == "epoch" else metrics[x_key]
            for key in keys:
                if key in metrics:
                    name = label if len(keys) == 1 else f"{label}: {key}"
                    ax.plot(x, metrics[key], label=name)
        if baseline is not None:
            value, text = baseline
            ax.axhline(value, color="gray", linestyle="--", label=text)
        if any("loss" in key for key in keys):
            ax.set_yscale("log")
        ax.set_xlabel(x_key)
        ax.set_ylabel(", ".join(keys))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
