import json
import zipfile

import keras
import numpy as np
import pytest
import reference
from gradients import finite_differences
from gradients import gradients
from keras import ops

import keras_indrnn
from keras_indrnn import IndRNN
from keras_indrnn import IndRNNCell
from keras_indrnn import engines

PATHS = ["cell", "sequential", "parallel"]


def build(path, units, activation="relu", **kwargs):
    """The model under test: the bare cell in `keras.layers.RNN`, or the
    IndRNN layer with one implementation."""
    if path == "cell":
        cell_args = {
            k: kwargs.pop(k)
            for k in (
                "recurrent_max_abs",
                "dropout",
                "recurrent_dropout",
                "seed",
            )
            if k in kwargs
        }
        return keras.layers.RNN(
            IndRNNCell(units, activation=activation, **cell_args), **kwargs
        )
    return IndRNN(units, activation=activation, implementation=path, **kwargs)


def skip_if_unsupported(path, activation):
    if path == "parallel" and activation in ("tanh", "sigmoid", "elu"):
        pytest.skip("the parallel scan needs a clip-affine activation")


def f32(array):
    """The float64 value of what a float32 model actually holds, so the
    reference computes with the same numbers (a float32 u differs from its
    float64 value by up to 6e-8, which u ** 5000 magnifies 5000 times)."""
    return np.asarray(array).astype("float32").astype("float64")


def random_weights(rng, features, units, u_max=1.3):
    kernel = rng.normal(size=(features, units)) * 0.6
    # Both signs, and magnitudes above 1: nothing constrains them here.
    recurrent = rng.uniform(-u_max, u_max, size=units)
    bias = rng.normal(size=units) * 0.2
    return [f32(kernel), f32(recurrent), f32(bias)]


def set_weights(layer, input_shape, weights):
    # The layer's weights are the cell's, stateful or not: the state is no
    # weight (tests/test_stateful_weights.py).
    layer.build(input_shape)
    layer.set_weights([w.astype("float32") for w in weights])


