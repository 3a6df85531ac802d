"""The Numba-compiled CPU loops (`keras_indrnn.engines.numba_kernels`) of
the PyTorch and TensorFlow engines against the float64 NumPy reference:
states and gradients for every activation kind, masks, directions, a
recurrent weight per sample and float64. Also: that the layer takes this
path on CPUs, and that the engine's other loops (TorchScript, XLA) take
over where Numba is switched off, missing or failing, and where a
compiled loop cannot go (`torch.compile`, XLA, exporting, saving)."""

import sys
import warnings

import keras
import numpy as np
import pytest
import reference
from gradients import finite_differences
from keras import activations
from keras import ops
from test_recurrence import f32
from test_recurrence import loss_gradients
from test_recurrence import run_reference

from keras_indrnn import recurrence

BACKEND = keras.backend.backend()
if BACKEND not in ("torch", "tensorflow"):
    pytest.skip(
        "the Numba loops of PyTorch and TensorFlow", allow_module_level=True
    )
pytest.importorskip("numba")

from keras_indrnn import IndRNN  # noqa: E402

if BACKEND == "torch":
    from keras_indrnn.engines import torch_numba as binding
else:
    from keras_indrnn.engines import tensorflow_numba as binding


# The forward passes that a gradient and a forward pass alone make:
# TensorFlow runs a forward pass alone (inference) in its XLA loop.
BOTH_PASSES = {"forward": 2 if BACKEND == "torch" else 1, "backward": 1}


def serves():
    if BACKEND == "torch":
        return binding.serves("cpu")
    import tensorflow as tf

    with tf.GradientTape():  # TensorFlow's Numba loops serve training
        return binding.serves()


KINDS = ["relu", "relu6", "hard_sigmoid", "tanh", "sigmoid"]
# Inputs large enough that the clip activations reach both bounds.
SCALES = {"relu6": 5.0, "hard_sigmoid": 4.0}
BOUNDS = {"relu6": (0.0, 6.0), "hard_sigmoid": (0.0, 1.0)}


@pytest.fixture(autouse=True)
def _numba_on(monkeypatch):
    """Each test starts with the Numba path on and no failure on record."""
    monkeypatch.delenv(binding.VARIABLE, raising=False)
    monkeypatch.setattr(binding, "_error", None)
    yield
    binding.kernels.cache_clear()


@pytest.fixture
def calls(monkeypatch):
    """The number of calls of each compiled loop since the test began."""
    kernels = binding.kernels()
    counts = {"forward": 0, "backward": 0}
    for name in counts:
        loop = getattr(kernels, name)

        def counted(*args, loop=loop, name=name):
            counts[name] += 1
            return loop(*args)

        monkeypatch.setattr(kernels, name, counted)
    return counts


def case(rng, activation, per_sample_u, with_mask, dtype="float32"):
    batch, steps, units = 3, 11, 5
    scale = SCALES.get(activation, 1.0)
    z = f32(rng.normal(size=(batch, steps, units)) * scale)
    u_shape = (batch, units) if per_sample_u else (units,)
    u = f32(rng.uniform(-1.2, 1.2, size=u_shape))
    h0 = f32(rng.normal(size=(batch, units)))
    mask = None
    if with_mask:
        mask = rng.random((batch, steps)) < 0.7
        mask[0, :3] = False  # leading masked steps
    probe = f32(rng.normal(size=(batch, steps, units)))
    return z, u, h0, mask, probe


