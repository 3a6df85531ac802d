"""The PyTorch engine's fused Triton kernels (`keras_indrnn.engines.
triton_kernels`) against the float64 NumPy reference: the kernels on their
own (states, dL/dpre, dL/du per sample, dL/dh0) and the IndRNN layer's
gradients through them. Also: that the layer takes the Triton path, that
the TorchScript loops take over with identical results where Triton is
switched off, missing or failing, and that saving and exporting a model
work with the kernels present.

On a machine with a CUDA GPU the tensors are CUDA tensors and Triton
compiles the kernels; elsewhere Triton's interpreter runs them on CPU
tensors, which needs `TRITON_INTERPRET=1` before Triton is imported (the
tox environment `triton` sets it). The interpreter is slow: the shapes
are small.
"""

import math
import os
import sys
import warnings

import keras
import numpy as np
import pytest
import reference
from gradients import finite_differences
from gradients import gradients
from keras import activations
from keras import ops

from keras_indrnn import IndRNN
from keras_indrnn import engines
from keras_indrnn import recurrence

if keras.backend.backend() != "torch":
    pytest.skip("the PyTorch engine's kernels", allow_module_level=True)
torch = pytest.importorskip("torch")
triton = pytest.importorskip("triton")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not os.environ.get("TRITON_INTERPRET"):
    pytest.skip(
        "Triton runs kernels on CPU tensors only in its interpreter: set "
        "TRITON_INTERPRET=1 (as `tox -e triton` does)",
        allow_module_level=True,
    )

ENGINE = engines.current()
TRITON = pytest.importorskip("keras_indrnn.engines.torch_triton")
INF = math.inf
# The activations as the engine's kernels take them, `(kind, form)`, form
# `(a, c, lo, hi)` for clip(a * x + c, lo, hi); the reference has its own.
KINDS = {
    "relu": ("clip", (1.0, 0.0, 0.0, INF)),
    "relu6": ("clip", (1.0, 0.0, 0.0, 6.0)),
    "hard_sigmoid": ("clip", (1.0 / 6.0, 0.5, 0.0, 1.0)),
    "tanh": ("tanh", None),
    "sigmoid": ("sigmoid", None),
}
# Inputs large enough that the clip activations reach both bounds.
SCALES = {"relu6": 5.0, "hard_sigmoid": 4.0}
HALF_TOLERANCE = {"float16": 2e-3, "bfloat16": 1e-2}
HALF_GRADIENT_TOLERANCE = {"float16": 5e-3, "bfloat16": 3e-2}


@pytest.fixture(autouse=True)
def _triton_on(monkeypatch):
    """Each test starts with the Triton path on and no failure on record."""
    monkeypatch.delenv(TRITON.VARIABLE, raising=False)
    monkeypatch.setattr(TRITON, "_error", None)
    yield
    TRITON.kernels.cache_clear()


class _Counted:
    """Stands in for a kernel: counts its launches."""

    def __init__(self, kernel, counts, name):
        self.kernel, self.counts, self.name = kernel, counts, name

    def __getitem__(self, grid):
        launch = self.kernel[grid]

        def counted(*args, **kwargs):
            self.counts[self.name] += 1
            return launch(*args, **kwargs)

        return counted


class _Failing:
    """Stands in for a kernel that Triton fails to compile."""

    def __getitem__(self, grid):
        def fail(*args, **kwargs):
            raise RuntimeError("a simulated compilation error")

        return fail


@pytest.fixture
def launches(monkeypatch):
    """The number of launches of each kernel since the test began."""
    kernels = TRITON.kernels()
    counts = {"forward": 0, "backward": 0}
    for name in counts:
        attribute = f"indrnn_{name}_kernel"
        kernel = getattr(kernels, attribute)
        monkeypatch.setattr(kernels, attribute, _Counted(kernel, counts, name))
    return counts


