"""The papers' deep IndRNNs, built with the functional API.

Li et al. build every network from one unit, a "layer" of

    projection (one matmul over time) -> batch norm -> recurrence -> batch norm

with the normalization on one side of the recurrence (`bn="before"` or
`bn="after"`) and dropout whose mask is shared over time. `plain_indrnn`
stacks such layers (CVPR 2018), `residual_indrnn` adds pre-activation
residual blocks and `dense_indrnn` densely connected blocks ("Deep
Independently Recurrent Neural Network", arXiv 1910.06251). The layer
structure, defaults and parameter counts follow the authors' PyTorch code.

Each builder takes a symbolic input `(batch, timesteps, features)` and
returns the output tensor, the last step by default; the classifier is
yours to add:

    inputs = keras.Input((784, 1))
    features = residual_indrnn(inputs, blocks=5, units=128)
    model = keras.Model(inputs, keras.layers.Dense(10)(features))

Every layer they create is a registered Keras layer, so the models save to
and load from `.keras` files.
"""

import dataclasses
import math
import numbers

import keras

from keras_indrnn.constraints import check_max_abs
from keras_indrnn.initializers import RecurrentUniform
from keras_indrnn.layer import IndRNN
from keras_indrnn.normalization import FramewiseBatchNormalization

BN_PLACEMENTS = ("before", "after")
NORMALIZATIONS = ("batch", "framewise", None)


def authors_kernel_initializer():
    """The authors' input weights: PyTorch's `kaiming_uniform_(a=8)`,
    uniform in `+-sqrt(6 / (65 * fan_in))`."""
    return keras.initializers.VarianceScaling(
        scale=2 / 65, mode="fan_in", distribution="uniform"
    )


def plain_indrnn(
    inputs,
    layers=6,
    units=128,
    dropout=0.1,
    bn="after",
    normalization="batch",
    recurrent_max_abs="auto",
    return_sequences=False,
    stateful=False,
    momentum=0.9,
    epsilon=1e-5,
    kernel_initializer=None,
    weight_decay=0.0,
    last_long_memory=True,
):
    """The stacked IndRNN of the CVPR 2018 paper (6 x 128 for MNIST).

    Each layer is projection, batch norm and recurrence (`bn` says on which
    side of the recurrence the norm sits), then dropout.

    Args:
        inputs: Symbolic `(batch, timesteps, features)` tensor.
        layers: Positive integer, the number of IndRNN layers.
        units: Positive integer, the units of each layer.
        dropout: Rate in `[0, 1)` of the dropout after each layer, with one
            mask per sequence.
        bn, normalization, recurrent_max_abs, return_sequences, stateful,
        momentum, epsilon, kernel_initializer, weight_decay,
        last_long_memory: See `Options` below.

    Returns:
        The last step `(batch, units)`, or with `return_sequences` the whole
        sequence `(batch, timesteps, units)`.
    """
    _check_count(layers, "layers")
    _check_count(units, "units")
    options = Options.of(
        inputs,
        bn,
        normalization,
        recurrent_max_abs,
        return_sequences,
        stateful,
        momentum,
        epsilon,
        kernel_initializer,
        weight_decay,
        last_long_memory,
    )
    _check_rates(dropout=dropout)
    x = inputs
    for index in range(layers):
        last = index == layers - 1
        x = options.layer(x, units, project=True, last=last)
        x = _dropout(x, dropout)
    return options.output(x)


