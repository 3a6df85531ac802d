"""The constraint that keeps IndRNN's recurrent weights inside a bound."""

import numbers

import keras
from keras import ops


def check_max_abs(value, name="recurrent_max_abs", allow_auto=False):
    """Returns `value` as a float, or raises a `ValueError` naming `name`."""
    if allow_auto and isinstance(value, str) and value == "auto":
        return value
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not value > 0
        or value == float("inf")
    ):
        expected = "a positive finite number"
        if allow_auto:
            expected += ', None or "auto"'
        raise ValueError(
            f"Invalid value for argument `{name}`: expected {expected}, "
            f"got {value!r}."
        )
    return float(value)


@keras.saving.register_keras_serializable(package="keras_indrnn")
class RecurrentClip(keras.constraints.Constraint):
    """Clips every weight into `[-max_abs, max_abs]`.

    Keras applies a variable's constraint after each optimizer update, so this
    is the projection that the IndRNN papers use to bound `|u|`; the forward
    pass itself never clips.

    Args:
        max_abs: Positive float, the largest magnitude a weight may take. The
            papers use `2 ** (1 / T)` for ReLU IndRNNs on `T` timesteps.

    Example:

    ```python
    layer = keras.layers.Dense(4, kernel_constraint=RecurrentClip(1.0))
    ```
    """

    def __init__(self, max_abs):
        self.max_abs = check_max_abs(max_abs, name="max_abs")

    def __call__(self, w):
        return ops.clip(w, -self.max_abs, self.max_abs)

    def get_config(self):
        return {"max_abs": self.max_abs}