def random_mask(rng, batch, steps):
    """Different lengths per sample, plus masked steps in the middle."""
    lengths = rng.integers(0, steps + 1, size=batch)
    mask = np.arange(steps)[None, :] < lengths[:, None]
    holes = rng.random((batch, steps)) < 0.2
    return mask & ~holes


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("activation", ["relu", "tanh", "linear"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("with_initial_state", [False, True])
def test_matches_float64_reference(
    rng,
    path,
    activation,
    go_backwards,
    return_sequences,
    with_mask,
    with_initial_state,
):
    skip_if_unsupported(path, activation)
    if (
        path == "cell"
        and with_mask
        and with_initial_state
        and keras.backend.backend() == "jax"
    ):
        pytest.skip(
            "Keras's own backends disagree here: at masked steps before the "
            "first unmasked one, JAX's `backend.rnn` outputs the initial "
            "state, TensorFlow's and PyTorch's output zeros (as IndRNN does)"
        )
    batch, steps = rng.integers(1, 6), rng.integers(1, 25)
    features, units = rng.integers(1, 6), rng.integers(1, 9)
    x = f32(rng.normal(size=(batch, steps, features)))
    weights = random_weights(rng, features, units)
    mask = random_mask(rng, batch, steps) if with_mask else None
    h0 = f32(rng.normal(size=(batch, units))) if with_initial_state else None

    layer = build(
        path,
        units,
        activation,
        go_backwards=go_backwards,
        return_sequences=return_sequences,
        return_state=True,
    )
    set_weights(layer, x.shape, weights)
    kwargs = {}
    if mask is not None:
        kwargs["mask"] = mask
    if h0 is not None:
        kwargs["initial_state"] = [h0.astype("float32")]
    output, state = layer(x.astype("float32"), **kwargs)

    outputs, last, final = reference.indrnn(
        x,
        *weights,
        initial_state=h0,
        activation=activation,
        mask=mask,
        go_backwards=go_backwards,
    )
    expected = outputs if return_sequences else last
    assert reference.relative_error(output, expected) < 1e-5
    assert reference.relative_error(state, final) < 1e-5


@pytest.mark.parametrize("path", PATHS)
def test_long_sequence_with_paper_bound(rng, path):
    steps = 3000
    bound = 2 ** (1 / steps)
    x = f32(rng.normal(size=(2, steps, 3)))
    kernel = rng.normal(size=(3, 6)) * 0.3
    recurrent = rng.uniform(-bound, bound, size=6)
    recurrent[:2] = bound  # units that remember the whole sequence
    kernel, recurrent, bias = f32(kernel), f32(recurrent), f32(np.full(6, 0.01))
    layer = build(path, 6, return_sequences=True, recurrent_max_abs=bound)
    set_weights(layer, x.shape, [kernel, recurrent, bias])
    output = layer(x.astype("float32"))
    expected, _, _ = reference.indrnn(x, kernel, recurrent, bias)
    # Thousands of float32 additions: the same bound as for T=5000 below.
    assert reference.relative_error(output, expected) < 1e-4


@pytest.mark.parametrize("implementation", ["sequential", "parallel"])
def test_t5000_with_paper_bound(rng, implementation):
    steps = 5000
    bound = 2 ** (1 / steps)
    x = f32(rng.normal(size=(2, steps, 2)))
    kernel = rng.normal(size=(2, 4)) * 0.3
    recurrent = np.array([bound, bound, -bound, 0.5])
    kernel, recurrent, bias = f32(kernel), f32(recurrent), np.zeros(4)
    layer = IndRNN(
        4,
        return_sequences=True,
        recurrent_max_abs="auto",
        implementation=implementation,
    )
    set_weights(layer, x.shape, [kernel, recurrent, bias])
    output = layer(x.astype("float32"))
    expected, _, _ = reference.indrnn(x, kernel, recurrent, bias)
    assert reference.relative_error(output, expected) < 1e-4


@pytest.mark.parametrize("path", PATHS)
def test_stateful_batches_continue_the_sequence(rng, path):
    batch, features, units = 3, 2, 5
    x = f32(rng.normal(size=(batch, 20, features)))
    weights = random_weights(rng, features, units, u_max=1.0)
    layer = build(path, units, stateful=True, return_sequences=True)
    set_weights(layer, (batch, 10, features), weights)
    first = layer(x[:, :10].astype("float32"))
    second = layer(x[:, 10:].astype("float32"))
    expected, _, _ = reference.indrnn(x, *weights)
    assert reference.relative_error(first, expected[:, :10]) < 1e-5
    assert reference.relative_error(second, expected[:, 10:]) < 1e-5

    layer.reset_state()
    again = layer(x[:, :10].astype("float32"))
    assert reference.relative_error(again, expected[:, :10]) < 1e-5


@pytest.mark.parametrize("implementation", ["sequential", "parallel"])
def test_stateful_batch_of_one_from_a_dataset(rng, implementation):
    # A dataset's batches have an unknown batch size, the state a known
    # one; for a batch of one, broadcasting the two loses the size.
    features, units, windows = 2, 4, 3
    x = f32(rng.normal(size=(1, 4 * windows, features)))
    weights = random_weights(rng, features, units, u_max=1.0)
    expected, _, _ = reference.indrnn(x, *weights)
    layer = IndRNN(
        units,
        stateful=True,
        return_sequences=True,
        implementation=implementation,
    )
    inputs = keras.Input(batch_shape=(1, 4, features))
    model = keras.Model(inputs, layer(inputs))
    model.set_weights(weights)
    model.compile(loss="mse")

    class Windows(keras.utils.PyDataset):
        def __len__(self):
            return windows

        def __getitem__(self, index):
            steps = slice(4 * index, 4 * index + 4)
            return x[:, steps].astype("float32"), expected[:, steps]

    # The squared error against the reference, carried window to window.
    assert model.evaluate(Windows(), verbose=0) < 1e-10
    layer.reset_state()
    outputs = model.predict(Windows(), verbose=0)
    outputs = np.concatenate(np.split(outputs, windows), axis=1)
    assert reference.relative_error(outputs, expected) < 1e-5


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("activation", ["relu", "tanh", "linear", "elu"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_gradients_match_finite_differences(
    rng, path, activation, go_backwards, with_mask
):
    skip_if_unsupported(path, activation)
    batch, steps, features, units = 3, 12, 2, 3
    x = f32(rng.normal(size=(batch, steps, features)))
    weights = random_weights(rng, features, units, u_max=1.2)
    mask = random_mask(rng, batch, steps) if with_mask else None
    probe = f32(rng.normal(size=(batch, steps, units)))

    def reference_loss(kernel, recurrent, bias):
        outputs, _, _ = reference.indrnn(
            x,
            kernel,
            recurrent,
            bias,
            activation=activation,
            mask=mask,
            go_backwards=go_backwards,
        )
        return np.sum(outputs * probe)

    expected = finite_differences(reference_loss, weights)

    layer = build(
        path,
        units,
        activation,
        go_backwards=go_backwards,
        return_sequences=True,
    )
    set_weights(layer, x.shape, weights)
    kwargs = {} if mask is None else {"mask": mask}
    x32 = x.astype("float32")
    probe32 = ops.convert_to_tensor(probe.astype("float32"))

    def loss():
        return ops.sum(layer(x32, **kwargs) * probe32)

    _, grads = gradients(loss, layer.trainable_variables)
    for grad, want in zip(grads, expected, strict=True):
        assert reference.relative_error(grad, want) < 1e-5


@pytest.mark.parametrize("implementation", ["sequential", "parallel"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_dropout_matches_the_cell(rng, implementation, go_backwards):
    x = rng.normal(size=(4, 9, 3)).astype("float32")
    weights = random_weights(rng, 3, 6, u_max=1.0)
    options = dict(
        dropout=0.3,
        recurrent_dropout=0.4,
        seed=7,
        return_sequences=True,
        go_backwards=go_backwards,
    )
    cell_layer = build("cell", 6, **options)
    fast_layer = build(implementation, 6, **options)
    set_weights(cell_layer, x.shape, weights)
    set_weights(fast_layer, x.shape, weights)
    cell_out = keras.ops.convert_to_numpy(cell_layer(x, training=True))
    fast_out = keras.ops.convert_to_numpy(fast_layer(x, training=True))
    assert reference.relative_error(fast_out, cell_out) < 1e-5
    # ... and the masks really dropped something.
    no_dropout, _, _ = reference.indrnn(x, *weights, go_backwards=go_backwards)
    assert reference.relative_error(fast_out, no_dropout) > 1e-2
    # In inference, dropout is off.
    inference = fast_layer(x, training=False)
    assert reference.relative_error(inference, no_dropout) < 1e-5


def test_bidirectional_with_mask_matches_reference(rng):
    x = f32(rng.normal(size=(3, 11, 2)))
    mask = random_mask(rng, 3, 11)
    forward_w = random_weights(rng, 2, 4, u_max=1.0)
    backward_w = random_weights(rng, 2, 4, u_max=1.0)
    layer = keras.layers.Bidirectional(IndRNN(4, return_sequences=True))
    layer.build(x.shape)
    layer.set_weights([w.astype("float32") for w in forward_w + backward_w])
    output = layer(x.astype("float32"), mask=mask)
    forward, _, _ = reference.indrnn(
        x, *forward_w, mask=mask, zero_output_for_mask=True
    )
    backward, _, _ = reference.indrnn(
        x, *backward_w, mask=mask, zero_output_for_mask=True, go_backwards=True
    )
    expected = np.concatenate([forward, backward[:, ::-1]], axis=-1)
    assert reference.relative_error(output, expected) < 1e-5


def test_masking_layer_in_a_sequential_model(rng):
    x = f32(rng.normal(size=(4, 7, 3)))
    x[1, 4:] = 0.0
    x[3, 2:] = 0.0
    mask = np.any(x != 0.0, axis=-1)
    weights = random_weights(rng, 3, 5, u_max=1.0)
    model = keras.Sequential(
        [keras.Input((7, 3)), keras.layers.Masking(0.0), IndRNN(5)]
    )
    model.layers[-1].set_weights([w.astype("float32") for w in weights])
    _, last, _ = reference.indrnn(x, *weights, mask=mask)
    output = model.predict(x.astype("float32"), verbose=0)
    assert reference.relative_error(output, last) < 1e-5


def test_supports_masking_like_simple_rnn():
    assert (
        IndRNN(3).supports_masking == keras.layers.SimpleRNN(3).supports_masking
    )


def _two_layer_model(**indrnn_kwargs):
    inputs = keras.Input((9, 3))
    h = keras.layers.Bidirectional(
        IndRNN(
            5, return_sequences=True, recurrent_max_abs="auto", **indrnn_kwargs
        )
    )(inputs)
    h = IndRNN(4, activation="tanh", recurrent_max_abs=1.5, dropout=0.1)(h)
    return keras.Model(inputs, keras.layers.Dense(2)(h))


def test_keras_file_round_trip(rng, tmp_path):
    x = rng.normal(size=(5, 9, 3)).astype("float32")
    model = _two_layer_model()
    before = model.predict(x, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)
    assert isinstance(loaded.layers[1].forward_layer, IndRNN)
    assert loaded.layers[2].recurrent_max_abs == 1.5


def test_config_round_trip_is_exact(rng):
    layer = IndRNN(
        6,
        activation="linear",
        use_bias=False,
        kernel_initializer="he_normal",
        recurrent_initializer=keras.initializers.RandomUniform(-0.5, 0.5),
        kernel_regularizer=keras.regularizers.L2(1e-3),
        recurrent_regularizer="l1",
        activity_regularizer="l2",
        kernel_constraint="non_neg",
        dropout=0.2,
        recurrent_dropout=0.1,
        recurrent_max_abs="auto",
        return_sequences=True,
        return_state=True,
        go_backwards=True,
        stateful=False,
        unroll=True,
        implementation="parallel",
        seed=3,
    )
    config = layer.get_config()
    clone = IndRNN.from_config(config)
    assert clone.get_config() == config
    for name in ("recurrent_max_abs", "implementation", "seed", "unroll"):
        assert getattr(clone, name) == getattr(layer, name)

    x = rng.normal(size=(2, 4, 3)).astype("float32")
    outputs = layer(x)
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    for a, b in zip(clone(x), outputs, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )


def test_cell_config_round_trip():
    cell = IndRNNCell(3, recurrent_max_abs=1.1, recurrent_dropout=0.2, seed=1)
    config = cell.get_config()
    assert IndRNNCell.from_config(config).get_config() == config


def test_hyperparameters_are_read_only_properties():
    layer = IndRNN(3, recurrent_max_abs=1.2)
    assert layer.units == 3 and layer.recurrent_max_abs == 1.2
    with pytest.raises(AttributeError):
        layer.units = 4


def test_activity_regularizer_is_applied(rng):
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    layer = IndRNN(4, activity_regularizer=keras.regularizers.L2(0.5))
    output = keras.ops.convert_to_numpy(layer(x))
    assert len(layer.losses) == 1
    expected = 0.5 * np.sum(output.astype(np.float64) ** 2) / x.shape[0]
    assert reference.relative_error(layer.losses[0], expected) < 1e-5


def test_functional_and_sequential_models_agree(rng):
    x = rng.normal(size=(3, 6, 2)).astype("float32")
    sequential = keras.Sequential([keras.Input((6, 2)), IndRNN(4)])
    inputs = keras.Input((6, 2))
    functional = keras.Model(inputs, IndRNN(4)(inputs))
    functional.set_weights(sequential.get_weights())
    np.testing.assert_allclose(
        functional.predict(x, verbose=0), sequential.predict(x, verbose=0)
    )


@pytest.mark.parametrize("implementation", ["sequential", "parallel"])
def test_jit_compiled_fit_and_predict(rng, implementation):
    x = rng.normal(size=(8, 6, 2)).astype("float32")
    y = rng.normal(size=(8, 1)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((6, 2)),
            IndRNN(4, recurrent_max_abs="auto", implementation=implementation),
            keras.layers.Dense(1),
        ]
    )
    model.compile("adam", "mse", jit_compile=True)
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    kernel, recurrent, bias = model.layers[0].get_weights()
    dense_w, dense_b = model.layers[1].get_weights()
    _, last, _ = reference.indrnn(x, kernel, recurrent, bias)
    expected = last @ dense_w + dense_b
    assert (
        reference.relative_error(model.predict(x, verbose=0), expected) < 1e-5
    )


@pytest.mark.parametrize(
    "policy, half, tolerance",
    [("mixed_float16", "float16", 5e-3), ("mixed_bfloat16", "bfloat16", 3e-2)],
)
@pytest.mark.parametrize("implementation", ["sequential", "parallel"])
def test_mixed_precision(rng, policy, half, tolerance, implementation):
    keras.config.set_dtype_policy(policy)
    x = f32(rng.normal(size=(3, 40, 2)))
    weights = random_weights(rng, 2, 5, u_max=1.0)
    layer = IndRNN(5, return_sequences=True, implementation=implementation)
    set_weights(layer, x.shape, weights)
    assert layer.cell.recurrent_kernel.dtype == "float32"
    output = layer(x)
    assert keras.backend.standardize_dtype(output.dtype) == half
    expected, _, _ = reference.indrnn(x, *weights)
    assert reference.relative_error(output, expected) < tolerance


def test_float16_state_accumulates_in_float32():
    # The state climbs past float16's largest value (65,504) and comes back
    # down; the final output fits in float16 again.
    keras.config.set_dtype_policy("mixed_float16")
    x = np.concatenate([np.ones((1, 80, 1)), -np.ones((1, 78, 1))], axis=1)
    weights = [np.array([[1000.0]]), np.array([1.0]), np.array([0.0])]
    outputs, last, _ = reference.indrnn(x, *weights)
    assert outputs.max() > 65504 and last[0, 0] == 2000.0
    layer = IndRNN(1, implementation="sequential")
    set_weights(layer, x.shape, weights)
    output = keras.ops.convert_to_numpy(layer(x)).astype(np.float64)
    np.testing.assert_array_equal(output, last)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"units": 0}, "units"),
        ({"units": -3}, "units"),
        ({"units": 2.5}, "units"),
        ({"units": "8"}, "units"),
        ({"units": True}, "units"),
        ({"units": 4, "recurrent_max_abs": 0}, "recurrent_max_abs"),
        ({"units": 4, "recurrent_max_abs": -1.0}, "recurrent_max_abs"),
        ({"units": 4, "recurrent_max_abs": "big"}, "recurrent_max_abs"),
        ({"units": 4, "recurrent_max_abs": [1.0]}, "recurrent_max_abs"),
        ({"units": 4, "dropout": -0.1}, "dropout"),
        ({"units": 4, "dropout": 1.0}, "dropout"),
        ({"units": 4, "recurrent_dropout": 1.5}, "recurrent_dropout"),
        ({"units": 4, "recurrent_dropout": -1}, "recurrent_dropout"),
        ({"units": 4, "implementation": "fast"}, "implementation"),
        (
            {"units": 4, "activation": "tanh", "implementation": "parallel"},
            "implementation",
        ),
        (
            {
                "units": 4,
                "recurrent_max_abs": 1.0,
                "recurrent_constraint": "non_neg",
            },
            "recurrent_max_abs",
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}"):
        IndRNN(**kwargs)


@pytest.mark.parametrize("units", [0, 2.5])
def test_cell_rejects_bad_units(units):
    with pytest.raises(ValueError, match="`units`"):
        IndRNNCell(units)


@pytest.mark.parametrize("shape", [(4, 3), (2, 4, 3, 1)])
def test_input_of_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"\(batch, timesteps, features\)"):
        IndRNN(3)(np.zeros(shape, "float32"))


def test_input_with_other_feature_size():
    layer = IndRNN(3)
    layer(np.zeros((2, 5, 4), "float32"))
    with pytest.raises(ValueError, match="built for 4 input features"):
        layer(np.zeros((2, 5, 6), "float32"))


def test_auto_bound_needs_static_timesteps():
    with pytest.raises(ValueError, match="recurrent_max_abs='auto'"):
        IndRNN(3, recurrent_max_abs="auto")(keras.Input((None, 2)))


def test_auto_bound_on_a_bare_cell():
    with pytest.raises(ValueError, match="recurrent_max_abs='auto'"):
        keras.layers.RNN(IndRNNCell(3, recurrent_max_abs="auto"))(
            np.zeros((1, 4, 2), "float32")
        )


def test_auto_bound_uses_the_timesteps():
    layer = IndRNN(3, recurrent_max_abs="auto")
    layer(np.zeros((1, 64, 2), "float32"))
    assert layer.recurrent_constraint is None
    assert layer.cell.recurrent_kernel.constraint.max_abs == 2 ** (1 / 64)


@pytest.mark.parametrize("implementation", ["sequential", "parallel"])
@pytest.mark.parametrize("shape", [(2, 3), (3, 4), (2, 4, 1)])
def test_initial_state_of_the_wrong_shape(implementation, shape):
    layer = IndRNN(4, implementation=implementation)
    x = np.zeros((2, 5, 3), "float32")
    with pytest.raises(ValueError, match="`initial_state`.*\\(2, 4\\)"):
        layer(x, initial_state=[np.zeros(shape, "float32")])


@pytest.mark.parametrize("implementation", ["sequential", "parallel"])
def test_an_error_inside_the_recurrence_is_raised_not_nan(implementation):
    # The recurrence's own arguments, mismatched past the layer's checks.
    from keras_indrnn import recurrence

    z = np.ones((2, 5, 4), "float32")
    with pytest.raises(Exception) as info:
        recurrence.indrnn_recurrence(
            z,
            np.ones(4, "float32"),
            np.ones((2, 3), "float32"),
            keras.activations.relu,
            implementation=implementation,
        )
    assert not isinstance(info.value, AssertionError)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_recurrence_without_input_projection(
    rng, path, with_mask, go_backwards
):
    if path == "cell" and with_mask and keras.backend.backend() == "jax":
        pytest.skip("Keras's JAX `backend.rnn` differs at masked steps")
    batch, steps, units = 3, 9, 5
    x = f32(rng.normal(size=(batch, steps, units)))
    _, recurrent, bias = random_weights(rng, units, units)
    mask = random_mask(rng, batch, steps) if with_mask else None
    if path == "cell":
        layer = keras.layers.RNN(
            IndRNNCell(units, use_kernel=False),
            return_sequences=True,
            go_backwards=go_backwards,
        )
    else:
        layer = IndRNN(
            units,
            use_kernel=False,
            return_sequences=True,
            go_backwards=go_backwards,
            implementation=path,
        )
    set_weights(layer, x.shape, [recurrent, bias])
    kwargs = {} if mask is None else {"mask": mask}
    output = layer(x.astype("float32"), **kwargs)
    expected, _, _ = reference.indrnn(
        x,
        np.eye(units),
        recurrent,
        bias,
        mask=mask,
        go_backwards=go_backwards,
    )
    assert reference.relative_error(output, expected) < 1e-5
    assert [w.name for w in layer.cell.weights] == ["recurrent_kernel", "bias"]


def test_recurrence_without_projection_needs_units_features():
    with pytest.raises(ValueError, match="`use_kernel=False`.*`units`=4"):
        IndRNN(4, use_kernel=False)(np.zeros((2, 5, 3), "float32"))


@pytest.mark.parametrize("implementation", ["sequential", "parallel"])
def test_recurrence_without_projection_gradients(rng, implementation):
    batch, steps, units = 2, 8, 3
    x = f32(rng.normal(size=(batch, steps, units)))
    _, recurrent, _ = random_weights(rng, units, units, u_max=1.2)
    probe = f32(rng.normal(size=(batch, steps, units)))

    def reference_loss(x, recurrent):
        outputs, _, _ = reference.indrnn(x, np.eye(units), recurrent)
        return np.sum(outputs * probe)

    expected = finite_differences(reference_loss, [x, recurrent])
    layer = IndRNN(
        units,
        use_kernel=False,
        use_bias=False,
        return_sequences=True,
        implementation=implementation,
    )
    set_weights(layer, x.shape, [recurrent])
    x_var = keras.Variable(x.astype("float32"))
    probe32 = ops.convert_to_tensor(probe.astype("float32"))

    def loss():
        return ops.sum(layer(x_var) * probe32)

    _, grads = gradients(loss, [x_var, layer.cell.recurrent_kernel])
    for grad, want in zip(grads, expected, strict=True):
        assert reference.relative_error(grad, want) < 1e-5


def test_a_config_from_an_incompatible_version(rng, tmp_path):
    layer = IndRNN(3)
    config = layer.get_config()
    assert config["keras_indrnn_version"] == keras_indrnn.__version__
    config.update(keras_indrnn_version="9.0.0", tide="high")
    with pytest.raises(ValueError, match="saved by keras_indrnn 9.0.0.*tide"):
        IndRNN.from_config(config)
    # A .keras file with such a layer fails to load with the same message.
    inputs = keras.Input((4, 2))
    model = keras.Model(inputs, IndRNN(3)(inputs))
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    saved = json.loads(files["config.json"])
    (layer_config,) = [
        entry["config"]
        for entry in saved["config"]["layers"]
        if entry["class_name"] == "IndRNN"
    ]
    layer_config.update(keras_indrnn_version="9.0.0", tide="high")
    files["config.json"] = json.dumps(saved).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match="saved by keras_indrnn 9.0.0"):
        keras.models.load_model(path)


@pytest.mark.parametrize("implementation", ["sequential", "parallel"])
def test_float64_layer_computes_in_float64(rng, implementation):
    if engines.current().float64_dtype_note() is not None:
        pytest.skip("this engine computes float64 in float32 (it warns)")
    # Weights and inputs that float32 cannot hold exactly: a float32
    # computation would miss the reference by ~1e-7, far above 1e-12.
    x = rng.normal(size=(3, 40, 4))
    weights = [
        rng.normal(size=(4, 5)) * 0.6,
        rng.uniform(-1.0, 1.0, size=5),
        rng.normal(size=5) * 0.2,
    ]
    layer = IndRNN(
        5,
        return_sequences=True,
        implementation=implementation,
        dtype="float64",
    )
    layer.build(x.shape)
    layer.set_weights(weights)
    output = layer(x)
    assert keras.backend.standardize_dtype(output.dtype) == "float64"
    outputs, _, _ = reference.indrnn(x, *weights, activation="relu")
    assert reference.relative_error(output, outputs) < 1e-12


def test_float64_layer_warns_where_it_computes_float32():
    if engines.current().float64_dtype_note() is None:
        pytest.skip("this engine computes float64 in float64")
    engine = {"jax": "JAX_ENABLE_X64", "torch": "PyTorch"}
    with pytest.warns(UserWarning, match=engine[keras.backend.backend()]):
        IndRNN(3, dtype="float64").build((2, 5, 1))