def run_layer_math(z, u, h0, mask, probe, activation, go_backwards, dtype):
    """Outputs and gradients `(z, u, h0)` of `sum(outputs * probe)`."""
    act = activations.get(activation)
    probe_t = ops.convert_to_tensor(probe.astype(dtype))

    def outputs(z, u, h0):
        return recurrence.indrnn_recurrence(
            z, u, h0, act, mask=mask, go_backwards=go_backwards
        )[1]

    def loss(z, u, h0):
        return ops.sum(outputs(z, u, h0) * probe_t)

    arrays = [a.astype(dtype) for a in (z, u, h0)]
    states = outputs(*(ops.convert_to_tensor(a) for a in arrays))
    return states, loss_gradients(loss, arrays)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("per_sample_u", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("activation", KINDS)
def test_states_and_gradients_against_the_reference(
    rng, calls, activation, with_mask, per_sample_u, go_backwards
):
    z, u, h0, mask, probe = case(rng, activation, per_sample_u, with_mask)
    states, grads = run_layer_math(
        z, u, h0, mask, probe, activation, go_backwards, "float32"
    )
    assert calls == BOTH_PASSES
    expected = run_reference(z, u, h0, activation, mask, go_backwards)
    assert reference.relative_error(states, expected) < 1e-5
    if activation in BOUNDS:
        # The data reach both bounds, where the slope is 0.
        assert all(np.any(expected == bound) for bound in BOUNDS[activation])

    def reference_loss(z, u, h0):
        outputs = run_reference(z, u, h0, activation, mask, go_backwards)
        return np.sum(outputs * probe)

    wanted = finite_differences(reference_loss, [z, u, h0])
    for grad, want in zip(grads, wanted, strict=True):
        assert reference.relative_error(grad, want) < 1e-5


def test_float64(rng, calls):
    z, u, h0, mask, probe = case(rng, "relu", False, True)
    states, grads = run_layer_math(
        z, u, h0, mask, probe, "relu", False, "float64"
    )
    assert calls == BOTH_PASSES
    assert keras.backend.standardize_dtype(states.dtype) == "float64"
    expected = run_reference(z, u, h0, "relu", mask)
    assert reference.relative_error(states, expected) < 1e-12

    def reference_loss(z, u, h0):
        return np.sum(run_reference(z, u, h0, "relu", mask) * probe)

    wanted = finite_differences(reference_loss, [z, u, h0])
    for grad, want in zip(grads, wanted, strict=True):
        assert reference.relative_error(grad, want) < 1e-8


def test_the_layer_takes_the_numba_loops(rng, calls):
    from gradients import gradients

    layer = IndRNN(4, recurrent_max_abs=1.0, implementation="sequential")
    x = ops.convert_to_tensor(rng.normal(size=(2, 6, 3)).astype("float32"))
    layer(x)
    calls.update(forward=0)
    gradients(lambda: ops.sum(layer(x)), layer.trainable_weights)
    assert calls == {"forward": 1, "backward": 1}


def one_case(rng):
    """States and gradients of one case, with whichever loop serves."""
    z, u, h0, mask, probe = case(np.random.default_rng(7), "relu", True, True)
    return run_layer_math(z, u, h0, mask, probe, "relu", True, "float32")


def assert_same(first, second, tolerance):
    (states_a, grads_a), (states_b, grads_b) = first, second
    for a, b in zip([states_a, *grads_a], [states_b, *grads_b], strict=True):
        assert reference.relative_error(a, keras.ops.convert_to_numpy(b)) <= (
            tolerance
        )


def test_switched_off_the_other_loops_serve(rng, calls, monkeypatch):
    with_numba = one_case(rng)
    assert calls == BOTH_PASSES
    monkeypatch.setenv(binding.VARIABLE, "0")
    assert not serves()
    without = one_case(rng)
    assert calls == BOTH_PASSES  # no more
    assert_same(with_numba, without, 1e-6)


def test_missing_numba_falls_back_silently(rng, monkeypatch):
    import keras_indrnn.engines as package

    expected = one_case(rng)
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(
        sys.modules, "keras_indrnn.engines.numba_kernels", raising=False
    )
    monkeypatch.delattr(package, "numba_kernels", raising=False)
    binding.kernels.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert not serves()
        assert_same(expected, one_case(rng), 1e-6)


def test_failing_numba_warns_once_and_falls_back(rng, monkeypatch):
    from keras_indrnn.engines import numba_kernels

    expected = one_case(rng)

    def failing(*args):
        raise RuntimeError("a simulated compilation error")

    binding.kernels.cache_clear()
    monkeypatch.setattr(numba_kernels, "forward", failing)
    with pytest.warns(RuntimeWarning, match="simulated compilation error"):
        got = one_case(rng)
    assert_same(expected, got, 1e-6)
    assert not serves()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        one_case(rng)


def states_of(z, u, h0):
    return recurrence.indrnn_recurrence(
        z, u, h0, activations.relu, implementation="sequential"
    )[1]


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's compiler")
def test_torch_compile_and_exporting_keep_the_torchscript_loops(
    rng, calls, monkeypatch
):
    import torch

    z, u, h0, _, _ = case(rng, "relu", False, False)
    compiled = torch.compile(states_of, backend="eager")
    got = compiled(*(torch.tensor(a) for a in (z, u, h0)))
    assert calls == {"forward": 0, "backward": 0}
    expected = run_reference(z, u, h0, "relu")
    assert reference.relative_error(got, expected) < 1e-5
    monkeypatch.setattr(binding, "exporting", lambda: True)
    assert not serves()


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's XLA")
def test_xla_and_saving_keep_the_xla_loop(rng, calls, tmp_path):
    import tensorflow as tf

    z, u, h0, _, _ = case(rng, "relu", False, False)
    expected = run_reference(z, u, h0, "relu")
    compiled = tf.function(states_of, jit_compile=True)
    assert reference.relative_error(compiled(z, u, h0), expected) < 1e-5
    assert calls == {"forward": 0, "backward": 0}
    # A plain graph takes the Numba loop in training, which a SavedModel
    # cannot hold; inference takes the XLA loop.
    inputs = keras.Input((6, 3), batch_size=2)
    model = keras.Model(inputs, IndRNN(4, recurrent_max_abs=1.0)(inputs))
    model.compile("sgd", "mse")
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    model.train_on_batch(x, np.zeros((2, 4), "float32"))
    assert calls == {"forward": 1, "backward": 1}
    model.predict(x, verbose=0)
    assert calls["forward"] == 1
    model.export(str(tmp_path / "export"), format="tf_saved_model")
    module = tf.Module()
    module.model = model
    module.serve = tf.function(
        model, input_signature=[tf.TensorSpec((2, 6, 3), tf.float32)]
    )
    tf.saved_model.save(module, str(tmp_path / "saved"))
    assert calls["forward"] == 1
    for path in ("export", "saved"):
        loaded = tf.saved_model.load(str(tmp_path / path))
        np.testing.assert_allclose(
            loaded.serve(x), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
        )


def test_denormals_are_flushed():
    # A value decaying through |u| < 1 passes through float's denormal
    # range, where CPUs compute many times slower; the loops flush it to
    # zero within FLUSH_EVERY steps themselves, whatever the thread's
    # floating-point mode. The kernels are called directly, on a thread
    # that keeps denormals (the engines' bindings may flush around them).
    from keras_indrnn.engines import numba_kernels

    tiny = np.finfo("float32").tiny
    assert np.float32(tiny) * np.float32(0.5) != 0, "this thread flushes"
    steps, units = 400, 2
    clip = numba_kernels.KIND_CLIP
    one, zero, inf = np.float32(1), np.float32(0), np.float32(np.inf)
    u = np.full((1, units), 0.5, "float32")
    h0 = np.zeros((1, units), "float32")
    z = np.zeros((1, steps, units), "float32")
    z[0, 0] = 1.0
    states = np.empty_like(z)
    # Linear: h_t = 0.5 ** t.
    numba_kernels.forward(z, u, h0, None, clip, one, zero, -inf, inf, states)
    # Backward from a gradient at the last step only: dL/dpre at T - 1 - k
    # is 0.5 ** k.
    upstream = np.zeros_like(z)
    upstream[0, -1] = 1.0
    d_pre, _, _ = numba_kernels.backward(
        upstream, h0, states, u, h0, None, clip, one, -inf, inf
    )
    for values in (states[0, :, 0], d_pre[0, ::-1, 0]):
        np.testing.assert_array_equal(values[:4], [1.0, 0.5, 0.25, 0.125])
        # 0.5 ** 126 is float32's smallest normal number; unflushed, the
        # values would stay denormal up to 0.5 ** 149.
        first = np.argmax(values < tiny)
        assert first == 127
        assert np.all(values[first + numba_kernels.FLUSH_EVERY :] == 0)
