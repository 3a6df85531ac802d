import keras
import numpy as np

from keras_indrnn import IndRNN
from keras_indrnn import memory_lengths
from keras_indrnn import unit_memories


def test_memory_lengths_by_hand():
    u = [0.0, 0.3, 0.5, -0.8, 0.9, 0.99, 1.0, -1.01]
    # |u|**k < 1/2 first at: 0**1; 0.3**1; 0.5**2 = 0.25 (0.5**1 is not
    # below); 0.8**4 = 0.41 (0.8**3 = 0.512); 0.9**7 = 0.478 (0.9**6 =
    # 0.531); 0.99**69 = 0.4998 (0.99**68 = 0.5049); never for |u| >= 1.
    expected = [1, 1, 2, 4, 7, 69, np.inf, np.inf]
    np.testing.assert_array_equal(memory_lengths(u), expected)


def test_memory_lengths_keep_the_shape():
    u = np.full((2, 3), 0.9)
    np.testing.assert_array_equal(memory_lengths(u), np.full((2, 3), 7.0))


def test_unit_memories_of_each_layer_in_order():
    inputs = keras.Input((5, 2))
    first = IndRNN(
        3,
        return_sequences=True,
        recurrent_initializer=keras.initializers.Constant(0.5),
        name="first",
    )
    second = IndRNN(
        2,
        recurrent_initializer=keras.initializers.Constant(-1.0),
        name="second",
    )
    outputs = keras.layers.Dense(1)(second(first(inputs)))
    memories = unit_memories(keras.Model(inputs, outputs))
    assert [m["layer"] for m in memories] == ["first", "second"]
    np.testing.assert_array_equal(memories[0]["recurrent_kernel"], [0.5] * 3)
    np.testing.assert_array_equal(memories[0]["memory"], [2.0] * 3)
    np.testing.assert_array_equal(memories[1]["memory"], [np.inf] * 2)
