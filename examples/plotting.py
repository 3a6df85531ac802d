"""Figures of example runs: learning curves from metrics.csv, and the
figure layout the scripts share."""

import csv
import textwrap

import numpy as np


def figure(panels, title=None):
    """`(figure, axes)`: `panels` plots side by side, under a title wrapped
    to the figure's width."""
    import matplotlib

    matplotlib.use("Agg")  # Files only: no display needed.
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1,
        panels,
        figsize=(5.5 * panels, 4),
        squeeze=False,
        layout="constrained",
    )
    if title:
        # About 9 characters of the default title font to an inch.
        fig.suptitle(textwrap.fill(title, int(fig.get_figwidth() * 9)))
    return fig, axes[0]


def save(fig, path):
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_metrics(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {key: np.array([float(row[key]) for row in rows]) for key in rows[0]}


def plot_runs(runs, panels, x_key, path, baseline=None, title=None):
    """Plots the learning curves of several runs into one PNG.

    Args:
        runs: List of `(label, metrics)`, metrics as from `read_metrics`.
        panels: List of lists of metrics.csv columns, one panel per list.
        x_key: The column for the x axis, e.g. `"step"` or `"epoch"`.
        path: The PNG file to write.
        baseline: Optional `(value, label)`, a dashed horizontal line.
        title: Optional figure title.
    """
    fig, axes = figure(len(panels), title)
    for ax, keys in zip(axes, panels, strict=True):
        for label, metrics in runs:
            # metrics.csv counts epochs from 0; plot the epochs finished.
            x = metrics[x_key] + 1 if x_key == "epoch" else metrics[x_key]
            for key in keys:
                if key in metrics:
                    name = label if len(keys) == 1 else f"{label}: {key}"
                    ax.plot(x, metrics[key], label=name)
        if baseline is not None:
            value, text = baseline
            ax.axhline(value, color="gray", linestyle="--", label=text)
        if any("loss" in key for key in keys):
            ax.set_yscale("log")
        ax.set_xlabel(x_key)
        ax.set_ylabel(", ".join(keys))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    save(fig, path)
