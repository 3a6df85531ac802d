"""Independently Recurrent Neural Networks (IndRNN) for Keras 3."""

from keras_indrnn.cell import IndRNNCell
from keras_indrnn.constraints import RecurrentClip
from keras_indrnn.initializers import RecurrentUniform
from keras_indrnn.layer import IndRNN

__version__ = "0.1.0"

__all__ = ["IndRNN", "IndRNNCell", "RecurrentClip", "RecurrentUniform"]
