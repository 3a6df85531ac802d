"""examples/sequential_mnist.py: it runs on real MNIST read from IDX files,
resumes, and rejects bad flags."""

import json

import keras
import numpy as np
import pytest
import sequential_mnist
from example_runs import assert_run_files
from example_runs import assert_usage_error
from example_runs import run_script

import mnist_data

SMALL = ["--units", "8", "--quiet"]


def test_idx_files_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28))
    mnist_data.write_idx(tmp_path / "images.gz", images)
    np.testing.assert_array_equal(
        mnist_data.read_idx(tmp_path / "images.gz"), images
    )


def test_pixel_scales():
    images = np.array([0, 1, 128, 255], "uint8").repeat(196).reshape(1, 28, 28)
    order = mnist_data.pixel_order(False)
    unit = mnist_data.pixel_sequences(images, order, "unit")[0, ::196, 0]
    np.testing.assert_allclose(unit, [0, 1 / 255, 128 / 255, 1], rtol=1e-6)
    # The authors': k / 256 * 2 - 1, in [-1, 1).
    signed = mnist_data.pixel_sequences(images, order, "signed")[0, ::196, 0]
    np.testing.assert_allclose(signed, [-1, -127 / 128, 0, 127 / 128])
    with pytest.raises(ValueError, match="`scale`"):
        mnist_data.pixel_sequences(images, order, "bytes")


