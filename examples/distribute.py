"""`--distribute`: data-parallel training over every local device with the
engine's own runtime.

- JAX: `keras.distribution.DataParallel` over every device JAX sees.
- TensorFlow: `tf.distribute.MirroredStrategy` over the visible GPUs (the
  CPU when there are none).
- PyTorch: Keras's `fit` runs in one process; several devices need
  `torchrun` with `DistributedDataParallel` around the model and a custom
  loop (README, "More devices"), so the flag is refused there.

Each device gets `--batch-size / devices` examples of every step, so the
training is the same as on one device with the same `--batch-size`.
"""

import contextlib

import keras


def add_distribute_flag(parser):
    parser.add_argument(
        "--distribute",
        action="store_true",
        help="train data-parallel on every local device (JAX, TensorFlow); "
        "--batch-size is the global batch and must divide among them",
    )


def distribution_scope(parser, flags):
    """The context to build and compile the model in."""
    if not flags.distribute:
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    if backend == "jax":
        distribution = keras.distribution.DataParallel()
        devices = len(distribution.device_mesh.devices.flatten())
        scope = distribution.scope()
    elif backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        devices = strategy.num_replicas_in_sync
        scope = strategy.scope()
    else:
        parser.error(
            f"--distribute: Keras's fit trains in one process on {backend}; "
            "launch the training with torchrun and DistributedDataParallel "
            "instead (README, 'More devices')"
        )
    if flags.batch_size % devices:
        parser.error(
            f"--batch-size {flags.batch_size} does not divide among the "
            f"{devices} devices of --distribute; give a multiple of {devices}"
        )
    print(f"Data-parallel over {devices} device(s)")
    return scope
