"""The one place that knows which engine Keras runs on.

Everything else in the package is written with `keras.ops`. Keras has a
generic `ops.scan`, but per-step overhead is what a recurrence over thousands
of steps pays for, and each engine has a different cheapest loop (measured in
`benchmarks/`): `lax.scan` on JAX, a plain Python loop over `unbind` on
PyTorch (whose `ops.scan` backward grows quadratically with T), and `tf.scan`
on TensorFlow.
"""

import keras
from keras import ops


def scan_over_time(step, initial, sequences, reverse=False):
    """Runs `carry = step(carry, *xs_t)` over the leading (time) axis.

    Args:
        step: Function of the carry and one time slice of each sequence,
            returning the new carry (a single tensor).
        initial: The carry before the first step.
        sequences: Tuple of time-major tensors, all of the same length.
        reverse: Whether to run from the last time slice to the first.

    Returns:
        The carry after every step, stacked along a new leading axis, in the
        order of the time axis (also when `reverse` is set).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def body(carry, xs):
            carry = step(carry, *xs)
            return carry, carry

        _, stacked = jax.lax.scan(body, initial, sequences, reverse=reverse)
        return stacked
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.scan(
            lambda carry, xs: step(carry, *xs),
            tuple(sequences),
            initializer=initial,
            reverse=reverse,
        )
    return _python_loop(step, initial, sequences, reverse)


def _python_loop(step, initial, sequences, reverse):
    if keras.backend.backend() == "torch":
        slices = list(zip(*(x.unbind(0) for x in sequences), strict=True))
    else:
        length = sequences[0].shape[0]
        slices = [tuple(x[t] for x in sequences) for t in range(length)]
    if reverse:
        slices = slices[::-1]
    carry, stacked = initial, []
    for xs in slices:
        carry = step(carry, *xs)
        stacked.append(carry)
    if reverse:
        stacked = stacked[::-1]
    return ops.stack(stacked, axis=0)


def unrolled_loop(step, initial, sequences, reverse=False):
    """The same contract as `scan_over_time`, always as a Python loop."""
    return _python_loop(step, initial, sequences, reverse)
