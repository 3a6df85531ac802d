"""The recurrence's forward and backward loops, compiled by Numba for CPUs.

A step of the recurrence is a few element-wise operations on a
`(batch, units)` slice, so a loop of framework operators over thousands of
steps costs the operators' dispatch, not their arithmetic. These loops run
the whole sequence in one compiled function instead: one pass over the
inputs, with a row's state kept in a small buffer. Numba compiles them
with the LLVM it ships, on first use (and caches them on disk); nothing
needs a compiler at install time. The bindings
(`keras_indrnn.engines.torch_numba`, `keras_indrnn.engines.
tensorflow_numba`) hand them NumPy arrays of CPU tensors.

Every `FLUSH_EVERY` steps, carried values below the dtype's smallest
normal number (the state, the adjoint) are set to zero: a value that
decays through `|u| < 1` would otherwise stay in the denormal range,
where CPUs compute many times slower. The engines' other loops flush
every operation through the thread's floating-point mode; these do not
rely on it (an eager TensorFlow call runs them on a thread that does not
flush), and flushing at every step would cost more than a step.

The arrays are batch-major `(batch, time, units)` and C-contiguous; `u` is
`(1, units)`, or `(batch, units)` for a recurrent weight per sample;
`mask` is `None` or boolean `(batch, time)`. The activation is `kind`:
`KIND_CLIP` for `clip(a * x + c, lo, hi)` (bounds may be infinite),
`KIND_TANH` or `KIND_SIGMOID`. In the forward loop its branch sits
outside the loops over units, which then have none and vectorize. The
scalars `a, c, lo, hi` must have the arrays' dtype, so that float32 stays
float32.
"""

import math

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


KIND_CLIP, KIND_TANH, KIND_SIGMOID = 0, 1, 2
# Steps between flushes of the carried values' denormals.
FLUSH_EVERY = 8


@_jit
def forward(z, u, h0, mask, kind, a, c, lo, hi, states):
    """Writes `states[b, t] = act(z[b, t] + u * h)`, with `h` the state
    before step t (`h0[b]` first); a step whose `mask` is False keeps the
    state."""
    batch, steps, units = z.shape
    h = np.empty(units, z.dtype)
    zero, one = z.dtype.type(0), z.dtype.type(1)
    tiny = np.finfo(z.dtype).tiny
    # Element by element: Numba's slice assignment costs several times a
    # step's arithmetic.
    for b in range(batch):
        row_u = u[b] if u.shape[0] > 1 else u[0]
        for j in range(units):
            h[j] = h0[b, j]
        for t in range(steps):
            if mask is not None and not mask[b, t]:
                pass  # the state stays
            elif kind == KIND_CLIP:
                for j in range(units):
                    x = a * (z[b, t, j] + row_u[j] * h[j]) + c
                    h[j] = min(max(x, lo), hi)
            elif kind == KIND_TANH:
                for j in range(units):
                    h[j] = math.tanh(z[b, t, j] + row_u[j] * h[j])
            else:
                for j in range(units):
                    x = z[b, t, j] + row_u[j] * h[j]
                    h[j] = one / (one + math.exp(-x))
            if t % FLUSH_EVERY == FLUSH_EVERY - 1:
                for j in range(units):
                    h[j] = h[j] if abs(h[j]) >= tiny else zero
            for j in range(units):
                states[b, t, j] = h[j]


# Values per buffer of the backward pass's blocks of steps: small enough
# that the block's three buffers stay in a core's L2 cache.
BLOCK_VALUES = 8192


@_jit
def backward(upstream, final_adjoint, states, u, h0, mask, kind, a, lo, hi):
    """`(dL/dpre per step, dL/du per sample, dL/dh0)`.

    From the last step back, with `adjoint_t = dL/dh_t`:
    `adjoint_t = upstream_t + gain_{t+1} * adjoint_{t+1}`,
    `dL/dpre_t = slope_t * adjoint_t` and `gain_t = u * slope_t`; a masked
    step has slope 0 and gain 1 (it passes its adjoint on unchanged). The
    final state's own gradient starts the recurrence (`gain_T = 1`), and
    `dL/du = sum_t dL/dpre_t * h_{t-1}` with `h_{-1} = h0`. The slope comes
    from the step's output: for a clip, `a` strictly between the bounds
    and 0 on them (relu at 0), as the engines' other kernels compute it.

    The steps are taken in blocks from the last: each block's inputs are
    copied into small buffers, and its results out of one, in ascending
    order: the large arrays are then read and written upwards, the
    direction in which CPUs prefetch memory best.
    """
    batch, steps, units = upstream.shape
    dtype = upstream.dtype
    zero, one = dtype.type(0), dtype.type(1)
    tiny = np.finfo(dtype).tiny
    block = max(1, BLOCK_VALUES // units)
    d_pre = np.empty_like(upstream)
    d_u = np.empty((batch, units), dtype)
    d_h0 = np.empty((batch, units), dtype)
    adjoint = np.empty(units, dtype)
    gain = np.empty(units, dtype)
    acc = np.empty(units, dtype)
    up_block = np.empty((block, units), dtype)
    # Row 0: the state before the block; row k + 1: the block's step k.
    h_block = np.empty((block + 1, units), dtype)
    grad_block = np.empty((block, units), dtype)
    for b in range(batch):
        row_u = u[b] if u.shape[0] > 1 else u[0]
        for j in range(units):
            adjoint[j] = final_adjoint[b, j]
            gain[j] = one
            acc[j] = zero
        end = steps
        while end > 0:
            start = max(0, end - block)
            size = end - start
            for k in range(size):
                for j in range(units):
                    up_block[k, j] = upstream[b, start + k, j]
                    h_block[k + 1, j] = states[b, start + k, j]
            for j in range(units):
                h_block[0, j] = states[b, start - 1, j] if start else h0[b, j]
            for k in range(size - 1, -1, -1):
                if k % FLUSH_EVERY == 0:
                    for j in range(units):
                        adjoint[j] = (
                            adjoint[j] if abs(adjoint[j]) >= tiny else zero
                        )
                out, prev, grad = h_block[k + 1], h_block[k], grad_block[k]
                if mask is not None and not mask[b, start + k]:
                    for j in range(units):
                        adjoint[j] = up_block[k, j] + gain[j] * adjoint[j]
                        grad[j] = zero
                        gain[j] = one
                    continue
                for j in range(units):
                    if kind == KIND_CLIP:
                        inside = (out[j] > lo) & (out[j] < hi)
                        slope = a if inside else zero
                    elif kind == KIND_TANH:
                        slope = one - out[j] * out[j]
                    else:
                        slope = out[j] * (one - out[j])
                    adjoint[j] = up_block[k, j] + gain[j] * adjoint[j]
                    grad[j] = slope * adjoint[j]
                    acc[j] += grad[j] * prev[j]
                    gain[j] = row_u[j] * slope
            for k in range(size):
                for j in range(units):
                    d_pre[b, start + k, j] = grad_block[k, j]
            end = start
        for j in range(units):
            d_h0[b, j] = gain[j] * adjoint[j]
            d_u[b, j] = acc[j]
    return d_pre, d_u, d_h0
