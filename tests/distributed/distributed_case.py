"""The training case of the distributed tests, shared by the tests and
their worker processes: a small two-layer IndRNN, its data and initial
weights, and a callback that reads every replica's copy of the recurrent
weights after every step.

The case is written to a directory as NumPy files (`write_case`) so that
every process, whatever its engine's runtime, starts from the same
weights and sees the same global batches in the same order.
"""

from pathlib import Path

import keras
import numpy as np

from keras_indrnn import IndRNN

TIMESTEPS, FEATURES, UNITS = 20, 3, 8
STEPS = 4  # training steps, one global batch each
GLOBAL_BATCH = 8
# Plain SGD with a rate large enough, and a bound tight enough, that the
# constraint clips some u at the first steps (the tests check that it did).
BOUND = 0.5
LEARNING_RATE = 0.5
PROBE = 6  # inputs of the prediction checks


def build_model():
    inputs = keras.Input((TIMESTEPS, FEATURES))
    h = IndRNN(UNITS, return_sequences=True, recurrent_max_abs=BOUND)(inputs)
    h = IndRNN(UNITS, recurrent_max_abs=BOUND)(h)
    return keras.Model(inputs, keras.layers.Dense(1)(h))


def compile_model(model):
    model.compile(keras.optimizers.SGD(LEARNING_RATE), "mse")
    return model


def recurrent_kernels(model):
    """The `u` of each IndRNN layer, in order."""
    return [
        layer.cell.recurrent_kernel
        for layer in model.layers
        if isinstance(layer, IndRNN)
    ]


def write_case(directory, seed):
    """Initial weights, training data and probe inputs, drawn by NumPy."""
    rng = np.random.default_rng(seed)
    model = build_model()
    weights = []
    for variable in model.weights:
        shape = tuple(variable.shape)
        if variable.path.endswith("recurrent_kernel"):
            # Near the bound, either sign: a few steps push some out.
            sign = rng.choice([-1.0, 1.0], shape)
            value = sign * rng.uniform(0.9 * BOUND, 0.999 * BOUND, shape)
        elif variable.path.endswith("bias"):
            value = rng.uniform(0.1, 0.3, shape)
        else:
            value = rng.normal(0.0, 0.3, shape)
        weights.append(value.astype("float32"))
    samples = STEPS * GLOBAL_BATCH
    directory = Path(directory)
    np.savez(directory / "weights.npz", *weights)
    np.savez(
        directory / "data.npz",
        x=rng.uniform(0.0, 1.0, (samples, TIMESTEPS, FEATURES)).astype(
            "float32"
        ),
        y=rng.normal(2.0, 0.5, (samples, 1)).astype("float32"),
        probe=rng.uniform(0.0, 1.0, (PROBE, TIMESTEPS, FEATURES)).astype(
            "float32"
        ),
    )
    return directory


def read_weights(directory):
    with np.load(Path(directory) / "weights.npz") as stored:
        return [stored[f"arr_{i}"] for i in range(len(stored.files))]


def read_data(directory):
    with np.load(Path(directory) / "data.npz") as stored:
        return {key: stored[key] for key in stored.files}


def process_rows(count, rank, replicas):
    """The sample indices of one of `replicas` equal parts of every global
    batch, in step order: what that replica or process trains on."""
    local = GLOBAL_BATCH // replicas
    return np.concatenate(
        [
            np.arange(step * GLOBAL_BATCH, (step + 1) * GLOBAL_BATCH)[
                rank * local : (rank + 1) * local
            ]
            for step in range(count // GLOBAL_BATCH)
        ]
    )


def case_model(directory):
    """The compiled model with the case's initial weights."""
    model = build_model()
    model.set_weights(read_weights(directory))
    return compile_model(model)


class StepRecorder(keras.callbacks.Callback):
    """After every training step: the loss Keras reports (the mean over
    the epoch so far) and, for each IndRNN layer, the largest |u| of each
    replica's own copy, as `replica_copies(variable)` reads them."""

    def __init__(self, replica_copies):
        super().__init__()
        self.replica_copies = replica_copies
        self.losses = []
        self.max_abs_u = []  # (step, layer, replica)

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))
        self.max_abs_u.append(
            [
                [
                    float(np.max(np.abs(copy)))
                    for copy in self.replica_copies(variable)
                ]
                for variable in recurrent_kernels(self.model)
            ]
        )


def fit_case(model, x, y, batch_size, replica_copies):
    """`model.fit` over the case's batches in order; the recorder."""
    recorder = StepRecorder(replica_copies)
    model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[recorder],
    )
    return recorder


def single_device_copy(variable):
    return [keras.ops.convert_to_numpy(variable.value)]


def train_single_device(directory):
    """The reference: the same global batches on one device."""
    data = read_data(directory)
    model = case_model(directory)
    recorder = fit_case(
        model, data["x"], data["y"], GLOBAL_BATCH, single_device_copy
    )
    return recorder, model


def write_result(path, recorder, model, **more):
    """What a process measured, for the test to compare."""
    np.savez(
        path,
        losses=np.array(recorder.losses),
        max_abs_u=np.array(recorder.max_abs_u),
        **{f"weight_{i}": w for i, w in enumerate(model.get_weights())},
        **more,
    )


def read_result(path):
    with np.load(path) as stored:
        result = {key: stored[key] for key in stored.files}
    count = sum(key.startswith("weight_") for key in result)
    result["weights"] = [result.pop(f"weight_{i}") for i in range(count)]
    return result
