"""IndRNN's element-wise recurrence over a whole sequence.

Once the input projection `z = x @ kernel + bias` is done for all timesteps
in one matmul, what is left is

    h_t = act(z_t + u * h_{t-1})

element by element. This module runs it two ways behind one function,
`indrnn_recurrence`:

- `"sequential"`: one step after the other, in the cheapest loop each engine
  has (`backend_loops.scan_over_time`).
- `"parallel"`: for activations of the form `clip(a * x + c, lo, hi)` (relu,
  relu6, linear, hard_sigmoid, hard_tanh), one step is the clip-affine map
  `h -> clip(e * h + d, L, H)`, and such maps stay clip-affine under
  composition. An associative scan over time composes them in log depth.

Both have a closed-form backward pass (`ops.custom_gradient`): the gradient
of the recurrence is the linear reverse recurrence

    a_t = g_t + k_{t+1} * a_{t+1},   k_t = u * act'(z_t + u * h_{t-1}),

run with the same engine as the forward pass, so neither autodiff through a
loop of thousands of steps nor through the scan's bookkeeping is needed
(on JAX, autodiff through `lax.scan` measured 2.7x slower than this).
Half-precision inputs are accumulated in float32 and the outputs returned in
the input's dtype: a ReLU state can leave float16's range, and the
composed maps of the parallel scan need the wider mantissa.
"""

import math

import keras
from keras import activations
from keras import ops

from keras_indrnn import backend_loops

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
    return _slope_times(activation) is not None


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
    log depth; that pays where per-step launch overhead dominates (GPUs) and
    not on CPUs, where every engine's loop was faster in our benchmark.
    """
    if implementation != "auto":
        return implementation
    if (
        clip_form(activation) is not None
        and timesteps is not None
        and _on_accelerator()
    ):
        return "parallel"
    return "sequential"


def _on_accelerator():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        from keras.src.backend.torch.core import get_device

        return not str(get_device()).startswith("cpu")
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    return False


def _name(activation):
    return getattr(activation, "__name__", repr(activation))


def indrnn_recurrence(
    inputs,
    recurrent_kernel,
    initial_state,
    activation,
    mask=None,
    go_backwards=False,
    zero_output_for_mask=False,
    implementation="sequential",
):
    """Runs `h_t = activation(inputs_t + recurrent_kernel * h_{t-1})`.

    Args:
        inputs: `(batch, timesteps, units)`, the projected inputs `z`.
        recurrent_kernel: `(units,)`, or `(batch, units)` when recurrent
            dropout has been folded into it.
        initial_state: `(batch, units)`.
        activation: The element-wise activation.
        mask: Optional boolean `(batch, timesteps)`; a masked step keeps the
            state.
        go_backwards: Process the sequence from its last step; the outputs
            come back in processing order, as in `keras.layers.RNN`.
        zero_output_for_mask: Whether masked steps output zeros instead of
            the carried state (as `keras.layers.Bidirectional` asks).
        implementation: `"sequential"` or `"parallel"` (already resolved).

    Returns:
        `(last_output, outputs, final_state)` with `outputs` of shape
        `(batch, timesteps, units)`, all in the dtype of `inputs`.
    """
    out_dtype = inputs.dtype
    dtype = _accumulation_dtype(out_dtype)
    z = ops.cast(inputs, dtype)
    u = ops.cast(recurrent_kernel, dtype)
    h0 = ops.cast(initial_state, dtype)
    keep = None
    if mask is not None:
        keep = ops.cast(mask[:, :, None], dtype)
    if go_backwards:
        z = ops.flip(z, axis=1)
        keep = None if keep is None else ops.flip(keep, axis=1)

    run = _differentiable_recurrence(
        activation, implementation, keep is not None
    )
    args = (z, u, h0) if keep is None else (z, u, h0, keep)
    states = run(*args)

    outputs = states
    if keep is not None:
        # As in `keras.layers.RNN`: a masked step outputs zeros, or repeats
        # the last output (zeros before the first unmasked step).
        shown = keep if zero_output_for_mask else ops.cumsum(keep, axis=1)
        outputs = ops.where(shown > 0, states, 0)
    return (
        ops.cast(outputs[:, -1], out_dtype),
        ops.cast(outputs, out_dtype),
        ops.cast(states[:, -1], out_dtype),
    )


def _accumulation_dtype(dtype):
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def _differentiable_recurrence(activation, implementation, masked):
    """Builds `run(z, u, h0[, keep]) -> states`, all batch-major."""
    slope_times = _slope_times(activation)
    if slope_times is None:
        raise ValueError(
            f"The fast recurrence has no derivative for activation="
            f"{_name(activation)}; supported: {supported_activations()}."
        )
    forward = _FORWARD[implementation]
    backward = _BACKWARD[implementation]

    def run_with_gradient(z, u, h0, *maybe_keep):
        held = maybe_keep[0] > 0 if masked else None
        states = forward(z, u, h0, held, activation)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            d_pre, d_u, d_h0 = backward(
                upstream, states, u, h0, held, slope_times
            )
            if len(u.shape) == 1:
                d_u = ops.sum(d_u, axis=0)
            grads = (d_pre, d_u, d_h0)
            if masked:
                grads += (ops.zeros_like(maybe_keep[0]),)
            return grads

        return states, grad

    return ops.custom_gradient(run_with_gradient)


def _slope_times(activation):
    """`slope_times(x, out)`: `x * activation'(pre)` computed from the
    activation's output `out = activation(pre)`, or `None` where no closed
    form is known. Every supported activation's slope is a function of its
    output, so the backward pass needs nothing but the forward's states."""
    form = clip_form(activation)
    if form is not None:
        a, _, lo, hi = form

        def clip_slope_times(x, out):
            # The slope is `a` between the bounds and 0 on them (relu at 0).
            # As lo <= out <= hi, sign(out - lo) and sign(hi - out) are 0
            # or 1: arithmetic instead of boolean masks, which PyTorch's
            # CPU kernels run ~4x slower.
            if lo > -_INF:
                x = x * ops.sign(out - lo)
            if hi < _INF:
                x = x * ops.sign(hi - out)
            return x if a == 1 else x * a

        return clip_slope_times
    if activation is activations.tanh:
        return lambda x, out: x * (1 - out * out)
    if activation is activations.sigmoid:
        return lambda x, out: x * out * (1 - out)
    return None


