"""A JAX-trained model served by TensorFlow: Keras's `tf_saved_model`
export from JAX and `jax2tf`, at fixed and variable length with masks,
compared with Keras on other batch sizes than the export saw. Needs JAX
and TensorFlow in one environment (tox -e interop)."""

import keras
import pytest
from test_export import assert_serves_like_keras
from test_export import two_layer_model

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="exports from JAX"
)


@pytest.mark.parametrize("variable_length", [False, True])
def test_tf_saved_model_from_jax(rng, tmp_path, variable_length):
    import tensorflow as tf

    model = two_layer_model(variable_length)
    model.export(str(tmp_path), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(tmp_path))
    assert_serves_like_keras(
        model, lambda x: served.serve(x).numpy(), rng, variable_length
    )


@pytest.mark.parametrize("variable_length", [False, True])
def test_jax2tf(rng, variable_length):
    import tensorflow as tf
    from jax.experimental import jax2tf

    model = two_layer_model(variable_length)
    trainable = [v.value for v in model.trainable_variables]
    fixed = [v.value for v in model.non_trainable_variables]

    def predict(x):
        outputs, _ = model.stateless_call(trainable, fixed, x)
        return outputs

    shape = "(b, t, _)" if variable_length else "(b, _, _)"
    converted = tf.function(
        jax2tf.convert(predict, polymorphic_shapes=[shape]),
        input_signature=[
            tf.TensorSpec(
                (None, None if variable_length else 20, 3), tf.float32
            )
        ],
        autograph=False,
    )
    assert_serves_like_keras(
        model, lambda x: converted(x).numpy(), rng, variable_length
    )
