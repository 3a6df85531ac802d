"""Looks inside a trained IndRNN model: each unit's memory, set by its own
recurrent weight u, and what a few units do over one input sequence.

Writes two figures to --output:

- memory.png: per IndRNN layer, the distribution of its units' memory
  lengths (the steps after which |u|**k falls below one half; units with
  |u| >= 1 never forget), against the input length T;
- activations.png: per IndRNN layer, the states of the units with the
  longest and the shortest memories over one input sequence.

The sequence is a real example when the matching data is given (--adding
draws an adding-problem sequence and marks its two markers; --mnist-dir
reads the first test digit of MNIST IDX files), and random otherwise. The
input length and features come from the model.

    python examples/inspect_units.py runs/adding-1000/model.keras --adding \\
        --output runs/adding-1000/units
"""

import argparse
import json
from pathlib import Path

import keras
import numpy as np

from keras_indrnn import IndRNN
from keras_indrnn.inspection import indrnn_layers
from keras_indrnn.inspection import unit_memories

from plotting import figure
from plotting import save

UNITS_SHOWN = 4  # of the longest and of the shortest memories, per layer


def layer_states(model, x):
    """Every step's state of each IndRNN layer of `model` on `x`."""
    states = []
    for layer in indrnn_layers(model):
        # The layer as it is, but returning every step.
        config = {**layer.get_config(), "return_sequences": True}
        config.update(return_state=False, stateful=False)
        twin = IndRNN.from_config(config)
        inputs = keras.Model(model.inputs, layer.input)(x)
        twin.build(inputs.shape)
        twin.cell.set_weights(layer.cell.get_weights())
        states.append(keras.ops.convert_to_numpy(twin(inputs)))
    return states


def example_input(flags, timesteps, features):
    """One sequence `(1, timesteps, features)` and the steps to mark."""
    if flags.adding:
        from adding_problem import adding_batch

        x, _ = adding_batch(np.random.default_rng(0), 1, timesteps)
        return x, list(np.flatnonzero(x[0, :, 1]))
    if flags.mnist_dir:
        import mnist_data

        (_, _), (images, _) = mnist_data.load_mnist_idx(flags.mnist_dir)
        order = mnist_data.pixel_order(flags.permuted)
        return mnist_data.pixel_sequences(images[:1], order), []
    rng = np.random.default_rng(0)
    return rng.uniform(size=(1, timesteps, features)).astype("float32"), []


def plot_memory(memories, timesteps, path):
    fig, axes = figure(len(memories), "Memory of each unit")
    for ax, layer in zip(axes, memories, strict=True):
        finite = layer["memory"][np.isfinite(layer["memory"])]
        never = int(np.sum(~np.isfinite(layer["memory"])))
        bins = np.geomspace(1, max(timesteps, finite.max(initial=1)) * 2, 30)
        ax.hist(finite, bins=bins, color="tab:blue")
        ax.axvline(
            timesteps, color="gray", linestyle="--", label=f"T={timesteps}"
        )
        ax.set_xscale("log")
        ax.set_title(
            f"{layer['layer']}: {never} units with |u| >= 1", fontsize=9
        )
        ax.set_xlabel("steps until |u|**k < 1/2")
        ax.legend(fontsize="small")
    axes[0].set_ylabel("units")
    save(fig, path)


def plot_activations(states, memories, marks, path):
    fig, axes = figure(
        len(states),
        "States over one sequence of the units with the longest (solid) and "
        "shortest (dotted) memories",
    )
    for ax, sequence, layer in zip(axes, states, memories, strict=True):
        order = np.argsort(np.abs(layer["recurrent_kernel"]))
        for unit in order[::-1][:UNITS_SHOWN]:
            ax.plot(
                sequence[0, :, unit],
                label=f"unit {unit}, u={layer['recurrent_kernel'][unit]:.4f}",
            )
        for unit in order[:UNITS_SHOWN]:
            ax.plot(sequence[0, :, unit], ":", alpha=0.7)
        for step in marks:
            ax.axvline(step, color="red", alpha=0.4)
        ax.set_title(layer["layer"], fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize="x-small")
    save(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a .keras file")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR")
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--adding", action="store_true", help="an adding-problem sequence"
    )
    data.add_argument("--mnist-dir", metavar="DIR", help="MNIST IDX files")
    parser.add_argument(
        "--permuted", action="store_true", help="with --mnist-dir"
    )
    flags = parser.parse_args(argv)
    if not flags.model.is_file():
        parser.error(f"argument model: no file {flags.model}")
    model = keras.models.load_model(flags.model, compile=False)
    if not indrnn_layers(model):
        parser.error(f"argument model: {flags.model} has no IndRNN layer")
    _, timesteps, features = model.inputs[0].shape
    x, marks = example_input(flags, timesteps, features)

    flags.output.mkdir(parents=True, exist_ok=True)
    memories = unit_memories(model)
    plot_memory(memories, timesteps, flags.output / "memory.png")
    states = layer_states(model, x)
    plot_activations(states, memories, marks, flags.output / "activations.png")
    report = {
        layer["layer"]: {
            "units": len(layer["memory"]),
            "never_forget": int(np.sum(~np.isfinite(layer["memory"]))),
            "median_memory": float(np.median(layer["memory"])),
            "memory_beyond_T": int(np.sum(layer["memory"] > timesteps)),
        }
        for layer in memories
    }
    (flags.output / "units.json").write_text(
        json.dumps(report, indent=2) + "\n"
    )
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
