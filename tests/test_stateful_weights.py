"""A stateful IndRNN's weights are those of `keras.layers.SimpleRNN`: its
state is no weight, so `get_weights` / `set_weights` and `save_weights` /
`load_weights` move between stateful models of any batch size and their
stateless twins. The state still carries over in `fit`, `train_on_batch`,
`evaluate` and `predict` on every engine, JAX included (Keras's own
stateful RNNs carry none there, so no test takes them as the oracle), and
files of keras_indrnn 0.2.0, which saved the state as a weight, load.
Every output is checked against the float64 reference for the weights the
model holds."""

import shutil
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import reference
from keras import ops

from keras_indrnn import IndRNN

FEATURES, UNITS, STEPS = 2, 4, 6
DATA = Path(__file__).parent / "data"
OLD = "indrnn-0.2.0-stateful"


def f32(array):
    """What a float32 variable holds, as float64."""
    return np.asarray(array).astype("float32").astype("float64")


def indrnn_model(batch, stateful=True):
    """Sequences -> IndRNN (every step's output): a stateful model for
    batches of `batch`, or its stateless twin."""
    inputs = keras.Input(batch_shape=(batch, STEPS, FEATURES))
    layer = IndRNN(UNITS, stateful=stateful, return_sequences=True)
    return keras.Model(inputs, layer(inputs)), layer


def random_weights(rng):
    """kernel, u, bias; u in [0.6, 1] so that a lost or stale state shows
    in every later output."""
    return [
        f32(rng.normal(size=(FEATURES, UNITS)) * 0.6),
        f32(rng.uniform(0.6, 1.0, size=UNITS)),
        f32(rng.normal(size=UNITS) * 0.2 + 0.3),
    ]


def as_float32(weights):
    return [w.astype("float32") for w in weights]


def state(layer):
    return ops.convert_to_numpy(layer.states[0])


def windows(x, count):
    """`x` (batch, count * STEPS, features) as `count` windows."""
    return [x[:, k * STEPS : (k + 1) * STEPS] for k in range(count)]


def check_windows_continue(model, x, weights):
    """`model` reads the windows of `x` one call each, from its state now
    at zero, as one pass of the reference over `x`."""
    expected, _, final = reference.indrnn(x, *weights)
    got = [model.predict_on_batch(w) for w in windows(x, 2)]
    got = np.concatenate([ops.convert_to_numpy(g) for g in got], axis=1)
    assert reference.relative_error(got, expected) < 1e-5
    return final


# -- what the weights are -------------------------------------------------


def test_stateful_model_weights_are_simple_rnns_kinds():
    indrnn, layer = indrnn_model(3)
    inputs = keras.Input(batch_shape=(3, STEPS, FEATURES))
    simple = keras.layers.SimpleRNN(UNITS, stateful=True)
    simple_model = keras.Model(inputs, simple(inputs))
    names = [w.name for w in simple_model.weights]
    assert names == ["kernel", "recurrent_kernel", "bias"]
    assert [w.name for w in indrnn.weights] == names
    assert indrnn.non_trainable_weights == []
    assert len(indrnn.get_weights()) == len(simple_model.get_weights())
    assert indrnn.count_params() == FEATURES * UNITS + 2 * UNITS
    # The state is state of the layer, as a SeedGenerator's: what JAX's
    # stateless steps thread, and no weight.
    (variable,) = layer.states
    assert tuple(variable.shape) == (3, UNITS)
    assert any(v is variable for v in layer.non_trainable_variables)
    assert any(v is variable for v in indrnn.non_trainable_variables)
    assert not any(v is variable for v in indrnn.weights)


# -- the three patterns -----------------------------------------------------


def test_trained_weights_into_a_batch_of_one(rng, tmp_path):
    # Train at batch 8, then generate one sequence at a time.
    big, _ = indrnn_model(8)
    big.compile(keras.optimizers.Adam(0.05), "mse")
    x = rng.normal(size=(16, STEPS, FEATURES)).astype("float32")
    y = rng.normal(size=(16, STEPS, UNITS)).astype("float32")
    start = [w.copy() for w in big.get_weights()]
    big.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    weights = [f32(w) for w in big.get_weights()]
    assert all(np.any(w != s) for w, s in zip(weights, start, strict=True))
    sequence = f32(rng.normal(size=(1, 2 * STEPS, FEATURES)))

    one, _ = indrnn_model(1)
    one.set_weights(big.get_weights())
    check_windows_continue(one, sequence, weights)

    path = tmp_path / "big.weights.h5"
    big.save_weights(path)
    loaded, _ = indrnn_model(1)
    loaded.load_weights(path)
    check_windows_continue(loaded, sequence, weights)


