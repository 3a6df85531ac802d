"""JAX: XLA loops with the sequences carried in the loop state."""

import re

import jax
from jax import lax

fused_forward = None
fused_backward = None


def portable_forward(z, u, h0, mask, kind, form):
    return None


def custom_gradient(fn):
    def with_jax_signature(*args):
        outputs, grad = fn(*args)
        return outputs, lambda upstreams: grad(tuple(upstreams))

    return jax.custom_gradient(with_jax_signature)


def time_loop(step, initial, sequences, constants=(), reverse=False):
    """An XLA `fori_loop` that reads and writes one time slice of the
    batch-major tensors in place. The sequences and constants travel in
    the loop state rather than being closed over, so that tracers that
    convert a loop body on its own (jax2onnx) see them as loop inputs."""
    length = sequences[0].shape[1]
    like = jax.tree_util.tree_leaves(initial)[0]
    buffer = jax.numpy.zeros(
        (like.shape[0], length, *like.shape[1:]), like.dtype
    )

    def body(i, state):
        carry, ys, sequences, constants = state
        t = length - 1 - i if reverse else i
        xs = (lax.dynamic_index_in_dim(x, t, 1, False) for x in sequences)
        carry, y_t = step(carry, *xs, *constants)
        ys = lax.dynamic_update_index_in_dim(ys, y_t, t, 1)
        return carry, ys, sequences, constants

    state = (initial, buffer, tuple(sequences), tuple(constants))
    if isinstance(length, int):
        carry, ys, _, _ = lax.fori_loop(0, length, body, state)
        return carry, ys
    # A symbolic length (`jax.export` with shape polymorphism): `fori_loop`
    # needs a concrete trip count, a `while_loop` does not.
    _, (carry, ys, _, _) = lax.while_loop(
        lambda loop: loop[0] < length,
        lambda loop: (loop[0] + 1, body(loop[0], loop[1])),
        (0, state),
    )
    return carry, ys


portable_time_loop = time_loop


def exporting():
    return False


def on_accelerator():
    return jax.default_backend() != "cpu"


def prefers_parallel():
    return on_accelerator()


def float64_dtype_note():
    if jax.config.jax_enable_x64:
        return None
    return (
        "JAX computes float64 as float32 unless its 64-bit mode is on: set "
        "the environment variable JAX_ENABLE_X64=1, or call "
        "jax.config.update('jax_enable_x64', True) before creating any "
        "array."
    )


def training_program_report(model, x):
    """What XLA compiles for the gradient of `model`'s summed outputs on
    `x`, under the current distribution: the number of `while` loops, the
    collective operations inside their bodies (communication once per
    time step), and the bytes one device holds (arguments, outputs and
    temporaries, as XLA's memory analysis counts them)."""
    trainable = [v.value for v in model.trainable_variables]
    fixed = [v.value for v in model.non_trainable_variables]

    def loss(trainable):
        outputs, _ = model.stateless_call(trainable, fixed, x, training=True)
        return jax.numpy.sum(outputs)

    compiled = jax.jit(jax.grad(loss)).lower(trainable).compile()
    text = compiled.as_text()
    bodies = set(re.findall(r"while\(.*?body=%?([\w.\-]+)", text))
    collectives = []
    for computation in re.split(r"\n(?=\S)", text):
        if computation.split(" ", 1)[0].lstrip("%") in bodies:
            collectives += re.findall(
                r"(all-reduce|all-gather|reduce-scatter|all-to-all|"
                r"collective-permute)",
                computation,
            )
    memory = compiled.memory_analysis()
    return {
        "loops": len(bodies),
        "collectives_in_loops": collectives,
        "bytes_per_device": int(
            memory.argument_size_in_bytes
            + memory.output_size_in_bytes
            + memory.temp_size_in_bytes
            - memory.alias_size_in_bytes
        ),
    }