def residual_indrnn(
    inputs,
    blocks=5,
    units=128,
    dropout=0.1,
    last_dropout=None,
    bn="after",
    normalization="batch",
    recurrent_max_abs="auto",
    return_sequences=False,
    stateful=False,
    momentum=0.9,
    epsilon=1e-5,
    kernel_initializer=None,
    weight_decay=0.0,
    last_long_memory=True,
):
    """The residual IndRNN of the Deep IndRNN paper, pre-activation blocks.

    A projection to `units` features, then `blocks` residual blocks, each

        x + projection(dropout(IndRNN(projection(dropout(IndRNN(x))))))

    with batch norm on the `bn` side of each recurrence, then one last
    recurrence with batch norm and dropout: `2 * blocks + 1` IndRNN layers.

    Args:
        inputs: Symbolic `(batch, timesteps, features)` tensor.
        blocks: Positive integer, the number of residual blocks.
        units: Positive integer, the width of every layer.
        dropout: Rate of the dropout after each recurrence in the blocks.
        last_dropout: Rate of the dropout after the last recurrence
            (default: `dropout`).
        bn, normalization, recurrent_max_abs, return_sequences, stateful,
        momentum, epsilon, kernel_initializer, weight_decay,
        last_long_memory: See `Options` below.
    """
    _check_count(blocks, "blocks")
    _check_count(units, "units")
    last_dropout = dropout if last_dropout is None else last_dropout
    _check_rates(dropout=dropout, last_dropout=last_dropout)
    options = Options.of(
        inputs,
        bn,
        normalization,
        recurrent_max_abs,
        return_sequences,
        stateful,
        momentum,
        epsilon,
        kernel_initializer,
        weight_decay,
        last_long_memory,
    )
    x = options.projection(inputs, units)
    for _ in range(blocks):
        shortcut = x
        for _ in range(2):
            x = options.layer(x, units, project=False)
            x = _dropout(x, dropout)
            x = options.projection(x, units)
        x = keras.layers.Add()([shortcut, x])
    x = options.layer(x, units, project=False, last=True)
    x = _dropout(x, last_dropout)
    return options.output(x)


def dense_indrnn(
    inputs,
    blocks=(8, 6, 4),
    growth_rate=16,
    initial_features=None,
    bottleneck=4,
    last_transition=True,
    dropout=0.2,
    first_dropout=0.2,
    bottleneck_dropout=0.1,
    transition_dropout=0.1,
    bn="after",
    normalization="batch",
    recurrent_max_abs="auto",
    return_sequences=False,
    stateful=False,
    momentum=0.9,
    epsilon=1e-5,
    kernel_initializer=None,
    weight_decay=0.0,
    last_long_memory=True,
):
    """The densely connected IndRNN of the Deep IndRNN paper.

    A first IndRNN layer of `initial_features` units, then dense blocks.
    Each layer of a block is a bottleneck IndRNN layer of
    `bottleneck * growth_rate` units and an IndRNN layer of `growth_rate`
    units, whose output is concatenated to the block's features. Between
    blocks, a transition IndRNN layer halves the features; with
    `last_transition`, one more does after the last block.

    Args:
        inputs: Symbolic `(batch, timesteps, features)` tensor.
        blocks: Non-empty sequence of positive integers, the layers of each
            dense block. Default `(8, 6, 4)`, the authors'.
        growth_rate: Positive integer, the features each layer adds.
        initial_features: Units of the first layer (default
            `6 * growth_rate`, the authors' MNIST setting).
        bottleneck: Positive integer, the bottleneck layers' width in
            multiples of `growth_rate`.
        last_transition: Whether a transition follows the last block.
        dropout, first_dropout, bottleneck_dropout, transition_dropout:
            Rates of the dropout after the growth layers, the first layer,
            the bottleneck layers and the transitions.
        bn, normalization, recurrent_max_abs, return_sequences, stateful,
        momentum, epsilon, kernel_initializer, weight_decay,
        last_long_memory: See `Options` below.
    """
    if isinstance(blocks, numbers.Integral) or not blocks:
        raise ValueError(
            "Invalid value for argument `blocks`: expected a non-empty "
            f"sequence of positive integers, got {blocks!r}."
        )
    for layers in blocks:
        _check_count(layers, "blocks")
    _check_count(growth_rate, "growth_rate")
    _check_count(bottleneck, "bottleneck")
    if initial_features is None:
        initial_features = 6 * growth_rate
    _check_count(initial_features, "initial_features")
    _check_rates(
        dropout=dropout,
        first_dropout=first_dropout,
        bottleneck_dropout=bottleneck_dropout,
        transition_dropout=transition_dropout,
    )
    options = Options.of(
        inputs,
        bn,
        normalization,
        recurrent_max_abs,
        return_sequences,
        stateful,
        momentum,
        epsilon,
        kernel_initializer,
        weight_decay,
        last_long_memory,
    )
    x = options.layer(inputs, initial_features, project=True)
    x = _dropout(x, first_dropout)
    features = initial_features
    for index, layers in enumerate(blocks):
        for _ in range(layers):
            new = options.layer(x, bottleneck * growth_rate, project=True)
            new = _dropout(new, bottleneck_dropout)
            new = options.layer(new, growth_rate, project=True)
            new = _dropout(new, dropout)
            x = keras.layers.Concatenate()([x, new])
            features += growth_rate
        last = index == len(blocks) - 1
        if not last or last_transition:
            features //= 2
            x = options.layer(x, features, project=True, last=last)
            x = _dropout(x, transition_dropout)
    return options.output(x)


