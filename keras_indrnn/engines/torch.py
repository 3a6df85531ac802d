"""PyTorch: TorchScript time loops, and an autograd function that neither
swallows errors nor keeps inputs that are later changed in place.

A step of the recurrence is a few element-wise kernels on `(batch, units)`
slices, so what a loop over thousands of steps costs is the overhead of
each call. TorchScript runs the loop without the Python interpreter, on
CPU and CUDA tensors, and needs no compiler: the functions below are
compiled to TorchScript's own bytecode on first use. The loops write every
step into its slice of one preallocated `(batch, time, units)` tensor
through views made once (`unbind`).

Both loops run with denormal numbers flushed to zero, as XLA does on the
other engines: an adjoint that decays through many steps of `|u| < 1` passes
through float's denormal range, where x86 CPUs compute tens of times
slower, and the projections' gradients would inherit them.

Exporters that trace the model (ONNX, `torch.jit.trace`, `torch.export`)
do not follow writes through views, so while exporting the recurrence runs
the portable loop of out-of-place operations instead.

The fused loops run, in this order of preference, as the Triton kernels
on CUDA tensors (`keras_indrnn.engines.torch_triton`), as Numba-compiled
loops on CPU tensors (`keras_indrnn.engines.torch_numba`), and as the
TorchScript loops below wherever those do not serve (another device,
`torch.compile`, a missing or failing compiler, or an environment
variable that switches one off).
"""

import contextlib
import math

import torch
from keras.src.backend.torch.core import get_device

from keras_indrnn.engines import generic

portable_time_loop = generic.time_loop
time_loop = generic.time_loop


def exporting():
    return _tracing() or torch.compiler.is_exporting()


def _tracing():
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


def portable_forward(z, u, h0, mask, kind, form):
    """The forward pass for exporters: out-of-place steps, in a TorchScript
    loop where the exporter traces with TorchScript (its ONNX exporter
    turns the loop into an ONNX `Loop` over the actual length), or in
    `None` where Dynamo traces (`torch.export`), which unrolls the generic
    Python loop instead."""
    if not _tracing():
        return None
    a, c, lo, hi = form_floats(form)
    if mask is None:
        return _scripted("portable_forward")(z, u, h0, kind, a, c, lo, hi)
    # Its own function: the ONNX exporter writes an optional tensor that
    # is None as a tensor of no type, which onnxruntime refuses.
    return _scripted("portable_forward_masked")(
        z, u, h0, mask, kind, a, c, lo, hi
    )


def on_accelerator():
    return not str(get_device()).startswith("cpu")


def prefers_parallel():
    # The scan does several times the loop's arithmetic and memory traffic
    # in exchange for log depth: that pays where each step of the loop
    # costs kernel launches (the TorchScript loop on a GPU), not where one
    # launch runs the whole loop (the Triton kernels).
    if not on_accelerator():
        return False
    from keras_indrnn.engines import torch_triton

    return not torch_triton.serves(get_device())


def float64_dtype_note():
    # `keras.backend.result_type` maps float64 to float32 on every engine
    # but TensorFlow, and Keras's PyTorch ops follow it (JAX's follow JAX's
    # own 64-bit mode), so `keras.ops.matmul` of two float64 tensors
    # returns float32 values.
    return (
        "Keras on PyTorch computes float64 matmuls and arithmetic with "
        "Python numbers in float32, so a float64 IndRNN is exact only to "
        "float32 precision there. For float64 results use the TensorFlow "
        "backend, or JAX with JAX_ENABLE_X64=1."
    )


def custom_gradient(fn):
    """`fn(*args) -> (outputs, grad)` as a differentiable function.

    The inputs are saved with `save_for_backward`, so that an input changed
    in place between the forward and the backward pass raises PyTorch's
    error instead of giving a wrong gradient silently.
    """

    def run(*args):
        return _CustomGradient.apply(fn, *args)

    return run


class _CustomGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn, *args):
        outputs, ctx.grad = fn(*args)
        ctx.save_for_backward(*args)
        return outputs

    @staticmethod
    def backward(ctx, *upstreams):
        # Reading saved_tensors checks that no input changed in place.
        ctx.saved_tensors  # noqa: B018
        return (None, *ctx.grad(upstreams))


def fused_serves():
    # Each call picks its kernel (`_bindings`), the TorchScript loops where
    # no compiled one serves.
    return True