@pytest.fixture
def without_triton(monkeypatch):
    """As if Triton were not installed."""
    import keras_indrnn.engines as package

    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.delitem(
        sys.modules, "keras_indrnn.engines.triton_kernels", raising=False
    )
    monkeypatch.delattr(package, "triton_kernels", raising=False)
    TRITON.kernels.cache_clear()


def f32(array):
    return np.asarray(array).astype("float32").astype("float64")


def rounded(array, dtype):
    """The float64 value of `array` stored in `dtype`."""
    tensor = torch.tensor(np.asarray(array), dtype=getattr(torch, dtype))
    return tensor.to(torch.float64).numpy()


def to_numpy(tensor):
    return tensor.detach().to("cpu", torch.float64).numpy()


def tensor(array, dtype="float32"):
    return torch.tensor(
        np.asarray(array), dtype=getattr(torch, dtype), device=DEVICE
    )


def random_mask(rng, batch, steps):
    """Holes everywhere; the first sample starts with masked steps, and a
    third sample is masked throughout (its state stays h0)."""
    mask = rng.random((batch, steps)) < 0.7
    mask[0, : steps // 3 + 1] = False
    if batch > 2:
        mask[2] = False
    return mask


def reference_states(z, u, h0, activation, mask=None):
    """`(states (batch, T, units), final state)` of `h_t = act(z_t + u *
    h_{t-1})` from the float64 reference, `u` per unit or per sample; a
    masked step keeps the state."""
    batch, _, units = z.shape
    u = np.broadcast_to(u, (batch, units))
    states, finals = [], []
    for i in range(batch):
        sample_mask = None if mask is None else mask[i : i + 1]
        outputs, _, final = reference.indrnn(
            z[i : i + 1],
            np.eye(units),
            u[i],
            initial_state=h0[i : i + 1],
            activation=activation,
            mask=sample_mask,
        )
        if sample_mask is not None:
            # Before its first unmasked step the reference outputs zeros;
            # the state there is still h0. After it, the outputs repeat
            # the state at masked steps.
            started = np.cumsum(sample_mask, axis=1)[..., None] > 0
            outputs = np.where(started, outputs, h0[i : i + 1, None])
        states.append(outputs)
        finals.append(final)
    return np.concatenate(states), np.concatenate(finals)


def reference_gradients(z, u, h0, activation, mask, upstream, final_adjoint):
    """`(dL/dpre, dL/du per sample, dL/dh0)` for
    `L = sum(states * upstream) + sum(final_state * final_adjoint)`."""
    per_sample_u = np.array(np.broadcast_to(u, h0.shape))

    def loss(z, u, h0):
        states, final = reference_states(z, u, h0, activation, mask)
        return np.sum(states * upstream) + np.sum(final * final_adjoint)

    # pre_t = z_t + u * h_{t-1}: dL/dpre_t is dL/dz_t.
    return finite_differences(loss, [z, per_sample_u, h0])


def kernel_case(rng, batch, steps, units, activation, masked, per_sample_u):
    scale = SCALES.get(activation, 1.0)
    u_shape = (batch, units) if per_sample_u else (units,)
    return {
        "z": f32(rng.normal(size=(batch, steps, units)) * scale),
        "u": f32(rng.uniform(-1.2, 1.2, size=u_shape)),
        "h0": f32(rng.normal(size=(batch, units)) * scale),
        "mask": random_mask(rng, batch, steps) if masked else None,
        "upstream": f32(rng.normal(size=(batch, steps, units))),
        "final_adjoint": f32(rng.normal(size=(batch, units))),
    }


def run_kernels(case, activation, dtype="float32"):
    """The engine's `fused_forward` and `fused_backward` on `case`, with
    `u` in float32 (as the layer holds it) and the rest in `dtype`."""
    kind, form = KINDS[activation]
    mask = case["mask"]
    if mask is not None:
        mask = torch.tensor(mask[..., None], device=DEVICE)
    u = tensor(case["u"])
    h0 = tensor(case["h0"], dtype)
    states = ENGINE.fused_forward(
        tensor(case["z"], dtype), u, h0, mask, kind, form
    )
    grads = ENGINE.fused_backward(
        tensor(case["upstream"], dtype),
        tensor(case["final_adjoint"], dtype),
        states,
        u,
        h0,
        mask,
        kind,
        form,
    )
    return states, grads


def check_kernels(case, activation, launches, tolerance=1e-5):
    states, (d_pre, d_u, d_h0) = run_kernels(case, activation)
    assert launches == {"forward": 1, "backward": 1}
    expected, _ = reference_states(
        case["z"], case["u"], case["h0"], activation, case["mask"]
    )
    assert reference.relative_error(to_numpy(states), expected) < tolerance
    expected_grads = reference_gradients(
        case["z"],
        case["u"],
        case["h0"],
        activation,
        case["mask"],
        case["upstream"],
        case["final_adjoint"],
    )
    for name, got, want in zip(
        ("d_pre", "d_u", "d_h0"),
        (d_pre, d_u, d_h0),
        expected_grads,
        strict=True,
    ):
        error = reference.relative_error(to_numpy(got), want)
        assert error < tolerance, (name, error)
    return expected


@pytest.mark.parametrize("per_sample_u", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("activation", list(KINDS))
def test_kernels_match_the_reference(
    rng, launches, activation, masked, per_sample_u
):
    case = kernel_case(rng, 3, 9, 6, activation, masked, per_sample_u)
    expected = check_kernels(case, activation, launches)
    _, form = KINDS[activation]
    if form is not None and form[3] < INF:
        # The data must reach both bounds, where the slope is 0.
        assert np.any(expected == form[3]) and np.any(expected == form[2])


@pytest.mark.parametrize(
    "batch, steps, units, max_block",
    [
        (1, 1, 1, 128),  # one step, one unit
        (1, 12, 5, 128),  # a block of 8 with 3 units unused
        (2, 7, 10, 4),  # 3 blocks per sample, the last one half used
        (3, 5, 8, 8),  # exactly one full block
        (2, 4, 33, 16),  # 3 blocks, one unit in the last
    ],
)
def test_block_layouts(
    rng, launches, monkeypatch, batch, steps, units, max_block
):
    monkeypatch.setattr(TRITON, "MAX_BLOCK_UNITS", max_block)
    case = kernel_case(rng, batch, steps, units, "relu", True, True)
    check_kernels(case, "relu", launches)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_kernels(rng, launches, dtype, activation):
    case = kernel_case(rng, 2, 10, 6, activation, True, False)
    # The reference computes with the values the half tensors hold.
    for name in ("z", "h0", "upstream", "final_adjoint"):
        case[name] = rounded(case[name], dtype)
    states, grads = run_kernels(case, activation, dtype)
    assert launches == {"forward": 1, "backward": 1}
    half = getattr(torch, dtype)
    assert states.dtype == half
    assert [g.dtype for g in grads] == [half, torch.float32, half]
    expected, _ = reference_states(
        case["z"], case["u"], case["h0"], activation, case["mask"]
    )
    error = reference.relative_error(to_numpy(states), expected)
    assert error < HALF_TOLERANCE[dtype]
    expected_grads = reference_gradients(
        case["z"],
        case["u"],
        case["h0"],
        activation,
        case["mask"],
        case["upstream"],
        case["final_adjoint"],
    )
    for got, want in zip(grads, expected_grads, strict=True):
        error = reference.relative_error(to_numpy(got), want)
        assert error < HALF_GRADIENT_TOLERANCE[dtype]


@pytest.mark.parametrize("activation", list(KINDS))
def test_a_nan_goes_on_as_nan(rng, launches, activation):
    # Triton's maximum and minimum drop a NaN operand by default (on GPUs
    # and in the interpreter alike).
    case = kernel_case(rng, 2, 6, 5, activation, False, False)
    case["z"][0, 2, 1] = np.nan
    states, _ = run_kernels(case, activation)
    # The unit's state is NaN from that step on (u is never 0 here), and
    # no other unit's or sample's is.
    expected = np.zeros(case["z"].shape, bool)
    expected[0, 2:, 1] = True
    np.testing.assert_array_equal(np.isnan(to_numpy(states)), expected)


def test_arguments_of_the_wrong_shape_are_refused():
    z = tensor(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"`u`.*\(4,\) or \(2, 4\)"):
        ENGINE.fused_forward(
            z, tensor(np.zeros(5)), z[:, 0], None, "tanh", None
        )
    with pytest.raises(ValueError, match=r"`h0`.*\(2, 4\)"):
        ENGINE.fused_forward(z, z[0, 0], z[:1, 0], None, "tanh", None)


# -- through the layer -------------------------------------------------------


def layer_case(rng, activation, batch=3, steps=7, features=2, units=5):
    scale = SCALES.get(activation, 1.0)
    return {
        "x": f32(rng.normal(size=(batch, steps, features))),
        "weights": [
            f32(rng.normal(size=(features, units)) * 0.8 * scale),
            f32(rng.uniform(-1.2, 1.2, size=units)),
            f32(rng.normal(size=units) * 0.2),
        ],
        "h0": f32(rng.normal(size=(batch, units))),
        "mask": random_mask(rng, batch, steps),
        "probe": f32(rng.normal(size=(batch, steps, units))),
        "state_probe": f32(rng.normal(size=(batch, units))),
    }


def run_layer(case, activation, masked, go_backwards, with_initial_state):
    """The layer's outputs, final state and the gradients of
    `sum(outputs * probe) + sum(state * state_probe)` for its weights (and
    the initial state, where given), as float64 NumPy."""
    batch, steps, features = case["x"].shape
    units = case["h0"].shape[1]
    layer = IndRNN(
        units,
        activation=activation,
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
        implementation="sequential",
    )
    layer.build((batch, steps, features))
    layer.set_weights([w.astype("float32") for w in case["weights"]])
    variables = list(layer.trainable_variables)
    kwargs = {}
    if masked:
        kwargs["mask"] = case["mask"]
    if with_initial_state:
        h0 = keras.Variable(case["h0"].astype("float32"))
        variables.append(h0)
        kwargs["initial_state"] = [h0.value]
    x = case["x"].astype("float32")
    probe = ops.convert_to_tensor(case["probe"].astype("float32"))
    state_probe = ops.convert_to_tensor(case["state_probe"].astype("float32"))
    results = {}

    def loss():
        outputs, state = layer(x, **kwargs)
        results["outputs"], results["state"] = outputs, state
        return ops.sum(outputs * probe) + ops.sum(state * state_probe)

    _, grads = gradients(loss, variables)
    return (
        to_numpy(results["outputs"]),
        to_numpy(results["state"]),
        [np.asarray(g, np.float64) for g in grads],
    )


def reference_layer(case, activation, masked, go_backwards, with_initial_state):
    """`run_layer`'s outputs, state and gradients from the reference."""
    mask = case["mask"] if masked else None

    def run(kernel, recurrent, bias, h0=None):
        return reference.indrnn(
            case["x"],
            kernel,
            recurrent,
            bias,
            initial_state=h0,
            activation=activation,
            mask=mask,
            go_backwards=go_backwards,
        )

    def loss(*arrays):
        outputs, _, final = run(*arrays)
        return np.sum(outputs * case["probe"]) + np.sum(
            final * case["state_probe"]
        )

    arrays = list(case["weights"])
    if with_initial_state:
        arrays.append(case["h0"])
    outputs, _, final = run(*arrays)
    return outputs, final, finite_differences(loss, arrays)


def assert_layer_matches_reference(got, expected, tolerance=1e-5):
    (outputs, state, grads), (want_outputs, want_state, want_grads) = (
        got,
        expected,
    )
    assert reference.relative_error(outputs, want_outputs) < tolerance
    assert reference.relative_error(state, want_state) < tolerance
    for grad, want in zip(grads, want_grads, strict=True):
        assert reference.relative_error(grad, want) < tolerance


@pytest.mark.parametrize(
    "masked, go_backwards, with_initial_state",
    [(False, False, False), (True, True, True), (True, False, True)],
)
@pytest.mark.parametrize("activation", list(KINDS))
def test_layer_gradients(
    rng, launches, activation, masked, go_backwards, with_initial_state
):
    case = layer_case(rng, activation)
    options = (activation, masked, go_backwards, with_initial_state)
    got = run_layer(case, *options)
    assert launches == {"forward": 1, "backward": 1}
    assert_layer_matches_reference(got, reference_layer(case, *options))


def test_stateful_layer_over_two_calls(rng, launches):
    batch, steps, features, units = 2, 6, 3, 4
    x = f32(rng.normal(size=(batch, 2 * steps, features)))
    weights = [
        f32(rng.normal(size=(features, units))),
        f32(rng.uniform(-1.2, 1.2, size=units)),
        f32(rng.normal(size=units) * 0.2),
    ]
    probe = f32(rng.normal(size=(batch, steps, units)))
    layer = IndRNN(
        units, stateful=True, return_sequences=True, implementation="sequential"
    )
    layer.build((batch, steps, features))
    layer.cell.set_weights([w.astype("float32") for w in weights])
    first = layer(x[:, :steps].astype("float32"))
    probe32 = ops.convert_to_tensor(probe.astype("float32"))
    second = {}

    def loss():
        second["outputs"] = layer(x[:, steps:].astype("float32"))
        return ops.sum(second["outputs"] * probe32)

    _, grads = gradients(loss, layer.trainable_variables)
    assert launches == {"forward": 2, "backward": 1}

    expected_first, _, carried = reference.indrnn(x[:, :steps], *weights)
    expected_second, _, final = reference.indrnn(
        x[:, steps:], *weights, initial_state=carried
    )
    assert reference.relative_error(first, expected_first) < 1e-5
    assert reference.relative_error(second["outputs"], expected_second) < 1e-5
    assert reference.relative_error(layer.states[0], final) < 1e-5

    # The state carried over is a constant for the second call's gradient.
    def reference_loss(kernel, recurrent, bias):
        outputs, _, _ = reference.indrnn(
            x[:, steps:], kernel, recurrent, bias, initial_state=carried
        )
        return np.sum(outputs * probe)

    expected = finite_differences(reference_loss, weights)
    for grad, want in zip(grads, expected, strict=True):
        assert reference.relative_error(grad, want) < 1e-5


def test_recurrent_dropout_weights_per_sample(rng, launches):
    batch, steps, features, units = 3, 6, 2, 4
    x = f32(rng.normal(size=(batch, steps, features)))
    weights = [
        f32(rng.normal(size=(features, units))),
        f32(rng.uniform(-1.2, 1.2, size=units)),
        f32(rng.normal(size=units) * 0.2),
    ]
    probe = f32(rng.normal(size=(batch, steps, units)))
    # Kept units scaled by 1 / (1 - rate), as Keras's dropout masks are.
    dropped = (rng.random((batch, units)) < 0.5) * 2.0
    layer = IndRNN(
        units,
        recurrent_dropout=0.5,
        return_sequences=True,
        implementation="sequential",
    )
    layer.build((batch, steps, features))
    layer.cell.set_weights([w.astype("float32") for w in weights])
    layer.cell.get_recurrent_dropout_mask = lambda state: ops.convert_to_tensor(
        dropped.astype("float32")
    )
    probe32 = ops.convert_to_tensor(probe.astype("float32"))

    def loss():
        return ops.sum(layer(x.astype("float32"), training=True) * probe32)

    _, grads = gradients(loss, layer.trainable_variables)
    assert launches == {"forward": 1, "backward": 1}

    def reference_loss(kernel, recurrent, bias):
        total = 0.0
        for i in range(batch):
            outputs, _, _ = reference.indrnn(
                x[i : i + 1], kernel, dropped[i] * recurrent, bias
            )
            total += np.sum(outputs * probe[i : i + 1])
        return total

    expected = finite_differences(reference_loss, weights)
    for grad, want in zip(grads, expected, strict=True):
        assert reference.relative_error(grad, want) < 1e-5


def test_half_precision_inputs_through_the_recurrence(rng, launches):
    # The recurrence hands the kernels float32 (its accumulation dtype)
    # and returns the input's dtype.
    z = rounded(rng.normal(size=(2, 8, 3)), "float16")
    u = f32(rng.uniform(-1, 1, size=3))
    h0 = rounded(rng.normal(size=(2, 3)), "float16")
    results = recurrence.indrnn_recurrence(
        tensor(z, "float16"),
        tensor(u),
        tensor(h0, "float16"),
        activations.tanh,
        implementation="sequential",
    )
    assert launches == {"forward": 1, "backward": 0}
    assert all(r.dtype == torch.float16 for r in results)
    expected, final = reference_states(z, u, h0, "tanh")
    assert reference.relative_error(to_numpy(results[1]), expected) < 2e-3
    assert reference.relative_error(to_numpy(results[2]), final) < 2e-3


# -- where the TorchScript loops serve ---------------------------------------


FALLBACK_OPTIONS = ("relu", True, True, True)


def torchscript_results(case, monkeypatch):
    """`run_layer` with the Triton path switched off."""
    with monkeypatch.context() as patch:
        patch.setenv(TRITON.VARIABLE, "0")
        return run_layer(case, *FALLBACK_OPTIONS)


def assert_identical(got, expected):
    got = got[:2] + tuple(got[2])
    expected = expected[:2] + tuple(expected[2])
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_switched_off_by_the_environment_variable(rng, launches, monkeypatch):
    case = layer_case(rng, "relu")
    triton_results = run_layer(case, *FALLBACK_OPTIONS)
    assert launches == {"forward": 1, "backward": 1}
    # Read at each call: the same process runs the TorchScript loops.
    monkeypatch.setenv(TRITON.VARIABLE, "0")
    assert not TRITON.serves(DEVICE)
    off = run_layer(case, *FALLBACK_OPTIONS)
    assert launches == {"forward": 1, "backward": 1}
    expected = reference_layer(case, *FALLBACK_OPTIONS)
    assert_layer_matches_reference(off, expected)
    assert_layer_matches_reference(triton_results, expected)
    monkeypatch.setenv(TRITON.VARIABLE, "1")
    assert TRITON.serves(DEVICE)


def test_missing_triton_falls_back_silently(rng, monkeypatch, without_triton):
    case = layer_case(rng, "relu")
    expected = torchscript_results(case, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert not TRITON.serves(DEVICE)
        got = run_layer(case, *FALLBACK_OPTIONS)
    assert "keras_indrnn.engines.triton_kernels" not in sys.modules
    assert_identical(got, expected)


def test_failing_triton_warns_once_and_falls_back(rng, monkeypatch):
    case = layer_case(rng, "relu")
    expected = torchscript_results(case, monkeypatch)
    kernels = TRITON.kernels()
    monkeypatch.setattr(kernels, "indrnn_forward_kernel", _Failing())
    with pytest.warns(RuntimeWarning, match="simulated compilation error"):
        got = run_layer(case, *FALLBACK_OPTIONS)
    assert_identical(got, expected)
    assert not TRITON.serves(DEVICE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        again = run_layer(case, *FALLBACK_OPTIONS)
    assert_identical(again, expected)


# Compiles the kernels for CUDA GPUs through the engine's launch path
# (Triton's argument binding, the keyword constants, a missing mask)
# without a GPU: a stand-in driver names the target, and `warmup` compiles
# without launching. The interpreter is lenient where the compiler is not
# (types of loop-carried values, say); this is what a GPU would compile.
_COMPILE_FOR_GPUS = """
import math
import sys

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.driver import DriverBase

from keras_indrnn.engines import torch_triton as binding


class StandIn(DriverBase):
    capability = 90

    @classmethod
    def is_active(cls):
        return True

    def map_python_to_cpp_type(self, ty):
        raise NotImplementedError

    def get_current_target(self):
        return GPUTarget("cuda", self.capability, 32)

    def get_active_torch_device(self):
        return torch.device("cpu")

    def get_benchmarker(self):
        raise NotImplementedError

    def get_current_device(self):
        return self.capability

    def get_current_stream(self, device=None):
        return 0


def warm_up(kernel, grid, device, *args, **options):
    compiled = kernel.warmup(*args, grid=grid, **options)
    assert compiled.asm["cubin"], "no cubin"
    return True


driver = StandIn()
triton.runtime.driver.set_active(driver)
binding._launch = warm_up
kernels = binding.kernels()
assert isinstance(kernels.indrnn_forward_kernel, triton.runtime.JITFunction)
cases = [
    ("clip", (1.0, 0.0, 0.0, math.inf), True, torch.float32, False),
    ("clip", (1 / 6, 0.5, 0.0, 1.0), False, torch.float32, True),
    ("tanh", None, True, torch.float16, True),
    ("sigmoid", None, False, torch.bfloat16, False),
]
for driver.capability in (80, 90):
    for kind, form, masked, dtype, per_sample in cases:
        b, t, n = 2, 3, 40
        z = torch.zeros(b, t, n, dtype=dtype)
        h0 = torch.zeros(b, n, dtype=dtype)
        u = torch.zeros((b, n) if per_sample else (n,))
        mask = torch.ones(b, t, 1, dtype=torch.bool) if masked else None
        states = binding.forward(z, u, h0, mask, kind, form)
        binding.backward(z, h0, states, u, h0, mask, kind, form)
print("compiled")
"""


@pytest.mark.skipif(DEVICE == "cuda", reason="the GPU compiles them above")
def test_kernels_compile_for_gpus(tmp_path):
    import subprocess

    env = dict(os.environ, KERAS_BACKEND="torch", CUDA_VISIBLE_DEVICES="")
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # compiled anew, every run
    env.pop("TRITON_INTERPRET", None)
    result = subprocess.run(
        [sys.executable, "-c", _COMPILE_FOR_GPUS],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "compiled" in result.stdout


def test_cpu_users_never_load_the_kernels():
    # (Keras's PyTorch backend imports Triton itself where it is installed,
    # through torch._dynamo; what must stay unloaded is this package's
    # kernel module, which compiles the kernels.)
    import subprocess

    code = (
        "import sys, numpy as np, keras_indrnn;"
        "from keras_indrnn import engines;"
        "assert not engines.current().prefers_parallel();"
        "keras_indrnn.IndRNN(3)(np.ones((2, 4, 1), 'float32'));"
        "name = 'keras_indrnn.engines.triton_kernels';"
        "assert name not in sys.modules, name + ' was imported'"
    )
    env = dict(os.environ, KERAS_BACKEND="torch", CUDA_VISIBLE_DEVICES="")
    env.pop("TRITON_INTERPRET", None)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_auto_prefers_the_fused_kernel_where_it_runs(monkeypatch):
    choose = recurrence.choose_implementation
    monkeypatch.setattr(ENGINE, "get_device", lambda: "cuda:0")
    assert ENGINE.on_accelerator()
    assert not ENGINE.prefers_parallel()
    assert choose("auto", activations.relu, 100) == "sequential"
    monkeypatch.setenv(TRITON.VARIABLE, "0")
    assert ENGINE.prefers_parallel()
    assert choose("auto", activations.relu, 100) == "parallel"
    monkeypatch.setattr(ENGINE, "get_device", lambda: "cpu")
    assert not ENGINE.prefers_parallel()


def test_auto_prefers_the_scan_on_a_gpu_without_triton(
    monkeypatch, without_triton
):
    monkeypatch.setattr(ENGINE, "get_device", lambda: "cuda:0")
    assert ENGINE.prefers_parallel()


def test_torch_compile_keeps_the_torchscript_loop(rng, launches):
    z = f32(rng.normal(size=(2, 5, 3)))
    u = f32(rng.uniform(-1, 1, size=3))
    h0 = f32(rng.normal(size=(2, 3)))

    def states(z, u, h0):
        return recurrence.indrnn_recurrence(
            z, u, h0, activations.relu, implementation="sequential"
        )[1]

    compiled = torch.compile(states, backend="eager")
    got = compiled(tensor(z), tensor(u), tensor(h0))
    assert launches == {"forward": 0, "backward": 0}
    expected, _ = reference_states(z, u, h0, "relu")
    assert reference.relative_error(to_numpy(got), expected) < 1e-5


# -- saving and exporting ----------------------------------------------------

STEPS, FEATURES = 6, 3


def two_layer_model(rng):
    inputs = keras.Input((STEPS, FEATURES))
    h = IndRNN(4, return_sequences=True, recurrent_max_abs=1.0)(inputs)
    h = IndRNN(4, activation="tanh", recurrent_max_abs=1.0)(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    for layer in model.layers[1:]:
        layer.set_weights(
            [
                rng.normal(size=w.shape).astype("float32") * 0.5
                for w in layer.get_weights()
            ]
        )
    return model


def reference_model(model, x):
    (k1, u1, b1), (k2, u2, b2), (w, b) = (
        [f32(v) for v in layer.get_weights()] for layer in model.layers[1:]
    )
    h, _, _ = reference.indrnn(x, k1, u1, b1)
    _, last, _ = reference.indrnn(h, k2, u2, b2, activation="tanh")
    return last @ w + b


def test_keras_file_round_trip(rng, launches, tmp_path):
    model = two_layer_model(rng)
    x = f32(rng.normal(size=(3, STEPS, FEATURES)))
    predicted = model.predict(x.astype("float32"), verbose=0)
    assert launches["forward"] == 2
    assert reference.relative_error(predicted, reference_model(model, x)) < 1e-5
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    again = loaded.predict(x.astype("float32"), verbose=0)
    assert launches["forward"] == 4
    np.testing.assert_array_equal(again, predicted)


def assert_serves_like_keras(model, serve, rng):
    for batch in (1, 3):
        x = rng.normal(size=(batch, STEPS, FEATURES)).astype("float32")
        np.testing.assert_allclose(
            serve(x), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5
        )


def test_torch_export(rng, launches, tmp_path):
    model = two_layer_model(rng)
    model(np.zeros((1, STEPS, FEATURES), "float32"))
    before = dict(launches)
    path = str(tmp_path / "model.pt2")
    batch = torch.export.Dim("batch", min=1, max=64)
    model.export(path, format="torch", verbose=False, dynamic_shapes={0: batch})
    # The export traced the portable loop, not the Triton kernels.
    assert launches == before
    program = torch.export.load(path).module()

    def serve(x):
        return to_numpy(program(torch.from_numpy(x).to(DEVICE)))

    assert_serves_like_keras(model, serve, rng)
    assert launches["forward"] > before["forward"]  # `predict`'s


def test_onnx_export(rng, launches, tmp_path):
    # The tox environments install it; a GPU machine's image may not.
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")

    model = two_layer_model(rng)
    model(np.zeros((1, STEPS, FEATURES), "float32"))
    before = dict(launches)
    path = str(tmp_path / "model.onnx")
    model.export(path, format="onnx", verbose=False)
    assert launches == before
    session = onnxruntime.InferenceSession(path)
    name = session.get_inputs()[0].name
    assert_serves_like_keras(
        model, lambda x: session.run(None, {name: x})[0], rng
    )
    assert launches["forward"] > before["forward"]
