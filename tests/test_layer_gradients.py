"""Gradients that leave the layer by every way a model can use them:
training with state carried between batches (`stateful`), an
`initial_state` computed by other layers, `return_state` outputs in a loss,
and `Bidirectional` states. Each is checked against central differences of
the float64 NumPy reference."""

import keras
import numpy as np
import pytest
import reference
from gradients import finite_differences
from gradients import gradients
from keras import ops
from test_layer import PATHS
from test_layer import build
from test_layer import f32
from test_layer import random_mask
from test_layer import random_weights

# Plain SGD with a large rate, so that the weights after a step show a
# wrong gradient clearly.
LEARNING_RATE = 0.25


def _reference_step_loss(x, y, mask, h0, go_backwards):
    """The model's float64 MSE loss as a function of its weights, with the
    carried state `h0` a constant: Keras cuts the gradient at each batch
    boundary."""

    def loss(kernel, recurrent, bias, dense_w, dense_b):
        _, last, _ = reference.indrnn(
            x,
            kernel,
            recurrent,
            bias,
            initial_state=h0,
            mask=mask,
            go_backwards=go_backwards,
        )
        return np.mean((last @ dense_w + dense_b - y) ** 2)

    return loss


def _reference_final_state(x, weights, mask, h0, go_backwards):
    _, _, final = reference.indrnn(
        x,
        *weights[:3],
        initial_state=h0,
        mask=mask,
        go_backwards=go_backwards,
    )
    return final


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_stateful_training_carries_the_state_and_cuts_the_gradient(
    rng, path, go_backwards, with_mask
):
    if path == "cell" and keras.backend.backend() == "jax":
        pytest.skip(
            "`keras.layers.RNN` keeps its state variables untracked, and "
            "JAX's stateless training step drops their updates"
        )
    batch, steps, features, units, batches = 3, 7, 2, 4, 2
    weights = random_weights(rng, features, units, u_max=1.0)
    weights += [f32(rng.normal(size=(units, 1)) * 0.3), f32(rng.normal(size=1))]
    xs = f32(rng.normal(size=(batches, batch, steps, features)))
    ys = f32(rng.normal(size=(batches, batch, 1)))
    masks = [
        random_mask(rng, batch, steps) if with_mask else None
        for _ in range(batches)
    ]
    inputs = keras.Input((steps, features), batch_size=batch)
    layer = build(path, units, stateful=True, go_backwards=go_backwards)
    dense = keras.layers.Dense(1)
    if with_mask:
        mask_input = keras.Input((steps,), batch_size=batch, dtype="bool")
        outputs = dense(layer(inputs, mask=mask_input))
        model = keras.Model([inputs, mask_input], outputs)
    else:
        model = keras.Model(inputs, dense(layer(inputs)))
    layer.cell.set_weights([w.astype("float32") for w in weights[:3]])
    dense.set_weights([w.astype("float32") for w in weights[3:]])
    model.compile(keras.optimizers.SGD(LEARNING_RATE), "mse")

    h0 = np.zeros((batch, units))
    for k in range(batches):
        # Each step is checked from the weights the model holds, so that
        # float32 rounding does not compound over the steps.
        before = [
            f32(w) for w in layer.cell.get_weights() + dense.get_weights()
        ]
        loss_fn = _reference_step_loss(xs[k], ys[k], masks[k], h0, go_backwards)
        expected_loss = loss_fn(*before)
        grads = finite_differences(loss_fn, before)
        h0 = _reference_final_state(xs[k], before, masks[k], h0, go_backwards)

        x = xs[k].astype("float32")
        feed = x if not with_mask else [x, masks[k]]
        loss = model.train_on_batch(feed, ys[k].astype("float32"))
        assert reference.relative_error(loss, expected_loss) < 1e-5
        after = layer.cell.get_weights() + dense.get_weights()
        for w0, w1, grad in zip(before, after, grads, strict=True):
            expected = w0 - LEARNING_RATE * grad
            assert reference.relative_error(w1, expected) < 1e-5
        assert reference.relative_error(layer.states[0], h0) < 1e-5


@pytest.mark.parametrize("path", PATHS)
def test_reset_state_between_training_batches(rng, path):
    if path == "cell" and keras.backend.backend() == "jax":
        pytest.skip("`keras.layers.RNN` drops state updates on JAX")
    batch, steps, features, units = 2, 5, 3, 4
    weights = random_weights(rng, features, units, u_max=1.0)
    weights[2] = weights[2] + 1.0  # positive biases: a nonzero state
    weights += [f32(rng.normal(size=(units, 1))), f32(np.zeros(1))]
    x = f32(rng.normal(size=(batch, steps, features)))
    y = f32(rng.normal(size=(batch, 1)))
    layer, dense = build(path, units, stateful=True), keras.layers.Dense(1)
    model = keras.Sequential(
        [keras.Input((steps, features), batch_size=batch), layer, dense]
    )
    layer.cell.set_weights([w.astype("float32") for w in weights[:3]])
    dense.set_weights([w.astype("float32") for w in weights[3:]])
    model.compile(keras.optimizers.SGD(LEARNING_RATE), "mse")
    model.train_on_batch(x.astype("float32"), y.astype("float32"))
    assert np.any(ops.convert_to_numpy(layer.states[0]) != 0)
    layer.reset_state()
    trained = [f32(w) for w in layer.cell.get_weights() + dense.get_weights()]
    # From a zero state again: the loss of the trained weights on x.
    expected = _reference_step_loss(x, y, None, None, False)(*trained)
    loss = model.train_on_batch(x.astype("float32"), y.astype("float32"))
    assert reference.relative_error(loss, expected) < 1e-5


