"""Models with IndRNN layers exported for serving, run by the exported
artifact's own runtime and compared with Keras."""

import keras
import numpy as np
import pytest

from keras_indrnn import IndRNN

BACKEND = keras.backend.backend()


def _two_layer_model(masked):
    inputs = keras.Input((50, 3))
    h = keras.layers.Masking(0.0)(inputs) if masked else inputs
    h = IndRNN(16, return_sequences=True, recurrent_max_abs=1.0)(h)
    h = IndRNN(16, recurrent_max_abs=1.0)(h)
    return keras.Model(inputs, keras.layers.Dense(2)(h))


def _inputs(rng, batch, masked):
    x = rng.normal(size=(batch, 50, 3)).astype("float32")
    if masked:
        # Variable lengths, by zero padding at the end.
        for i, length in enumerate(rng.integers(1, 51, size=batch)):
            x[i, length:] = 0.0
    return x


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's ONNX exporter")
@pytest.mark.parametrize("masked", [False, True])
def test_onnx_from_torch_matches_for_every_batch_size(rng, tmp_path, masked):
    import onnxruntime

    model = _two_layer_model(masked)
    model.predict(_inputs(rng, 4, masked), verbose=0)
    path = str(tmp_path / "model.onnx")
    model.export(path, format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(path)
    name = session.get_inputs()[0].name
    for batch in (4, 7, 1):
        x = _inputs(rng, batch, masked)
        (served,) = session.run(None, {name: x})
        expected = model.predict(x, verbose=0)
        np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