def test_stateful_model_and_stateless_twin_swap_weights(rng, tmp_path):
    stateful, layer = indrnn_model(3)
    twin, _ = indrnn_model(None, stateful=False)
    x = f32(rng.normal(size=(3, 2 * STEPS, FEATURES)))
    first, second = random_weights(rng), random_weights(rng)
    stateful.set_weights(as_float32(first))
    stateful.predict_on_batch(x[:, :STEPS])
    assert np.any(state(layer) != 0)

    # To the twin: the weights, not the state; it starts at zero.
    twin.set_weights(stateful.get_weights())
    expected, _, _ = reference.indrnn(x[:, :STEPS], *first)
    got = twin.predict_on_batch(x[:, :STEPS])
    assert reference.relative_error(got, expected) < 1e-5

    # ... and back, by set_weights and by a weights file.
    twin.set_weights(as_float32(second))
    stateful.set_weights(twin.get_weights())
    layer.reset_state()
    check_windows_continue(stateful, x, second)

    path = tmp_path / "twin.weights.h5"
    twin.save_weights(path)
    stateful.set_weights(as_float32(first))
    stateful.load_weights(path)
    layer.reset_states()  # Keras's older name also zeroes the state
    assert not np.any(state(layer))
    check_windows_continue(stateful, x, second)

    path = tmp_path / "stateful.weights.h5"
    stateful.save_weights(path)
    other, _ = indrnn_model(None, stateful=False)
    other.load_weights(path)
    got = other.predict_on_batch(x[:, :STEPS])
    expected, _, _ = reference.indrnn(x[:, :STEPS], *second)
    assert reference.relative_error(got, expected) < 1e-5


def test_each_rank_loads_the_full_batch_weights(rng, tmp_path):
    # Data parallel: 2 ranks, each with half the global batch of 8.
    full, _ = indrnn_model(8)
    weights = random_weights(rng)
    full.set_weights(as_float32(weights))
    path = tmp_path / "full.weights.h5"
    full.save_weights(path)
    x = f32(rng.normal(size=(8, 2 * STEPS, FEATURES)))
    for rank in range(2):
        local, layer = indrnn_model(4)
        local.load_weights(path)
        rows = x[4 * rank : 4 * rank + 4]
        final = check_windows_continue(local, rows, weights)
        assert reference.relative_error(state(layer), final) < 1e-5
        # get_weights / set_weights the same way.
        local.set_weights([np.zeros_like(w) for w in local.get_weights()])
        local.set_weights(full.get_weights())
        layer.reset_state()
        check_windows_continue(local, rows, weights)


# -- the state carries over in the training loop, JAX included ----------------


def mse(outputs, targets):
    return np.mean((outputs - targets) ** 2)


def test_train_on_batch_carries_the_state(rng):
    model, layer = indrnn_model(3)
    model.compile(keras.optimizers.SGD(0.5), "mse")
    w0 = random_weights(rng)
    model.set_weights(as_float32(w0))
    x1, x2 = windows(f32(rng.normal(size=(3, 2 * STEPS, FEATURES))), 2)
    y1, y2 = (f32(rng.normal(size=(3, STEPS, UNITS))) for _ in range(2))

    outputs, _, h1 = reference.indrnn(x1, *w0)
    loss = model.train_on_batch(x1.astype("float32"), y1.astype("float32"))
    assert abs(loss - mse(outputs, y1)) < 1e-5 * mse(outputs, y1)
    assert reference.relative_error(state(layer), h1) < 1e-5

    # The second batch reads the first's final state, with the weights
    # that the first batch's step left.
    w1 = [f32(w) for w in model.get_weights()]
    assert all(np.any(a != b) for a, b in zip(w0, w1, strict=True))
    outputs, _, h2 = reference.indrnn(x2, *w1, initial_state=h1)
    expected = mse(outputs, y2)
    fresh, _, _ = reference.indrnn(x2, *w1)
    # A stale state would miss by 100 times the tolerance below.
    assert abs(mse(fresh, y2) - expected) > 1e-3 * expected
    loss = model.train_on_batch(x2.astype("float32"), y2.astype("float32"))
    assert abs(loss - expected) < 1e-5 * expected
    assert reference.relative_error(state(layer), h2) < 1e-5


def test_predict_on_batch_carries_the_state(rng):
    model, layer = indrnn_model(3)
    weights = random_weights(rng)
    model.set_weights(as_float32(weights))
    x = f32(rng.normal(size=(3, 2 * STEPS, FEATURES)))
    fresh, _, _ = reference.indrnn(x[:, STEPS:], *weights)
    expected, _, _ = reference.indrnn(x, *weights)
    assert reference.relative_error(fresh, expected[:, STEPS:]) > 0.05
    final = check_windows_continue(model, x, weights)
    assert reference.relative_error(state(layer), final) < 1e-5


