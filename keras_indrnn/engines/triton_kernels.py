"""Fused Triton kernels for IndRNN's recurrence: the whole time loop of the
forward and of the backward pass in one kernel launch each.

Only the kernels live here; `keras_indrnn.engines.torch_triton` binds them
to the engine interface (allocation, strides, block size, fallback), and
imports this module (and so Triton) on first use only. The equations are
those of `keras_indrnn.recurrence`:

    h_t = act(z_t + u * h_{t-1})            (a masked step keeps h_{t-1})

    adjoint_t = upstream_t + to_state_{t+1}  (to_state_T = final adjoint)
    d_pre_t   = slope_t * adjoint_t          (0 at a masked step)
    to_state_t = u * d_pre_t                 (adjoint_t at a masked step)
    dL/du     = sum_t d_pre_t * h_{t-1}      (h_{-1} = h0), per sample
    dL/dh0    = to_state_0

Layout: one program per (sample, block of `BLOCK_UNITS` units), grid
`(batch, cdiv(units, BLOCK_UNITS))`, each running the loop over time in
registers. The `(batch, time, units)` tensors have unit stride along
units, so every step reads and writes one contiguous run of units per
program. `u` is read through a batch stride that is 0 for a weight per
unit and the row stride for a weight per (sample, unit), as recurrent
dropout makes it; the mask likewise through strides, with a unit stride of
0 for the `(batch, time, 1)` masks of Keras. Values are loaded in their
own dtype (float16, bfloat16 or float32), computed and carried in float32,
and stored in the dtype of the output tensor.

The activation is a compile-time choice: `KIND` is `"clip"`, `"tanh"` or
`"sigmoid"`; for `"clip"` the activation is `clip(A * x + C, LO, HI)`,
with `HAS_LO`/`HAS_HI` False for an infinite bound (whose `LO`/`HI` are
then unused). The slopes come from the outputs alone, as in
`keras_indrnn.recurrence`: tanh' = 1 - h^2, sigmoid' = h (1 - h), and a
clip's slope is `A` strictly between its bounds and 0 on them.
"""

import triton
import triton.language as tl


@triton.jit
def _activate(
    x,
    KIND: tl.constexpr,
    A: tl.constexpr,
    C: tl.constexpr,
    HAS_LO: tl.constexpr,
    LO: tl.constexpr,
    HAS_HI: tl.constexpr,
    HI: tl.constexpr,
):
    if KIND == "tanh":
        # Triton has no portable tanh (libdevice's is GPU-only, and the
        # interpreter lacks it). This form never overflows: e <= 1.
        e = tl.exp(-2.0 * tl.abs(x))
        magnitude = (1.0 - e) / (1.0 + e)
        return tl.where(x < 0.0, -magnitude, magnitude)
    elif KIND == "sigmoid":
        return tl.sigmoid(x)
    else:
        if A != 1.0:
            x = x * A
        if C != 0.0:
            x = x + C
        # Comparisons, not tl.maximum / tl.minimum: those return the
        # operand that is not NaN, and a NaN must go on as NaN, as on every
        # other path, so that a diverging run shows it.
        if HAS_LO:
            x = tl.where(x < LO, LO, x)
        if HAS_HI:
            x = tl.where(x > HI, HI, x)
        return x


@triton.jit
def _slope(
    h,
    KIND: tl.constexpr,
    A: tl.constexpr,
    HAS_LO: tl.constexpr,
    LO: tl.constexpr,
    HAS_HI: tl.constexpr,
    HI: tl.constexpr,
):
    """`act'(pre)` from the output `h = act(pre)`."""
    if KIND == "tanh":
        return 1.0 - h * h
    elif KIND == "sigmoid":
        return h * (1.0 - h)
    else:
        # A clip's output lies within its bounds: on a bound it was cut
        # (relu at 0 included), and its slope is 0 there.
        slope = tl.full(h.shape, A, tl.float32)
        if HAS_LO:
            slope = tl.where(h > LO, slope, 0.0)
        if HAS_HI:
            slope = tl.where(h < HI, slope, 0.0)
        return slope


