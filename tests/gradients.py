"""Gradients of a Keras computation, with whichever engine Keras runs on."""

import keras
import numpy as np


def gradients(loss_fn, variables):
    """Returns `(loss, [d loss / d v for v in variables])` as NumPy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, [v.value for v in variables])
    elif backend == "torch":
        for v in variables:
            v.value.grad = None
        loss = loss_fn()
        loss.backward()
        grads = [v.value.grad for v in variables]
    elif backend == "jax":
        import jax

        def stateless(values):
            mapping = list(zip(variables, values, strict=True))
            with keras.StatelessScope(state_mapping=mapping):
                return loss_fn()

        loss, grads = jax.value_and_grad(stateless)(
            [v.value for v in variables]
        )
    else:
        raise NotImplementedError(backend)
    return (
        float(keras.ops.convert_to_numpy(loss)),
        [keras.ops.convert_to_numpy(g) for g in grads],
    )


def finite_differences(fn, arrays, eps=1e-6):
    """Central differences of the scalar float64 `fn(*arrays)`."""
    grads = []
    for i, array in enumerate(arrays):
        grad = np.zeros_like(array, dtype=np.float64)
        for index in np.ndindex(array.shape):
            bumped = [np.array(a, np.float64) for a in arrays]
            bumped[i][index] += eps
            up = fn(*bumped)
            bumped[i][index] -= 2 * eps
            down = fn(*bumped)
            grad[index] = (up - down) / (2 * eps)
        grads.append(grad)
    return grads