def test_fit_evaluate_and_predict_carry_the_state(rng):
    # Batch k + 1's row i continues batch k's row i: three sequences of two
    # windows, stacked window after window along the batch axis.
    model, layer = indrnn_model(3)
    model.compile(keras.optimizers.SGD(0.0), "mse")  # fixed weights
    weights = random_weights(rng)
    model.set_weights(as_float32(weights))
    x = f32(rng.normal(size=(3, 2 * STEPS, FEATURES)))
    y = f32(rng.normal(size=(3, 2 * STEPS, UNITS)))
    outputs, _, final = reference.indrnn(x, *weights)
    stacked_x, stacked_y, stacked_outputs = (
        np.concatenate(windows(a, 2)).astype("float32") for a in (x, y, outputs)
    )
    expected = mse(outputs, y)
    fresh, _, _ = reference.indrnn(x[:, STEPS:], *weights)
    assert reference.relative_error(fresh, outputs[:, STEPS:]) > 0.05

    loss = model.evaluate(stacked_x, stacked_y, batch_size=3, verbose=0)
    assert abs(loss - expected) < 1e-5 * expected
    assert reference.relative_error(state(layer), final) < 1e-5

    layer.reset_state()
    got = model.predict(stacked_x, batch_size=3, verbose=0)
    assert reference.relative_error(got, stacked_outputs) < 1e-5
    assert reference.relative_error(state(layer), final) < 1e-5

    layer.reset_state()
    history = model.fit(
        stacked_x, stacked_y, batch_size=3, shuffle=False, verbose=0
    )
    assert abs(history.history["loss"][0] - expected) < 1e-5 * expected
    assert reference.relative_error(state(layer), final) < 1e-5


# -- files ------------------------------------------------------------------


def test_keras_file_keeps_the_weights_not_the_state(rng, tmp_path):
    # As Keras's RNNs: a loaded stateful model starts from zeros.
    model, layer = indrnn_model(3)
    weights = random_weights(rng)
    model.set_weights(as_float32(weights))
    x = f32(rng.normal(size=(3, 2 * STEPS, FEATURES)))
    model.predict_on_batch(x[:, :STEPS])
    assert np.any(state(layer) != 0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    loaded_layer = loaded.layers[-1]
    assert loaded_layer.stateful and not np.any(state(loaded_layer))
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    check_windows_continue(loaded, x, weights)


def old_arrays():
    with np.load(DATA / f"{OLD}.npz") as arrays:
        return {k: arrays[k] for k in arrays.files}


def old_reference(x, arrays):
    """The 0.2.0 file's model, IndRNN -> Dense(1), from a zero state."""
    weights = [arrays[k] for k in ("kernel", "recurrent_kernel", "bias")]
    outputs, _, _ = reference.indrnn(x, *weights)
    return outputs @ arrays["dense_kernel"] + arrays["dense_bias"]


def old_model(batch, stateful=True):
    """The model of the 0.2.0 files, for batches of `batch`."""
    inputs = keras.Input(batch_shape=(batch, 5, FEATURES))
    layer = IndRNN(UNITS, stateful=stateful, return_sequences=True)
    return keras.Model(inputs, keras.layers.Dense(1)(layer(inputs))), layer


def check_old_model(model, layer, arrays, rng, batch):
    """`model` holds the 0.2.0 file's weights, and its state (if any) starts
    at zero and carries over."""
    indrnn_weights = [arrays[k] for k in ("kernel", "recurrent_kernel", "bias")]
    for got, want in zip(layer.get_weights(), indrnn_weights, strict=True):
        np.testing.assert_array_equal(got, want)
    x = f32(rng.normal(size=(batch, 10, FEATURES)))
    expected = old_reference(x, arrays)
    if layer.stateful:
        assert not np.any(state(layer))
        got = [model.predict_on_batch(x[:, k * 5 : k * 5 + 5]) for k in (0, 1)]
        got = np.concatenate([ops.convert_to_numpy(g) for g in got], axis=1)
        assert reference.relative_error(got, expected) < 1e-5
    else:
        got = model.predict_on_batch(x[:, :5])
        assert reference.relative_error(got, expected[:, :5]) < 1e-5


def test_a_keras_file_of_0_2_0_loads(rng, tmp_path):
    arrays = old_arrays()
    # What the file holds: a state that is not zero, for batches of 2.
    assert arrays["state"].shape == (2, UNITS) and np.any(arrays["state"])
    shutil.copy(DATA / f"{OLD}.keras.zip", tmp_path / "model.keras")
    model = keras.saving.load_model(tmp_path / "model.keras")
    layer = model.layers[1]
    assert isinstance(layer, IndRNN) and layer.stateful
    assert [w.name for w in model.weights] == [
        *["kernel", "recurrent_kernel", "bias", "kernel", "bias"]
    ]
    check_old_model(model, layer, arrays, rng, batch=2)


@pytest.mark.parametrize("batch, stateful", [(2, True), (1, True), (5, False)])
def test_weights_file_of_0_2_0_loads(rng, batch, stateful):
    arrays = old_arrays()
    model, layer = old_model(batch if stateful else None, stateful)
    model.load_weights(DATA / f"{OLD}.weights.h5")
    check_old_model(model, layer, arrays, rng, batch)


def test_a_weights_file_with_a_foreign_entry_is_still_refused(tmp_path):
    # The 0.2.0 state is the one entry the layer passes over; one of another
    # shape is an error, as Keras makes it.
    model, _ = old_model(2)
    path = tmp_path / "odd.weights.h5"
    shutil.copy(DATA / f"{OLD}.weights.h5", path)
    with h5py.File(path, "r+") as file:
        del file["layers/ind_rnn/vars/0"]
        file["layers/ind_rnn/vars/0"] = np.zeros((2, UNITS + 1), "float32")
    with pytest.raises(ValueError, match="expected 0 variables"):
        model.load_weights(path)
