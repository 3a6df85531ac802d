"""The recurrence as a log-depth associative scan over time.

For activations of the form `clip(a * x + c, lo, hi)` (relu, relu6, linear,
hard_sigmoid, hard_tanh), one step `h -> act(z_t + u * h)` is the
clip-affine map `h -> clip(e * h + d, L, H)` with `e = a * u`,
`d = a * z_t + c`, `L = lo`, `H = hi`, and two such maps compose into one
of the same form. An associative scan over time therefore computes the map
from `h_0` to every `h_t` in `2 log2 T` dependent steps; the backward pass
is the same with affine maps. Everything here runs over axis 0 (time-major)
and is written with `keras.ops`, so that the results keep the inputs' dtype
and device on every engine.
"""

import math

from keras import ops

_INF = math.inf


def clip_affine_states(z, u, h0, mask, form):
    """`h_t = clip(a * (z_t + u * h_{t-1}) + c, lo, hi)` for time-major `z`
    `(time, batch, units)`; a step whose `mask` is False is the identity."""
    a, c, lo, hi = form
    gain = ops.broadcast_to(a * u, ops.shape(z))
    offset = a * z + c
    lower = ops.full_like(z, lo)
    upper = ops.full_like(z, hi)
    if mask is not None:
        gain = ops.where(mask, gain, 1)
        offset = ops.where(mask, offset, 0)
        lower = ops.where(mask, lower, -_INF)
        upper = ops.where(mask, upper, _INF)
    gain, offset, lower, upper = associative_scan(
        compose_clip_affine, (gain, offset, lower, upper)
    )
    return ops.minimum(ops.maximum(gain * h0 + offset, lower), upper)


def affine_adjoints(upstream, gain):
    """`adjoint_t = upstream_t + gain_{t+1} * adjoint_{t+1}` for time-major
    tensors, as a reversed scan of the affine maps `x -> e * x + d`."""
    next_gain = ops.concatenate([gain[1:], ops.zeros_like(gain[:1])], axis=0)
    _, adjoints = associative_scan(
        compose_affine,
        (ops.flip(next_gain, axis=0), ops.flip(upstream, axis=0)),
    )
    return ops.flip(adjoints, axis=0)


def compose_clip_affine(first, then):
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


def compose_affine(first, then):
    """The map `x -> then(first(x))` of two affine maps `(e, d)`."""
    e1, d1 = first
    e2, d2 = then
    return e2 * e1, e2 * d1 + d2


def associative_scan(combine, elements):
    """Inclusive scan of `combine` over axis 0 of a tuple of tensors.

    `combine(earlier, later)` must be associative. This is the odd/even
    recursion (work O(T), depth 2 log2 T): combine neighbouring pairs, scan
    the half-length sequence of pairs, then fill in the even positions.
    `keras.ops.associative_scan` does not keep the inputs' dtype and device
    on every engine.
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
