"""The one place that knows which engine Keras runs on.

Everything else in the package is written with `keras.ops`. Keras has a
generic `ops.scan`, but per-step overhead is what a recurrence over thousands
of steps pays for, and each engine has a different cheapest loop (measured in
`benchmarks/`): an XLA `fori_loop` on JAX, an XLA-compiled `tf.while_loop`
on TensorFlow, and a plain Python loop over views on PyTorch (whose
`ops.scan` backward grows quadratically with T).

The loops run over axis 1 of batch-major `(batch, time, ...)` tensors, as
Keras layers hold them: reading and writing one time slice in place is
cheap, while transposing a whole sequence to time-major and back cost
about as much as the loop itself (measured on a 2-core CPU at T=784).
"""

import keras
from keras import ops


def scan_over_time(step, initial, sequences, constants=(), reverse=False):
    """Runs `carry, y_t = step(carry, *xs_t, *constants)` over axis 1 of
    batch-major sequences. It is not differentiated through: callers supply
    the gradient.

    Args:
        step: Function of the carry, one time slice `x[:, t]` of each
            sequence and the constants, returning the new carry and this
            step's output. The carry may be a tuple of tensors; the output
            is one tensor shaped like a time slice of the first sequence,
            and of its dtype. The step must read no other tensors, so that
            engines can compile the loop as a closed function.
        initial: The carry before the first step.
        sequences: Tuple of `(batch, time, ...)` tensors of one length.
        constants: Tuple of tensors the step reads at every step.
        reverse: Whether to run from the last time slice to the first.

    Returns:
        `(final_carry, ys)`: the outputs stacked along axis 1, in the order
        of the time axis (also when `reverse` is set).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_loop(step, initial, sequences, constants, reverse)
    if backend == "tensorflow":
        import tensorflow as tf

        # Compile the loop with XLA even where the model runs as a plain
        # graph (Keras's default on CPUs): a graph-mode loop pays ~25 us of
        # executor overhead per step, an XLA loop ~1 us.
        # Inputs cut from any tape: the callers supply the gradient.
        compiled = tf.function(
            lambda initial, sequences, constants: _tf_loop(
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
    length = sequences[0].shape[1]
    times = range(length - 1, -1, -1) if reverse else range(length)
    carry, ys = initial, [None] * length
    for t in times:
        carry, ys[t] = step(carry, *(x[:, t] for x in sequences), *constants)
    return carry, ops.stack(ys, axis=1)


def _jax_loop(step, initial, sequences, constants, reverse):
    import jax
    from jax import lax

    length = sequences[0].shape[1]
    buffer = jax.numpy.zeros_like(sequences[0])

    def body(i, state):
        carry, ys = state
        t = length - 1 - i if reverse else i
        xs = (lax.dynamic_index_in_dim(x, t, 1, False) for x in sequences)
        carry, y_t = step(carry, *xs, *constants)
        return carry, lax.dynamic_update_index_in_dim(ys, y_t, t, 1)

    return lax.fori_loop(0, length, body, (initial, buffer))


def _tf_loop(step, initial, sequences, constants, reverse):
    import tensorflow as tf
    from tensorflow.compiler.tf2xla.python import xla

    length = sequences[0].shape[1]
    if length is None:
        length = tf.shape(sequences[0])[1]
    ys = tf.zeros_like(sequences[0])
    zero = tf.zeros([len(ys.shape) - 2], tf.int32)

    def body(i, carry, ys):
        t = length - 1 - i if reverse else i
        xs = (tf.gather(x, t, axis=1) for x in sequences)
        carry, y_t = step(carry, *xs, *constants)
        start = tf.concat([[0, t], zero], axis=0)
        ys = xla.dynamic_update_slice(ys, tf.expand_dims(y_t, 1), start)
        return i + 1, carry, ys

    _, carry, ys = tf.while_loop(
        lambda i, *_: i < length,
        body,
        (0, initial, ys),
        maximum_iterations=length,
    )
    return carry, ys


def has_fused_loops():
    """Whether `fused_clip_recurrence` and `fused_linear_backward` exist for
    this engine. On PyTorch each `keras.ops` call in a step costs a few
    microseconds of Python around one small kernel; in-place torch calls
    halve the loop's time. The other engines compile their loops."""
    return keras.backend.backend() == "torch"


def fused_clip_recurrence(z, u, h0, held, form):
    """`h_t = clip(a * (z_t + u * h_{t-1}) + c, lo, hi)` over axis 1 of
    batch-major `z`; a masked step (`held` False) keeps the state."""
    import torch

    a, c, lo, hi = form
    lo = None if lo == -float("inf") else lo
    hi = None if hi == float("inf") else hi
    states = torch.empty_like(z)
    # Views made in one call; slicing per step costs Python time.
    outs = states.unbind(1)
    helds = held.unbind(1) if held is not None else None
    h = h0
    for t, z_t in enumerate(z.unbind(1)):
        new = torch.addcmul(z_t, u, h, out=outs[t])
        if a != 1 or c != 0:
            new.mul_(a).add_(c)
        if lo is not None or hi is not None:
            new.clamp_(lo, hi)
        if helds is not None:
            torch.where(helds[t], new, h, out=new)
        h = new
    return states


def fused_linear_backward(upstream, gain):
    """`total_t = upstream_t + gain_{t+1} * total_{t+1}` from the last step
    back, over axis 1 of batch-major tensors: one kernel per step."""
    import torch

    totals = torch.empty_like(upstream)
    outs = totals.unbind(1)
    gains = gain.unbind(1)
    total = None
    for t, upstream_t in reversed(list(enumerate(upstream.unbind(1)))):
        if total is None:
            total = outs[t].copy_(upstream_t)
        else:
            total = torch.addcmul(upstream_t, gains[t + 1], total, out=outs[t])
    return totals
