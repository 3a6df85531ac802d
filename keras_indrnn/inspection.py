"""A look inside trained IndRNNs: each unit's memory is set by its own `u`.

A unit's state is multiplied by its recurrent weight `u` at every step, so
what it held `k` steps ago weighs `|u| ** k` in its state today (before the
activation). `memory_lengths` turns that into steps: how long until a
contribution has shrunk below one half.
"""

import math

import keras
import numpy as np

from keras_indrnn.layer import IndRNN


def memory_lengths(recurrent_kernel):
    """Steps after which `|u| ** k` first falls below one half, per unit:
    the smallest integer `k >= 1` with `|u| ** k < 1/2`, and `inf` where
    `|u| >= 1` (the unit never forgets).

    Args:
        recurrent_kernel: Array of recurrent weights `u`, any shape.

    Returns:
        A float array of the same shape.
    """
    u = np.abs(np.asarray(recurrent_kernel, np.float64))
    lengths = np.full(u.shape, math.inf)
    for index in zip(*np.nonzero(u < 1), strict=True):
        lengths[index] = _memory_length(u[index])
    return lengths


def _memory_length(u):
    if u == 0:
        return 1.0
    k = max(1, math.floor(math.log(0.5) / math.log(u)) + 1)
    # Rounding in the logarithms can be off by one step either way.
    while k > 1 and u ** (k - 1) < 0.5:
        k -= 1
    while u**k >= 0.5:
        k += 1
    return float(k)


def unit_memories(model):
    """Each `IndRNN` layer of `model` with its units' recurrent weights and
    memory lengths, in the order of `model`'s layers.

    Returns:
        A list of dicts with keys `"layer"` (the layer's name),
        `"recurrent_kernel"` and `"memory"` (arrays of shape `(units,)`).
    """
    return [
        {
            "layer": layer.name,
            "recurrent_kernel": u,
            "memory": memory_lengths(u),
        }
        for layer in indrnn_layers(model)
        for u in [keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)]
    ]


def indrnn_layers(model):
    """The `IndRNN` layers in `model`, also inside nested models and
    wrappers such as `Bidirectional`, in order."""
    found = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, IndRNN):
            found.append(layer)
    return found
