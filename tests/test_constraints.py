import keras
import numpy as np
import pytest

from keras_indrnn import IndRNN
from keras_indrnn import RecurrentClip
from keras_indrnn import RecurrentUniform


def test_clip_projects_into_the_bound():
    w = np.array([-3.0, -1.0, 0.2, 1.0, 2.5], "float32")
    clipped = keras.ops.convert_to_numpy(RecurrentClip(1.5)(w))
    np.testing.assert_array_equal(
        clipped, np.array([-1.5, -1.0, 0.2, 1.0, 1.5], "float32")
    )


@pytest.mark.parametrize("max_abs", [0, -2.0, float("inf"), "1", None, True])
def test_clip_rejects_bad_bounds(max_abs):
    with pytest.raises(ValueError, match="`max_abs`"):
        RecurrentClip(max_abs)


def test_constraint_and_initializer_serialize():
    for obj in (RecurrentClip(1.25), RecurrentUniform(2.0, minval=0.5, seed=3)):
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(obj)
        )
        assert type(restored) is type(obj)
        assert restored.get_config() == obj.get_config()


def test_uniform_initializer_range():
    values = keras.ops.convert_to_numpy(
        RecurrentUniform(1.2, minval=0.8)((5000,))
    )
    assert values.min() >= 0.8 and values.max() <= 1.2
    assert values.min() < 0.81 and values.max() > 1.19


def test_uniform_initializer_rejects_empty_range():
    with pytest.raises(ValueError, match="`minval`"):
        RecurrentUniform(1.0, minval=1.0)


@pytest.mark.parametrize(
    "max_abs, upper", [(None, 1.0), (1.7, 1.7), ("auto", 2 ** (1 / 8))]
)
def test_default_recurrent_initializer_follows_the_paper(max_abs, upper):
    layer = IndRNN(4000, recurrent_max_abs=max_abs)
    layer.build((1, 8, 2))
    u = keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)
    assert u.min() >= 0.0 and u.max() <= np.float32(upper)
    assert u.min() < 0.01 * upper and u.max() > 0.99 * upper


def test_explicit_recurrent_initializer_is_used():
    layer = IndRNN(50, recurrent_initializer=keras.initializers.Constant(-0.25))
    layer.build((1, 3, 2))
    u = keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)
    np.testing.assert_array_equal(u, np.full(50, -0.25, "float32"))