@dataclasses.dataclass(frozen=True)
class Options:
    """What every builder shares.

    Attributes:
        bn: `"after"` (default; the authors' MNIST networks) or `"before"`
            (their language models): on which side of each recurrence the
            batch norm sits.
        normalization: `"batch"` (default): statistics over batch and time
            (`keras.layers.BatchNormalization`); `"framewise"`: per time
            step (`FramewiseBatchNormalization`, for language models); or
            `None` for none.
        bound: `|u|` bound of every layer. Given as `recurrent_max_abs`,
            `"auto"` (default) for the papers' `2 ** (1 / T)` with `T` the
            input's static timesteps, or a positive number, which also
            serves inputs of varying length.
        return_sequences: Whether the builder returns every step (default:
            only the last).
        stateful: Whether every IndRNN layer carries its state from one
            batch to the next (truncated backpropagation through time, as
            the papers' language models); needs a static batch size.
        momentum, epsilon: Of the batch norms. Defaults 0.9 and 1e-5 are
            PyTorch's, which the authors use.
        kernel_initializer: Of every projection; default the authors'
            (`authors_kernel_initializer`).
        weight_decay: Non-negative float (default 0). L2 weight decay
            coupled into the gradient, as PyTorch's `Adam(weight_decay=...)`
            that the authors train with (1e-4): every projection kernel and
            batch-norm scale gets `keras.regularizers.L2(weight_decay / 2)`,
            whose gradient is `weight_decay * w`, before the optimizer sees
            it. `u` and the biases are not decayed, as in the authors' code.
            Keras's `AdamW` (`weight_decay` of the optimizer) decays
            decoupled from the gradient, which is another recipe. The
            classifier is yours: give its kernel the same regularizer to
            decay it as the authors do.
        last_long_memory: Whether the last IndRNN layer starts with long
            memories, `u` drawn from `U(1 / bound, bound)` instead of
            `U(0, bound)` (default `True`, as the papers say). Only when the
            builder returns the last step and the bound is above 1, which
            leaves room for that range.
    """

    bn: str
    normalization: str
    bound: float
    return_sequences: bool
    stateful: bool
    momentum: float
    epsilon: float
    kernel_initializer: object
    weight_decay: float = 0.0
    last_long_memory: bool = True

    @classmethod
    def of(
        cls,
        inputs,
        bn,
        normalization,
        recurrent_max_abs,
        return_sequences,
        stateful,
        momentum,
        epsilon,
        kernel_initializer,
        weight_decay,
        last_long_memory,
    ):
        if bn not in BN_PLACEMENTS:
            raise ValueError(
                "Invalid value for argument `bn`: expected one of "
                f"{BN_PLACEMENTS}, got {bn!r}."
            )
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                "Invalid value for argument `normalization`: expected one "
                f"of {NORMALIZATIONS}, got {normalization!r}."
            )
        if len(inputs.shape) != 3:
            raise ValueError(
                "The IndRNN networks expect `inputs` of shape (batch, "
                f"timesteps, features); got {tuple(inputs.shape)}."
            )
        bound = check_max_abs(recurrent_max_abs, allow_auto=True)
        if bound == "auto":
            timesteps = inputs.shape[1]
            if timesteps is None:
                raise ValueError(
                    "Argument `recurrent_max_abs='auto'` derives the bound "
                    "2 ** (1 / timesteps) from the input's static number of "
                    f"timesteps, but the input shape {tuple(inputs.shape)} "
                    "leaves it unknown: pass a number."
                )
            bound = 2.0 ** (1.0 / timesteps)
        if kernel_initializer is None:
            kernel_initializer = authors_kernel_initializer()
        if (
            isinstance(weight_decay, bool)
            or not isinstance(weight_decay, numbers.Real)
            or not 0 <= weight_decay < float("inf")
        ):
            raise ValueError(
                "Invalid value for argument `weight_decay`: expected a "
                f"non-negative finite number, got {weight_decay!r}."
            )
        if not isinstance(last_long_memory, bool):
            raise ValueError(
                "Invalid value for argument `last_long_memory`: expected "
                f"True or False, got {last_long_memory!r}."
            )
        return cls(
            bn,
            normalization,
            bound,
            bool(return_sequences),
            bool(stateful),
            momentum,
            epsilon,
            kernel_initializer,
            float(weight_decay),
            last_long_memory,
        )

    def regularizer(self):
        """The weight decay as a Keras regularizer, or `None` without one."""
        if not self.weight_decay:
            return None
        return keras.regularizers.L2(self.weight_decay / 2)

    def projection(self, x, units):
        """A projection over time, with a bias (the authors' Linear)."""
        return keras.layers.Dense(
            units,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.regularizer(),
        )(x)

    def layer(self, x, units, project, last=False):
        """One IndRNN layer of the papers, returning every step: with
        `project`, its own projection first."""
        # Only a bound above 1 leaves room for U(1 / bound, bound).
        long_memory = (
            last
            and self.last_long_memory
            and not self.return_sequences
            and self.bound > 1
        )
        recurrent_initializer = RecurrentUniform(
            self.bound, minval=1.0 / self.bound if long_memory else 0.0
        )
        if self.bn == "before":
            if project:
                x = self.projection(x, units)
            x = self.norm(x)
            return IndRNN(
                units,
                use_kernel=False,
                use_bias=False,
                recurrent_max_abs=self.bound,
                recurrent_initializer=recurrent_initializer,
                return_sequences=True,
                stateful=self.stateful,
            )(x)
        # The projection's bias is the recurrence's: IndRNN fuses the two.
        x = IndRNN(
            units,
            use_kernel=project,
            use_bias=project,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.regularizer() if project else None,
            recurrent_max_abs=self.bound,
            recurrent_initializer=recurrent_initializer,
            return_sequences=True,
            stateful=self.stateful,
        )(x)
        return self.norm(x)

    def norm(self, x):
        if self.normalization is None:
            return x
        if self.normalization == "framewise":
            return FramewiseBatchNormalization(
                momentum=self.momentum,
                epsilon=self.epsilon,
                gamma_regularizer=self.regularizer(),
            )(x)
        return keras.layers.BatchNormalization(
            momentum=self.momentum,
            epsilon=self.epsilon,
            gamma_regularizer=self.regularizer(),
        )(x)

    def output(self, x):
        return x if self.return_sequences else x[:, -1]


def _dropout(x, rate):
    """Dropout with one mask per sequence, shared by all steps."""
    if not rate:
        return x
    return keras.layers.Dropout(rate, noise_shape=(None, 1, x.shape[-1]))(x)


def _check_count(value, name):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value <= 0
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a positive "
            f"integer, got {value!r}."
        )


def _check_rates(**rates):
    for name, rate in rates.items():
        if (
            isinstance(rate, bool)
            or not isinstance(rate, numbers.Real)
            or not 0 <= rate < 1
            or math.isnan(rate)
        ):
            raise ValueError(
                f"Invalid value for argument `{name}`: expected a float in "
                f"[0, 1), got {rate!r}."
            )
