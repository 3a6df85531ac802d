"""A stateful IndRNN exported to ONNX: the file starts from the state the
layer holds, exporting leaves that state alone on every engine, and on
TensorFlow the process exits without tracebacks. Tracing the state update
for ONNX made TF's freezing (in tf2onnx) fail after it had taken the
recurrent loop's functions out of the eager context; each of them then
printed `Exception ignored in: <function AtomicFunction.__del__ ...>` at
exit."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import reference
from keras import ops

import keras_indrnn
from keras_indrnn import IndRNN

BATCH, STEPS, FEATURES, UNITS = 4, 7, 3, 5


def f32(array):
    return np.asarray(array).astype("float32").astype("float64")


def test_onnx_file_starts_from_the_state_and_leaves_it(rng, tmp_path):
    import onnxruntime

    inputs = keras.Input(batch_shape=(BATCH, STEPS, FEATURES))
    layer = IndRNN(UNITS, stateful=True, return_sequences=True)
    model = keras.Model(inputs, layer(inputs))
    weights = [
        f32(rng.normal(size=(FEATURES, UNITS)) * 0.6),
        f32(rng.uniform(0.6, 1.0, size=UNITS)),
        f32(rng.normal(size=UNITS) * 0.2 + 0.3),
    ]
    model.set_weights([w.astype("float32") for w in weights])
    x = f32(rng.normal(size=(BATCH, 2 * STEPS, FEATURES)))
    first, second = x[:, :STEPS], x[:, STEPS:]
    expected, _, _ = reference.indrnn(x, *weights)
    model(first.astype("float32"))  # the exporters want a called model
    held = ops.convert_to_numpy(layer.states[0]).copy()
    assert np.any(held != 0)

    path = str(tmp_path / "model.onnx")
    # PyTorch's and JAX's exporters take the batch size from here.
    spec = keras.InputSpec(shape=(BATCH, STEPS, FEATURES), dtype="float32")
    model.export(path, format="onnx", verbose=False, input_signature=[spec])
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.states[0]), held)

    session = onnxruntime.InferenceSession(path)
    name = session.get_inputs()[0].name
    served = session.run(None, {name: second.astype("float32")})[0]
    assert reference.relative_error(served, expected[:, STEPS:]) < 1e-5
    # ... and the model goes on from the same state.
    got = model.predict_on_batch(second.astype("float32"))
    assert reference.relative_error(got, expected[:, STEPS:]) < 1e-5


SCRIPT = textwrap.dedent(
    """
    import sys

    import keras
    import numpy as np

    from keras_indrnn import IndRNN

    inputs = keras.Input((10, 3), batch_size=4)
    model = keras.Model(
        inputs, keras.layers.Dense(1)(IndRNN(4, stateful=True)(inputs))
    )
    model.compile("adam", "mse")
    x = np.random.rand(16, 10, 3).astype("float32")
    y = np.random.rand(16, 1).astype("float32")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.predict(x, batch_size=4, verbose=0)
    model.export(sys.argv[1], format="onnx", verbose=False)
    print("done")
    """
)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow's exit"
)
def test_process_exits_without_tracebacks_after_onnx_export(tmp_path):
    # The package under test, wherever it is imported from here.
    package_root = str(Path(keras_indrnn.__file__).resolve().parents[1])
    path = os.pathsep.join(
        filter(None, [package_root, os.environ.get("PYTHONPATH")])
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "model.onnx")],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "PYTHONPATH": path,
            "KERAS_BACKEND": "tensorflow",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        },
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("done"), done.stdout
    assert (tmp_path / "model.onnx").is_file()
    assert "Exception ignored" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
