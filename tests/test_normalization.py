"""Batch normalization over time: frame-wise statistics
(`FramewiseBatchNormalization`) and Keras's own statistics over batch and
time with masks, against float64 NumPy."""

import keras
import numpy as np
import pytest
import reference

from keras_indrnn import FramewiseBatchNormalization

EPSILON = 1e-5


def framewise_reference(x, gamma, beta, mask=None):
    """Per-step mean and biased variance over the unmasked samples."""
    weights = np.ones(x.shape[:2]) if mask is None else mask.astype(float)
    weights = weights[:, :, None]
    count = np.maximum(weights.sum(axis=0), 1.0)
    mean = (weights * x).sum(axis=0) / count
    variance = (weights * (x - mean) ** 2).sum(axis=0) / count
    normalized = (x - mean) / np.sqrt(variance + EPSILON)
    return normalized * gamma + beta, mean, variance


def random_mask(rng, batch, steps):
    lengths = rng.integers(1, steps + 1, size=batch)
    lengths[0] = steps  # every step has a sample
    return np.arange(steps)[None, :] < lengths[:, None]


@pytest.mark.parametrize("with_mask", [False, True])
def test_training_normalizes_each_step_and_updates_its_statistics(
    rng, with_mask
):
    batch, steps, features, momentum = 6, 7, 3, 0.8
    x = rng.normal(size=(batch, steps, features)) * 3 + 2
    x[:, 3] *= 10  # one step with a scale of its own
    gamma, beta = rng.normal(size=features), rng.normal(size=features)
    mask = random_mask(rng, batch, steps) if with_mask else None
    layer = FramewiseBatchNormalization(momentum=momentum, epsilon=EPSILON)
    layer.build(x.shape)
    layer.set_weights(
        [gamma, beta, np.zeros((steps, features)), np.ones((steps, features))]
    )
    kwargs = {} if mask is None else {"mask": mask}
    output = layer(x.astype("float32"), training=True, **kwargs)
    expected, mean, variance = framewise_reference(x, gamma, beta, mask)
    if mask is not None:
        output = keras.ops.convert_to_numpy(output)[mask]
        expected = expected[mask]
    assert reference.relative_error(output, expected) < 1e-5
    assert (
        reference.relative_error(layer.moving_mean, (1 - momentum) * mean)
        < 1e-5
    )
    assert (
        reference.relative_error(
            layer.moving_variance, momentum + (1 - momentum) * variance
        )
        < 1e-5
    )


def test_inference_uses_the_running_statistics_of_each_step(rng):
    batch, steps, features = 4, 5, 3
    x = rng.normal(size=(batch, steps, features))
    gamma, beta = rng.normal(size=features), rng.normal(size=features)
    mean = rng.normal(size=(steps, features))
    variance = rng.uniform(0.5, 2, size=(steps, features))
    layer = FramewiseBatchNormalization(max_timesteps=8, epsilon=EPSILON)
    layer.build((None, None, features))
    padding = np.zeros((3, features))
    layer.set_weights(
        [
            gamma,
            beta,
            np.concatenate([mean, padding]),
            np.concatenate([variance, padding + 1]),
        ]
    )
    output = layer(x.astype("float32"), training=False)
    expected = (x - mean) / np.sqrt(variance + EPSILON) * gamma + beta
    assert reference.relative_error(output, expected) < 1e-5


def test_a_sequence_longer_than_the_statistics(rng):
    layer = FramewiseBatchNormalization()
    layer(np.zeros((2, 5, 3), "float32"))
    with pytest.raises(ValueError, match="statistics for 5 time steps"):
        layer(np.zeros((2, 6, 3), "float32"))
    with pytest.raises(ValueError, match="`max_timesteps`"):
        FramewiseBatchNormalization()(keras.Input((None, 3)))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"max_timesteps": 0}, "max_timesteps"),
        ({"max_timesteps": 2.5}, "max_timesteps"),
        ({"momentum": 1.5}, "momentum"),
        ({"epsilon": 0.0}, "epsilon"),
    ],
)
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        FramewiseBatchNormalization(**kwargs)


def test_config_and_keras_file_round_trip(rng, tmp_path):
    x = rng.normal(size=(4, 6, 3)).astype("float32")
    inputs = keras.Input((6, 3))
    model = keras.Model(
        inputs, FramewiseBatchNormalization(momentum=0.7, epsilon=1e-3)(inputs)
    )
    model(x, training=True)  # moves the running statistics
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6
    )
    assert loaded.layers[-1].get_config() == model.layers[-1].get_config()


def test_keras_batch_normalization_pools_batch_and_time_with_masks(rng):
    # What the networks use for statistics over batch and time.
    batch, steps, features = 5, 8, 3
    x = rng.normal(size=(batch, steps, features)) * 2 + 1
    mask = random_mask(rng, batch, steps)
    layer = keras.layers.BatchNormalization(momentum=0.9, epsilon=EPSILON)
    output = layer(x.astype("float32"), training=True, mask=mask)
    kept = x[mask]
    mean, variance = kept.mean(axis=0), kept.var(axis=0)
    expected = (x - mean) / np.sqrt(variance + EPSILON)
    output = keras.ops.convert_to_numpy(output)
    assert reference.relative_error(output[mask], expected[mask]) < 1e-5
    assert reference.relative_error(layer.moving_mean, 0.1 * mean) < 1e-5
