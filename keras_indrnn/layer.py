"""The IndRNN layer: a sibling of `keras.layers.SimpleRNN`."""

import warnings

import keras
from keras import ops
from keras import regularizers
from keras import tree

from keras_indrnn import engines
from keras_indrnn.cell import IndRNNCell
from keras_indrnn.recurrence import check_implementation
from keras_indrnn.recurrence import choose_implementation
from keras_indrnn.recurrence import has_fast_path
from keras_indrnn.recurrence import indrnn_recurrence
from keras_indrnn.version import from_versioned_config
from keras_indrnn.version import versioned


@keras.saving.register_keras_serializable(package="keras_indrnn")
class IndRNN(keras.layers.RNN):
    """Independently Recurrent Neural Network layer (Li et al., 2018).

    Each unit sees only its own past through one recurrent weight:

        h_t = activation(x_t @ kernel + recurrent_kernel * h_{t-1} + bias)

    With ReLU and `|recurrent_kernel| <= 2 ** (1 / T)` gradients neither
    vanish nor explode, so IndRNNs train on sequences of thousands of steps
    and stack many layers deep.

    The input projection runs for all timesteps as one matmul; only the
    element-wise recurrence runs over time (`keras_indrnn.recurrence`), with
    a closed-form backward pass. In mixed precision the recurrence
    accumulates in float32 and returns the compute dtype.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation function to use. Default: `"relu"`. If you
            pass `None`, no activation is applied.
        use_bias: Boolean (default `True`), whether the layer uses a bias.
        use_kernel: Boolean (default `True`), whether the layer projects its
            inputs with a `kernel`. Without one, the inputs must have `units`
            features and enter the recurrence as they are,
            `h_t = activation(x_t + recurrent_kernel * h_{t-1} + bias)`: the
            papers' recurrence after a separate projection and batch
            normalization (`keras_indrnn.networks`).
        kernel_initializer: Initializer for the `kernel` weights matrix.
            Default: `"glorot_uniform"`.
        recurrent_initializer: Initializer for the `recurrent_kernel` vector.
            Default (`None`): uniform in `[0, recurrent_max_abs]` as in the
            papers, or uniform in `[0, 1]` when there is no bound.
        bias_initializer: Initializer for the bias vector. Default: `"zeros"`.
        kernel_regularizer: Regularizer applied to `kernel`. Default: `None`.
        recurrent_regularizer: Regularizer applied to `recurrent_kernel`.
            Default: `None`.
        bias_regularizer: Regularizer applied to the bias. Default: `None`.
        activity_regularizer: Regularizer applied to the output of the layer.
            Default: `None`.
        kernel_constraint: Constraint applied to `kernel`. Default: `None`.
        recurrent_constraint: Constraint applied to `recurrent_kernel`.
            Default: `None`. Cannot be combined with `recurrent_max_abs`.
        bias_constraint: Constraint applied to the bias. Default: `None`.
        dropout: Float in `[0, 1)`. Fraction of the input units to drop, with
            the mask fixed over time. Default: 0.
        recurrent_dropout: Float in `[0, 1)`. Fraction of the recurrent state
            to drop, with the mask fixed over time. Default: 0.
        recurrent_max_abs: `None` (default, unconstrained), a positive float,
            or `"auto"`. A number clips `recurrent_kernel` into
            `[-recurrent_max_abs, recurrent_max_abs]` after every optimizer
            update; `"auto"` uses `2 ** (1 / T)` with `T` the input's static
            number of timesteps, and raises if that is unknown at build time.
        return_sequences: Boolean. Whether to return the last output in the
            output sequence, or the full sequence. Default: `False`.
        return_state: Boolean. Whether to return the last state in addition
            to the output. Default: `False`.
        go_backwards: Boolean (default `False`). If `True`, process the input
            sequence backwards and return the reversed sequence.
        stateful: Boolean (default `False`). If `True`, the last state for
            each sample at index i in a batch will be used as the initial
            state for the sample of index i in the following batch. As in
            Keras's own RNN layers, the state is no weight: `get_weights`,
            `set_weights`, `save_weights` and `load_weights` move the
            weights between stateful layers of any batch size and their
            stateless twins, and `.keras` files do not keep the state (a
            loaded model starts from zeros, also from a file of
            keras_indrnn 0.2.0, which saved it). Unlike theirs, the state
            is one of the layer's `non_trainable_variables`, so it carries
            over between the batches of `fit`, `evaluate` and `predict` on
            JAX too. `reset_state()` sets it to zeros.
        unroll: Boolean (default `False`). If `True`, the cell is stepped in
            an unrolled Python loop, as `keras.layers.SimpleRNN` does; this
            bypasses the fast recurrence and suits only short sequences.
        implementation: `"auto"` (default), `"sequential"` or `"parallel"`.
            `"parallel"` computes the recurrence as a log-depth associative
            scan over time and needs an activation of the form
            `clip(a * x + c, lo, hi)` (relu, relu6, linear, hard_sigmoid,
            hard_tanh) and a static number of timesteps. `"auto"` picks
            `"parallel"` for such activations on a GPU and `"sequential"`
            otherwise. Activations other than these, tanh and sigmoid have
            no closed-form derivative here: for them the layer steps its
            cell in Keras's generic loop, as `unroll` does.
        seed: Random seed for dropout.

    Call arguments:
        sequences: A 3D tensor, with shape `(batch, timesteps, features)`.
        mask: Binary tensor of shape `(batch, timesteps)` indicating whether
            a given timestep should be masked. A masked step keeps the state.
        training: Python boolean indicating whether the layer should behave
            in training mode or in inference mode. Only relevant when
            `dropout` or `recurrent_dropout` is used.
        initial_state: List of initial state tensors to be passed to the
            first call of the cell.

    Example:

    ```python
    inputs = np.random.random((32, 784, 1))
    indrnn = keras_indrnn.IndRNN(128, recurrent_max_abs="auto")
    output = indrnn(inputs)  # The output has shape `(32, 128)`.
    indrnn = keras_indrnn.IndRNN(
        4, return_sequences=True, return_state=True
    )
    # whole_sequence_output has shape `(32, 784, 4)`.
    # final_state has shape `(32, 4)`.
    whole_sequence_output, final_state = indrnn(inputs)
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
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        recurrent_max_abs=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        implementation="auto",
        seed=None,
        **kwargs,
    ):
        cell = IndRNNCell(
            units,
            activation=activation,
            use_bias=use_bias,
            use_kernel=use_kernel,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            recurrent_max_abs=recurrent_max_abs,
            seed=seed,
            dtype=kwargs.get("dtype", None),
            trainable=kwargs.get("trainable", True),
            name="indrnn_cell",
        )
        check_implementation(implementation, cell.activation)
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
        self.implementation = implementation

    def build(self, sequences_shape, initial_state_shape=None):
        self._check_sequences_shape(sequences_shape)
        if self.cell.recurrent_max_abs == "auto":
            timesteps = sequences_shape[1]
            if timesteps is None:
                raise ValueError(
                    "Argument `recurrent_max_abs='auto'` derives the bound "
                    "2 ** (1 / timesteps) from the input's static number of "
                    "timesteps, but the input shape "
                    f"{tuple(sequences_shape)} leaves it unknown. Give the "
                    "`Input` a fixed length or pass a number."
                )
            self.cell.resolved_max_abs = 2.0 ** (1.0 / timesteps)
        if keras.backend.standardize_dtype(self.compute_dtype) == "float64":
            note = engines.current().float64_dtype_note()
            if note is not None:
                # Python's default filter shows it once per call site.
                warnings.warn(note, stacklevel=2)
        super().build(sequences_shape, initial_state_shape)

    @property
    def variables(self):
        # `keras.layers.RNN` creates a stateful layer's state variables
        # untracked, so that they are no weights (`weights`, `get_weights`,
        # `save_own_variables` do not see them) and weights move between
        # batch sizes. JAX's stateless training, evaluation and prediction
        # steps thread `non_trainable_variables`, made from `variables`:
        # listed here, as Keras lists the states of `SeedGenerator`s, the
        # state is carried on JAX too, and stays out of the weights.
        variables = super().variables
        seen = {id(v) for v in variables}
        # `RNN` sets `states` for a stateful layer only.
        states = getattr(self, "states", None)
        if states is not None:
            variables += [s for s in tree.flatten(states) if id(s) not in seen]
        return variables

    def load_own_variables(self, store):
        # keras_indrnn 0.2.0 tracked the state as the layer's own variable
        # (its weights are the cell's), so its files hold a stateful
        # layer's state here, one `(batch, units)` entry. It is no weight
        # now: such a file loads into a layer of any batch size, stateful
        # or not, and the layer's state stays as it is, as Keras's
        # `load_weights` leaves a stateful RNN's.
        own = self._trainable_variables + self._non_trainable_variables
        if not own and list(store.keys()) == ["0"]:
            shape = tuple(store["0"].shape)
            if len(shape) == 2 and shape[1] == self.units:
                return
        super().load_own_variables(store)

    def _check_initial_state(self, initial_state, batch_size):
        states = tree.flatten(initial_state)
        shape = tuple(states[0].shape) if len(states) == 1 else None
        if (
            shape is None
            or len(shape) != 2
            or shape[1] not in (None, self.units)
            or None not in (shape[0], batch_size)
            and shape[0] != batch_size
        ):
            shapes = [tuple(s.shape) for s in states]
            raise ValueError(
                "IndRNN expects `initial_state` to be one tensor of shape "
                f"(batch, units) = ({batch_size}, {self.units}); got "
                f"{len(states)} tensor(s) of shape(s) {shapes}."
            )

    def _check_sequences_shape(self, shape):
        if len(shape) != 3:
            raise ValueError(
                "IndRNN expects `sequences` of rank 3, shaped "
                f"(batch, timesteps, features); got shape {tuple(shape)}."
            )
        if self.cell.built:
            expected = self.cell.input_features
            if shape[-1] is not None and shape[-1] != expected:
                raise ValueError(
                    f"IndRNN was built for {expected} input features, but "
                    f"`sequences` has {shape[-1]} (shape {tuple(shape)})."
                )

    def call(self, sequences, initial_state=None, mask=None, training=False):
        self._check_sequences_shape(sequences.shape)
        if initial_state is not None:
            self._check_initial_state(initial_state, sequences.shape[0])
        if self.stateful and engines.export_format() == "onnx":
            return self._call_without_state_update(
                sequences, initial_state, mask, training
            )
        return super().call(
            sequences, mask=mask, training=training, initial_state=initial_state
        )

    def _call_without_state_update(
        self, sequences, initial_state, mask, training
    ):
        # An ONNX graph holds no variables: the exporters freeze the state
        # into a constant, and a state update traced for one does harm. On
        # TensorFlow the `AssignVariableOp` makes TF's freezing fail after
        # it has taken the loop's functions out of the eager context:
        # tf2onnx falls back and writes a good file, but at exit each of
        # those functions prints an `InvalidArgumentError`. On JAX the
        # update leaves a tracer in the state variable; on PyTorch the
        # trace runs it, so exporting moves the state on. So a trace for
        # ONNX starts from the state, as a stateful call does, and leaves
        # it as it is.
        # `RNN.call` checks the batch size of a stateful call only.
        batch, expected = sequences.shape[0], self._expected_batch_size
        if None not in (batch, expected) and batch != expected:
            raise ValueError(
                f"This stateful IndRNN holds a state for batches of "
                f"{expected}, but `sequences` has batch size {batch} (shape "
                f"{tuple(sequences.shape)}). Export it with an input "
                f"signature of batch size {expected}."
            )
        if initial_state is None:
            initial_state = self.states
        self.stateful = False
        try:
            return super().call(
                sequences,
                mask=mask,
                training=training,
                initial_state=initial_state,
            )
        finally:
            self.stateful = True

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if self.unroll or not has_fast_path(self.cell.activation):
            # The cell, stepped by Keras: what `unroll` asks for, and the
            # only way for activations without a closed-form derivative.
            return super().inner_loop(
                sequences, initial_state, mask=mask, training=training
            )
        if tree.is_nested(mask):
            mask = mask[0]
        cell = self.cell
        if training and cell.dropout:
            dp_mask = cell.get_dropout_mask(sequences[:, 0, :])
            sequences = sequences * ops.expand_dims(dp_mask, axis=1)
        recurrent_kernel = cell.recurrent_kernel
        if training and cell.recurrent_dropout:
            # The mask is constant over time: u * (m * h) == (m * u) * h.
            rec_dp_mask = cell.get_recurrent_dropout_mask(initial_state[0])
            recurrent_kernel = (
                ops.cast(rec_dp_mask, recurrent_kernel.dtype) * recurrent_kernel
            )
        implementation = choose_implementation(
            self.implementation, cell.activation, sequences.shape[1]
        )
        initial = initial_state[0]
        if self.stateful:
            # `RNN.call` assigns the new state to the state variable after
            # this call, in place on some engines; the backward pass must
            # see the state this call started from.
            initial = ops.copy(initial)
        last_output, outputs, state = indrnn_recurrence(
            sequences,
            recurrent_kernel,
            initial,
            cell.activation,
            kernel=cell.kernel,
            bias=cell.bias,
            mask=mask,
            go_backwards=self.go_backwards,
            zero_output_for_mask=self.zero_output_for_mask,
            implementation=implementation,
        )
        return last_output, outputs, [state]

    @property
    def units(self):
        return self.cell.units

    @property
    def activation(self):
        return self.cell.activation

    @property
    def use_bias(self):
        return self.cell.use_bias

    @property
    def use_kernel(self):
        return self.cell.use_kernel

    @property
    def kernel_initializer(self):
        return self.cell.kernel_initializer

    @property
    def recurrent_initializer(self):
        return self.cell.recurrent_initializer

    @property
    def bias_initializer(self):
        return self.cell.bias_initializer

    @property
    def kernel_regularizer(self):
        return self.cell.kernel_regularizer

    @property
    def recurrent_regularizer(self):
        return self.cell.recurrent_regularizer

    @property
    def bias_regularizer(self):
        return self.cell.bias_regularizer

    @property
    def kernel_constraint(self):
        return self.cell.kernel_constraint

    @property
    def recurrent_constraint(self):
        return self.cell.recurrent_constraint

    @property
    def bias_constraint(self):
        return self.cell.bias_constraint

    @property
    def dropout(self):
        return self.cell.dropout

    @property
    def recurrent_dropout(self):
        return self.cell.recurrent_dropout

    @property
    def recurrent_max_abs(self):
        return self.cell.recurrent_max_abs

    @property
    def seed(self):
        return self.cell.seed

    def get_config(self):
        config = {
            **self.cell.hyperparameters(),
            "activity_regularizer": regularizers.serialize(
                self.activity_regularizer
            ),
            "implementation": self.implementation,
        }
        base_config = super().get_config()
        del base_config["cell"]
        return versioned({**base_config, **config})

    @classmethod
    def from_config(cls, config):
        return from_versioned_config(cls, config)
