"""Runs `UnitParallel` on N simulated CPU devices and reports, as JSON on
stdout, what tests/test_distribution.py checks against the same model on
one device. Usage: python unit_parallel_worker.py DEVICES UNITS"""

import json
import os
import sys

devices, units = int(sys.argv[1]), int(sys.argv[2])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_indrnn import plain_indrnn  # noqa: E402
from keras_indrnn.distribution import UnitParallel  # noqa: E402
from keras_indrnn.distribution import program_report  # noqa: E402


def build():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 3))
    features = plain_indrnn(inputs, layers=2, units=units, dropout=0.0)
    model = keras.Model(inputs, keras.layers.Dense(2)(features))
    model.compile(keras.optimizers.SGD(0.5), "mse")
    return model


def step(model, x, y):
    """Outputs, then the weights after one training step."""
    outputs = model.predict(x, verbose=0)
    model.train_on_batch(x, y)
    return outputs, [np.asarray(w) for w in model.get_weights()]


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 16, 3)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    single_outputs, single_weights = step(build(), x, y)
    mesh = keras.distribution.DeviceMesh(
        (1, devices), ("batch", "model"), jax.devices()[:devices]
    )
    try:
        keras.distribution.set_distribution(UnitParallel(mesh))
        model = build()
    except ValueError as error:
        print(json.dumps({"error": str(error)}))
        return
    kernel = model.layers[1].cell.kernel.value
    shards = {s.data.shape for s in kernel.addressable_shards}
    report = program_report(model, x)
    outputs, weights = step(model, x, y)
    print(
        json.dumps(
            {
                "kernel_shards": sorted(shards),
                "output_error": float(np.abs(outputs - single_outputs).max()),
                "weight_errors": [
                    float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
                    for a, b in zip(weights, single_weights, strict=True)
                ],
                "loops": report["loops"],
                "collectives_in_loops": report["collectives_in_loops"],
            }
        )
    )


if __name__ == "__main__":
    main()
