"""The IndRNN cell: one step of `h_t = act(x_t @ W + u * h_{t-1} + b)`."""

import numbers

import keras
from keras import activations
from keras import constraints
from keras import initializers
from keras import ops
from keras import regularizers

# `keras.layers.SimpleRNNCell` holds its dropout bookkeeping in this mixin;
# `keras.layers.RNN` looks for it to prepare the masks of a sequence.
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

from keras_indrnn.constraints import RecurrentClip
from keras_indrnn.constraints import check_max_abs
from keras_indrnn.initializers import RecurrentUniform
from keras_indrnn.version import from_versioned_config
from keras_indrnn.version import versioned


def check_units(units):
    if (
        isinstance(units, bool)
        or not isinstance(units, numbers.Integral)
        or units <= 0
    ):
        raise ValueError(
            "Invalid value for argument `units`: expected a positive integer, "
            f"got {units!r}."
        )
    return int(units)


def check_rate(rate, name):
    if (
        isinstance(rate, bool)
        or not isinstance(rate, numbers.Real)
        or not 0 <= rate < 1
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a float in "
            f"[0, 1), got {rate!r}."
        )
    return float(rate)


@keras.saving.register_keras_serializable(package="keras_indrnn")
class IndRNNCell(keras.layers.Layer, DropoutRNNCell):
    """Cell class for IndRNN: each unit has a single recurrent weight.

    This class processes one step of the sequence and works inside
    `keras.layers.RNN`; `keras_indrnn.IndRNN` processes the whole sequence
    and is much faster. The cell is the reference semantics the layer's
    fast paths are tested against:

        h_t = activation(x_t @ kernel + recurrent_kernel * h_{t-1} + bias)

    where `recurrent_kernel` is a vector of shape `(units,)`.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation function to use. Default: `"relu"`, as in the
            papers. If you pass `None`, no activation is applied.
        use_bias: Boolean (default `True`), whether the cell uses a bias.
        use_kernel: Boolean (default `True`), whether the cell projects its
            inputs with a `kernel`. Without one, the inputs must have `units`
            features and enter the recurrence as they are,
            `h_t = activation(x_t + recurrent_kernel * h_{t-1} + bias)`: the
            papers' recurrence after a separate projection and
            normalization.
        kernel_initializer: Initializer for the `kernel` weights matrix, used
            for the linear transformation of the inputs. Default:
            `"glorot_uniform"`.
        recurrent_initializer: Initializer for the `recurrent_kernel` vector.
            Default (`None`): uniform in `[0, recurrent_max_abs]` as in the
            papers, or uniform in `[0, 1]` when there is no bound (every unit
            starts non-expanding, a ReLU unit's memory intact).
        bias_initializer: Initializer for the bias vector. Default: `"zeros"`.
        kernel_regularizer: Regularizer applied to `kernel`. Default: `None`.
        recurrent_regularizer: Regularizer applied to `recurrent_kernel`.
            Default: `None`.
        bias_regularizer: Regularizer applied to the bias. Default: `None`.
        kernel_constraint: Constraint applied to `kernel`. Default: `None`.
        recurrent_constraint: Constraint applied to `recurrent_kernel`.
            Default: `None`. Cannot be combined with `recurrent_max_abs`.
        bias_constraint: Constraint applied to the bias. Default: `None`.
        dropout: Float in `[0, 1)`. Fraction of the input units to drop, with
            the mask fixed over time. Default: 0.
        recurrent_dropout: Float in `[0, 1)`. Fraction of the recurrent state
            to drop, with the mask fixed over time. Default: 0.
        recurrent_max_abs: `None` (default, unconstrained) or a positive
            float: after every optimizer update, `recurrent_kernel` is clipped
            into `[-recurrent_max_abs, recurrent_max_abs]` (`RecurrentClip`).
            The papers use `2 ** (1 / T)` for ReLU on `T` timesteps. The
            `IndRNN` layer also accepts `"auto"`, which derives that value
            from the input's timesteps; a bare cell does not see them.
        seed: Random seed for dropout.

    Call arguments:
        sequence: A 2D tensor, with shape `(batch, features)`.
        states: A 2D tensor with shape `(batch, units)`, the state from the
            previous time step.
        training: Python boolean indicating whether the layer should behave
            in training mode or in inference mode. Only relevant when
            `dropout` or `recurrent_dropout` is used.

    Example:

    ```python
    inputs = np.random.random([32, 10, 8]).astype(np.float32)
    rnn = keras.layers.RNN(IndRNNCell(4, recurrent_max_abs=2 ** (1 / 10)))
    output = rnn(inputs)  # The output has shape `(32, 4)`.
    ```
    """

    def __init__(
        self,
        units,
        activation="relu",
        use_bias=True,
        use_kernel=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer=None,
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        recurrent_max_abs=None,
        seed=None,
        **kwargs,
    ):
        units = check_units(units)
        dropout = check_rate(dropout, "dropout")
        recurrent_dropout = check_rate(recurrent_dropout, "recurrent_dropout")
        if recurrent_max_abs is not None:
            recurrent_max_abs = check_max_abs(
                recurrent_max_abs, allow_auto=True
            )
            if recurrent_constraint is not None:
                raise ValueError(
                    "Arguments `recurrent_max_abs` and `recurrent_constraint` "
                    "both constrain `recurrent_kernel`: pass only one of them "
                    f"(got recurrent_max_abs={recurrent_max_abs!r} and "
                    f"recurrent_constraint={recurrent_constraint!r})."
                )
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

        self.units = units
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.use_kernel = use_kernel

        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = (
            None
            if recurrent_initializer is None
            else initializers.get(recurrent_initializer)
        )
        self.bias_initializer = initializers.get(bias_initializer)

        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.recurrent_max_abs = recurrent_max_abs
        # The bound in force: `recurrent_max_abs`, with "auto" resolved by the
        # IndRNN layer from the number of timesteps.
        self.resolved_max_abs = (
            None if recurrent_max_abs == "auto" else recurrent_max_abs
        )
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape):
        if self.recurrent_max_abs == "auto" and self.resolved_max_abs is None:
            raise ValueError(
                "Argument `recurrent_max_abs='auto'` derives the bound from "
                "the number of timesteps, which a bare `IndRNNCell` does not "
                "see. Pass a number, or use the `IndRNN` layer."
            )
        bound = self.resolved_max_abs
        recurrent_initializer = self.recurrent_initializer
        if recurrent_initializer is None:
            recurrent_initializer = RecurrentUniform(
                1.0 if bound is None else bound, seed=self.seed
            )
        recurrent_constraint = self.recurrent_constraint
        if bound is not None:
            recurrent_constraint = RecurrentClip(bound)

        if self.use_kernel:
            self.kernel = self.add_weight(
                shape=(input_shape[-1], self.units),
                name="kernel",
                initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer,
                constraint=self.kernel_constraint,
            )
        else:
            if input_shape[-1] not in (None, self.units):
                raise ValueError(
                    "With `use_kernel=False` the inputs enter the recurrence "
                    f"unprojected, so they need `units`={self.units} "
                    f"features; got input shape {tuple(input_shape)}."
                )
            self.kernel = None
        # Kept in the variable dtype under mixed precision: in float16 a
        # bound like 2 ** (1 / 5000) rounds to 1.
        self.recurrent_kernel = self.add_weight(
            shape=(self.units,),
            name="recurrent_kernel",
            initializer=recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=recurrent_constraint,
            autocast=False,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.units,),
                name="bias",
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None

    @property
    def input_features(self):
        """The number of input features the cell was built for."""
        return self.units if self.kernel is None else self.kernel.shape[0]

    def project_inputs(self, sequence):
        """`sequence @ kernel + bias`, over any leading axes."""
        projected = sequence
        if self.kernel is not None:
            projected = ops.matmul(sequence, self.kernel)
        if self.bias is not None:
            projected = ops.add(projected, self.bias)
        return projected

    def call(self, sequence, states, training=False):
        prev_output = states[0] if isinstance(states, (list, tuple)) else states
        dp_mask = self.get_dropout_mask(sequence)
        rec_dp_mask = self.get_recurrent_dropout_mask(prev_output)

        if training and dp_mask is not None:
            sequence = sequence * dp_mask
        if training and rec_dp_mask is not None:
            prev_output = prev_output * rec_dp_mask
        recurrent_kernel = ops.cast(self.recurrent_kernel, prev_output.dtype)
        output = self.project_inputs(sequence) + recurrent_kernel * prev_output
        if self.activation is not None:
            output = self.activation(output)

        new_state = [output] if isinstance(states, (list, tuple)) else output
        return output, new_state

    def get_initial_state(self, batch_size=None):
        return [
            ops.zeros((batch_size, self.state_size), dtype=self.compute_dtype)
        ]

    def hyperparameters(self):
        """The constructor arguments, serialized (shared with `IndRNN`)."""
        return {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "use_kernel": self.use_kernel,
            "kernel_initializer": initializers.serialize(
                self.kernel_initializer
            ),
            "recurrent_initializer": _serialize_optional(
                self.recurrent_initializer
            ),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(
                self.kernel_regularizer
            ),
            "recurrent_regularizer": regularizers.serialize(
                self.recurrent_regularizer
            ),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(
                self.recurrent_constraint
            ),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "recurrent_max_abs": self.recurrent_max_abs,
            "seed": self.seed,
        }

    def get_config(self):
        return versioned({**super().get_config(), **self.hyperparameters()})

    @classmethod
    def from_config(cls, config):
        return from_versioned_config(cls, config)


def _serialize_optional(initializer):
    return None if initializer is None else initializers.serialize(initializer)
