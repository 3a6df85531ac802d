"""Batch normalization with statistics per time step."""

import keras
from keras import constraints
from keras import initializers
from keras import ops
from keras import regularizers

from keras_indrnn.cell import check_rate


@keras.saving.register_keras_serializable(package="keras_indrnn")
class FramewiseBatchNormalization(keras.layers.Layer):
    """Batch normalization of sequences with statistics per time step.

    `keras.layers.BatchNormalization` on a `(batch, timesteps, features)`
    tensor pools its statistics over batch and time. This layer normalizes
    each time step with the mean and variance over the batch at that step,
    and keeps running statistics per step, while the scale and shift are
    shared by all steps: the frame-wise batch normalization of the IndRNN
    papers' language models. Step `t` of every input uses row `t` of the
    statistics, so the layer serves sequences of at most `max_timesteps`
    steps.

    Args:
        max_timesteps: Positive integer, the longest sequence the layer
            serves. Default (`None`): the input's static number of
            timesteps when the layer is built.
        momentum: Momentum of the running statistics. Default: 0.9
            (PyTorch's 0.1, which the papers' code uses).
        epsilon: Small float added to the variance. Default: 1e-5.
        center: Whether to add the learned shift `beta`. Default: `True`.
        scale: Whether to multiply by the learned scale `gamma`. Default:
            `True`.
        beta_initializer, gamma_initializer, moving_mean_initializer,
        moving_variance_initializer: Initializers, as in
            `keras.layers.BatchNormalization`.
        beta_regularizer, gamma_regularizer, beta_constraint,
        gamma_constraint: Optional regularizers and constraints.

    Call arguments:
        inputs: A `(batch, timesteps, features)` tensor.
        training: Whether to normalize with the batch's statistics (and
            update the running ones) or with the running statistics.
        mask: Optional boolean `(batch, timesteps)`: masked entries take no
            part in the statistics.

    Example:

    ```python
    x = keras.Input((50, 128))
    y = FramewiseBatchNormalization()(x)  # statistics for 50 steps
    ```
    """

    def __init__(
        self,
        max_timesteps=None,
        momentum=0.9,
        epsilon=1e-5,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if max_timesteps is not None and (
            isinstance(max_timesteps, bool)
            or not isinstance(max_timesteps, int)
            or max_timesteps <= 0
        ):
            raise ValueError(
                "Invalid value for argument `max_timesteps`: expected a "
                f"positive integer or None, got {max_timesteps!r}."
            )
        self.max_timesteps = max_timesteps
        self.momentum = check_rate(momentum, "momentum")
        if not epsilon > 0:
            raise ValueError(
                "Invalid value for argument `epsilon`: expected a positive "
                f"number, got {epsilon!r}."
            )
        self.epsilon = float(epsilon)
        self.center = center
        self.scale = scale
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(
            moving_variance_initializer
        )
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                "FramewiseBatchNormalization expects inputs of shape "
                f"(batch, timesteps, features); got {tuple(input_shape)}."
            )
        if self.max_timesteps is None:
            if input_shape[1] is None:
                raise ValueError(
                    "FramewiseBatchNormalization keeps statistics for each "
                    "time step, but the input shape "
                    f"{tuple(input_shape)} leaves the number of timesteps "
                    "unknown: pass `max_timesteps`."
                )
            self.max_timesteps = int(input_shape[1])
        self._check_timesteps(input_shape[1])
        features = input_shape[-1]
        self.gamma = self.beta = None
        if self.scale:
            self.gamma = self.add_weight(
                shape=(features,),
                name="gamma",
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
            )
        if self.center:
            self.beta = self.add_weight(
                shape=(features,),
                name="beta",
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
            )
        statistics = (self.max_timesteps, features)
        self.moving_mean = self.add_weight(
            shape=statistics,
            name="moving_mean",
            initializer=self.moving_mean_initializer,
            trainable=False,
            autocast=False,
        )
        self.moving_variance = self.add_weight(
            shape=statistics,
            name="moving_variance",
            initializer=self.moving_variance_initializer,
            trainable=False,
            autocast=False,
        )

    def _check_timesteps(self, timesteps):
        if timesteps is not None and timesteps > self.max_timesteps:
            raise ValueError(
                f"FramewiseBatchNormalization holds statistics for "
                f"{self.max_timesteps} time steps (`max_timesteps`), but the "
                f"input has {timesteps}."
            )

    def call(self, inputs, training=False, mask=None):
        self._check_timesteps(inputs.shape[1])
        out_dtype = inputs.dtype
        # Statistics in the variables' dtype, as Keras's BatchNormalization.
        x = ops.cast(inputs, self.moving_mean.dtype)
        timesteps = ops.shape(x)[1]
        if training:
            mean, variance, seen = _moments_over_batch(x, mask)
            self._update_moving(self.moving_mean, mean, seen, timesteps)
            self._update_moving(self.moving_variance, variance, seen, timesteps)
        else:
            mean = self.moving_mean[:timesteps]
            variance = self.moving_variance[:timesteps]
        outputs = (x - mean) * ops.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            outputs = outputs * ops.cast(self.gamma, outputs.dtype)
        if self.beta is not None:
            outputs = outputs + ops.cast(self.beta, outputs.dtype)
        return ops.cast(outputs, out_dtype)

    def _update_moving(self, variable, value, seen, timesteps):
        old = variable[:timesteps]
        new = self.momentum * old + (1.0 - self.momentum) * value
        # A step no sample reached keeps its statistics.
        new = ops.where(seen, new, old)
        variable.assign(ops.slice_update(variable.value, (0, 0), new))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "max_timesteps": self.max_timesteps,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": initializers.serialize(
                self.moving_mean_initializer
            ),
            "moving_variance_initializer": initializers.serialize(
                self.moving_variance_initializer
            ),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }


def _moments_over_batch(x, mask):
    """Mean and (biased) variance over the batch at each step, `(T, F)`, of
    the unmasked entries, and whether any entry reached each step."""
    if mask is None:
        mean = ops.mean(x, axis=0)
        variance = ops.mean(ops.square(x - mean), axis=0)
        return mean, variance, ops.ones_like(mean[:, :1]) > 0
    weights = ops.cast(mask, x.dtype)[:, :, None]
    count = ops.sum(weights, axis=0)
    divisor = ops.maximum(count, 1.0)
    mean = ops.sum(weights * x, axis=0) / divisor
    variance = ops.sum(weights * ops.square(x - mean), axis=0) / divisor
    return mean, variance, count > 0
