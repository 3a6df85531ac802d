"""The adding problem with IndRNN (Li et al., CVPR 2018, §5.1 and Fig. 2).

Each sequence has T steps of two channels: a value drawn from U(0, 1), and a
marker that is 1 at one step of the first half, 1 at one step of the second
half and 0 elsewhere. The target is the sum of the two marked values, so the
network must carry a value across up to T steps. Always predicting 1 (the
expected sum) gives an MSE of 1/6 = 0.167; the paper's IndRNN goes far below
that for T = 100, 500, 1000 and 5000, where LSTMs stop learning at 1000.

The defaults are the paper's: 2 layers of 128 ReLU IndRNN units, then Dense(1);
|u| <= 2**(1/T), with u of the first layer drawn from U(0, 2**(1/T)) and of the
last from U(2**(-1/T), 2**(1/T)); MSE, Adam at 2e-4 (up to T = 1000; see below)
times 0.1 every 20,000 steps (`--lr-drop-every`), batch 50, gradients clipped
element-wise at 10 as in the authors' code, and fresh data at every step. The
input weights are the authors' N(0, 0.001) up to their learning rate and scale
with larger ones, N(0, 0.001 * lr / 2e-4): Adam moves every weight by about the
learning rate per step, so at 1e-3 the authors' tiny weights changed sign
within the first steps, and as all inputs are non-negative, every unit of the
first layer fell to ReLU's zero for good. Scaled, T=100 was solved within 1,500
steps at every rate tried from 2e-4 to 3e-3.

Above T = 1000 the default rate is 2e-4 * 1000 / T (4e-5 at T = 5000). The
last layer, with |u| near 1, sums its input over all T steps, so one Adam
step of its bias or input weights moves its output by about T times the
rate. At T = 5000 and 2e-4, the loss rose to 11 within 50 steps, 53 of the
last layer's 65 active units fell to ReLU's zero within 300 steps (about 30
stay active at T = 1000), and a run of 30,000 steps stayed on the plateau.

Training runs in "epochs" of --steps-per-epoch steps: one row of
metrics.csv and one backup each, measured on 2,000 fixed validation
sequences. Running the same command again resumes; `val_mse` in
summary.json is measured on 2,000 sequences never used before.

    python examples/adding_problem.py --timesteps 1000 --output runs/adding-1000
"""

import argparse

import keras
import numpy as np

from keras_indrnn import IndRNN
from keras_indrnn import RecurrentUniform

from distribute import add_distribute_flag
from distribute import distribution_scope
from runs import Run
from runs import add_run_flags
from runs import flags_dict
from runs import positive_int
from runs import print_engine

PAPER_LR = 2e-4
LONGEST_AT_PAPER_LR = 1000  # T; see default_lr
LR_DROP_EVERY = 20_000  # steps, the paper's; each drop multiplies by 0.1
GRADIENT_CLIP = 10.0  # element-wise, as in the authors' code
EVAL_SIZE, EVAL_BATCH = 2_000, 500


def adding_batch(rng, size, timesteps):
    """`size` sequences `(size, timesteps, 2)` and their targets `(size, 1)`."""
    values = rng.uniform(size=(size, timesteps))
    rows, half = np.arange(size), timesteps // 2
    first = rng.integers(0, half, size)
    second = rng.integers(half, timesteps, size)
    markers = np.zeros_like(values)
    markers[rows, first] = markers[rows, second] = 1.0
    inputs = np.stack([values, markers], axis=-1).astype("float32")
    targets = values[rows, first] + values[rows, second]
    return inputs, targets[:, None].astype("float32")


class AddingData(keras.utils.PyDataset):
    """An epoch of `steps` batches, each drawn fresh when it is asked for."""

    def __init__(self, rng, batch_size, timesteps, steps):
        super().__init__()
        self.rng, self.batch_size = rng, batch_size
        self.timesteps, self.steps = timesteps, steps

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        return adding_batch(self.rng, self.batch_size, self.timesteps)


def default_lr(timesteps):
    """The paper's rate up to T = 1000, where it converges; above, smaller
    in proportion, as the last layer's output moves with T times the rate."""
    return PAPER_LR * min(1.0, LONGEST_AT_PAPER_LR / timesteps)