def fused_forward(z, u, h0, mask, kind, form):
    for binding in _bindings():
        if binding.takes(z, u, h0, mask):
            states = binding.forward(z, u, h0, mask, kind, form)
            if states is not None:
                return states
    a, c, lo, hi = form_floats(form)
    with denormals_flushed():
        return _scripted("forward")(
            z.contiguous(), u, h0, mask, kind, a, c, lo, hi
        )


def fused_backward(upstream, final_adjoint, states, u, h0, mask, kind, form):
    for binding in _bindings():
        if binding.takes(upstream, final_adjoint, states, u, h0, mask):
            grads = binding.backward(
                upstream, final_adjoint, states, u, h0, mask, kind, form
            )
            if grads is not None:
                return grads
    a, c, lo, hi = form_floats(form)
    with denormals_flushed():
        return _scripted("backward")(
            upstream.contiguous(),
            final_adjoint,
            states,
            u,
            h0,
            mask,
            kind,
            a,
            lo,
            hi,
        )


def _bindings():
    """The modules of the compiled kernels, most preferred first: each
    says which tensors it takes, and returns `None` where it failed."""
    # Imported here: they import this module.
    from keras_indrnn.engines import torch_numba
    from keras_indrnn.engines import torch_triton

    return torch_triton, torch_numba


def check_shape(name, x, *shapes):
    if tuple(x.shape) not in [tuple(shape) for shape in shapes]:
        expected = " or ".join(str(tuple(shape)) for shape in shapes)
        raise ValueError(
            f"Argument `{name}` of the fused IndRNN kernel: expected shape "
            f"{expected}, got {tuple(x.shape)}."
        )


def form_floats(form):
    return (1.0, 0.0, -math.inf, math.inf) if form is None else form


@contextlib.contextmanager
def denormals_flushed():
    """Flushes denormals on this thread, which runs the loops' kernels, and
    restores the setting after."""
    # torch has no getter: a denormal times one is zero when flushing.
    flushing = (torch.tensor([1e-39]) * 1.0).item() == 0.0
    if not flushing:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not flushing:
            torch.set_flush_denormal(False)


def _scripted(name):
    if torch.compiler.is_compiling():
        # Inside `torch.compile`, Dynamo compiles the Python loop itself.
        return _KERNELS[name]
    # Scripted on first use: importing the package compiles nothing.
    if name not in _SCRIPTED:
        _SCRIPTED[name] = torch.jit.script(_KERNELS[name])
    return _SCRIPTED[name]


def _activate_(
    x: torch.Tensor, kind: str, a: float, c: float, lo: float, hi: float
) -> torch.Tensor:
    """The activation, in place."""
    if kind == "tanh":
        return x.tanh_()
    if kind == "sigmoid":
        return x.sigmoid_()
    if a != 1.0 or c != 0.0:
        x.mul_(a).add_(c)
    if lo > -math.inf and hi < math.inf:
        return x.clamp_(lo, hi)
    if lo > -math.inf:
        return x.clamp_(min=lo)
    if hi < math.inf:
        return x.clamp_(max=hi)
    return x


def _forward(
    z: torch.Tensor,
    u: torch.Tensor,
    h0: torch.Tensor,
    mask: torch.Tensor | None,
    kind: str,
    a: float,
    c: float,
    lo: float,
    hi: float,
) -> torch.Tensor:
    """`h_t = act(z_t + u * h_{t-1})` over axis 1; a step whose `mask` is
    False keeps the state."""
    states = torch.empty_like(z)
    outs: list[torch.Tensor] = states.unbind(1)
    h = h0
    if mask is None:
        for t, z_t in enumerate(z.unbind(1)):
            h = torch.addcmul(z_t, u, h, out=outs[t])
            h = _activate_(h, kind, a, c, lo, hi)
    else:
        masks: list[torch.Tensor] = mask.unbind(1)
        for t, z_t in enumerate(z.unbind(1)):
            new = torch.addcmul(z_t, u, h, out=outs[t])
            new = _activate_(new, kind, a, c, lo, hi)
            h = torch.where(masks[t], new, h, out=outs[t])
    return states


def _portable_forward(
    z: torch.Tensor,
    u: torch.Tensor,
    h0: torch.Tensor,
    kind: str,
    a: float,
    c: float,
    lo: float,
    hi: float,
) -> torch.Tensor:
    """`_forward` without writes into views: what exporters can follow."""
    states: list[torch.Tensor] = []
    h = h0
    for t in range(z.shape[1]):
        h = _activate(z[:, t] + u * h, kind, a, c, lo, hi)
        states.append(h)
    return torch.stack(states, dim=1)


