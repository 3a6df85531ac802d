"""Run bookkeeping shared by the example scripts: flags, the device
report, and the output directory of a resumable training run.

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
import json
import os
import time
from pathlib import Path

import keras

from plotting import plot_runs
from plotting import read_metrics

# -- flags ------------------------------------------------------------------


def positive_int(text):
    return _parse(int, text, "a positive integer", lambda v: v > 0)


def positive_float(text):
    return _parse(
        float, text, "a positive number", lambda v: 0 < v < float("inf")
    )


def non_negative_float(text):
    return _parse(
        float, text, "a non-negative number", lambda v: 0 <= v < float("inf")
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


def add_run_flags(parser, batch_size, lr, lr_help=None):
    """The flags every script has, with the script's paper defaults.

    `lr` is the default learning rate, or the text of a rule by which the
    script sets it after parsing (the flag then defaults to None).
    """
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_size,
        help=f"examples per step (default: {batch_size})",
    )
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=None if isinstance(lr, str) else lr,
        help="initial learning rate (default: "
        + (lr if isinstance(lr, str) else f"{lr:g}")
        + (f"; {lr_help})" if lr_help else ")"),
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


# -- engine and device ----------------------------------------------------


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


# -- the run ----------------------------------------------------------------


class Run:
    """The output directory of a resumable training run."""

    # Flags that may change between invocations of the same run.
    MUTABLE_FLAGS = (
        "steps",
        "epochs",
        "quiet",
        "output",
        "data_dir",
        "distribute",
    )

    def __init__(self, output):
        self.dir = Path(output)
        self.backup_dir = self.dir / "backup"
        self.metrics_path = self.dir / "metrics.csv"
        self.started = time.time()
        self.first_epoch = self.finished_epochs()

    def check_flags(self, parser, flags, before_the_flag=None):
        """Records the flags of a new run, or, resuming, makes sure that
        those that define the model and recipe are the same as before.

        A flag that a run's flags.json lacks was added since the run began,
        and the run had its default; `before_the_flag` maps a flag whose
        default has changed since to the value it had before the flag
        existed."""
        fixed = {
            key: value
            for key, value in flags_dict(flags).items()
            if key not in self.MUTABLE_FLAGS
        }
        path = self.dir / "flags.json"
        if path.exists() and self.finished_epochs():
            before = json.loads(path.read_text())
            for key in fixed.keys() - before.keys():
                before[key] = (before_the_flag or {}).get(
                    key, parser.get_default(key)
                )
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
            print(f"Resuming {self.dir} after epoch {self.first_epoch}")
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

    def finished_values(self, key):
        """`key`'s value at each epoch the backup holds, from metrics.csv.

        An epoch interrupted after its row was written runs again when the
        run resumes, and writes a second row: the last row of each counts.
        """
        finished = self.finished_epochs()
        if not finished:
            return []
        metrics = self.metrics()
        by_epoch = dict(
            zip(metrics["epoch"].astype(int), metrics[key], strict=True)
        )
        return [float(by_epoch[epoch]) for epoch in range(finished)]

    def plateau(self, monitor, factor, patience, mode="auto"):
        """`keras.callbacks.ReduceLROnPlateau` that goes on counting where
        the run's earlier invocations stopped (see `ResumedPlateau`)."""
        return ResumedPlateau(
            self.finished_values(monitor),
            monitor=monitor,
            factor=factor,
            patience=patience,
            mode=mode,
        )

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


class ResumedPlateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau that continues from the monitored values of the
    epochs an earlier invocation finished.

    Keras's callback forgets its best value and the epochs it has waited
    at every `fit`, so a run resumed at each epoch would never lower its
    learning rate. The backup restores the rate itself (an optimizer
    variable); this replays the callback's rule over `finished`, so that
    its best value, wait and cooldown are those of one uninterrupted run.
    The replay counts every wait that reached `patience` as a reduction,
    which holds with the default `min_lr` of 0.
    """

    def __init__(self, finished, **kwargs):
        super().__init__(**kwargs)
        self.finished = list(finished)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.monitor_op is None:
            self._set_monitor_op()
        for value in self.finished:
            # ReduceLROnPlateau.on_epoch_end, less the optimizer.
            if self.in_cooldown():
                self.cooldown_counter -= 1
                self.wait = 0
            if self._is_improvement(value, self.best):
                self.best, self.wait = value, 0
            elif not self.in_cooldown():
                self.wait += 1
                if self.wait >= self.patience:
                    self.cooldown_counter, self.wait = self.cooldown, 0


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
