"""The engines' custom gradients: errors raised in the forward pass reach
the caller (Keras's own `ops.custom_gradient` on PyTorch turns them into
NaN gradients)."""

import numpy as np
import pytest
from keras import ops

from keras_indrnn import engines


def test_an_error_in_the_forward_pass_propagates():
    def failing(x):
        raise RuntimeError("raised inside the forward pass")

    run = engines.current().custom_gradient(failing)
    with pytest.raises(RuntimeError, match="inside the forward pass"):
        run(ops.ones((2, 3)))


def test_a_forward_pass_is_not_retried_after_an_error():
    # Keras's PyTorch `custom_gradient` calls the function again after an
    # error and gives NaN gradients if the second call succeeds.
    calls = []

    def fails_once(x):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        return (x,), lambda upstreams: upstreams

    run = engines.current().custom_gradient(fails_once)
    with pytest.raises(RuntimeError, match="first call fails"):
        run(ops.ones((2, 3)))
    assert len(calls) == 1


def test_outputs_and_gradients_pass_through():
    def square(x):
        return (x * x,), lambda upstreams: (2 * x * upstreams[0],)

    run = engines.current().custom_gradient(square)
    (result,) = run(ops.convert_to_tensor(np.array([1.0, -2.0], "float32")))
    np.testing.assert_array_equal(ops.convert_to_numpy(result), [1.0, 4.0])
