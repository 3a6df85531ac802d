"""IndRNN's element-wise recurrence over a whole sequence.

Once the input projection `z = x @ kernel + bias` is done for all timesteps
in one matmul, what is left is

    h_t = act(z_t + u * h_{t-1})

element by element, where a step whose mask is False keeps the state.
`indrnn_recurrence` runs it two ways:

- `"sequential"`: one step after the other, in the engine's time loop or
  fused kernel (`keras_indrnn.engines`).
- `"parallel"`: for activations of the form `clip(a * x + c, lo, hi)`, an
  associative scan over time in log depth (`keras_indrnn.parallel_scan`).

Both share one closed-form backward pass. With the adjoint
`adjoint_t = dL/dh_t` (through every later step) and `slope_t = act'(pre_t)`:

    adjoint_t = upstream_t + gain_{t+1} * adjoint_{t+1}
    gain_t    = u * slope_t                 (1 at a masked step)
    dL/dpre_t = slope_t * adjoint_t         (0 at a masked step)
    dL/du     = sum_t dL/dpre_t * h_{t-1}
    dL/dh_0   = gain_0 * adjoint_0

Every supported activation's slope is a function of its output, so the
backward pass needs nothing but the forward's states; no engine
differentiates through a loop of thousands of steps. Half-precision inputs
are accumulated in float32 and the outputs returned in the input's dtype:
a ReLU state can leave float16's range, and the composed maps of the
parallel scan need the wider mantissa. While a model is being exported,
the forward pass runs in the engine's portable loop.
"""

import functools
import math

import keras
from keras import activations
from keras import ops

from keras_indrnn import engines
from keras_indrnn import parallel_scan

IMPLEMENTATIONS = ("auto", "sequential", "parallel")

_INF = math.inf

# activation -> (a, c, lo, hi) with activation(x) == clip(a * x + c, lo, hi).
_CLIP_FORMS = {
    activations.relu: (1.0, 0.0, 0.0, _INF),
    activations.linear: (1.0, 0.0, -_INF, _INF),
    activations.relu6: (1.0, 0.0, 0.0, 6.0),
    activations.hard_sigmoid: (1.0 / 6.0, 0.5, 0.0, 1.0),
    activations.hard_tanh: (1.0, 0.0, -1.0, 1.0),
}


def clip_form(activation):
    """Returns `(a, c, lo, hi)` such that the activation is
    `clip(a * x + c, lo, hi)`, or `None` if it has no such form."""
    if activation is None:
        return _CLIP_FORMS[activations.linear]
    return _CLIP_FORMS.get(activation)


def has_fast_path(activation):
    """Whether `indrnn_recurrence` supports this activation (it needs the
    derivative in closed form); `IndRNN` steps the cell for the others."""
    return _slope(activation) is not None


def supported_activations():
    names = [_name(f) for f in _CLIP_FORMS] + ["tanh", "sigmoid"]
    return ", ".join(names)


