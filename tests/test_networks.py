"""The papers' deep networks: parameter counts against the authors' PyTorch
code, learning, saving, variable length and bad hyperparameters."""

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from keras_indrnn import dense_indrnn
from keras_indrnn import plain_indrnn
from keras_indrnn import residual_indrnn
from keras_indrnn.inspection import indrnn_layers

CLASSES = 10


def classifier(build, timesteps=8, features=1, **kwargs):
    inputs = keras.Input((timesteps, features))
    outputs = keras.layers.Dense(CLASSES)(build(inputs, **kwargs))
    return keras.Model(inputs, outputs)


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# Expected counts from the formulas of the authors' code
# (Sunnydreamrain/IndRNN_pytorch, pixelMNIST): a layer of width H on n
# inputs is a Linear (n*H + H), the recurrent weights (H) and a batch norm's
# scale and shift (2H); the classifier is a Linear (H*C + C).


@pytest.mark.parametrize("bn", ["after", "before"])
def test_plain_parameter_count(bn):
    # I=1, H=16, 3 layers: (1*16 + 4*16) + 2 * (16*16 + 4*16) + (16*10 + 10)
    expected = (1 * 16 + 4 * 16) + 2 * (16 * 16 + 4 * 16) + (16 * 10 + 10)
    assert expected == 890
    model = classifier(plain_indrnn, layers=3, units=16, bn=bn)
    assert trainable_count(model) == expected


@pytest.mark.parametrize("bn", ["after", "before"])
def test_residual_parameter_count(bn):
    # I=1, H=16, 2 blocks: Linear 1->16 (1*16 + 16); per block two of
    # (recurrence + norm: 3*16, Linear 16->16: 16*16 + 16); the last
    # recurrence + norm (3*16); the classifier (16*10 + 10).
    block = 2 * (3 * 16 + 16 * 16 + 16)
    expected = (1 * 16 + 16) + 2 * block + 3 * 16 + (16 * 10 + 10)
    assert expected == 1530
    model = classifier(residual_indrnn, blocks=2, units=16, bn=bn)
    assert trainable_count(model) == expected


@pytest.mark.parametrize("bn", ["after", "before"])
def test_dense_parameter_count(bn):
    # I=1, growth G=4, first layer F0=8, bottleneck 4*G=16, blocks (2, 2),
    # last transition; a layer n -> m costs n*m + 4m.
    def layer(n, m):
        return n * m + 4 * m

    def dense_layer(n):  # bottleneck n -> 16, then 16 -> G
        return layer(n, 16) + layer(16, 4)

    stem = layer(1, 8)  # 40
    block = dense_layer(8) + dense_layer(12)  # 272 + 336; width 8 -> 16
    transition = layer(16, 8)  # 160
    expected = stem + block + transition + block + transition + (8 * 10 + 10)
    assert expected == 1666
    model = classifier(
        dense_indrnn,
        blocks=(2, 2),
        growth_rate=4,
        initial_features=8,
        bottleneck=4,
        last_transition=True,
        bn=bn,
    )
    assert trainable_count(model) == expected


NETWORKS = {
    "plain": (plain_indrnn, {"layers": 2, "units": 64}),
    "residual": (residual_indrnn, {"blocks": 1, "units": 64}),
    "dense": (
        dense_indrnn,
        {"blocks": (2,), "growth_rate": 16, "initial_features": 32},
    ),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_learns_real_digits_row_by_row(name):
    # The bar the plain stack clears in test_training, on the same data.
    build, kwargs = NETWORKS[name]
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")
    y = digits.target
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    keras.utils.set_random_seed(0)
    model = classifier(build, features=8, dropout=0.0, **kwargs)
    epochs, batch_size = 25, 32
    schedule = keras.optimizers.schedules.CosineDecay(
        3e-3, decay_steps=epochs * -(-split // batch_size)
    )
    model.compile(
        keras.optimizers.Adam(schedule),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        x[:split], y[:split], epochs=epochs, batch_size=batch_size, verbose=0
    )
    _, accuracy = model.evaluate(x[split:], y[split:], verbose=0)
    assert accuracy >= 0.93, accuracy


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("bn", ["after", "before"])
@pytest.mark.parametrize("normalization", ["batch", "framewise"])
def test_keras_file_round_trip(rng, tmp_path, name, bn, normalization):
    build, kwargs = NETWORKS[name]
    model = classifier(
        build,
        timesteps=6,
        features=3,
        bn=bn,
        normalization=normalization,
        **kwargs,
    )
    x = rng.normal(size=(4, 6, 3)).astype("float32")
    model(x, training=True)  # moves the batch norms' statistics
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5
    )


@pytest.mark.parametrize("name", NETWORKS)
def test_last_layer_starts_with_long_memories(name):
    build, kwargs = NETWORKS[name]
    model = classifier(build, timesteps=16, features=2, **kwargs)
    layers = indrnn_layers(model)
    bound = 2 ** (1 / 16)
    for layer in layers:
        u = keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)
        assert u.max() <= np.float32(bound)
        low = 1 / bound if layer is layers[-1] else 0.0
        assert u.min() >= np.float32(low)


