"""The models the benchmarks time: one small network around each
recurrent layer under test,

    Input(T, features) -> layer(units) x L -> Dense(1)

and the dense floor, which replaces each recurrent layer by
`Dense(units, relu)` over time: the same matmuls without a recurrence, so
no recurrent layer can beat it.
"""

import contextlib
import os

MODELS = {
    "indrnn_sequential": "IndRNN (sequential)",
    "indrnn_torchscript": "IndRNN (sequential, TorchScript)",
    "indrnn_parallel": "IndRNN (parallel)",
    "indrnn_cell_rnn": "RNN(IndRNNCell)",
    "simple_rnn": "SimpleRNN",
    "gru": "GRU",
    "lstm": "LSTM",
    "dense_floor": "dense floor",
}


# Environment variables in force while a model runs; the PyTorch engine
# reads them at each call. The TorchScript row is the PyTorch engine's
# sequential loop with its compiled kernels (Triton, Numba) off.
ENVIRONMENTS = {
    "indrnn_torchscript": {
        "KERAS_INDRNN_TRITON": "0",
        "KERAS_INDRNN_NUMBA": "0",
    },
}


@contextlib.contextmanager
def environment(name):
    """Sets model `name`'s environment variables while the block runs."""
    variables = ENVIRONMENTS.get(name, {})
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_model(name, timesteps, layers, units, features, jit_compile="auto"):
    """The compiled Keras model `name` (a key of `MODELS`)."""
    import keras

    from keras_indrnn import IndRNN
    from keras_indrnn import IndRNNCell

    bound = 2 ** (1 / timesteps)

    def recurrent(return_sequences):
        if name.startswith("indrnn_") and name != "indrnn_cell_rnn":
            parallel = name == "indrnn_parallel"
            return IndRNN(
                units,
                recurrent_max_abs=bound,
                implementation="parallel" if parallel else "sequential",
                return_sequences=return_sequences,
            )
        if name == "indrnn_cell_rnn":
            return keras.layers.RNN(
                IndRNNCell(units, recurrent_max_abs=bound),
                return_sequences=return_sequences,
            )
        layer = {
            "simple_rnn": keras.layers.SimpleRNN,
            "gru": keras.layers.GRU,
            "lstm": keras.layers.LSTM,
        }[name]
        return layer(units, return_sequences=return_sequences)

    inputs = keras.Input((timesteps, features))
    h = inputs
    for i in range(layers):
        last = i == layers - 1
        if name == "dense_floor":
            h = keras.layers.Dense(units, activation="relu")(h)
        else:
            h = recurrent(return_sequences=not last)(h)
    if name == "dense_floor":
        h = h[:, -1]
    model = keras.Model(inputs, keras.layers.Dense(1)(h), name=name)
    model.compile(keras.optimizers.Adam(1e-4), "mse", jit_compile=jit_compile)
    return model
