"""The engine for any Keras backend without a module of its own: plain
`keras.ops`, a Python loop over time, and no fused kernels."""

from keras import ops

fused_forward = None
fused_backward = None


def time_loop(step, initial, sequences, constants=(), reverse=False):
    """A Python loop over axis 1, stacking the outputs at the end. Every
    engine and export format can carry it; it costs a few operations of
    Python per step, and a traced graph holds one copy of the step per
    time step."""
    length = sequences[0].shape[1]
    if length is None:
        raise ValueError(
            "This engine runs the recurrence in a Python loop, which needs a "
            "static number of timesteps; got a sequence of unknown length."
        )
    times = range(length - 1, -1, -1) if reverse else range(length)
    carry, ys = initial, [None] * length
    for t in times:
        carry, ys[t] = step(carry, *(x[:, t] for x in sequences), *constants)
    return carry, ops.stack(ys, axis=1)


portable_time_loop = time_loop


def portable_forward(z, u, h0, mask, kind, form):
    return None


def exporting():
    return False


def on_accelerator():
    return False


def prefers_parallel():
    return False


def custom_gradient(fn):
    def with_keras_signature(*args):
        outputs, grad = fn(*args)

        # `keras.ops.custom_gradient` passes the upstream gradients by
        # keyword on some backends.
        def keras_grad(*upstreams, upstream=None):
            upstreams = upstreams if upstream is None else upstream
            return grad(tuple(upstreams))

        return outputs, keras_grad

    return ops.custom_gradient(with_keras_signature)


def float64_dtype_note():
    return None


# `keras.distribution` runs on JAX only.
training_program_report = None