@pytest.mark.parametrize("name", NETWORKS)
def test_variable_length_with_a_numeric_bound(rng, name):
    build, kwargs = NETWORKS[name]
    inputs = keras.Input((None, 3))
    masked = keras.layers.Masking(0.0)(inputs)
    features = build(masked, recurrent_max_abs=1.0, **kwargs)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(features))
    x = rng.normal(size=(2, 7, 3)).astype("float32")
    padded = np.concatenate([x, np.zeros((2, 4, 3), "float32")], axis=1)
    np.testing.assert_allclose(
        model.predict(padded, verbose=0),
        model.predict(x, verbose=0),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "build, kwargs, argument",
    [
        (plain_indrnn, {"layers": 0}, "layers"),
        (plain_indrnn, {"units": -4}, "units"),
        (plain_indrnn, {"bn": "middle"}, "bn"),
        (plain_indrnn, {"dropout": 1.0}, "dropout"),
        (plain_indrnn, {"normalization": "layer"}, "normalization"),
        (residual_indrnn, {"blocks": 0}, "blocks"),
        (residual_indrnn, {"last_dropout": -0.1}, "last_dropout"),
        (dense_indrnn, {"growth_rate": -16}, "growth_rate"),
        (dense_indrnn, {"blocks": ()}, "blocks"),
        (dense_indrnn, {"blocks": (4, 0)}, "blocks"),
        (dense_indrnn, {"bottleneck": 0}, "bottleneck"),
        (dense_indrnn, {"bn": "both"}, "bn"),
        (dense_indrnn, {"recurrent_max_abs": -1.0}, "recurrent_max_abs"),
    ],
)
def test_bad_hyperparameters(build, kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        build(keras.Input((8, 2)), **kwargs)


def test_auto_bound_needs_static_timesteps():
    with pytest.raises(ValueError, match="recurrent_max_abs='auto'"):
        plain_indrnn(keras.Input((None, 2)))


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("normalization", ["batch", "framewise"])
def test_weight_decay_reaches_kernels_and_scales_only(name, normalization):
    build, kwargs = NETWORKS[name]
    decay = 1e-4
    model = classifier(
        build, normalization=normalization, weight_decay=decay, **kwargs
    )
    decayed = {}
    for layer in model.layers:
        for attribute in ("kernel_regularizer", "gamma_regularizer"):
            regularizer = getattr(layer, attribute, None)
            if regularizer is not None:
                owner = getattr(layer, "cell", layer)  # IndRNN's is its cell's
                weight = owner.kernel if "kernel" in attribute else owner.gamma
                decayed[weight.path] = regularizer
    expected = {
        w.path
        for w in model.trainable_weights
        if w.path.endswith(("/kernel", "/gamma"))
        and not w.path.startswith(model.layers[-1].name)  # the classifier
    }
    assert set(decayed) == expected and expected
    # Coupled as PyTorch's Adam(weight_decay=1e-4): the penalty's gradient
    # is weight_decay * w, so the penalty is weight_decay / 2 * sum(w ** 2).
    w = np.arange(6.0, dtype="float32").reshape(2, 3)
    for regularizer in decayed.values():
        penalty = float(keras.ops.convert_to_numpy(regularizer(w)))
        assert penalty == pytest.approx(decay / 2 * np.sum(w**2))
    # u and the biases are not decayed: every penalty comes from the above.
    assert len(model.losses) == len(decayed)


@pytest.mark.parametrize("name", NETWORKS)
def test_without_weight_decay_nothing_is_regularized(name):
    build, kwargs = NETWORKS[name]
    assert not classifier(build, **kwargs).losses


@pytest.mark.parametrize("name", NETWORKS)
def test_last_layer_drawn_like_the_others_without_long_memory(name):
    build, kwargs = NETWORKS[name]
    model = classifier(
        build, timesteps=16, features=2, last_long_memory=False, **kwargs
    )
    bound = 2 ** (1 / 16)
    for layer in indrnn_layers(model):
        initializer = layer.cell.recurrent_initializer
        assert (initializer.minval, initializer.maxval) == (0.0, bound)


@pytest.mark.parametrize("value", ["false", 0, None])
def test_bad_last_long_memory(value):
    with pytest.raises(ValueError, match="`last_long_memory`: expected True"):
        plain_indrnn(keras.Input((8, 2)), last_long_memory=value)


@pytest.mark.parametrize("weight_decay", [-1e-4, float("inf"), "1e-4", True])
def test_bad_weight_decay(weight_decay):
    with pytest.raises(ValueError, match="`weight_decay`"):
        plain_indrnn(keras.Input((8, 2)), weight_decay=weight_decay)
