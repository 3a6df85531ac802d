"""The recurrent-weight initializer that the IndRNN papers use."""

import keras

from keras_indrnn.constraints import check_max_abs


@keras.saving.register_keras_serializable(package="keras_indrnn")
class RecurrentUniform(keras.initializers.Initializer):
    """Draws IndRNN recurrent weights uniformly from `[minval, maxval]`.

    The papers draw the first layers' `u` from `U(0, max_abs)` and the last
    layer's from `U(1 / max_abs, max_abs)`, so that long-range units exist at
    the start of training; `IndRNN` uses `U(0, recurrent_max_abs)` unless you
    pass another `recurrent_initializer`.

    Args:
        maxval: Positive float, the upper end of the range.
        minval: Float below `maxval`, the lower end. Default: `0.0`.
        seed: Optional integer seed.
    """

    def __init__(self, maxval, minval=0.0, seed=None):
        self.maxval = check_max_abs(maxval, name="maxval")
        minval = float(minval)
        if not minval < self.maxval:
            raise ValueError(
                "Invalid value for argument `minval`: expected a number below "
                f"`maxval`={self.maxval}, got {minval!r}."
            )
        self.minval = minval
        self.seed = seed
        self._uniform = keras.initializers.RandomUniform(
            minval=self.minval, maxval=self.maxval, seed=seed
        )

    def __call__(self, shape, dtype=None):
        return self._uniform(shape, dtype=dtype)

    def get_config(self):
        return {"maxval": self.maxval, "minval": self.minval, "seed": self.seed}