@triton.jit
def _backward_step(
    h,
    previous,
    to_state,
    d_u,
    u,
    upstream_ptrs,
    mask_ptrs,
    d_pre_ptrs,
    inside,
    KIND: tl.constexpr,
    A: tl.constexpr,
    HAS_LO: tl.constexpr,
    LO: tl.constexpr,
    HAS_HI: tl.constexpr,
    HI: tl.constexpr,
    HAS_MASK: tl.constexpr,
):
    """One step back from step t, whose state is `h` and whose previous
    state is `previous`: stores dL/dpre_t and returns `(to_state, d_u)`,
    the adjoint passed on to step t - 1 and dL/du summed so far."""
    adjoint = tl.load(upstream_ptrs, mask=inside, other=0.0)
    adjoint = adjoint.to(tl.float32) + to_state
    d_pre = _slope(h, KIND, A, HAS_LO, LO, HAS_HI, HI) * adjoint
    if HAS_MASK:
        keep = tl.load(mask_ptrs, mask=inside, other=0) != 0
        # A masked step copied h_{t-1} forward: its adjoint too.
        d_pre = tl.where(keep, d_pre, 0.0)
        to_state = tl.where(keep, u * d_pre, adjoint)
    else:
        to_state = u * d_pre
    tl.store(d_pre_ptrs, d_pre.to(d_pre_ptrs.dtype.element_ty), mask=inside)
    return to_state, d_u + d_pre * previous


# The integer arguments (lengths and strides) are not specialized on: one
# compiled kernel serves every shape. The binding gives each thread at most
# one unit of a block, so the alignments that specialization would prove
# buy no wider loads.
_FORWARD_INTEGERS = (
    "steps",
    "units",
    "z_batch_stride",
    "z_time_stride",
    "u_batch_stride",
    "h0_batch_stride",
    "mask_batch_stride",
    "mask_time_stride",
    "mask_unit_stride",
    "states_batch_stride",
    "states_time_stride",
)
_BACKWARD_INTEGERS = (
    "steps",
    "units",
    "upstream_batch_stride",
    "upstream_time_stride",
    "final_adjoint_batch_stride",
    "states_batch_stride",
    "states_time_stride",
    "u_batch_stride",
    "h0_batch_stride",
    "mask_batch_stride",
    "mask_time_stride",
    "mask_unit_stride",
    "d_pre_batch_stride",
    "d_pre_time_stride",
    "d_u_batch_stride",
    "d_h0_batch_stride",
)


@triton.jit(do_not_specialize=_FORWARD_INTEGERS)
def indrnn_forward_kernel(
    z_ptr,
    u_ptr,
    h0_ptr,
    mask_ptr,
    states_ptr,
    steps,
    units,
    z_batch_stride,
    z_time_stride,
    u_batch_stride,
    h0_batch_stride,
    mask_batch_stride,
    mask_time_stride,
    mask_unit_stride,
    states_batch_stride,
    states_time_stride,
    KIND: tl.constexpr,
    A: tl.constexpr,
    C: tl.constexpr,
    HAS_LO: tl.constexpr,
    LO: tl.constexpr,
    HAS_HI: tl.constexpr,
    HI: tl.constexpr,
    HAS_MASK: tl.constexpr,
    BLOCK_UNITS: tl.constexpr,
    NUM_STAGES: tl.constexpr,
):
    """`states[b, t] = act(z[b, t] + u * states[b, t - 1])`, starting from
    `h0[b]`; where `mask[b, t]` is 0 the state is kept."""
    # 64-bit row offsets: batch * stride may pass 2**31 elements.
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_UNITS + tl.arange(0, BLOCK_UNITS)
    inside = cols < units

    u = tl.load(u_ptr + row * u_batch_stride + cols, mask=inside, other=0.0)
    u = u.to(tl.float32)
    h = tl.load(h0_ptr + row * h0_batch_stride + cols, mask=inside, other=0.0)
    h = h.to(tl.float32)
    z_ptrs = z_ptr + row * z_batch_stride + cols
    states_ptrs = states_ptr + row * states_batch_stride + cols
    if HAS_MASK:
        mask_ptrs = mask_ptr + row * mask_batch_stride + cols * mask_unit_stride
    # The pointers advance by one step each iteration rather than being
    # recomputed from `t`, which keeps the offsets in 64 bits.
    for _ in tl.range(steps, num_stages=NUM_STAGES):
        z = tl.load(z_ptrs, mask=inside, other=0.0).to(tl.float32)
        new = _activate(z + u * h, KIND, A, C, HAS_LO, LO, HAS_HI, HI)
        if HAS_MASK:
            keep = tl.load(mask_ptrs, mask=inside, other=0) != 0
            h = tl.where(keep, new, h)
            mask_ptrs += mask_time_stride
        else:
            h = new
        tl.store(states_ptrs, h.to(states_ptr.dtype.element_ty), mask=inside)
        z_ptrs += z_time_stride
        states_ptrs += states_time_stride


