"""An embedding whose matrix is also the output layer (weight tying).

Press & Wolf (2017) and Inan et al. (2017) share one `(vocab, dim)` matrix
between the input embedding and the softmax layer of a language model; the
IndRNN papers' language models do so too (`--w_tying`, the decoder keeping
its own bias). keras-hub's `ReversibleEmbedding` is the well-kept version of
this layer, but keras-hub is a heavy dependency for one matrix product.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_indrnn_examples")
class TiedEmbedding(keras.layers.Layer):
    """Token embedding that, called with `reverse=True`, maps features back
    to logits over the vocabulary with the same matrix.

    Called on integer tokens `(...,)`, it returns `embeddings[tokens]`,
    `(..., output_dim)`. Called with `reverse=True` on features
    `(..., output_dim)`, it returns `features @ embeddings.T + bias`,
    `(..., input_dim)`. Call the one layer twice in a functional model and
    both ends train one variable, which a `.keras` file keeps shared.

    Args:
        input_dim: Positive integer, the vocabulary size.
        output_dim: Positive integer, the embedding size.
        embeddings_initializer: Initializer of the matrix.
        use_output_bias: Whether the output has a bias of its own (default
            `True`, as the papers' tied decoder).

    Example:

    ```python
    tokens = keras.Input((35,), dtype="int32")
    embedding = TiedEmbedding(10_000, 200)
    features = keras.layers.LSTM(200, return_sequences=True)(embedding(tokens))
    logits = embedding(features, reverse=True)  # (batch, 35, 10000)
    ```
    """

    def __init__(
        self,
        input_dim,
        output_dim,
        embeddings_initializer="uniform",
        use_output_bias=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer
        )
        self.use_output_bias = bool(use_output_bias)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            shape=(self.input_dim, self.output_dim),
            initializer=self.embeddings_initializer,
            name="embeddings",
        )
        self.output_bias = None
        if self.use_output_bias:
            self.output_bias = self.add_weight(
                shape=(self.input_dim,), initializer="zeros", name="output_bias"
            )

    def call(self, inputs, reverse=False):
        if not reverse:
            return ops.take(self.embeddings, ops.cast(inputs, "int32"), axis=0)
        kernel = ops.cast(self.embeddings, inputs.dtype)
        logits = ops.matmul(inputs, ops.transpose(kernel))
        if self.output_bias is not None:
            logits = logits + ops.cast(self.output_bias, logits.dtype)
        return logits

    def compute_output_spec(self, inputs, reverse=False):
        if reverse:
            shape = (*inputs.shape[:-1], self.input_dim)
        else:
            shape = (*inputs.shape, self.output_dim)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": keras.initializers.serialize(
                self.embeddings_initializer
            ),
            "use_output_bias": self.use_output_bias,
        }