# -- sequential -------------------------------------------------------------


def _sequential_states(z, u, h0, held, activation):
    form = clip_form(activation)
    if form is not None and backend_loops.has_fused_loops():
        return backend_loops.fused_clip_recurrence(z, u, h0, held, form)
    activation = activation or activations.linear
    if held is None:

        def step(h, z_t, u):
            h = activation(z_t + u * h)
            return h, h

        sequences = (z,)
    else:

        def step(h, z_t, held_t, u):
            h = ops.where(held_t, activation(z_t + u * h), h)
            return h, h

        sequences = (z, held)
    return backend_loops.scan_over_time(step, h0, sequences, (u,))[1]


def _sequential_backward(upstream, states, u, h0, held, slope_times):
    """Runs `total_t = upstream_t + d h_{t+1}/d h_t * total_{t+1}` from the
    last step back, returning `(d pre-activations, d u per sample, d h0)`
    with `d u = sum_t d_pre_t * h_{t-1}`."""
    if backend_loops.has_fused_loops():
        return _backward_through_totals(
            upstream,
            states,
            u,
            h0,
            held,
            slope_times,
            backend_loops.fused_linear_backward,
        )

    # The loop also sums d u: at step t it holds d_pre_{t+1} from the step
    # before and reads h_t, which saves a shifted copy of the states.
    masked = held is not None

    def step(carry, g_t, h_t, *held_t_and_u):
        u = held_t_and_u[-1]
        to_state, d_pre_next, d_u = carry
        d_u = d_u + d_pre_next * h_t
        total = g_t + to_state
        d_pre = slope_times(total, h_t)
        if masked:
            held_t = held_t_and_u[0]
            d_pre = ops.where(held_t, d_pre, 0)
            # A masked step copied h_{t-1} forward: its gradient too.
            to_state = ops.where(held_t, u * d_pre, total)
        else:
            to_state = u * d_pre
        return (to_state, d_pre, d_u), d_pre

    sequences = (upstream, states) + ((held,) if masked else ())
    zeros = ops.zeros_like(upstream[:, 0])
    (d_h0, d_pre_0, d_u), d_pre = backend_loops.scan_over_time(
        step, (zeros, zeros, zeros), sequences, (u,), reverse=True
    )
    return d_pre, d_u + d_pre_0 * h0, d_h0


# -- parallel ---------------------------------------------------------------


def _parallel_states(z, u, h0, held, activation):
    # The scan runs over axis 0.
    z = _time_major(z)
    held = None if held is None else _time_major(held)
    return _time_major(_parallel_time_major(z, u, h0, held, activation))


def _time_major(x):
    """Swaps the batch and time axes (either way)."""
    return ops.swapaxes(x, 0, 1)


def _parallel_time_major(z, u, h0, held, activation):
    a, c, lo, hi = clip_form(activation)
    gain = ops.broadcast_to(a * u, ops.shape(z))
    offset = a * z + c
    lower = ops.full_like(z, lo)
    upper = ops.full_like(z, hi)
    if held is not None:
        # A masked step is the identity map.
        gain = ops.where(held, gain, 1)
        offset = ops.where(held, offset, 0)
        lower = ops.where(held, lower, -_INF)
        upper = ops.where(held, upper, _INF)
    gain, offset, lower, upper = associative_scan(
        _compose_clip_affine, (gain, offset, lower, upper)
    )
    return ops.minimum(ops.maximum(gain * h0 + offset, lower), upper)


