"""TensorFlow: time loops compiled with XLA, also inside plain graphs, and
on CPUs the loops compiled by Numba (`keras_indrnn.engines.
tensorflow_numba`) where those serve.

Keras runs models as plain TensorFlow graphs on CPUs, where a graph-mode
`tf.while_loop` pays executor overhead for every one of its operations at
every step. The loop is therefore one XLA-compiled function, traced once
per step function, direction, and shapes and dtypes of its arguments. The
step functions come from a cache in `keras_indrnn.recurrence`, so the same
step is the same Python object and eager calls reuse the compiled loop.
"""

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from keras_indrnn import engines
from keras_indrnn.engines import tensorflow_numba

fused_serves = tensorflow_numba.serves
fused_forward = tensorflow_numba.forward
fused_backward = tensorflow_numba.backward


def portable_forward(z, u, h0, mask, kind, form):
    return None


def custom_gradient(fn):
    def with_tf_signature(*args):
        outputs, grad = fn(*args)

        def tf_grad(*upstreams):
            return grad(
                tuple(
                    tf.zeros_like(o) if g is None else g
                    for o, g in zip(outputs, upstreams, strict=True)
                )
            )

        return outputs, tf_grad

    return tf.custom_gradient(with_tf_signature)


def time_loop(step, initial, sequences, constants=(), reverse=False):
    # The inputs are cut from any tape: callers supply the gradient.
    initial, sequences, constants = tf.nest.map_structure(
        tf.stop_gradient, (initial, tuple(sequences), tuple(constants))
    )
    return _compiled_loop(step, reverse, initial, sequences, constants)


@tf.function(jit_compile=True, autograph=False)
def _compiled_loop(step, reverse, initial, sequences, constants):
    return _xla_loop(step, initial, sequences, constants, reverse)


def _xla_loop(step, initial, sequences, constants, reverse):
    length = sequences[0].shape[1]
    if length is None:
        length = tf.shape(sequences[0])[1]
    like = tf.nest.flatten(initial)[0]
    shape = tf.concat([tf.shape(like)[:1], [length], tf.shape(like)[1:]], 0)
    ys = tf.zeros(shape, like.dtype)
    zero = tf.zeros([len(like.shape) - 1], tf.int32)

    def body(i, carry, ys):
        t = length - 1 - i if reverse else i
        start = tf.concat([[0, t], zero], axis=0)
        xs = (_read_step(x, t) for x in sequences)
        carry, y_t = step(carry, *xs, *constants)
        _keep_shapes(carry, initial)
        ys = xla.dynamic_update_slice(ys, tf.expand_dims(y_t, 1), start)
        return i + 1, carry, ys

    _, carry, ys = tf.while_loop(
        lambda i, *_: i < length,
        body,
        (0, initial, ys),
        maximum_iterations=length,
    )
    return carry, ys


def _read_step(x, t):
    """`x[:, t]` as a slice, which XLA compiles to a dynamic slice: its
    CPU code for a gather costs several times a step's arithmetic. (A
    `tf.slice`, not XLA's own op, so that the TFLite converter can take
    the loop.)"""
    shape = tf.shape(x)
    start = tf.concat([[0, t], tf.zeros([len(x.shape) - 2], tf.int32)], 0)
    size = tf.concat([shape[:1], [1], shape[2:]], 0)
    return tf.squeeze(tf.slice(x, start, size), 1)


def portable_time_loop(step, initial, sequences, constants=(), reverse=False):
    """A plain `tf.while_loop` writing a `TensorArray`: what converters
    such as tf2onnx and TFLite take."""
    length = tf.shape(sequences[0])[1]
    time_major = [tf.experimental.numpy.swapaxes(x, 0, 1) for x in sequences]
    ys = tf.TensorArray(tf.nest.flatten(initial)[0].dtype, size=length)

    def body(i, carry, ys):
        t = length - 1 - i if reverse else i
        carry, y_t = step(carry, *(x[t] for x in time_major), *constants)
        _keep_shapes(carry, initial)
        return i + 1, carry, ys.write(t, y_t)

    _, carry, ys = tf.while_loop(
        lambda i, *_: i < length, body, (0, initial, ys)
    )
    return carry, tf.experimental.numpy.swapaxes(ys.stack(), 0, 1)


def _keep_shapes(carry, initial):
    # A batch of 1 broadcast against an unknown batch, such as a stateful
    # layer's state against the input of a dataset, has an unknown batch;
    # `tf.while_loop` wants the carry's shape as it entered.
    for new, old in zip(
        tf.nest.flatten(carry), tf.nest.flatten(initial), strict=True
    ):
        new.set_shape(old.shape)


def exporting():
    # tf2onnx leaves the XLA-compiled loop an opaque function call that
    # onnxruntime rejects. The TFLite converter, SavedModels and the Keras
    # steps take the compiled loop.
    return engines.export_format() == "onnx"


def on_accelerator():
    return bool(tf.config.list_logical_devices("GPU"))


def prefers_parallel():
    return on_accelerator()


def float64_dtype_note():
    return None


# `keras.distribution` runs on JAX only.
training_program_report = None
