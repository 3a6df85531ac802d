"""Trains the distributed case with a `tf.distribute` strategy.

    python tf_worker.py DIRECTORY mirrored LOOP
    python tf_worker.py DIRECTORY multi_worker LOOP INDEX PORT0 PORT1

`mirrored`: `MirroredStrategy` over two logical CPU devices of one
process. `multi_worker`: `MultiWorkerMirroredStrategy`, worker INDEX of two
processes of one CPU device each, on localhost:PORT0 and localhost:PORT1;
worker 0 is the chief. LOOP: `fit` (`model.fit`) or `custom` (the same
step written with `strategy.run`). Writes DIRECTORY/result_<index>.npz;
the chief also saves DIRECTORY/trained.keras.
"""

import json
import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"
DIRECTORY, MODE, LOOP = Path(sys.argv[1]), *sys.argv[2:4]
INDEX = int(sys.argv[4]) if MODE == "multi_worker" else 0
if MODE == "multi_worker":
    # Read when the strategy is made.
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {
                "worker": [f"localhost:{port}" for port in sys.argv[5:7]]
            },
            "task": {"type": "worker", "index": INDEX},
        }
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from distributed_case import GLOBAL_BATCH  # noqa: E402
from distributed_case import StepRecorder  # noqa: E402
from distributed_case import case_model  # noqa: E402
from distributed_case import fit_case  # noqa: E402
from distributed_case import read_data  # noqa: E402
from distributed_case import write_result  # noqa: E402


def make_strategy():
    if MODE == "mirrored":
        # Before TensorFlow initializes its devices, so before anything
        # else touches TensorFlow.
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    return tf.distribute.MultiWorkerMirroredStrategy()


def distributed_batches():
    """The case's global batches, each worker's half of each."""
    data = read_data(DIRECTORY)
    dataset = tf.data.Dataset.from_tensor_slices((data["x"], data["y"]))
    options = tf.data.Options()
    # Sharding by element after the strategy splits each global batch into
    # per-replica batches: each worker gets its own half of every global
    # batch, not whole global batches of its own.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.batch(GLOBAL_BATCH).with_options(options)


def fit(strategy, model, replica_copies):
    if MODE == "mirrored":
        data = read_data(DIRECTORY)
        return fit_case(
            model, data["x"], data["y"], GLOBAL_BATCH, replica_copies
        )
    return fit_case(model, distributed_batches(), None, None, replica_copies)


def custom_loop(strategy, model, replica_copies):
    """The training step of `model.fit`, written with `strategy.run`."""
    optimizer = model.optimizer
    loss_fn = keras.losses.MeanSquaredError()  # the compiled "mse"
    with strategy.scope():
        optimizer.build(model.trainable_variables)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            # Inside a strategy, Keras losses divide the replica's mean by
            # the replica count, and the Keras optimizer sums the replicas'
            # gradients: the gradient of the global batch's mean.
            scaled = loss_fn(y, model(x, training=True))
        grads = tape.gradient(scaled, model.trainable_variables)
        # Keras optimizers apply the variables' constraints (IndRNN's bound
        # on u) after their update.
        optimizer.apply(grads, model.trainable_variables)
        return scaled

    @tf.function
    def step(x, y):
        losses = strategy.run(replica_step, args=(x, y))
        return strategy.reduce("SUM", losses, axis=None)

    recorder = StepRecorder(replica_copies)
    recorder.set_model(model)
    total = 0.0
    batches = strategy.experimental_distribute_dataset(distributed_batches())
    for index, (x, y) in enumerate(batches):
        total += float(step(x, y))
        recorder.on_train_batch_end(index, {"loss": total / (index + 1)})
    return recorder


def main():
    strategy = make_strategy()
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync

    def replica_copies(variable):
        return [
            np.asarray(copy)
            for copy in strategy.experimental_local_results(variable.value)
        ]

    with strategy.scope():
        model = case_model(DIRECTORY)
    train = custom_loop if LOOP == "custom" else fit
    recorder = train(strategy, model, replica_copies)
    if INDEX == 0:
        model.save(DIRECTORY / "trained.keras")
    write_result(DIRECTORY / f"result_{INDEX}.npz", recorder, model)


if __name__ == "__main__":
    main()
