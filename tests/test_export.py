"""Models with IndRNN layers exported for serving, run by the artifact's own
runtime and compared with Keras: ONNX from every engine, LiteRT and
SavedModel from TensorFlow, `jax.export` with symbolic shapes, and
`torch.export`. Fixed and variable lengths, with and without masks."""

import keras
import numpy as np
import pytest

from keras_indrnn import IndRNN

BACKEND = keras.backend.backend()
TIMESTEPS = 20


def two_layer_model(variable_length):
    """IndRNN -> IndRNN -> Dense; with variable length, zero padding at the
    end is masked."""
    inputs = keras.Input((None if variable_length else TIMESTEPS, 3))
    h = keras.layers.Masking(0.0)(inputs) if variable_length else inputs
    h = IndRNN(16, return_sequences=True, recurrent_max_abs=1.0)(h)
    h = IndRNN(16, recurrent_max_abs=1.0)(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    model(np.zeros((1, TIMESTEPS, 3), "float32"))  # exporters need a call
    return model


def batches(rng, variable_length):
    """Inputs of other batch sizes (and lengths) than the export saw."""
    shapes = [(4, TIMESTEPS), (7, TIMESTEPS), (1, TIMESTEPS)]
    if variable_length:
        shapes += [(3, 9), (2, 33)]
    for batch, steps in shapes:
        x = rng.normal(size=(batch, steps, 3)).astype("float32")
        if variable_length:
            for i, length in enumerate(rng.integers(1, steps + 1, batch)):
                x[i, length:] = 0.0
        yield x


def assert_serves_like_keras(model, serve, rng, variable_length):
    for x in batches(rng, variable_length):
        np.testing.assert_allclose(
            serve(x), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("variable_length", [False, True])
def test_onnx(rng, tmp_path, variable_length):
    import onnxruntime

    model = two_layer_model(variable_length)
    path = str(tmp_path / "model.onnx")
    model.export(path, format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(path)
    name = session.get_inputs()[0].name
    assert_serves_like_keras(
        model,
        lambda x: session.run(None, {name: x})[0],
        rng,
        variable_length,
    )


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's converter")
@pytest.mark.parametrize("variable_length", [False, True])
def test_litert(rng, tmp_path, variable_length):
    import tensorflow as tf

    model = two_layer_model(variable_length)
    path = str(tmp_path / "model.tflite")
    model.export(path, format="litert", verbose=False)
    interpreter = tf.lite.Interpreter(model_path=path)
    (inputs,), (outputs,) = (
        interpreter.get_input_details(),
        interpreter.get_output_details(),
    )

    def serve(x):
        interpreter.resize_tensor_input(inputs["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inputs["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(outputs["index"])

    assert_serves_like_keras(model, serve, rng, variable_length)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's format")
@pytest.mark.parametrize("variable_length", [False, True])
def test_tf_saved_model(rng, tmp_path, variable_length):
    import tensorflow as tf

    model = two_layer_model(variable_length)
    model.export(str(tmp_path), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(tmp_path))
    assert_serves_like_keras(
        model, lambda x: served.serve(x).numpy(), rng, variable_length
    )


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's own export")
@pytest.mark.parametrize("variable_length", [False, True])
def test_jax_export_with_symbolic_shapes(rng, variable_length):
    import jax
    from jax import export

    model = two_layer_model(variable_length)
    trainable = [v.value for v in model.trainable_variables]
    fixed = [v.value for v in model.non_trainable_variables]

    def predict(x):
        return model.stateless_call(trainable, fixed, x)[0]

    dims = "b, t, 3" if variable_length else f"b, {TIMESTEPS}, 3"
    spec = jax.ShapeDtypeStruct(export.symbolic_shape(dims), "float32")
    exported = export.deserialize(
        export.export(jax.jit(predict))(spec).serialize()
    )
    assert_serves_like_keras(
        model, lambda x: np.asarray(exported.call(x)), rng, variable_length
    )


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's own export")
def test_torch_export(rng, tmp_path):
    import torch

    model = two_layer_model(variable_length=False)
    path = str(tmp_path / "model.pt2")
    batch = torch.export.Dim("batch", min=1, max=64)
    model.export(path, format="torch", verbose=False, dynamic_shapes={0: batch})
    program = torch.export.load(path).module()

    def serve(x):
        return keras.ops.convert_to_numpy(program(torch.from_numpy(x)))

    assert_serves_like_keras(model, serve, rng, variable_length=False)


@pytest.mark.skipif(BACKEND == "tensorflow", reason="TensorFlow has LiteRT")
def test_a_format_the_engine_lacks_is_refused(tmp_path):
    model = two_layer_model(variable_length=False)
    formats = {"jax": "litert", "torch": "tf_saved_model"}
    with pytest.raises((ValueError, ImportError)):
        model.export(str(tmp_path / "model"), format=formats[BACKEND])