def _compose_clip_affine(first, then):
    """The map `h -> then(first(h))` of two clip-affine maps.

    Each map is `(e, d, L, H)`: `h -> clip(e * h + d, L, H)`, with infinite
    bounds allowed. The bounds of `first` go through `x -> e2 * x + d2`
    (swapped when e2 < 0) and are then clipped into `then`'s bounds.
    """
    e1, d1, lo1, hi1 = first
    e2, d2, lo2, hi2 = then
    # e2 == 0 makes `then` constant; avoid 0 * inf = nan in the bounds.
    constant = e2 == 0
    mapped_lo = ops.where(constant, d2, e2 * lo1 + d2)
    mapped_hi = ops.where(constant, d2, e2 * hi1 + d2)
    increasing = e2 >= 0
    new_lo = ops.where(increasing, mapped_lo, mapped_hi)
    new_hi = ops.where(increasing, mapped_hi, mapped_lo)
    return (
        e2 * e1,
        e2 * d1 + d2,
        ops.minimum(ops.maximum(new_lo, lo2), hi2),
        ops.minimum(ops.maximum(new_hi, lo2), hi2),
    )


def _compose_affine(first, then):
    e1, d1 = first
    e2, d2 = then
    return e2 * e1, e2 * d1 + d2


def _parallel_backward(upstream, states, u, h0, held, slope_times):
    return _backward_through_totals(
        upstream, states, u, h0, held, slope_times, _affine_scan_totals
    )


def _backward_through_totals(upstream, states, u, h0, held, slope_times, solve):
    """The backward pass as one linear recurrence over the whole sequence,

        total_t = upstream_t + gain_{t+1} * total_{t+1},

    solved by `solve(upstream, gain)` (all batch-major), with the per-step
    gains `u * act'(.)` (1 at masked steps) computed up front. Returns
    `(d pre-activations, d u per sample, d h0)`."""
    per_step_u = u if len(u.shape) == 1 else u[:, None, :]
    gain = slope_times(ops.broadcast_to(per_step_u, ops.shape(states)), states)
    if held is not None:
        gain = ops.where(held, gain, 1)
    total = solve(upstream, gain)
    d_pre = slope_times(total, states)
    if held is not None:
        d_pre = ops.where(held, d_pre, 0)
    d_u = d_pre[:, 0] * h0 + ops.sum(d_pre[:, 1:] * states[:, :-1], axis=1)
    return d_pre, d_u, gain[:, 0] * total[:, 0]


def _affine_scan_totals(upstream, gain):
    """`total_t = upstream_t + gain_{t+1} * total_{t+1}` as a reversed
    associative scan: each step composes like `h -> e * h + d`."""
    next_gain = ops.concatenate(
        [gain[:, 1:], ops.zeros_like(gain[:, :1])], axis=1
    )
    _, total = associative_scan(
        _compose_affine,
        (
            ops.flip(_time_major(next_gain), axis=0),
            ops.flip(_time_major(upstream), axis=0),
        ),
    )
    return _time_major(ops.flip(total, axis=0))


def associative_scan(combine, elements):
    """Inclusive scan of `combine` over axis 0 of a tuple of tensors.

    `combine(earlier, later)` must be associative. This is the odd/even
    recursion (work O(T), depth 2 log2 T): combine neighbouring pairs, scan
    the half-length sequence of pairs, then fill in the even positions.
    Written with `keras.ops` so the result keeps the inputs' dtype and
    device; `keras.ops.associative_scan` does not on every engine.
    """
    length = elements[0].shape[0]
    if length is None:
        raise ValueError(
            "The parallel recurrence needs a static number of timesteps; "
            "got a sequence of unknown length. Use "
            "implementation='sequential' for it."
        )
    if length < 2:
        return elements
    pairs = length // 2
    reduced = combine(
        tuple(x[0 : 2 * pairs : 2] for x in elements),
        tuple(x[1 : 2 * pairs : 2] for x in elements),
    )
    odd = associative_scan(combine, reduced)
    # Position 2i (i >= 1) is the prefix up to 2i - 1, then element 2i.
    even_tail = combine(
        tuple(x[: (length - 1) // 2] for x in odd),
        tuple(x[2::2] for x in elements),
    )
    result = []
    for first, e_tail, o in zip(elements, even_tail, odd, strict=True):
        even = ops.concatenate([first[:1], e_tail], axis=0)
        woven = ops.stack([even[:pairs], o], axis=1)
        woven = ops.reshape(woven, (2 * pairs,) + tuple(ops.shape(o)[1:]))
        if length % 2:
            woven = ops.concatenate([woven, even[pairs:]], axis=0)
        result.append(woven)
    return tuple(result)


_FORWARD = {"sequential": _sequential_states, "parallel": _parallel_states}
_BACKWARD = {
    "sequential": _sequential_backward,
    "parallel": _parallel_backward,
}
