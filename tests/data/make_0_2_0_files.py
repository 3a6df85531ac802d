"""Writes the files of keras_indrnn 0.2.0 that tests/test_stateful_weights.py
loads: a stateful IndRNN model saved as `.keras` and as `.weights.h5` by
0.2.0, which tracked the state as a weight of the layer, and its weights
and saved state as plain NumPy arrays (`.npz`), for the float64 reference.
The `.keras` file is named `.keras.zip` (what it is), since the repository
ignores `*.keras`; Keras loads it under a `.keras` name.

Run it with the 0.2.0 package, from the repository root:

    mkdir -p /tmp/old && git archive 7cb22b2 keras_indrnn | tar -x -C /tmp/old
    KERAS_BACKEND=tensorflow PYTHONPATH=/tmp/old \\
        python tests/data/make_0_2_0_files.py
"""

import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

import keras_indrnn
from keras_indrnn import IndRNN

HERE = Path(__file__).parent
NAME = "indrnn-0.2.0-stateful"
BATCH, STEPS, FEATURES, UNITS = 2, 5, 2, 4


def main():
    if keras_indrnn.__version__ != "0.2.0":
        raise SystemExit(
            f"this writes files of keras_indrnn 0.2.0; PYTHONPATH gives "
            f"{keras_indrnn.__version__} from {keras_indrnn.__file__}"
        )
    rng = np.random.default_rng(20261203)
    inputs = keras.Input(batch_shape=(BATCH, STEPS, FEATURES))
    indrnn = IndRNN(UNITS, stateful=True, return_sequences=True)
    dense = keras.layers.Dense(1)
    model = keras.Model(inputs, dense(indrnn(inputs)))
    arrays = {
        "kernel": rng.normal(size=(FEATURES, UNITS)) * 0.6,
        "recurrent_kernel": rng.uniform(-1.0, 1.0, size=UNITS),
        "bias": rng.normal(size=UNITS) * 0.2,
        "dense_kernel": rng.normal(size=(UNITS, 1)),
        "dense_bias": rng.normal(size=1) * 0.1,
    }
    arrays = {k: v.astype("float32") for k, v in arrays.items()}
    indrnn.cell.set_weights(
        [arrays[k] for k in ("kernel", "recurrent_kernel", "bias")]
    )
    dense.set_weights([arrays["dense_kernel"], arrays["dense_bias"]])
    # A state that is not zero, as a model saved between windows holds.
    model.predict(
        rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32"),
        batch_size=BATCH,
        verbose=0,
    )
    arrays["state"] = keras.ops.convert_to_numpy(indrnn.states[0])
    # 0.2.0's layout: the state is the layer's first weight.
    assert [w.name for w in indrnn.weights][0] == "rnn_state"
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "model.keras")
        shutil.copy(Path(tmp) / "model.keras", HERE / f"{NAME}.keras.zip")
    model.save_weights(HERE / f"{NAME}.weights.h5")
    np.savez(HERE / f"{NAME}.npz", **arrays)


if __name__ == "__main__":
    main()