def build_model(timesteps, units, lr):
    bound = 2.0 ** (1.0 / timesteps)
    kernel_scale = 0.001 * max(1.0, lr / PAPER_LR)
    kernel = keras.initializers.RandomNormal(stddev=kernel_scale)
    return keras.Sequential(
        [
            keras.Input((timesteps, 2)),
            IndRNN(
                units,
                kernel_initializer=kernel,
                recurrent_max_abs=bound,
                recurrent_initializer=RecurrentUniform(bound),
                return_sequences=True,
            ),
            IndRNN(
                units,
                kernel_initializer=kernel,
                recurrent_max_abs=bound,
                recurrent_initializer=RecurrentUniform(bound, 1.0 / bound),
            ),
            keras.layers.Dense(1),
        ]
    )


def main(argv=None):
    parser, flags = parse_flags(argv)
    # Checked before the run writes anything.
    devices = distribution_scope(parser, flags)
    run = Run(flags.output)
    run.check_flags(parser, flags)
    backend, device = print_engine()
    keras.utils.set_random_seed(flags.seed)
    with devices:
        model = build_model(flags.timesteps, flags.units, flags.lr)
        schedule = keras.optimizers.schedules.ExponentialDecay(
            flags.lr, flags.lr_drop_every, decay_rate=0.1, staircase=True
        )
        model.compile(
            keras.optimizers.Adam(schedule, clipvalue=GRADIENT_CLIP), "mse"
        )

        per_epoch, done = flags.steps_per_epoch, run.first_epoch
        # A new stream per resume point, so a resumed run sees new data too.
        rng = np.random.default_rng([flags.seed, 0, done])
        model.fit(
            AddingData(rng, flags.batch_size, flags.timesteps, per_epoch),
            epochs=flags.steps // per_epoch,
            validation_data=adding_batch(
                np.random.default_rng([flags.seed, 1]),
                EVAL_SIZE,
                flags.timesteps,
            ),
            validation_batch_size=EVAL_BATCH,
            callbacks=run.callbacks(),
            verbose=0 if flags.quiet else "auto",
        )

    test = adding_batch(
        np.random.default_rng([flags.seed, 2]), EVAL_SIZE, flags.timesteps
    )
    summary = {
        "task": f"adding T={flags.timesteps}",
        "backend": backend,
        "device": device,
        "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "val_mse": float(
            model.evaluate(*test, batch_size=EVAL_BATCH, verbose=0)
        ),
        "baseline_mse": 1 / 6,
        "flags": flags_dict(flags),
    }
    return run.finish(
        model,
        summary,
        [["loss", "val_loss"]],
        "step",
        baseline=(1 / 6, "always 1: 0.167"),
    )


def parse_flags(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: python examples/adding_problem.py --timesteps 1000 "
        "--output runs/adding-1000",
    )
    parser.add_argument(
        "--timesteps",
        type=positive_int,
        default=100,
        help="sequence length T, e.g. 100, 500, 1000 or 5000 (default: 100)",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=60_000,
        help="training steps in all, a multiple of --steps-per-epoch "
        "(default: 60000, three learning-rate phases)",
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=positive_int,
        default=100,
        help="steps between two rows of metrics.csv and two backups "
        "(default: 100)",
    )
    parser.add_argument(
        "--units",
        type=positive_int,
        default=128,
        help="units per IndRNN layer (default: 128)",
    )
    parser.add_argument(
        "--lr-drop-every",
        type=positive_int,
        default=LR_DROP_EVERY,
        metavar="STEPS",
        help="steps between two drops of the learning rate by a factor "
        f"of 10 (default: {LR_DROP_EVERY}, the paper's)",
    )
    add_run_flags(
        parser,
        batch_size=50,
        lr=f"{PAPER_LR:g}, and {PAPER_LR:g} * {LONGEST_AT_PAPER_LR} / T "
        f"above T={LONGEST_AT_PAPER_LR}",
        lr_help="rates above 2e-4 scale the input weights; tried from 2e-4 "
        "to 3e-3 at T=100",
    )
    add_distribute_flag(parser)
    flags = parser.parse_args(argv)
    if flags.timesteps < 2:
        parser.error(
            "argument --timesteps: needs at least 2 steps, one per marker, "
            f"got {flags.timesteps}"
        )
    if flags.lr is None:
        flags.lr = default_lr(flags.timesteps)
    if flags.steps % flags.steps_per_epoch:
        parser.error(
            f"argument --steps: {flags.steps} is not a multiple of "
            f"--steps-per-epoch {flags.steps_per_epoch}"
        )
    return parser, flags


if __name__ == "__main__":
    main()