def _portable_forward_masked(
    z: torch.Tensor,
    u: torch.Tensor,
    h0: torch.Tensor,
    mask: torch.Tensor,
    kind: str,
    a: float,
    c: float,
    lo: float,
    hi: float,
) -> torch.Tensor:
    """`_portable_forward`; a step whose `mask` is False keeps the state."""
    states: list[torch.Tensor] = []
    h = h0
    for t in range(z.shape[1]):
        new = _activate(z[:, t] + u * h, kind, a, c, lo, hi)
        h = torch.where(mask[:, t], new, h)
        states.append(h)
    return torch.stack(states, dim=1)


def _activate(
    x: torch.Tensor, kind: str, a: float, c: float, lo: float, hi: float
) -> torch.Tensor:
    """The activation, out of place."""
    if kind == "tanh":
        return torch.tanh(x)
    if kind == "sigmoid":
        return torch.sigmoid(x)
    return torch.clamp(a * x + c, lo, hi)


def _slopes_time_major(
    states: torch.Tensor, kind: str, a: float, lo: float, hi: float
) -> torch.Tensor:
    """`act'(pre)` from the outputs, written time-major: the backward loop
    reads it from the last step to the first, and contiguous slices keep
    that fast."""
    out = states.transpose(0, 1)
    slopes = torch.empty(out.shape, dtype=out.dtype, device=out.device)
    if kind == "tanh":
        return torch.mul(out, out, out=slopes).neg_().add_(1.0)
    if kind == "sigmoid":
        return torch.mul(out, 1.0 - out, out=slopes)
    # `a` between the bounds, 0 on them; lo <= out <= hi makes the signs
    # 0 or 1.
    if lo > -math.inf:
        torch.sign(out - lo if lo != 0.0 else out, out=slopes)
        if hi < math.inf:
            slopes.mul_(torch.sign(hi - out))
    elif hi < math.inf:
        torch.sign(hi - out, out=slopes)
    else:
        slopes.fill_(1.0)
    if a != 1.0:
        slopes.mul_(a)
    return slopes


def _backward(
    upstream: torch.Tensor,
    final_adjoint: torch.Tensor,
    states: torch.Tensor,
    u: torch.Tensor,
    h0: torch.Tensor,
    mask: torch.Tensor | None,
    kind: str,
    a: float,
    lo: float,
    hi: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(dL/dpre per step, dL/du per sample, dL/dh0)` from the last step
    back: `dL/dpre_t = slope_t * (upstream_t + u * dL/dpre_{t+1})`, where a
    masked step has slope 0 and passes its adjoint on unchanged, and the
    final state's own gradient joins at the last step."""
    slopes = _slopes_time_major(states, kind, a, lo, hi)
    d_pre = torch.empty_like(upstream)
    outs: list[torch.Tensor] = d_pre.unbind(1)
    ups: list[torch.Tensor] = upstream.unbind(1)
    slope: list[torch.Tensor] = slopes.unbind(0)
    last = len(ups) - 1
    if mask is None:
        d = torch.add(ups[last], final_adjoint, out=outs[last])
        d.mul_(slope[last])
        for t in range(last - 1, -1, -1):
            d = torch.addcmul(ups[t], u, d, out=outs[t]).mul_(slope[t])
        d_h0 = u * d
    else:
        mask_t_major = mask.transpose(0, 1)
        slopes.mul_(mask_t_major)
        masks: list[torch.Tensor] = mask_t_major.unbind(0)
        to_state = final_adjoint
        for t in range(last, -1, -1):
            adjoint = ups[t] + to_state
            d = torch.mul(adjoint, slope[t], out=outs[t])
            to_state = torch.where(masks[t], u * d, adjoint)
        d_h0 = to_state
    # dL/du = sum_t dL/dpre_t * h_{t-1}; the slopes' memory is free again.
    products = slopes.transpose(0, 1)
    torch.mul(d_pre[:, 1:], states[:, :-1], out=products[:, 1:])
    torch.mul(d_pre[:, 0], h0, out=products[:, 0])
    return d_pre, products.sum(1), d_h0


_SCRIPTED = {}
_KERNELS = {
    "forward": _forward,
    "backward": _backward,
    "portable_forward": _portable_forward,
    "portable_forward_masked": _portable_forward_masked,
}


# `keras.distribution` runs on JAX only.
training_program_report = None
