"""The engine boundary: the only code that knows which engine Keras runs on.

Everything outside this package is written with `keras.ops`. Each engine
module here (`jax`, `tensorflow`, `torch`, and `generic` for any other Keras
backend) provides the same names:

- `time_loop(step, initial, sequences, constants=(), reverse=False)`:
  runs `carry, y_t = step(carry, *xs_t, *constants)` over axis 1 of
  batch-major `(batch, time, ...)` sequences and returns
  `(final_carry, ys)`, with the `ys` stacked along axis 1 in time order
  (also when `reverse` is set). Each `y_t` has the shape and dtype of the
  carry, or of its first tensor where the carry is a tuple. The step reads
  no tensor but its arguments, so that an engine can compile the loop as a
  closed function.
  The loop is not differentiated through: callers supply the gradient.
- `portable_time_loop(...)`: the same, built only from operations that
  every export format of the engine can carry (used while `exporting()`).
- `portable_forward(z, u, h0, mask, kind, form)`: while `exporting()`,
  the whole forward recurrence as `fused_forward` takes it, built for the
  exporter at work, or `None` where `portable_time_loop` serves.
- `exporting()`: whether the current call is being traced into an export
  artifact that cannot carry the engine's fast loops (the engine knows
  which formats those are; `export_format()` says which one
  `keras.Model.export` is writing).
- `on_accelerator()`: whether Keras computes on a GPU or TPU.
- `prefers_parallel()`: whether `implementation="auto"` picks the
  parallel scan (for activations that have it): where every step of a
  loop costs kernel launches, on accelerators, unless the engine runs the
  whole loop in one fused kernel on the device.
- `custom_gradient(fn)`: like `keras.ops.custom_gradient`, with `fn(*args)`
  returning `(outputs, grad)`, `outputs` a tuple of tensors, and
  `grad(upstreams)` taking the tuple of their gradients (zeros for an
  unused output) and returning one gradient per argument. Errors raised
  inside `fn` propagate.
- `fused_forward`: `None`, or a kernel
  `fused_forward(z, u, h0, mask, kind, form) -> states` running the whole
  forward recurrence, with `mask` `None` or boolean `(batch, time, 1)`,
  `kind` one of `"clip"`, `"tanh"`, `"sigmoid"`, and for `"clip"` the
  activation `clip(a * x + c, lo, hi)` given as `form = (a, c, lo, hi)`.
- `fused_serves()`: where `fused_forward` is not `None`, whether the
  fused kernels serve the call being traced or run now (else the time
  loop runs).
- `fused_backward`: `None`, or a kernel
  `fused_backward(upstream, final_adjoint, states, u, h0, mask, kind, form)`
  returning
  `(dL/dpre per step, dL/du per sample, dL/dh0)` (see
  `keras_indrnn.recurrence` for the equations).
- `float64_dtype_note()`: `None` where float64 computes in float64, or the
  sentence that tells the user what to set.
- `training_program_report`: `None`, or `training_program_report(model, x)`
  describing the compiled gradient program of `model` under the current
  `keras.distribution` (see `keras_indrnn.distribution.program_report`).

An engine without a fused kernel sets it to `None`, and the generic
`keras.ops` code in `keras_indrnn.recurrence` runs instead.
"""

import contextlib
import contextvars
import functools
import importlib
import os

import keras

_KNOWN = ("jax", "tensorflow", "torch")
_EXPORT_FORMAT = contextvars.ContextVar("export_format", default=None)


def current():
    """The engine module of the backend Keras runs on."""
    backend = keras.backend.backend()
    name = backend if backend in _KNOWN else "generic"
    return importlib.import_module(f"keras_indrnn.engines.{name}")


def switched_off(variable):
    """Whether the environment variable `variable` switches a compiled
    kernel off: `0` does, unset, empty or `1` does not; any other value is
    refused rather than read as either."""
    value = os.environ.get(variable, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(
            f"The environment variable {variable} must be 0 (off) or 1 "
            f"(on, as when it is unset); received {value!r}."
        )
    return value == "0"


def export_format():
    """The format `keras.Model.export` is writing (`"onnx"`, `"litert"`,
    ...), or `None` outside an export."""
    return _EXPORT_FORMAT.get()


@contextlib.contextmanager
def exporting_as(format):
    """Marks the traces made inside as traces for an export to `format`."""
    token = _EXPORT_FORMAT.set(format)
    try:
        yield
    finally:
        _EXPORT_FORMAT.reset(token)


def watch_model_export():
    """Wraps `keras.Model.export` so that the engines know which format a
    trace is for: the model need not be changed before exporting it. Runs
    once, on importing `keras_indrnn`."""
    export = keras.Model.export
    if getattr(export, "_keras_indrnn_watched", False):
        return

    @functools.wraps(export)
    def watched(self, filepath, format="tf_saved_model", *args, **kwargs):
        with exporting_as(format):
            return export(self, filepath, format, *args, **kwargs)

    watched._keras_indrnn_watched = True
    keras.Model.export = watched