@pytest.mark.parametrize("model", sequential_mnist.MODELS)
def test_recipe_flags_reach_every_layer(model):
    from keras_indrnn.inspection import indrnn_layers

    flags = sequential_mnist.parse_flags(
        [
            "--output",
            "unused",
            "--model",
            model,
            "--bound-magnitude",
            "5",
            "--last-layer-init",
            "uniform",
            "--weight-decay",
            "1e-4",
        ]
    )[1]
    bound, recipe = sequential_mnist.recipe_of(flags)
    assert bound == pytest.approx(5 ** (1 / 784))
    built = sequential_mnist.build_model(model, 4, bound, recipe)
    for layer in indrnn_layers(built):
        assert layer.recurrent_max_abs == pytest.approx(bound)
        initializer = layer.cell.recurrent_initializer
        assert initializer.minval == 0.0  # the last layer too
    decayed = [
        layer
        for layer in built.layers
        if getattr(layer, "kernel_regularizer", None)
        or getattr(layer, "gamma_regularizer", None)
    ]
    # Every projection, batch norm and the classifier; u and biases never.
    projections = [
        layer
        for layer in built.layers
        if isinstance(layer, keras.layers.Dense)
        or getattr(layer, "use_kernel", False)
    ]
    norms = [
        layer
        for layer in built.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert set(decayed) == set(projections + norms)
    assert built.layers[-1] in decayed  # the classifier
    assert len(built.losses) == len(decayed)


@pytest.mark.parametrize("pixels, low", [("unit", 0.0), ("signed", -1.0)])
def test_pixels_flag_reaches_every_split(mnist_idx_dir, pixels, low):
    parser, flags = sequential_mnist.parse_flags(
        ["--output", "unused", "--data-dir", str(mnist_idx_dir)]
        + ["--pixels", pixels]
    )
    for x, _ in sequential_mnist.load_data(parser, flags):
        assert x.min() == low and x.max() <= 1.0


def test_default_recipe_is_the_a_b_winner():
    # The papers' bound and last layer, no weight decay, the authors'
    # pixels (README, "Which recipe").
    flags = sequential_mnist.parse_flags(["--output", "unused"])[1]
    bound, recipe = sequential_mnist.recipe_of(flags)
    assert bound == pytest.approx(2 ** (1 / 784))
    assert recipe == {"weight_decay": 0.0, "last_long_memory": True}
    assert flags.pixels == "signed"
    flags = sequential_mnist.parse_flags(
        ["--output", "unused", "--recurrent-max-abs", "1.5"]
    )[1]
    assert sequential_mnist.recipe_of(flags)[0] == 1.5


def test_pixel_orders():
    images = np.arange(2 * 784).reshape(2, 28, 28) % 256
    plain = mnist_data.pixel_order(False)
    np.testing.assert_array_equal(plain, np.arange(784))
    permuted = mnist_data.pixel_order(True)
    # One fixed permutation, the same in every run.
    np.testing.assert_array_equal(permuted, mnist_data.pixel_order(True))
    assert sorted(permuted) == list(range(784))
    assert (permuted != plain).mean() > 0.9
    sequences = mnist_data.pixel_sequences(images.astype("uint8"), permuted)
    assert sequences.shape == (2, 784, 1)
    np.testing.assert_allclose(
        sequences[1, :, 0], images[1].reshape(-1)[permuted] / 255, rtol=1e-6
    )


def test_trains_and_resumes_on_real_digits(mnist_idx_dir, tmp_path):
    # The whole pipeline on 200 real training digits, 784 steps each.
    flags = ["--data-dir", str(mnist_idx_dir), "--output", str(tmp_path)]
    summary = sequential_mnist.main([*flags, *SMALL, "--epochs", "1"])
    metrics = assert_run_files(tmp_path, summary)
    assert summary["task"] == "sequential MNIST, plain IndRNN"
    assert (summary["train_images"], summary["validation_images"]) == (190, 10)
    assert summary["test_images"] == 100
    assert 0 <= summary["test_accuracy"] <= 1
    assert list(metrics["epoch"]) == [0]
    steps = summary["steps"]
    assert steps == 6  # ceil(190 / 32)

    # One more epoch, not two.
    summary = sequential_mnist.main([*flags, *SMALL, "--epochs", "2"])
    metrics = assert_run_files(tmp_path, summary)
    assert summary["epochs"] == 2 and summary["steps"] == 2 * steps
    assert list(metrics["epoch"]) == [0, 1]
    assert list(metrics["step"]) == [steps, 2 * steps]


def test_a_run_begun_before_pixels_resumes_with_its_pixels(
    mnist_idx_dir, tmp_path, capsys
):
    # Its flags.json has no `pixels`: it read pixels in [0, 1], and a
    # resume at today's default would change its inputs.
    flags = ["--data-dir", str(mnist_idx_dir), "--output", str(tmp_path)]
    sequential_mnist.main([*flags, *SMALL, "--epochs", "1", "--pixels", "unit"])
    path = tmp_path / "flags.json"
    recorded = json.loads(path.read_text())
    del recorded["pixels"]
    path.write_text(json.dumps(recorded))
    with pytest.raises(SystemExit):
        sequential_mnist.main([*flags, *SMALL, "--epochs", "2"])
    assert "--pixels was 'unit'" in capsys.readouterr().err
    summary = sequential_mnist.main(
        [*flags, *SMALL, "--epochs", "2", "--pixels", "unit"]
    )
    assert summary["epochs"] == 2


def test_bad_data_dir_is_a_usage_error(tmp_path):
    # As a command: exit code 2 and one clear line, not a traceback.
    code, err = run_script(
        "sequential_mnist.py",
        "--data-dir",
        tmp_path,
        "--output",
        tmp_path / "run",
    )
    assert code == 2
    assert_usage_error(err, "--data-dir", "lacks train-images-idx3-ubyte.gz")
    assert not (tmp_path / "run").exists()


def test_corrupt_idx_file_is_a_usage_error(mnist_idx_dir, tmp_path, capsys):
    for name in mnist_data.IDX_FILES.values():
        (tmp_path / name).write_bytes((mnist_idx_dir / name).read_bytes())
    (tmp_path / mnist_data.IDX_FILES["test_labels"]).write_bytes(b"not gzip")
    with pytest.raises(SystemExit) as excinfo:
        sequential_mnist.main(
            ["--data-dir", str(tmp_path), "--output", str(tmp_path / "run")]
        )
    assert excinfo.value.code == 2
    assert_usage_error(capsys.readouterr().err, "--data-dir", "t10k-labels")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "-1"], "argument --epochs: expected a positive integer"),
        (["--units", "0"], "argument --units"),
        (["--model", "wide"], "argument --model: invalid choice"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--bound-magnitude", "0"], "argument --bound-magnitude: expected"),
        (["--bound-magnitude", "-5"], "argument --bound-magnitude: expected"),
        (["--recurrent-max-abs", "0"], "argument --recurrent-max-abs"),
        (
            ["--recurrent-max-abs", "1", "--bound-magnitude", "5"],
            "not allowed with argument",
        ),
        (["--weight-decay", "-1e-4"], "argument --weight-decay: expected"),
        (["--last-layer-init", "zeros"], "argument --last-layer-init"),
        (["--pixels", "bytes"], "argument --pixels: invalid choice"),
    ],
)
def test_bad_flags_are_usage_errors(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as excinfo:
        sequential_mnist.main([*flags, "--output", str(tmp_path / "run")])
    assert excinfo.value.code == 2
    assert_usage_error(capsys.readouterr().err, message)


@pytest.mark.parametrize("model", ["residual", "dense"])
def test_deep_models_train_on_permuted_digits(mnist_idx_dir, tmp_path, model):
    flags = ["--data-dir", str(mnist_idx_dir), "--output", str(tmp_path)]
    summary = sequential_mnist.main(
        [*flags, *SMALL, "--model", model, "--permuted", "--epochs", "1"]
    )
    assert_run_files(tmp_path, summary)
    assert summary["task"] == f"permuted MNIST, {model} IndRNN"
    assert 0 <= summary["test_accuracy"] <= 1


def test_default_data_without_a_connection(tmp_path, capsys, monkeypatch):
    # The default path needs no TensorFlow: in the torch and jax
    # environments this runs without it. Offline, the error says what failed.
    def offline(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.datasets.mnist.get_file", offline)
    with pytest.raises(SystemExit) as excinfo:
        sequential_mnist.main(["--output", str(tmp_path / "run")])
    assert excinfo.value.code == 2
    assert_usage_error(
        capsys.readouterr().err,
        "could not download MNIST through keras.datasets.mnist",
        "no route to host",
        "--data-dir",
    )
    assert not (tmp_path / "run").exists()
