"""The one place that knows which engine Keras runs on.

Everything else in the package is written with `keras.ops`. Keras has a
generic `ops.scan`, but per-step overhead is what a recurrence over thousands
of steps pays for, and each engine has a different cheapest loop (measured in
`benchmarks/`): `lax.scan` on JAX, a plain Python loop over `unbind` on
PyTorch (whose `ops.scan` backward grows quadratically with T), and a
`tf.while_loop` over `TensorArray`s on TensorFlow.
"""

import keras
from keras import ops


def scan_over_time(step, initial, sequences, constants=(), reverse=False):
    """Runs `carry, y_t = step(carry, *xs_t, *constants)` over the leading
    (time) axis. Only where `differentiates_loops_well()` is it
    differentiated through; elsewhere the callers supply the gradient.

    Args:
        step: Function of the carry, one time slice of each sequence and the
            constants, returning the new carry and this step's output (one
            tensor each). It must read no other tensors, so that engines can
            compile the loop as a closed function.
        initial: The carry before the first step.
        sequences: Tuple of time-major tensors, all of the same length.
        constants: Tuple of tensors the step reads at every step.
        reverse: Whether to run from the last time slice to the first.

    Returns:
        `(final_carry, ys)`: the outputs stacked along a new leading axis, in
        the order of the time axis (also when `reverse` is set).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.lax.scan(
            lambda carry, xs: step(carry, *xs, *constants),
            initial,
            sequences,
            reverse=reverse,
        )
    if backend == "tensorflow":
        import tensorflow as tf

        # Compile the loop with XLA even where the model runs as a plain
        # graph (Keras's default on CPUs): a graph-mode loop pays ~25 us of
        # executor overhead per step, an XLA loop ~1 us.
        # Inputs cut from any tape: a recorded XLA call would have to return
        # its loop's TensorLists, which cannot leave XLA.
        compiled = tf.function(
            lambda initial, sequences, constants: _tf_while_loop(
                step, initial, sequences, constants, reverse
            ),
            jit_compile=True,
            autograph=False,
        )
        return compiled(
            *tf.nest.map_structure(
                tf.stop_gradient, (initial, tuple(sequences), tuple(constants))
            )
        )
    return _python_loop(step, initial, sequences, constants, reverse)


def _python_loop(step, initial, sequences, constants, reverse):
    if keras.backend.backend() == "torch":
        slices = list(zip(*(x.unbind(0) for x in sequences), strict=True))
    else:
        length = sequences[0].shape[0]
        slices = [tuple(x[t] for x in sequences) for t in range(length)]
    if reverse:
        slices = slices[::-1]
    carry, ys = initial, []
    for xs in slices:
        carry, y = step(carry, *xs, *constants)
        ys.append(y)
    if reverse:
        ys = ys[::-1]
    return carry, ops.stack(ys, axis=0)


def _tf_while_loop(step, initial, sequences, constants, reverse):
    # tf.scan would stack the carry at every step too; a while loop over
    # TensorArrays keeps only the outputs.
    import tensorflow as tf

    length = sequences[0].shape[0]
    if length is None:
        length = tf.shape(sequences[0])[0]
    inputs = [
        tf.TensorArray(x.dtype, size=length).unstack(x) for x in sequences
    ]
    outputs = tf.TensorArray(initial.dtype, size=length)

    def body(i, carry, outputs):
        t = length - 1 - i if reverse else i
        carry, y = step(carry, *(ta.read(t) for ta in inputs), *constants)
        return i + 1, carry, outputs.write(t, y)

    _, carry, outputs = tf.while_loop(
        lambda i, *_: i < length,
        body,
        (0, initial, outputs),
        maximum_iterations=length,
    )
    return carry, outputs.stack()


def differentiates_loops_well():
    """Whether autodiff through `scan_over_time` beats the package's own
    backward loop: on JAX, XLA runs the two `lax.scan`s of autodiff faster
    than a custom gradient's (measured in `benchmarks/`)."""
    return keras.backend.backend() == "jax"


def has_fused_loops():
    """Whether `fused_clip_recurrence` and `fused_linear_backward` exist for
    this engine. On PyTorch each `keras.ops` call in a step costs a few
    microseconds of Python around one small kernel; in-place torch calls
    halve the loop's time. The other engines compile their loops."""
    return keras.backend.backend() == "torch"


def fused_clip_recurrence(z, u, h0, held, form):
    """`h_t = clip(a * (z_t + u * h_{t-1}) + c, lo, hi)` over time (all
    time-major); a masked step (`held` False) keeps the state."""
    import torch

    a, c, lo, hi = form
    lo = None if lo == -float("inf") else lo
    hi = None if hi == float("inf") else hi
    states = torch.empty_like(z)
    h = h0
    for t in range(z.shape[0]):
        new = torch.addcmul(z[t], u, h, out=states[t])
        if a != 1 or c != 0:
            new.mul_(a).add_(c)
        if lo is not None or hi is not None:
            new.clamp_(lo, hi)
        if held is not None:
            torch.where(held[t], new, h, out=new)
        h = new
    return states


def fused_linear_backward(upstream, slope, gain, carry_through=None):
    """`total_t = upstream_t + carry_{t+1}`, `d_t = slope_t * total_t`,
    `carry_t = gain_t * d_t (+ carry_through_t * total_t)` from the last step
    back; returns `(d, carry_0)`. `gain` is per step or constant."""
    import torch

    d = torch.empty_like(upstream)
    carry = torch.zeros_like(upstream[0])
    for t in range(upstream.shape[0] - 1, -1, -1):
        total = upstream[t] + carry
        torch.mul(total, slope[t], out=d[t])
        carry = gain[t] * d[t] if gain.ndim == upstream.ndim else gain * d[t]
        if carry_through is not None:
            carry.addcmul_(total, carry_through[t])
    return d, carry
