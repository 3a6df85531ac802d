"""The recurrence kernels on their own: gradients for every input, the
clip-affine scan, and dtype and device placement."""

import keras
import numpy as np
import pytest
import reference
from gradients import finite_differences
from keras import activations
from keras import ops

from keras_indrnn import engines
from keras_indrnn import parallel_scan
from keras_indrnn import recurrence

CLIP_ACTIVATIONS = ["relu", "linear", "relu6", "hard_sigmoid", "hard_tanh"]


def f32(array):
    return np.asarray(array).astype("float32").astype("float64")


def run_reference(z, u, h0, activation, mask=None, go_backwards=False):
    """The float64 reference with an identity kernel: `z` is the input."""
    batch, steps, units = z.shape
    if u.ndim == 2:  # a recurrent weight per sample: one sample at a time
        parts = [
            run_reference(
                z[i : i + 1],
                u[i],
                h0[i : i + 1],
                activation,
                None if mask is None else mask[i : i + 1],
                go_backwards,
            )
            for i in range(batch)
        ]
        return np.concatenate(parts, axis=0)
    outputs, _, _ = reference.indrnn(
        z,
        np.eye(units),
        u,
        initial_state=h0,
        activation=activation,
        mask=mask,
        go_backwards=go_backwards,
    )
    return outputs


