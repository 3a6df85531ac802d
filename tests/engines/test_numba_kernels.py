"""The PyTorch engine's Numba-compiled CPU loops (`keras_indrnn.engines.
numba_kernels`) against the float64 NumPy reference: states and gradients
for every activation kind, masks, directions, a recurrent weight per
sample and float64. Also: that CPU tensors take this path, and that the
TorchScript loops take over where Numba is switched off, missing or
failing, inside `torch.compile` and while exporting."""

import math
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

if keras.backend.backend() != "torch":
    pytest.skip("the PyTorch engine's kernels", allow_module_level=True)
torch = pytest.importorskip("torch")
pytest.importorskip("numba")

from keras_indrnn.engines import torch as engine  # noqa: E402
from keras_indrnn.engines import torch_numba  # noqa: E402

KINDS = ["relu", "relu6", "hard_sigmoid", "tanh", "sigmoid"]
# Inputs large enough that the clip activations reach both bounds.
SCALES = {"relu6": 5.0, "hard_sigmoid": 4.0}
BOUNDS = {"relu6": (0.0, 6.0), "hard_sigmoid": (0.0, 1.0)}


@pytest.fixture(autouse=True)
def _numba_on(monkeypatch):
    """Each test starts with the Numba path on and no failure on record."""
    monkeypatch.delenv(torch_numba.VARIABLE, raising=False)
    monkeypatch.setattr(torch_numba, "_error", None)
    yield
    torch_numba.kernels.cache_clear()


@pytest.fixture
def calls(monkeypatch):
    """The number of calls of each compiled loop since the test began."""
    kernels = torch_numba.kernels()
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
    assert calls == {"forward": 2, "backward": 1}
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
    assert calls == {"forward": 2, "backward": 1}
    assert states.dtype == torch.float64
    expected = run_reference(z, u, h0, "relu", mask)
    assert reference.relative_error(states, expected) < 1e-12

    def reference_loss(z, u, h0):
        return np.sum(run_reference(z, u, h0, "relu", mask) * probe)

    wanted = finite_differences(reference_loss, [z, u, h0])
    for grad, want in zip(grads, wanted, strict=True):
        assert reference.relative_error(grad, want) < 1e-8


def test_the_layer_takes_the_numba_loops(rng, calls):
    from keras_indrnn import IndRNN

    layer = IndRNN(4, recurrent_max_abs=1.0, implementation="sequential")
    x = torch.tensor(rng.normal(size=(2, 6, 3)).astype("float32"))
    layer(x).sum().backward()
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


def test_switched_off_the_torchscript_loops_serve(rng, calls, monkeypatch):
    with_numba = one_case(rng)
    assert calls == {"forward": 2, "backward": 1}
    monkeypatch.setenv(torch_numba.VARIABLE, "0")
    assert not torch_numba.serves("cpu")
    without = one_case(rng)
    assert calls == {"forward": 2, "backward": 1}  # no more
    assert_same(with_numba, without, 1e-6)


def test_missing_numba_falls_back_silently(rng, monkeypatch):
    import keras_indrnn.engines as package

    expected = one_case(rng)
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(
        sys.modules, "keras_indrnn.engines.numba_kernels", raising=False
    )
    monkeypatch.delattr(package, "numba_kernels", raising=False)
    torch_numba.kernels.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert not torch_numba.serves("cpu")
        assert_same(expected, one_case(rng), 1e-6)


def test_failing_numba_warns_once_and_falls_back(rng, monkeypatch):
    expected = one_case(rng)

    def failing(*args):
        raise RuntimeError("a simulated compilation error")

    monkeypatch.setattr(torch_numba.kernels(), "forward", failing)
    with pytest.warns(RuntimeWarning, match="simulated compilation error"):
        got = one_case(rng)
    assert_same(expected, got, 1e-6)
    assert not torch_numba.serves("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        one_case(rng)


def test_compiling_and_exporting_keep_the_torchscript_loops(
    rng, calls, monkeypatch
):
    z, u, h0, _, _ = case(rng, "relu", False, False)

    def states(z, u, h0):
        return recurrence.indrnn_recurrence(
            z, u, h0, activations.relu, implementation="sequential"
        )[1]

    compiled = torch.compile(states, backend="eager")
    got = compiled(*(torch.tensor(a) for a in (z, u, h0)))
    assert calls == {"forward": 0, "backward": 0}
    expected = run_reference(z, u, h0, "relu")
    assert reference.relative_error(got, expected) < 1e-5
    monkeypatch.setattr(engine, "exporting", lambda: True)
    monkeypatch.setattr(torch_numba, "exporting", lambda: True)
    assert not torch_numba.serves("cpu")


def test_denormals_are_flushed():
    # A value decaying through |u| < 1 (an adjoint, say) passes through
    # float's denormal range, where CPUs compute many times slower; the
    # loops run flushed, so it is exactly zero there instead.
    steps, units = 400, 2
    z = np.zeros((1, steps, units), "float32")
    z[0, 0] = 1.0
    u = np.full(units, 0.5, "float32")
    h0 = np.zeros((1, units), "float32")
    states = torch_numba.forward(
        torch.tensor(z),
        torch.tensor(u),
        torch.tensor(h0),
        None,
        "clip",
        (1.0, 0.0, 0.0, math.inf),
    )
    values = states.numpy()
    assert values[0, 1, 0] == 0.5
    tiny = np.finfo("float32").tiny
    assert not np.any((values > 0) & (values < tiny))
