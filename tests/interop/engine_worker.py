"""One engine's side of the cross-engine tests, run as a subprocess with
KERAS_BACKEND set:

    python engine_worker.py save DIR      # train, save DIR/<engine>/..., go on
    python engine_worker.py load DIR SRC  # load SRC's files, go on training
    python engine_worker.py predict DIR SRC  # load without the optimizer

Both write what they measured to JSON beside the files. The models are
the probe's: IndRNN(16, sequences) -> IndRNN(16) -> Dense(2) on (50, 3)
inputs, at a fixed length, and at variable length with masking.
"""

import importlib.util
import json
import sys
from pathlib import Path

# With TensorFlow and PyTorch in one process, torch must come first.
if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401

import keras
import numpy as np

from keras_indrnn import IndRNN

VARIANTS = ("fixed", "masked")
STEPS = 3


def build(variant):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((50 if variant == "fixed" else None, 3))
    h = keras.layers.Masking(0.0)(inputs) if variant == "masked" else inputs
    h = IndRNN(16, return_sequences=True, recurrent_max_abs=1.0)(h)
    h = IndRNN(16, recurrent_max_abs=1.0)(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    return model


def data(variant):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 50, 3)).astype("float32")
    if variant == "masked":
        for i, length in enumerate(rng.integers(5, 51, size=8)):
            x[i, length:] = 0.0
    y = rng.normal(size=(8, 2)).astype("float32")
    return x, y


def go_on(model, variant):
    """Predictions, then the losses of STEPS more training steps."""
    x, y = data(variant)
    prediction = model.predict(x, verbose=0)
    losses = [float(model.train_on_batch(x, y)) for _ in range(STEPS)]
    return prediction, losses


def main():
    command, directory = sys.argv[1], Path(sys.argv[2])
    backend = keras.backend.backend()
    results = {}
    for variant in VARIANTS:
        if command == "save":
            model = build(variant)
            x, y = data(variant)
            for _ in range(STEPS):
                model.train_on_batch(x, y)
            folder = directory / backend
            folder.mkdir(parents=True, exist_ok=True)
            model.save(folder / f"{variant}.keras")
        elif command == "predict":
            source = directory / sys.argv[3] / f"{variant}.keras"
            model = keras.models.load_model(source, compile=False)
            x, _ = data(variant)
            results[variant] = {
                "prediction": model.predict(x, verbose=0).tolist()
            }
            continue
        else:
            source = directory / sys.argv[3] / f"{variant}.keras"
            model = keras.models.load_model(source)
            if backend == "torch" and model.jit_compile:
                # A file saved on JAX asks for jit_compile, which on
                # PyTorch means a slow torch.compile: the same optimizer,
                # state and all, without it.
                model.compile(model.optimizer, model.loss, jit_compile=False)
        prediction, losses = go_on(model, variant)
        results[variant] = {"prediction": prediction.tolist(), "losses": losses}
    name = backend if command == "save" else f"{sys.argv[3]}-to-{backend}"
    (directory / f"{name}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()
