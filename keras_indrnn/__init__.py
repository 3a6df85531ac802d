"""Independently Recurrent Neural Networks (IndRNN) for Keras 3."""

from keras_indrnn import engines
from keras_indrnn.cell import IndRNNCell
from keras_indrnn.constraints import RecurrentClip
from keras_indrnn.initializers import RecurrentUniform
from keras_indrnn.inspection import memory_lengths
from keras_indrnn.inspection import unit_memories
from keras_indrnn.layer import IndRNN
from keras_indrnn.networks import dense_indrnn
from keras_indrnn.networks import plain_indrnn
from keras_indrnn.networks import residual_indrnn
from keras_indrnn.normalization import FramewiseBatchNormalization
from keras_indrnn.version import __version__

engines.watch_model_export()

__all__ = [
    "__version__",
    "FramewiseBatchNormalization",
    "IndRNN",
    "IndRNNCell",
    "RecurrentClip",
    "RecurrentUniform",
    "dense_indrnn",
    "memory_lengths",
    "plain_indrnn",
    "residual_indrnn",
    "unit_memories",
]
