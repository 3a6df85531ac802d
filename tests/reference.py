"""An independent float64 NumPy reference for IndRNN, used by the tests."""

import keras
import numpy as np

ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "linear": lambda x: x,
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "hard_sigmoid": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
}


def indrnn(
    x,
    kernel,
    recurrent_kernel,
    bias=None,
    initial_state=None,
    activation="relu",
    mask=None,
    go_backwards=False,
    zero_output_for_mask=False,
):
    """Steps `h_t = act(x_t @ kernel + u * h_{t-1} + bias)` one at a time.

    Follows `keras.layers.RNN`'s conventions: with `go_backwards` the
    outputs come in processing order; a masked step keeps the state and
    repeats the last output (zeros before the first unmasked step), or
    outputs zeros with `zero_output_for_mask`.

    Returns `(outputs (batch, T, units), last_output, final_state)`.
    """
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    u = np.asarray(recurrent_kernel, np.float64)
    act = ACTIVATIONS[activation]
    batch, steps, _ = x.shape
    units = kernel.shape[1]
    h = np.zeros((batch, units)) if initial_state is None else initial_state
    h = np.asarray(h, np.float64)
    last = np.zeros((batch, units))
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    outputs = []
    for t in order:
        pre = x[:, t] @ kernel + u * h
        if bias is not None:
            pre = pre + bias
        new_h = act(pre)
        if mask is None:
            h = last = new_h
        else:
            keep = np.asarray(mask[:, t], bool)[:, None]
            h = np.where(keep, new_h, h)
            if zero_output_for_mask:
                last = np.where(keep, new_h, 0.0)
            else:
                last = np.where(keep, new_h, last)
        outputs.append(last)
    return np.stack(outputs, axis=1), last, h


def relative_error(actual, expected):
    """max |actual - expected| / max |expected|, `actual` from any engine."""
    actual = np.asarray(keras.ops.convert_to_numpy(actual), np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(np.max(np.abs(expected)), 1e-30)
    return np.max(np.abs(actual - expected)) / scale
