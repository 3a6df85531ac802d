"""The recurrence's forward and backward loops, compiled by Numba for CPUs.

A step of the recurrence is a few element-wise operations on a
`(batch, units)` slice, so a loop of framework operators over thousands of
steps costs the operators' dispatch, not their arithmetic. These loops run
the whole sequence in one compiled function instead: one pass over the
inputs, with a row's state kept in a small buffer. Numba compiles them
with the LLVM it ships, on first use (and caches them on disk); nothing
needs a compiler at install time. The binding
(`keras_indrnn.engines.torch`) hands them NumPy views of CPU tensors and
runs them with denormals flushed, which the compiled code follows.

The arrays are batch-major `(batch, time, units)` and C-contiguous; `u` is
`(1, units)`, or `(batch, units)` for a recurrent weight per sample;
`mask` is `None` or boolean `(batch, time)`. The activation is `kind`:
`KIND_CLIP` for `clip(a * x + c, lo, hi)` (bounds may be infinite),
`KIND_TANH` or `KIND_SIGMOID`. Its branch sits outside the loops over
units, which then have none and vectorize. The scalars `a, c, lo, hi`
must have the arrays' dtype, so that float32 stays float32.
"""

import math

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


KIND_CLIP, KIND_TANH, KIND_SIGMOID = 0, 1, 2


@_jit
def forward(z, u, h0, mask, kind, a, c, lo, hi, states):
    """Writes `states[b, t] = act(z[b, t] + u * h)`, with `h` the state
    before step t (`h0[b]` first); a step whose `mask` is False keeps the
    state."""
    batch, steps, units = z.shape
    h = np.empty(units, z.dtype)
    one = z.dtype.type(1)
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
            for j in range(units):
                states[b, t, j] = h[j]


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
    """
    batch, steps, units = upstream.shape
    dtype = upstream.dtype
    zero, one = dtype.type(0), dtype.type(1)
    d_pre = np.empty_like(upstream)
    d_u = np.zeros((batch, units), dtype)
    d_h0 = np.empty((batch, units), dtype)
    adjoint = np.empty(units, dtype)
    gain = np.empty(units, dtype)
    slope = np.empty(units, dtype)
    for b in range(batch):
        row_u = u[b] if u.shape[0] > 1 else u[0]
        for j in range(units):
            adjoint[j] = final_adjoint[b, j]
            gain[j] = one
        for t in range(steps - 1, -1, -1):
            out = states[b, t]
            prev = states[b, t - 1] if t > 0 else h0[b]
            if mask is not None and not mask[b, t]:
                for j in range(units):
                    adjoint[j] = upstream[b, t, j] + gain[j] * adjoint[j]
                    d_pre[b, t, j] = zero
                    gain[j] = one
                continue
            if kind == KIND_CLIP:
                for j in range(units):
                    inside = (out[j] > lo) & (out[j] < hi)
                    slope[j] = a if inside else zero
            elif kind == KIND_TANH:
                for j in range(units):
                    slope[j] = one - out[j] * out[j]
            else:
                for j in range(units):
                    slope[j] = out[j] * (one - out[j])
            for j in range(units):
                adjoint[j] = upstream[b, t, j] + gain[j] * adjoint[j]
                grad = slope[j] * adjoint[j]
                d_pre[b, t, j] = grad
                d_u[b, j] += grad * prev[j]
                gain[j] = row_u[j] * slope[j]
        for j in range(units):
            d_h0[b, j] = gain[j] * adjoint[j]
    return d_pre, d_u, d_h0
