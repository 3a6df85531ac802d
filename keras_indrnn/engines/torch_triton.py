"""The binding of the fused Triton kernels (`keras_indrnn.engines.
triton_kernels`) for the PyTorch engine (`keras_indrnn.engines.torch`).

On CUDA tensors, where Triton is installed, the engine's `fused_forward`
and `fused_backward` run these kernels: one launch for the whole loop,
each state kept in a register from one step to the next. The kernel
module (which imports Triton) is loaded on the first call that could use
it, never by importing this package. The engine's other loops remain the
path

- on CPU tensors, where Triton compiles nothing (except under Triton's
  interpreter, `TRITON_INTERPRET=1`, which the tests use to run the
  kernels on CPU tensors);
- inside `torch.compile` and while exporting;
- for float64 tensors (the kernels compute in float32);
- where Triton is missing, or fails to import, compile or launch: the
  first failure is reported in a `RuntimeWarning` naming the error, and
  the other loops serve the rest of the process;
- when the environment variable `KERAS_INDRNN_TRITON` is `0`, read at
  each call (to compare both paths in one process, say).
"""

import contextlib
import functools
import math
import os
import warnings

import torch

from keras_indrnn import engines
from keras_indrnn.engines.torch import check_shape
from keras_indrnn.engines.torch import exporting
from keras_indrnn.engines.torch import form_floats

VARIABLE = "KERAS_INDRNN_TRITON"
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Units per program, at most: a warp's 32 lanes take 32 units, and a
# program of up to 4 warps reads each step's units of a sample in one
# contiguous run. Fewer units per program spread a small batch over more
# of the GPU's multiprocessors.
MAX_BLOCK_UNITS = 128
# The loads of the next NUM_STAGES - 1 steps are in flight while a step
# computes: they do not depend on the state.
_NUM_STAGES = 3
# The first error that Triton raised in this process; from then on the
# TorchScript loops serve.
_error = None


def serves(device):
    """Whether `fused_forward` and `fused_backward` run the Triton kernels
    for tensors on `device` (a `torch.device` or its name) in the current
    context. Imports Triton on the first call that reaches that question,
    then answers from a cache."""
    if engines.switched_off(VARIABLE):
        return False
    if _error is not None:
        return False
    if torch.compiler.is_compiling() or exporting():
        return False
    device_type = str(device).split(":")[0]
    if device_type == "cpu":
        # Only Triton's interpreter runs kernels on CPU tensors. The
        # variable is read first, so that CPU users never import Triton.
        interpret = os.environ.get("TRITON_INTERPRET", "").strip().lower()
        if interpret not in ("1", "true", "on"):
            return False
    elif device_type != "cuda":
        return False
    module = kernels()
    if module is None:
        return False
    return device_type == "cuda" or _interpreted(module)


@functools.cache
def kernels():
    """`keras_indrnn.engines.triton_kernels`, or `None` where Triton is not
    installed, or fails to import (which warns)."""
    try:
        from keras_indrnn.engines import triton_kernels
    except ModuleNotFoundError as error:
        if error.name != "triton":
            _failed(error)
        return None
    except Exception as error:
        _failed(error)
        return None
    return triton_kernels


def _interpreted(module):
    """Whether Triton's interpreter runs the kernels: `@triton.jit` decides
    on defining them, from `TRITON_INTERPRET`."""
    import triton

    return not isinstance(
        module.indrnn_forward_kernel, triton.runtime.JITFunction
    )


def _failed(error):
    global _error
    if _error is None:
        warnings.warn(
            "keras_indrnn: the fused Triton kernels for IndRNN failed "
            f"({type(error).__name__}: {error}); the engine's other loops "
            f"run instead for the rest of this process. Set {VARIABLE}=0 "
            "to skip Triton.",
            RuntimeWarning,
            stacklevel=3,
        )
        _error = error


def takes(first, *others):
    """Whether the Triton kernels take these tensors (`None` for an absent
    mask): all on one device that they serve, in dtypes that they load."""
    if first.dim() != 3 or first.numel() == 0:
        return False
    if first.dtype not in _DTYPES:
        return False
    for tensor in others:
        if tensor is None:
            continue
        if tensor.device != first.device:
            return False
        if tensor.dtype not in _DTYPES and tensor.dtype != torch.bool:
            return False
    return serves(first.device)