def check_implementation(implementation, activation):
    """Raises a `ValueError` unless `implementation` suits `activation`."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            "Invalid value for argument `implementation`: expected one of "
            f"{IMPLEMENTATIONS}, got {implementation!r}."
        )
    if implementation == "parallel" and clip_form(activation) is None:
        raise ValueError(
            "Argument `implementation='parallel'` needs an activation of the "
            "form clip(a * x + c, lo, hi) (relu, relu6, linear, hard_sigmoid "
            f"or hard_tanh), got activation={_name(activation)}. Use "
            "implementation='sequential' or 'auto' for it."
        )


def choose_implementation(implementation, activation, timesteps):
    """Resolves `"auto"`: the rule the README documents.

    The parallel scan does more arithmetic than the loop in exchange for
    log depth; that pays only where the cost of a step is its launch
    (accelerators without a fused loop kernel), never on CPUs
    (`benchmarks/results/`). The engine says which (`prefers_parallel`).
    """
    if implementation != "auto":
        return implementation
    if (
        clip_form(activation) is not None
        and timesteps is not None
        and engines.current().prefers_parallel()
    ):
        return "parallel"
    return "sequential"


def _name(activation):
    return getattr(activation, "__name__", repr(activation))


def indrnn_recurrence(
    sequences,
    recurrent_kernel,
    initial_state,
    activation,
    kernel=None,
    bias=None,
    mask=None,
    go_backwards=False,
    zero_output_for_mask=False,
    implementation="sequential",
):
    """Runs `h_t = act(x_t @ kernel + bias + recurrent_kernel * h_{t-1})`.

    Args:
        sequences: `(batch, timesteps, features)`, the inputs `x`; with
            `kernel=None`, the already projected `(batch, timesteps, units)`.
        recurrent_kernel: `(units,)`, or `(batch, units)` when recurrent
            dropout has been folded into it.
        initial_state: `(batch, units)`.
        activation: The element-wise activation.
        kernel: Optional `(features, units)` input weights.
        bias: Optional `(units,)`.
        mask: Optional boolean `(batch, timesteps)`; a step where it is
            False keeps the state.
        go_backwards: Process the sequence from its last step; the outputs
            come back in processing order, as in `keras.layers.RNN`.
        zero_output_for_mask: Whether masked steps output zeros instead of
            the carried state (as `keras.layers.Bidirectional` asks).
        implementation: `"sequential"` or `"parallel"` (already resolved).

    Returns:
        `(last_output, outputs, final_state)` with `outputs` of shape
        `(batch, timesteps, units)`, all in the dtype of `sequences`.
    """
    out_dtype = keras.backend.standardize_dtype(sequences.dtype)
    dtype = _accumulation_dtype(out_dtype)
    engine = engines.current()
    exporting = engine.exporting()
    fused = not exporting and _fused(engine)
    loop_engine = implementation == "sequential" and not fused and not exporting
    in_loop = (
        loop_engine
        and kernel is not None
        and dtype == out_dtype
        and sequences.shape[-1] is not None
        and sequences.shape[-1] <= PROJECTION_IN_LOOP_FEATURES
    )
    if kernel is not None and not in_loop:
        # In the compute dtype, as Keras layers project.
        sequences = ops.matmul(sequences, kernel)
        kernel = None
    if bias is not None and not loop_engine:
        sequences = ops.add(sequences, bias)
        bias = None

    operands = {
        "sequences": ops.cast(sequences, dtype),
        "recurrent_kernel": ops.cast(recurrent_kernel, dtype),
        "initial_state": ops.cast(initial_state, dtype),
    }
    if kernel is not None:
        operands["kernel"] = ops.cast(kernel, dtype)
    if bias is not None:
        operands["bias"] = ops.cast(bias, dtype)
    if mask is not None:
        # As a float tensor, so that it can be an argument of a function
        # with a custom gradient on every engine.
        operands["mask"] = ops.cast(ops.expand_dims(mask, -1), dtype)
    if go_backwards:
        for name in ("sequences", "mask"):
            if name in operands:
                operands[name] = ops.flip(operands[name], axis=1)

    if exporting:
        states, final = _portable_states(
            engine, activation, **_with_bool_mask(operands)
        )
    else:
        names = tuple(operands)
        run = engine.custom_gradient(
            _with_gradient(
                _Decided(engine, fused), activation, implementation, names
            )
        )
        states, final = run(*operands.values())

    # The final state comes from the loop's carry, not from `states`, so
    # that an engine can drop the states where only the last step is used
    # and no gradient is taken (XLA does).
    outputs, last_output = states, final
    mask_values = operands.get("mask")
    if mask_values is not None:
        # As in `keras.layers.RNN`: a masked step outputs zeros, or repeats
        # the last output (zeros before the first unmasked step).
        if zero_output_for_mask:
            shown = mask_values > 0
            last_shown = shown[:, -1]
        else:
            shown = ops.cumsum(mask_values, axis=1) > 0
            last_shown = ops.any(mask_values > 0, axis=1)
        outputs = ops.where(shown, states, 0)
        last_output = ops.where(last_shown, final, 0)
    return (
        ops.cast(last_output, out_dtype),
        ops.cast(outputs, out_dtype),
        ops.cast(final, out_dtype),
    )


# Inputs with at most this many features are projected inside the time
# loop of engines that compile it: each step then reads `features` values
# per sample instead of a materialized `units`-wide projection.
PROJECTION_IN_LOOP_FEATURES = 8


def _fused(engine):
    """Whether the engine's fused kernels serve the call being traced or
    run now."""
    return engine.fused_forward is not None and engine.fused_serves()


class _Decided:
    """The engine, with whether its fused kernels serve decided once for a
    forward pass and its backward pass: the backward pass runs where the
    context may differ (TensorFlow's tape no longer records there)."""

    def __init__(self, engine, fused):
        self._engine, self._fused = engine, fused

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def fused_serves(self):
        return self._fused


def _accumulation_dtype(dtype):
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def _with_bool_mask(operands):
    operands = dict(operands)
    if "mask" in operands:
        operands["mask"] = operands["mask"] > 0
    return operands


def _with_gradient(engine, activation, implementation, names):
    """`run(*operands) -> ((states, final_state), grad)`, for the engine's
    `custom_gradient`, with the operands named by `names` (those of
    `indrnn_recurrence`) in that order, all batch-major."""
    if _slope(activation) is None:
        raise ValueError(
            f"The fast recurrence has no derivative for activation="
            f"{_name(activation)}; supported: {supported_activations()}."
        )
    if implementation == "parallel":
        forward, backward = _parallel_states, _parallel_backward
    else:
        forward, backward = _sequential_states, _sequential_backward

    def run(*values):
        operands = _with_bool_mask(dict(zip(names, values, strict=True)))
        states, final = forward(engine, activation, **operands)

        def grad(upstreams):
            upstream, final_adjoint = upstreams
            d_pre, d_u, d_h0 = backward(
                engine,
                activation,
                upstream,
                final_adjoint,
                states,
                operands["recurrent_kernel"],
                operands["initial_state"],
                operands.get("mask"),
            )
            if len(operands["recurrent_kernel"].shape) == 1:
                d_u = ops.sum(d_u, axis=0)
            grads = {
                "sequences": d_pre,
                "recurrent_kernel": d_u,
                "initial_state": d_h0,
            }
            if "kernel" in operands:
                grads["sequences"], grads["kernel"] = _projection_grads(
                    operands["sequences"], operands["kernel"], d_pre
                )
            if "bias" in operands:
                grads["bias"] = ops.sum(d_pre, axis=(0, 1))
            if "mask" in operands:
                grads["mask"] = ops.zeros_like(values[names.index("mask")])
            return tuple(grads[name] for name in names)

        return (states, final), grad

    return run


def _projection_grads(sequences, kernel, d_pre):
    """Gradients of `sequences @ kernel` for `dL/d(product) = d_pre`."""
    features, units = kernel.shape
    d_kernel = ops.matmul(
        ops.transpose(ops.reshape(sequences, (-1, features))),
        ops.reshape(d_pre, (-1, units)),
    )
    return ops.matmul(d_pre, ops.transpose(kernel)), d_kernel


def _slope(activation):
    """`slope(out)`: `activation'(pre)` computed from the activation's
    output `out = activation(pre)`, or `None` where no closed form is
    known."""
    return _SLOPES.get(activation if activation is not None else None)


def _clip_slope(form):
    a, _, lo, hi = form

    def slope(out):
        # `a` between the bounds, 0 on them (relu at 0). As lo <= out <= hi,
        # sign(out - lo) and sign(hi - out) are 0 or 1: arithmetic instead
        # of boolean masks, which PyTorch's CPU kernels run slower.
        result = None
        if lo > -_INF:
            result = ops.sign(out - lo if lo else out)
        if hi < _INF:
            upper = ops.sign(hi - out)
            result = upper if result is None else result * upper
        if result is None:
            return ops.full_like(out, a)
        return result if a == 1 else result * a

    return slope


_SLOPES = {
    **{f: _clip_slope(form) for f, form in _CLIP_FORMS.items()},
    None: _clip_slope(_CLIP_FORMS[activations.linear]),
    activations.tanh: lambda out: 1 - out * out,
    activations.sigmoid: lambda out: out * (1 - out),
}


# -- sequential -------------------------------------------------------------


def _sequential_states(
    engine,
    activation,
    sequences,
    recurrent_kernel,
    initial_state,
    kernel=None,
    bias=None,
    mask=None,
):
    if _fused(engine):
        states = engine.fused_forward(
            sequences,
            recurrent_kernel,
            initial_state,
            mask,
            *_kind(activation),
        )
        return states, states[:, -1]
    return _looped_states(
        engine.time_loop,
        activation,
        sequences,
        recurrent_kernel,
        initial_state,
        kernel,
        bias,
        mask,
    )


def _portable_states(
    engine, activation, sequences, recurrent_kernel, initial_state, mask=None
):
    """`(states, final_state)` for an exporter."""
    states = None
    if _slope(activation) is not None:
        states = engine.portable_forward(
            sequences,
            recurrent_kernel,
            initial_state,
            mask,
            *_kind(activation),
        )
    if states is not None:
        return states, states[:, -1]
    return _looped_states(
        engine.portable_time_loop,
        activation,
        sequences,
        recurrent_kernel,
        initial_state,
        mask=mask,
    )


def _kind(activation):
    """`(kind, form)`, the activation as the engines' fused kernels take
    it."""
    form = clip_form(activation)
    if form is not None:
        return "clip", form
    kinds = {activations.tanh: "tanh", activations.sigmoid: "sigmoid"}
    return kinds[activation], None


def _looped_states(
    time_loop,
    activation,
    sequences,
    recurrent_kernel,
    initial_state,
    kernel=None,
    bias=None,
    mask=None,
):
    """`(states, final_state)` from the engine's loop."""
    step = _forward_step(
        activation, mask is not None, bias is not None, kernel is not None
    )
    constants = (recurrent_kernel,)
    constants += () if bias is None else (bias,)
    constants += () if kernel is None else (kernel,)
    steps = (sequences,) if mask is None else (sequences, mask)
    final, states = time_loop(step, initial_state, steps, constants)
    return states, final


@functools.cache
def _forward_step(activation, masked, biased, projects):
    """One step `h -> act(z_t + u * h)`, where `z_t` is the step's input,
    plus the bias where `biased`, times the kernel first where `projects`.
    One function object per combination: engines that compile the loop
    cache it by the step's identity."""
    activation = activation or activations.linear

    def step(h, source_t, *mask_t_and_constants):
        if masked:
            mask_t, *constants = mask_t_and_constants
        else:
            constants = mask_t_and_constants
        u, *rest = constants
        z_t = ops.matmul(source_t, rest[-1]) if projects else source_t
        if biased:
            z_t = z_t + rest[0]
        new = activation(z_t + u * h)
        if masked:
            new = ops.where(mask_t, new, h)
        return new, new

    return step


def _sequential_backward(
    engine, activation, upstream, final_adjoint, states, u, h0, mask
):
    """Returns `(dL/dpre per step, dL/du per sample, dL/dh0)`;
    `final_adjoint` is the gradient that reaches the final state directly."""
    if _fused(engine):
        return engine.fused_backward(
            upstream, final_adjoint, states, u, h0, mask, *_kind(activation)
        )
    step = _backward_step(_slope(activation), mask is not None)
    sequences = (upstream, states) + (() if mask is None else (mask,))
    zeros = ops.zeros_like(final_adjoint)
    (d_h0, d_pre_0, d_u), d_pre = engine.time_loop(
        step, (final_adjoint, zeros, zeros), sequences, (u,), reverse=True
    )
    return d_pre, d_u + d_pre_0 * h0, d_h0


@functools.cache
def _backward_step(slope, masked):
    """The backward pass as one reversed loop that also sums `dL/du`: at
    step t it holds dL/dpre_{t+1} from the step before and reads h_t, which
    saves a shifted copy of the states."""

    def step(carry, upstream_t, h_t, *mask_t_and_u):
        u = mask_t_and_u[-1]
        to_state, d_pre_next, d_u = carry
        d_u = d_u + d_pre_next * h_t
        adjoint = upstream_t + to_state
        d_pre = slope(h_t) * adjoint
        if masked:
            mask_t = mask_t_and_u[0]
            d_pre = ops.where(mask_t, d_pre, 0)
            # A masked step copied h_{t-1} forward: its adjoint too.
            to_state = ops.where(mask_t, u * d_pre, adjoint)
        else:
            to_state = u * d_pre
        return (to_state, d_pre, d_u), d_pre

    return step


def _backward_through_adjoints(
    upstream, final_adjoint, states, u, h0, mask, slope, solve
):
    """The backward pass with the adjoint recurrence solved as a whole by
    `solve(upstream, gain)` (batch-major). Returns `(dL/dpre per step,
    dL/du per sample, dL/dh0)`."""
    upstream = ops.concatenate(
        [upstream[:, :-1], upstream[:, -1:] + final_adjoint[:, None]], axis=1
    )
    slopes = slope(states)
    per_step_u = u if len(u.shape) == 1 else u[:, None, :]
    if mask is None:
        gain = per_step_u * slopes
    else:
        slopes = ops.where(mask, slopes, 0)
        gain = ops.where(mask, per_step_u * slopes, 1)
    adjoints = solve(upstream, gain)
    d_pre = slopes * adjoints
    d_u = d_pre[:, 0] * h0 + ops.sum(d_pre[:, 1:] * states[:, :-1], axis=1)
    return d_pre, d_u, gain[:, 0] * adjoints[:, 0]


# -- parallel ---------------------------------------------------------------


def _time_major(x):
    """Swaps the batch and time axes (either way)."""
    return None if x is None else ops.swapaxes(x, 0, 1)


def _parallel_states(
    engine, activation, sequences, recurrent_kernel, initial_state, mask=None
):
    states = parallel_scan.clip_affine_states(
        _time_major(sequences),
        recurrent_kernel,
        initial_state,
        _time_major(mask),
        clip_form(activation),
    )
    states = _time_major(states)
    return states, states[:, -1]


def _parallel_backward(
    engine, activation, upstream, final_adjoint, states, u, h0, mask
):
    def solve(upstream, gain):
        return _time_major(
            parallel_scan.affine_adjoints(
                _time_major(upstream), _time_major(gain)
            )
        )

    return _backward_through_adjoints(
        upstream, final_adjoint, states, u, h0, mask, _slope(activation), solve
    )