@pytest.mark.parametrize("path", PATHS)
def test_initial_state_computed_by_other_layers_gets_its_gradient(rng, path):
    batch, steps, features, units, context = 3, 6, 2, 4, 3
    weights = random_weights(rng, features, units, u_max=1.0)
    start_w = f32(rng.normal(size=(context, units)))
    x = f32(rng.normal(size=(batch, steps, features)))
    c = f32(rng.normal(size=(batch, context)))
    probe = f32(rng.normal(size=(batch, steps, units)))

    def reference_loss(kernel, recurrent, bias, start_w):
        outputs, _, _ = reference.indrnn(
            x, kernel, recurrent, bias, initial_state=np.tanh(c @ start_w)
        )
        return np.sum(outputs * probe)

    expected = finite_differences(reference_loss, weights + [start_w])

    layer = build(path, units, return_sequences=True)
    start = keras.layers.Dense(units, activation="tanh", use_bias=False)
    start.build((batch, context))
    start.set_weights([start_w.astype("float32")])
    layer.build(x.shape)
    layer.set_weights([w.astype("float32") for w in weights])
    x32, c32 = x.astype("float32"), c.astype("float32")
    probe32 = ops.convert_to_tensor(probe.astype("float32"))

    def loss():
        outputs = layer(x32, initial_state=[start(c32)])
        return ops.sum(outputs * probe32)

    variables = layer.trainable_variables + start.trainable_variables
    _, grads = gradients(loss, variables)
    for grad, want in zip(grads, expected, strict=True):
        assert reference.relative_error(grad, want) < 1e-5


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_return_state_in_the_loss(rng, path, with_mask, go_backwards):
    if path == "cell" and with_mask and keras.backend.backend() == "jax":
        pytest.skip("Keras's JAX `backend.rnn` differs at masked steps")
    batch, steps, features, units = 3, 8, 2, 4
    weights = random_weights(rng, features, units, u_max=1.2)
    x = f32(rng.normal(size=(batch, steps, features)))
    mask = random_mask(rng, batch, steps) if with_mask else None
    probe_out = f32(rng.normal(size=(batch, units)))
    probe_state = f32(rng.normal(size=(batch, units)))

    def reference_loss(kernel, recurrent, bias):
        _, last, final = reference.indrnn(
            x,
            kernel,
            recurrent,
            bias,
            mask=mask,
            go_backwards=go_backwards,
        )
        return np.sum(last * probe_out) + np.sum(final**2 * probe_state)

    expected = finite_differences(reference_loss, weights)
    layer = build(path, units, return_state=True, go_backwards=go_backwards)
    layer.build(x.shape)
    layer.set_weights([w.astype("float32") for w in weights])
    kwargs = {} if mask is None else {"mask": mask}
    x32 = x.astype("float32")
    p_out = ops.convert_to_tensor(probe_out.astype("float32"))
    p_state = ops.convert_to_tensor(probe_state.astype("float32"))

    def loss():
        output, state = layer(x32, **kwargs)
        return ops.sum(output * p_out) + ops.sum(state * state * p_state)

    _, grads = gradients(loss, layer.trainable_variables)
    for grad, want in zip(grads, expected, strict=True):
        assert reference.relative_error(grad, want) < 1e-5


def test_bidirectional_states_in_the_loss(rng):
    from keras_indrnn import IndRNN

    batch, steps, features, units = 2, 7, 3, 4
    forward_w = random_weights(rng, features, units, u_max=1.0)
    backward_w = random_weights(rng, features, units, u_max=1.0)
    x = f32(rng.normal(size=(batch, steps, features)))
    mask = random_mask(rng, batch, steps)
    probes = [
        f32(rng.normal(size=(batch, n))) for n in (2 * units, units, units)
    ]

    def reference_loss(*weights):
        _, last_f, state_f = reference.indrnn(x, *weights[:3], mask=mask)
        _, last_b, state_b = reference.indrnn(
            x, *weights[3:], mask=mask, go_backwards=True
        )
        output = np.concatenate([last_f, last_b], axis=-1)
        return sum(
            np.sum(a * p)
            for a, p in zip((output, state_f, state_b), probes, strict=True)
        )

    expected = finite_differences(reference_loss, forward_w + backward_w)
    layer = keras.layers.Bidirectional(IndRNN(units, return_state=True))
    layer.build(x.shape)
    layer.set_weights([w.astype("float32") for w in forward_w + backward_w])
    x32 = x.astype("float32")
    probes32 = [ops.convert_to_tensor(p.astype("float32")) for p in probes]

    def loss():
        results = layer(x32, mask=mask)
        return sum(
            ops.sum(a * p) for a, p in zip(results, probes32, strict=True)
        )

    _, grads = gradients(loss, layer.trainable_variables)
    for grad, want in zip(grads, expected, strict=True):
        assert reference.relative_error(grad, want) < 1e-5
