"""The binding of the Numba-compiled loops (`keras_indrnn.engines.
numba_kernels`) for the PyTorch engine (`keras_indrnn.engines.torch`).

On CPU tensors, where Numba is installed, the engine's `fused_forward` and
`fused_backward` run these loops on NumPy views of the tensors' memory: no
copy, and no operator dispatch per step. The kernel module (which imports
Numba and compiles on first use, or loads its compiled code from Numba's
cache) is loaded on the first call that could use it. The TorchScript
loops remain the path

- on other devices, inside `torch.compile` and while exporting;
- for float16 and bfloat16 tensors, which NumPy does not compute in (the
  layer casts them to float32 first);
- where Numba is missing, or fails to import or compile: that failure is
  reported once in a `RuntimeWarning` naming the error (a missing Numba
  silently), and the TorchScript loops serve the rest of the process;
- when the environment variable `KERAS_INDRNN_NUMBA` is `0`, read at each
  call (to compare both paths in one process, say).
"""

import functools
import warnings

import numpy as np
import torch

from keras_indrnn import engines
from keras_indrnn.engines.torch import check_shape
from keras_indrnn.engines.torch import denormals_flushed
from keras_indrnn.engines.torch import exporting
from keras_indrnn.engines.torch import form_floats

VARIABLE = "KERAS_INDRNN_NUMBA"
# The scalars of the compiled loops in the arrays' own dtype, so that
# float32 arithmetic stays in float32.
_SCALARS = {torch.float32: np.float32, torch.float64: np.float64}
# The first error that Numba raised in this process; from then on the
# TorchScript loops serve.
_error = None


def serves(device):
    """Whether the engine runs the Numba loops for tensors on `device` (a
    `torch.device` or its name) in the current context. Imports Numba on
    the first call that reaches that question."""
    if engines.switched_off(VARIABLE) or _error is not None:
        return False
    if torch.compiler.is_compiling() or exporting():
        return False
    if str(device).split(":")[0] != "cpu":
        return False
    return kernels() is not None


@functools.cache
def kernels():
    """`keras_indrnn.engines.numba_kernels`, or `None` where Numba is not
    installed, or fails to import (which warns)."""
    try:
        from keras_indrnn.engines import numba_kernels
    except ModuleNotFoundError as error:
        if error.name not in ("numba", "llvmlite"):
            _failed(error)
        return None
    except Exception as error:
        _failed(error)
        return None
    return numba_kernels


def _failed(error):
    global _error
    if _error is None:
        warnings.warn(
            "keras_indrnn: the Numba-compiled loops for IndRNN failed "
            f"({type(error).__name__}: {error}); the TorchScript loops run "
            f"instead for the rest of this process. Set {VARIABLE}=0 to "
            "skip Numba.",
            RuntimeWarning,
            stacklevel=3,
        )
        _error = error


def takes(first, *others):
    """Whether the Numba loops take these tensors (`None` for an absent
    mask): all on the CPU, in one dtype that NumPy computes in."""
    if first.dim() != 3 or first.dtype not in _SCALARS:
        return False
    for tensor in others:
        if tensor is None:
            continue
        if tensor.device != first.device:
            return False
        if tensor.dtype not in (first.dtype, torch.bool):
            return False
    return serves(first.device)


def _array(x):
    """A C-contiguous NumPy view of `x` (a copy only where `x` is not
    contiguous)."""
    return x.detach().contiguous().numpy()


def _operands(z, u, h0, mask, kind, form):
    """`u` as `(1 or batch, units)`, `h0`, the mask as boolean
    `(batch, time)`, the activation's kind code and its scalars in the
    arrays' dtype. The shapes are checked against `z`'s
    `(batch, time, units)`: the compiled loops read any index unchecked."""
    batch, steps, units = z.shape
    check_shape("u", u, (units,), (batch, units))
    check_shape("h0", h0, (batch, units))
    if mask is not None:
        check_shape("mask", mask, (batch, steps, 1))
    u = _array(u if u.dim() == 2 else u[None])
    if mask is not None:
        mask = _array(mask[..., 0])
        mask = mask if mask.dtype == np.bool_ else mask != 0
    scalar = _SCALARS[z.dtype]
    codes = {
        "clip": kernels().KIND_CLIP,
        "tanh": kernels().KIND_TANH,
        "sigmoid": kernels().KIND_SIGMOID,
    }
    a, c, lo, hi = (scalar(v) for v in form_floats(form))
    return u, _array(h0), mask, codes[kind], a, c, lo, hi


def forward(z, u, h0, mask, kind, form):
    """The states from the Numba loop, or `None` where it failed."""
    u, h0, mask, code, a, c, lo, hi = _operands(z, u, h0, mask, kind, form)
    states = torch.empty(z.shape, dtype=z.dtype)
    try:
        with denormals_flushed():
            kernels().forward(
                _array(z), u, h0, mask, code, a, c, lo, hi, states.numpy()
            )
    except Exception as error:
        _failed(error)
        return None
    return states


def backward(upstream, final_adjoint, states, u, h0, mask, kind, form):
    """`(d_pre, d_u per sample, d_h0)` from the Numba loop, or `None`
    where it failed."""
    u, h0, mask, code, a, _, lo, hi = _operands(states, u, h0, mask, kind, form)
    check_shape("upstream", upstream, states.shape)
    check_shape("final_adjoint", final_adjoint, states[:, 0].shape)
    try:
        with denormals_flushed():
            grads = kernels().backward(
                _array(upstream),
                _array(final_adjoint),
                _array(states),
                u,
                h0,
                mask,
                code,
                a,
                lo,
                hi,
            )
    except Exception as error:
        _failed(error)
        return None
    return tuple(torch.from_numpy(g) for g in grads)