def _launch(kernel, grid, device, *args, **options):
    """Runs `kernel` on `device`'s GPU (whichever is current); returns
    whether it ran, after reporting the error where it did not."""
    context = (
        torch.cuda.device(device)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    try:
        with context:
            kernel[grid](*args, **options)
    except Exception as error:
        _failed(error)
        return False
    return True


def _with_unit_stride(x):
    # The kernels read units contiguously; any batch and time strides do,
    # the zero strides of an expanded tensor included.
    return x if x.stride(-1) == 1 else x.contiguous()


def _operands(z, u, h0, mask):
    """`u`, `h0` and `mask` checked against `z` of shape
    `(batch, time, units)`, and broadcast (with zero strides, copying
    nothing) to `(batch, units)` and `(batch, time, units)`: the kernels
    read any element that the shapes admit, so they must be checked."""
    batch, steps, units = z.shape
    check_shape("u", u, (units,), (batch, units))
    check_shape("h0", h0, (batch, units))
    u = _with_unit_stride(u.expand(batch, units))
    h0 = _with_unit_stride(h0)
    if mask is not None:
        check_shape("mask", mask, (batch, steps, 1), (batch, steps, units))
        if mask.dtype != torch.bool:
            mask = mask != 0
        # As bytes, which every Triton version loads alike.
        mask = mask.view(torch.uint8).expand(batch, steps, units)
    return u, h0, mask


def _mask_strides(mask):
    return (0, 0, 0) if mask is None else mask.stride()


def _activation_constants(kind, form):
    if kind not in ("clip", "tanh", "sigmoid"):
        raise ValueError(
            "Argument `kind` of the fused IndRNN kernel: expected 'clip', "
            f"'tanh' or 'sigmoid', got {kind!r}."
        )
    a, c, lo, hi = (float(v) for v in form_floats(form))
    has_lo, has_hi = lo > -math.inf, hi < math.inf
    constants = {"KIND": kind, "A": a, "C": c}
    # An infinite bound is left out of the compiled code: its flag is off,
    # and its value a finite placeholder.
    constants.update(
        HAS_LO=has_lo,
        LO=lo if has_lo else 0.0,
        HAS_HI=has_hi,
        HI=hi if has_hi else 0.0,
    )
    return constants


def _launch_options(batch, units, mask):
    block = min(1 << max(units - 1, 0).bit_length(), MAX_BLOCK_UNITS)
    grid = (batch, -(-units // block))
    return grid, {
        "HAS_MASK": mask is not None,
        "BLOCK_UNITS": block,
        "NUM_STAGES": _NUM_STAGES,
        "num_warps": max(1, min(4, block // 32)),
        # Explicit, as Triton asks: a multiply-add rounds once.
        "enable_fp_fusion": True,
    }


def forward(z, u, h0, mask, kind, form):
    """The states from the Triton kernel, or `None` where it failed."""
    constants = _activation_constants(kind, form)
    z = _with_unit_stride(z)
    u, h0, mask = _operands(z, u, h0, mask)
    batch, steps, units = z.shape
    states = torch.empty(z.shape, dtype=z.dtype, device=z.device)
    grid, options = _launch_options(batch, units, mask)
    launched = _launch(
        kernels().indrnn_forward_kernel,
        grid,
        z.device,
        z,
        u,
        h0,
        mask,
        states,
        steps,
        units,
        z.stride(0),
        z.stride(1),
        u.stride(0),
        h0.stride(0),
        *_mask_strides(mask),
        states.stride(0),
        states.stride(1),
        **constants,
        **options,
    )
    return states if launched else None


def backward(upstream, final_adjoint, states, u, h0, mask, kind, form):
    """`(d_pre, d_u, d_h0)` from the Triton kernel, in the dtypes of
    `upstream`, `u` and `h0`, or `None` where it failed."""
    constants = _activation_constants(kind, form)
    constants.pop("C")
    batch, steps, units = states.shape
    check_shape("upstream", upstream, states.shape)
    check_shape("final_adjoint", final_adjoint, (batch, units))
    upstream = _with_unit_stride(upstream)
    final_adjoint = _with_unit_stride(final_adjoint)
    states = _with_unit_stride(states)
    u_dtype, h0_dtype = u.dtype, h0.dtype
    u, h0, mask = _operands(states, u, h0, mask)
    device = states.device
    d_pre = torch.empty(states.shape, dtype=upstream.dtype, device=device)
    d_u = torch.empty((batch, units), dtype=u_dtype, device=device)
    d_h0 = torch.empty((batch, units), dtype=h0_dtype, device=device)
    grid, options = _launch_options(batch, units, mask)
    launched = _launch(
        kernels().indrnn_backward_kernel,
        grid,
        device,
        upstream,
        final_adjoint,
        states,
        u,
        h0,
        mask,
        d_pre,
        d_u,
        d_h0,
        steps,
        units,
        upstream.stride(0),
        upstream.stride(1),
        final_adjoint.stride(0),
        states.stride(0),
        states.stride(1),
        u.stride(0),
        h0.stride(0),
        *_mask_strides(mask),
        d_pre.stride(0),
        d_pre.stride(1),
        d_u.stride(0),
        d_h0.stride(0),
        **constants,
        **options,
    )
    return (d_pre, d_u, d_h0) if launched else None
