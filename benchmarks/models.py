"""The models the benchmarks time: one small network around each
recurrent layer under test,

    Input(T, features) -> layer(units) x L -> Dense(1)

and the dense floor, which replaces each recurrent layer by
`Dense(units, relu)` over time: the same matmuls without a recurrence, so
no recurrent layer can beat it.
"""

MODELS = {
    "indrnn_sequential": "IndRNN (sequential)",
    "indrnn_parallel": "IndRNN (parallel)",
    "indrnn_cell_rnn": "RNN(IndRNNCell)",
    "simple_rnn": "SimpleRNN",
    "gru": "GRU",
    "lstm": "LSTM",
    "dense_floor": "dense floor",
}


def build_model(name, timesteps, layers, units, features, jit_compile="auto"):
    """The compiled Keras model `name` (a key of `MODELS`)."""
    import keras

    from keras_indrnn import IndRNN
    from keras_indrnn import IndRNNCell

    bound = 2 ** (1 / timesteps)

    def recurrent(return_sequences):
        if name in ("indrnn_sequential", "indrnn_parallel"):
            return IndRNN(
                units,
                recurrent_max_abs=bound,
                implementation=name.split("_")[1],
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
