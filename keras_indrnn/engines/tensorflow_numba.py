"""The binding of the Numba-compiled loops (`keras_indrnn.engines.
numba_kernels`) for the TensorFlow engine (`keras_indrnn.engines.
tensorflow`).

On CPUs, in the plain graphs (and eager calls) that Keras runs there,
where a gradient is taken (training), the engine's `fused_forward` and
`fused_backward` run these loops through `tf.numpy_function`: the whole
sequence in one compiled call, where XLA's loop pays a fixed cost at every
step. A `numpy_function` cannot be compiled by XLA nor saved in a
SavedModel, so the XLA loop remains the path (`serves()` says so)

- without a gradient tape (inference), where the XLA loop is faster;
- inside functions compiled with XLA (`jit_compile=True`), and on GPUs;
- while `keras.Model.export` or `tf.saved_model.save` traces the model;
- where Numba is missing (silently) or fails to import or compile (one
  `RuntimeWarning` naming the error, then the XLA loop for the rest of
  the process);
- when the environment variable `KERAS_INDRNN_NUMBA` is `0`, read at each
  trace.
"""

import functools
import warnings

import numpy as np
import tensorflow as tf

from keras_indrnn import engines

try:
    # TensorFlow's own modules, not its public API: where a release moves
    # them, the XLA loop serves.
    from tensorflow.python.eager import record
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import control_flow_util
    from tensorflow.python.saved_model import save_context
except ImportError:
    record = None

VARIABLE = "KERAS_INDRNN_NUMBA"
# The first error that Numba raised in this process; from then on the XLA
# loop serves.
_error = None


def serves():
    """Whether the engine runs the Numba loops in the function being traced
    (or the eager call being run) now: where a gradient tape records it.
    A forward pass alone is faster in the XLA loop, which keeps no states
    where only the last is used (inference); forward and backward pass
    together are faster in Numba's loops."""
    if engines.switched_off(VARIABLE) or _error is not None:
        return False
    if record is None or not record.could_possibly_record():
        return False
    if engines.export_format() is not None or save_context.in_save_context():
        return False
    if control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()):
        return False
    if tf.config.list_logical_devices("GPU"):
        return False
    return kernels() is not None


@functools.cache
def kernels():
    """`keras_indrnn.engines.numba_kernels`, or `None` where Numba is not
    installed, or fails to import or compile (which warns). The loops are
    compiled here for every signature that the graphs call them with (the
    recurrence runs in float32 or float64, with or without a mask), since
    a graph that calls them cannot change course once it runs."""
    try:
        from keras_indrnn.engines import numba_kernels

        _compile(numba_kernels)
    except ModuleNotFoundError as error:
        if error.name not in ("numba", "llvmlite"):
            _failed(error)
        return None
    except Exception as error:
        _failed(error)
        return None
    return numba_kernels


def _compile(numba_kernels):
    for dtype in (np.float32, np.float64):
        z = np.zeros((1, 2, 1), dtype)
        h0, u = z[:, 0], z[:, 0]
        a, c, lo, hi = (dtype(1), dtype(0), dtype(0), dtype(1))
        code = numba_kernels.KIND_CLIP
        for mask in (None, np.ones((1, 2), bool)):
            states = np.empty_like(z)
            numba_kernels.forward(z, u, h0, mask, code, a, c, lo, hi, states)
            numba_kernels.backward(z, h0, states, u, h0, mask, code, a, lo, hi)


def _failed(error):
    global _error
    if _error is None:
        warnings.warn(
            "keras_indrnn: the Numba-compiled loops for IndRNN failed "
            f"({type(error).__name__}: {error}); the XLA loop runs instead "
            f"for the rest of this process. Set {VARIABLE}=0 to skip Numba.",
            RuntimeWarning,
            stacklevel=3,
        )
        _error = error


def _scalars(dtype, kind, form):
    """The activation's kind code and `(a, c, lo, hi)` in `dtype`."""
    codes = {
        "clip": kernels().KIND_CLIP,
        "tanh": kernels().KIND_TANH,
        "sigmoid": kernels().KIND_SIGMOID,
    }
    a, c, lo, hi = (1.0, 0.0, -np.inf, np.inf) if form is None else form
    return codes[kind], *(dtype.type(v) for v in (a, c, lo, hi))


def _host_operands(u, mask):
    """`u` as `(1 or batch, units)`, and the mask as boolean
    `(batch, time)` or `None`."""
    u = u if u.ndim == 2 else u[None]
    return np.ascontiguousarray(u), None if mask is None else (
        np.ascontiguousarray(mask[..., 0], dtype=bool)
    )


def forward(z, u, h0, mask, kind, form):
    """The states, from the Numba loop inside a `tf.numpy_function`."""

    def run(z, u, h0, *mask):
        u, mask = _host_operands(u, mask[0] if mask else None)
        code, a, c, lo, hi = _scalars(z.dtype, kind, form)
        states = np.empty_like(z)
        kernels().forward(
            np.ascontiguousarray(z),
            u,
            np.ascontiguousarray(h0),
            mask,
            code,
            a,
            c,
            lo,
            hi,
            states,
        )
        return states

    inputs = [z, u, h0] + ([] if mask is None else [mask])
    states = tf.numpy_function(run, inputs, z.dtype, stateful=False)
    states.set_shape(z.shape)
    return states


def backward(upstream, final_adjoint, states, u, h0, mask, kind, form):
    """`(dL/dpre per step, dL/du per sample, dL/dh0)`, from the Numba loop
    inside a `tf.numpy_function`."""

    def run(upstream, final_adjoint, states, u, h0, *mask):
        u, mask = _host_operands(u, mask[0] if mask else None)
        code, a, _, lo, hi = _scalars(states.dtype, kind, form)
        return kernels().backward(
            np.ascontiguousarray(upstream),
            np.ascontiguousarray(final_adjoint),
            np.ascontiguousarray(states),
            u,
            np.ascontiguousarray(h0),
            mask,
            code,
            a,
            lo,
            hi,
        )

    inputs = [upstream, final_adjoint, states, u, h0]
    inputs += [] if mask is None else [mask]
    dtype = states.dtype
    d_pre, d_u, d_h0 = tf.numpy_function(
        run, inputs, [dtype, dtype, dtype], stateful=False
    )
    d_pre.set_shape(states.shape)
    d_u.set_shape(h0.shape)
    d_h0.set_shape(h0.shape)
    return d_pre, d_u, d_h0
