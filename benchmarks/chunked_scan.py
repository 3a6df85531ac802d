"""A chunked scan over time: a candidate for the recurrence's loops.

Time is cut into chunks of `chunk` steps. The clip-affine maps of the
steps (`keras_indrnn.parallel_scan`) are composed inside every chunk at
once, in log2(chunk) vectorized levels; only the maps of whole chunks are
applied one after the other, T / chunk sequential steps in the engine's
time loop; then each step's prefix map is applied to its chunk's starting
state in one vectorized operation. The backward pass's adjoint recurrence
is linear once the forward states are known, so it chunks the same way.

`benchmarks/loop_candidates.py` times it against the engines' loops; the
package does not use it (see docs/benchmarks.md for why).
"""

import math

from keras import ops

from keras_indrnn import engines
from keras_indrnn import parallel_scan
from keras_indrnn import recurrence

_INF = math.inf


def clip_affine_states(z, u, h0, mask, form, chunk):
    """`h_t = clip(a * (z_t + u * h_{t-1}) + c, lo, hi)` for batch-major
    `z` `(batch, time, units)`; a step whose `mask` (batch-major, boolean
    `(batch, time, 1)`) is False keeps the state. Returns
    `(states, final_state)`."""
    a, c, lo, hi = form
    per_step_u = u if len(u.shape) == 1 else ops.expand_dims(u, 1)
    maps = (
        ops.broadcast_to(a * per_step_u, ops.shape(z)),
        a * z + c,
        ops.full_like(z, lo),
        ops.full_like(z, hi),
    )
    if mask is not None:
        maps = tuple(
            ops.where(mask, m, identity)
            for m, identity in zip(maps, (1.0, 0.0, -_INF, _INF), strict=True)
        )
    prefixes, totals = _chunk_prefixes(
        maps, (1.0, 0.0, -_INF, _INF), chunk, parallel_scan.compose_clip_affine
    )

    def step(h, gain, offset, lower, upper):
        return ops.minimum(ops.maximum(gain * h + offset, lower), upper), h

    final, starts = engines.current().time_loop(step, h0, totals)
    gain, offset, lower, upper = prefixes
    start = _per_step(starts, chunk)
    states = ops.minimum(ops.maximum(gain * start + offset, lower), upper)
    return _unchunk(states, z.shape[1]), final


def affine_adjoints(upstream, gain, chunk):
    """`adjoint_t = upstream_t + gain_{t+1} * adjoint_{t+1}` for batch-major
    tensors, chunked like `clip_affine_states` in reversed time."""
    next_gain = ops.concatenate(
        [gain[:, 1:], ops.zeros_like(gain[:, :1])], axis=1
    )
    maps = (ops.flip(next_gain, axis=1), ops.flip(upstream, axis=1))
    prefixes, totals = _chunk_prefixes(
        maps, (1.0, 0.0), chunk, parallel_scan.compose_affine
    )

    def step(x, e, d):
        return e * x + d, x

    zeros = ops.zeros_like(upstream[:, 0])
    _, starts = engines.current().time_loop(step, zeros, totals)
    e, d = prefixes
    adjoints = e * _per_step(starts, chunk) + d
    return ops.flip(_unchunk(adjoints, upstream.shape[1]), axis=1)


def _chunk_prefixes(maps, identity, chunk, compose):
    """Each step's map composed from its chunk's start, chunk-major
    `(chunk, chunks, batch, units)`, and the chunks' whole maps,
    batch-major `(batch, chunks, units)` for the engine's time loop."""
    batch, steps, units = maps[0].shape
    chunks = -(-steps // chunk)
    pad = chunks * chunk - steps
    blocks = []
    for m, value in zip(maps, identity, strict=True):
        if pad:
            filler = ops.full((batch, pad, units), value, dtype=m.dtype)
            m = ops.concatenate([m, filler], axis=1)
        m = ops.reshape(m, (batch, chunks, chunk, units))
        blocks.append(ops.transpose(m, (2, 1, 0, 3)))
    prefixes = parallel_scan.associative_scan(compose, tuple(blocks))
    totals = tuple(ops.transpose(p[-1], (1, 0, 2)) for p in prefixes)
    return prefixes, totals


def _per_step(starts, chunk):
    """The chunks' starting states `(batch, chunks, units)`, lined up with
    the chunk-major prefixes."""
    return ops.expand_dims(ops.transpose(starts, (1, 0, 2)), 0)


def _unchunk(values, steps):
    """Chunk-major `(chunk, chunks, batch, units)` back to batch-major
    `(batch, steps, units)`."""
    chunk, chunks, batch, units = values.shape
    values = ops.transpose(values, (2, 1, 0, 3))
    values = ops.reshape(values, (batch, chunks * chunk, units))
    return values[:, :steps]


def patched_recurrence(chunk):
    """`(states, backward)` functions with the signatures of
    `keras_indrnn.recurrence`'s sequential ones, computed by chunks: to
    swap in for `_sequential_states` and `_sequential_backward`."""

    def states(
        engine,
        activation,
        sequences,
        recurrent_kernel,
        initial_state,
        kernel=None,
        bias=None,
        mask=None,
    ):
        if kernel is not None:
            sequences = ops.matmul(sequences, kernel)
        if bias is not None:
            sequences = sequences + bias
        return clip_affine_states(
            sequences,
            recurrent_kernel,
            initial_state,
            mask,
            recurrence.clip_form(activation),
            chunk,
        )

    def backward(
        engine, activation, upstream, final_adjoint, states, u, h0, mask
    ):
        return recurrence._backward_through_adjoints(
            upstream,
            final_adjoint,
            states,
            u,
            h0,
            mask,
            recurrence._slope(activation),
            lambda up, gain: affine_adjoints(up, gain, chunk),
        )

    return states, backward