def loss_gradients(fn, arrays):
    """d sum(fn(*arrays) * probe) / d arrays, with the engine's autodiff."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.grad(fn, argnums=tuple(range(len(arrays))))(*arrays)
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            loss = fn(*tensors)
        return tape.gradient(loss, tensors)
    import torch

    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn(*tensors).backward()
    return [t.grad for t in tensors]


@pytest.mark.parametrize("implementation", ["sequential", "parallel"])
@pytest.mark.parametrize("per_sample_u", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("activation", ["relu", "hard_tanh", "linear"])
def test_gradients_for_inputs_weights_and_initial_state(
    rng, implementation, per_sample_u, with_mask, activation
):
    batch, steps, units = 3, 10, 4
    z = f32(rng.normal(size=(batch, steps, units)))
    u_shape = (batch, units) if per_sample_u else (units,)
    u = f32(rng.uniform(-1.2, 1.2, size=u_shape))
    h0 = f32(rng.normal(size=(batch, units)))
    mask = rng.random((batch, steps)) < 0.7 if with_mask else None
    probe = f32(rng.normal(size=(batch, steps, units)))

    def reference_loss(z, u, h0):
        outputs = run_reference(z, u, h0, activation, mask, go_backwards=True)
        return np.sum(outputs * probe)

    expected = finite_differences(reference_loss, [z, u, h0])
    act = activations.get(activation)
    probe32 = ops.convert_to_tensor(probe.astype("float32"))

    def loss(z, u, h0):
        _, outputs, _ = recurrence.indrnn_recurrence(
            z,
            u,
            h0,
            act,
            mask=mask,
            go_backwards=True,
            implementation=implementation,
        )
        return ops.sum(outputs * probe32)

    grads = loss_gradients(loss, [a.astype("float32") for a in (z, u, h0)])
    for grad, want in zip(grads, expected, strict=True):
        assert reference.relative_error(grad, want) < 1e-5


@pytest.mark.parametrize("activation", CLIP_ACTIVATIONS)
def test_parallel_scan_handles_every_clip_activation(rng, activation):
    # Negative, zero and above-one weights; masked steps are identity maps.
    batch, steps, units = 2, 37, 6
    z = f32(rng.normal(size=(batch, steps, units)) * 3)
    u = f32(np.array([-1.1, -0.5, 0.0, 0.5, 1.0, 1.1]))
    h0 = f32(rng.normal(size=(batch, units)))
    mask = rng.random((batch, steps)) < 0.8
    _, outputs, state = recurrence.indrnn_recurrence(
        z.astype("float32"),
        u.astype("float32"),
        h0.astype("float32"),
        activations.get(activation),
        mask=mask,
        implementation="parallel",
    )
    expected, _, final = reference.indrnn(
        z,
        np.eye(units),
        u,
        initial_state=h0,
        activation=activation,
        mask=mask,
    )
    assert reference.relative_error(outputs, expected) < 1e-5
    assert reference.relative_error(state, final) < 1e-5


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 8, 64, 100])
def test_associative_scan_matches_a_running_composition(rng, steps):
    e = rng.uniform(-2, 2, size=(steps, 5))
    e[rng.random(e.shape) < 0.2] = 0.0
    d = rng.normal(size=(steps, 5))
    base = rng.normal(size=e.shape) - 1
    lo = np.where(rng.random(e.shape) < 0.5, -np.inf, base)
    hi = np.where(
        rng.random(e.shape) < 0.5, np.inf, base + rng.uniform(0, 3, e.shape)
    )
    elements = tuple(
        ops.convert_to_tensor(a, dtype="float32") for a in (e, d, lo, hi)
    )
    scanned = parallel_scan.associative_scan(
        parallel_scan.compose_clip_affine, elements
    )
    scanned = [keras.ops.convert_to_numpy(a).astype("float64") for a in scanned]
    # Apply every prefix map to a few starting points and compare with
    # applying the step maps one after the other.
    for h0 in (-3.0, 0.0, 0.7, 5.0):
        h = np.full(5, h0)
        for t in range(steps):
            h = np.clip(e[t] * h + d[t], lo[t], hi[t])
            got = np.clip(
                scanned[0][t] * h0 + scanned[1][t], scanned[2][t], scanned[3][t]
            )
            np.testing.assert_allclose(got, h, rtol=1e-5, atol=1e-5)


def _device(x):
    backend = keras.backend.backend()
    if backend == "torch":
        return str(x.device)
    if backend == "jax":
        return str(next(iter(x.devices())))
    return x.device


@pytest.mark.parametrize("implementation", ["sequential", "parallel"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_outputs_keep_the_input_dtype_and_device(rng, implementation, dtype):
    z = ops.convert_to_tensor(rng.normal(size=(2, 33, 3)), dtype=dtype)
    if keras.backend.standardize_dtype(z.dtype) != dtype:
        pytest.skip(f"this engine is configured without {dtype}")
    u = ops.convert_to_tensor(rng.uniform(0, 1, size=3), dtype="float32")
    h0 = ops.zeros((2, 3), dtype=dtype)
    results = recurrence.indrnn_recurrence(
        z, u, h0, activations.relu, implementation=implementation
    )
    for result in results:
        assert keras.backend.standardize_dtype(result.dtype) == dtype
        assert _device(result) == _device(z)
    expected, _, _ = reference.indrnn(
        keras.ops.convert_to_numpy(ops.cast(z, "float64")),
        np.eye(3),
        keras.ops.convert_to_numpy(u).astype("float64"),
    )
    tolerance = {"float16": 2e-3, "bfloat16": 1e-2}.get(dtype, 1e-5)
    assert (
        reference.relative_error(ops.cast(results[1], "float32"), expected)
        < tolerance
    )


def test_auto_follows_the_documented_rule():
    # The README's rule: sequential on CPUs and with PyTorch's fused Triton
    # kernel on a GPU, parallel on other GPUs and TPUs.
    choose = recurrence.choose_implementation
    engine = engines.current()
    if not engine.on_accelerator():
        parallel = False
    elif keras.backend.backend() == "torch":
        from keras_indrnn.engines import torch_triton

        parallel = not torch_triton.serves("cuda")
    else:
        parallel = True
    assert choose("auto", activations.tanh, 100) == "sequential"
    assert choose("auto", activations.relu, None) == "sequential"
    assert choose("auto", activations.relu, 100) == (
        "parallel" if parallel else "sequential"
    )
    assert choose("parallel", activations.relu, 100) == "parallel"


def test_parallel_needs_static_timesteps():
    with pytest.raises(ValueError, match="static number of timesteps"):
        parallel_scan.associative_scan(
            parallel_scan.compose_affine, (_UnknownLength(), _UnknownLength())
        )


class _UnknownLength:
    shape = (None, 4)
