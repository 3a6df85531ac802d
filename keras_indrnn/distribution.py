"""Unit-parallel training: IndRNN's units split across devices.

An IndRNN's recurrence is element-wise, so a unit's loop over time needs no
other unit: with the units split across devices, the time loop runs on
each device's own units with no communication at all, which no LSTM or GRU
allows. Only the input projection is a matmul that needs the usual
tensor-parallel treatment (its kernel split by output columns), and batch
norms follow the units they normalize.

`UnitParallel` is a `keras.distribution.ModelParallel` with that layout,
for the engines that implement `keras.distribution` (JAX in Keras 3.15).
"""

import keras

from keras_indrnn import engines

# (a variable path, as a regular expression the whole path must match; its
# sharding, with "model" for the axis that splits the units)
LAYOUT = (
    (r".*/indrnn_cell/kernel", (None, "model")),
    (r".*/indrnn_cell/(recurrent_kernel|bias)", ("model",)),
    (r".*/rnn_state", (None, "model")),
    (
        r"(.*/)?batch_normalization(_\d+)?/"
        r"(gamma|beta|moving_mean|moving_variance)",
        ("model",),
    ),
    (r"(.*/)?framewise_batch_normalization(_\d+)?/(gamma|beta)", ("model",)),
    (
        r"(.*/)?framewise_batch_normalization(_\d+)?/"
        r"(moving_mean|moving_variance)",
        (None, "model"),
    ),
)


class UnitParallel(keras.distribution.ModelParallel):
    """Splits the units of every `IndRNN` layer, and of the batch norms
    after them, across the `model` axis of a device mesh; the batch goes
    across the `batch` axis as in data parallelism.

    Sharded: each IndRNN cell's `kernel` by columns, `recurrent_kernel`,
    `bias` and a stateful layer's state by unit; the scale, shift and
    statistics of `BatchNormalization` and `FramewiseBatchNormalization`
    layers under their default names. Every other variable is replicated.
    Set the distribution before building the model:

    ```python
    keras.distribution.set_distribution(UnitParallel())
    model = build_model()  # its IndRNN layers' units split over the devices
    ```

    Args:
        device_mesh: A `keras.distribution.DeviceMesh` with axes named
            `batch_axis` and `model_axis`. Default: all devices on the
            model axis, `(1, n)`.
        model_axis: The mesh axis that splits the units. Default `"model"`.
        batch_axis: The mesh axis that splits the batch. Default `"batch"`.
        auto_shard_dataset: As in `keras.distribution.ModelParallel`.
    """

    def __init__(
        self,
        device_mesh=None,
        model_axis="model",
        batch_axis="batch",
        auto_shard_dataset=True,
    ):
        if device_mesh is None:
            devices = keras.distribution.list_devices()
            device_mesh = keras.distribution.DeviceMesh(
                (1, len(devices)), (batch_axis, model_axis), devices
            )
        for axis, name in (
            (model_axis, "model_axis"),
            (batch_axis, "batch_axis"),
        ):
            if axis not in device_mesh.axis_names:
                raise ValueError(
                    f"Invalid value for argument `{name}`: the device mesh "
                    f"has the axes {tuple(device_mesh.axis_names)}, not "
                    f"{axis!r}."
                )
        layout_map = keras.distribution.LayoutMap(device_mesh)
        for pattern, axes in LAYOUT:
            layout_map[pattern] = tuple(
                model_axis if a == "model" else a for a in axes
            )
        super().__init__(
            layout_map=layout_map,
            batch_dim_name=batch_axis,
            auto_shard_dataset=auto_shard_dataset,
        )
        self.model_axis = model_axis

    def get_variable_layout(self, variable):
        layout = super().get_variable_layout(variable)
        mesh = self.device_mesh
        for size, axis in zip(variable.shape, layout.axes, strict=True):
            if axis is None:
                continue
            devices = mesh.shape[mesh.axis_names.index(axis)]
            if size % devices:
                raise ValueError(
                    f"UnitParallel splits {variable.path} (shape "
                    f"{tuple(variable.shape)}) by unit across the "
                    f"{devices} devices of mesh axis {axis!r}, but "
                    f"{size} units do not divide into {devices}: give the "
                    "layer a multiple of the device count."
                )
        return layout


def program_report(model, x):
    """Inspects what the engine compiles for training `model` on `x` under
    the current distribution, to check that the time loops communicate
    nothing.

    Returns:
        A dict: `loops`, the number of compiled loops; `collectives_in_loops`,
        the collective operations (all-reduce, all-gather, ...) inside their
        bodies, which would run once per time step; `bytes_per_device`, the
        memory one device holds for the gradient computation.
    """
    report = engines.current().training_program_report
    if report is None:
        raise ValueError(
            "program_report inspects programs compiled under "
            "`keras.distribution`, which the "
            f"{keras.backend.backend()!r} backend does not implement; use "
            "KERAS_BACKEND=jax."
        )
    return report(model, x)