@triton.jit(do_not_specialize=_BACKWARD_INTEGERS)
def indrnn_backward_kernel(
    upstream_ptr,
    final_adjoint_ptr,
    states_ptr,
    u_ptr,
    h0_ptr,
    mask_ptr,
    d_pre_ptr,
    d_u_ptr,
    d_h0_ptr,
    steps,
    units,
    upstream_batch_stride,
    upstream_time_stride,
    final_adjoint_batch_stride,
    states_batch_stride,
    states_time_stride,
    u_batch_stride,
    h0_batch_stride,
    mask_batch_stride,
    mask_time_stride,
    mask_unit_stride,
    d_pre_batch_stride,
    d_pre_time_stride,
    d_u_batch_stride,
    d_h0_batch_stride,
    KIND: tl.constexpr,
    A: tl.constexpr,
    HAS_LO: tl.constexpr,
    LO: tl.constexpr,
    HAS_HI: tl.constexpr,
    HI: tl.constexpr,
    HAS_MASK: tl.constexpr,
    BLOCK_UNITS: tl.constexpr,
    NUM_STAGES: tl.constexpr,
):
    """From the last step back: `d_pre[b, t]` (dL/dpre_t), `d_u[b]`
    (dL/du for sample b alone) and `d_h0[b]`; `final_adjoint[b]` is the
    gradient that reaches the final state directly."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_UNITS + tl.arange(0, BLOCK_UNITS)
    inside = cols < units
    last = (steps - 1).to(tl.int64)

    u = tl.load(u_ptr + row * u_batch_stride + cols, mask=inside, other=0.0)
    u = u.to(tl.float32)
    h0 = tl.load(h0_ptr + row * h0_batch_stride + cols, mask=inside, other=0.0)
    h0 = h0.to(tl.float32)
    to_state = tl.load(
        final_adjoint_ptr + row * final_adjoint_batch_stride + cols,
        mask=inside,
        other=0.0,
    ).to(tl.float32)
    upstream_ptrs = (
        upstream_ptr
        + row * upstream_batch_stride
        + last * upstream_time_stride
        + cols
    )
    states_ptrs = (
        states_ptr
        + row * states_batch_stride
        + last * states_time_stride
        + cols
    )
    d_pre_ptrs = (
        d_pre_ptr + row * d_pre_batch_stride + last * d_pre_time_stride + cols
    )
    if HAS_MASK:
        mask_ptrs = (
            mask_ptr
            + row * mask_batch_stride
            + last * mask_time_stride
            + cols * mask_unit_stride
        )
    else:
        mask_ptrs = mask_ptr
    # h_t, carried over from the step after it: each state is read once.
    h = tl.load(states_ptrs, mask=inside, other=0.0).to(tl.float32)
    d_u = tl.zeros([BLOCK_UNITS], dtype=tl.float32)
    # t = last, ..., 1; then t = 0 on its own, with h_{t-1} = h0.
    for _ in tl.range(steps - 1, num_stages=NUM_STAGES):
        states_ptrs -= states_time_stride
        previous = tl.load(states_ptrs, mask=inside, other=0.0)
        previous = previous.to(tl.float32)
        to_state, d_u = _backward_step(
            h,
            previous,
            to_state,
            d_u,
            u,
            upstream_ptrs,
            mask_ptrs,
            d_pre_ptrs,
            inside,
            KIND,
            A,
            HAS_LO,
            LO,
            HAS_HI,
            HI,
            HAS_MASK,
        )
        h = previous
        upstream_ptrs -= upstream_time_stride
        d_pre_ptrs -= d_pre_time_stride
        if HAS_MASK:
            mask_ptrs -= mask_time_stride
    to_state, d_u = _backward_step(
        h,
        h0,
        to_state,
        d_u,
        u,
        upstream_ptrs,
        mask_ptrs,
        d_pre_ptrs,
        inside,
        KIND,
        A,
        HAS_LO,
        LO,
        HAS_HI,
        HI,
        HAS_MASK,
    )

    tl.store(
        d_u_ptr + row * d_u_batch_stride + cols,
        d_u.to(d_u_ptr.dtype.element_ty),
        mask=inside,
    )
    tl.store(
        d_h0_ptr + row * d_h0_batch_stride + cols,
        to_state.to(d_h0_ptr.dtype.element_ty),
        mask=inside,
    )
