"""Trains the distributed case with PyTorch's DistributedDataParallel, one
rank of two, as Keras's multi-GPU PyTorch guide does: the Keras model
wrapped in DDP and a custom loop stepping a Keras optimizer.

    python -m torch.distributed.run --nproc_per_node=2 torch_worker.py DIR

Writes DIR/result_<rank>.npz; rank 0 also saves DIR/trained.keras.
"""

import os
import sys

os.environ["KERAS_BACKEND"] = "torch"

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from distributed_case import STEPS  # noqa: E402
from distributed_case import StepRecorder  # noqa: E402
from distributed_case import case_model  # noqa: E402
from distributed_case import process_rows  # noqa: E402
from distributed_case import read_data  # noqa: E402
from distributed_case import write_result  # noqa: E402


def own_copy(variable):
    return [variable.value.detach().cpu().numpy()]


def main():
    directory = Path(sys.argv[1])
    dist.init_process_group("gloo")
    rank, ranks = dist.get_rank(), dist.get_world_size()
    data = read_data(directory)
    rows = process_rows(len(data["x"]), rank, ranks).reshape(STEPS, -1)
    model = case_model(directory)
    optimizer = model.optimizer
    loss_fn = keras.losses.MeanSquaredError()  # the compiled "mse"
    # DDP averages the gradients of the ranks' mean losses: the gradient of
    # the mean loss over the global batch, the ranks' halves being equal.
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    # Fed by hand with what `model.fit` would give it: Keras's running
    # mean of the global batch losses, and this rank's copy of each u.
    recorder = StepRecorder(own_copy)
    recorder.set_model(model)
    total = 0.0
    for step, batch in enumerate(rows):
        x = torch.as_tensor(data["x"][batch])
        y = torch.as_tensor(data["y"][batch])
        loss = loss_fn(y, ddp(x))
        for variable in model.trainable_weights:
            variable.value.grad = None
        loss.backward()
        grads = [variable.value.grad for variable in model.trainable_weights]
        # Keras optimizers apply the variables' constraints (IndRNN's bound
        # on u) after their update.
        optimizer.apply(grads, model.trainable_weights)
        global_loss = loss.detach().clone()
        dist.all_reduce(global_loss)
        total += float(global_loss) / ranks
        recorder.on_train_batch_end(step, {"loss": total / (step + 1)})
    if rank == 0:
        model.save(directory / "trained.keras")
    write_result(
        directory / f"result_{rank}.npz",
        recorder,
        model,
        ranks=np.array(ranks),
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
