"""Overlays the learning curves of several runs in one figure.

For example the adding problem at T = 100, 500 and 1000, as in Fig. 2 of Li
et al. (CVPR 2018):

    python examples/plot_runs.py runs/adding-100 runs/adding-500 \\
        runs/adding-1000 --baseline 0.167 --output adding.png

Each run is an --output directory of an example script; its curve comes from
metrics.csv and its label from summary.json (the task), or the directory's
name while the run has no summary yet. Runs of the same task are told apart
by their directories' names.
"""

import argparse
import json
from pathlib import Path

from plotting import plot_runs
from plotting import read_metrics


def run_labels(directories):
    """One legend label per run directory, each different from the others
    where the directories' names are."""
    labels = [_task(directory) for directory in directories]
    return [
        f"{label} ({directory.name})"
        if labels.count(label) > 1 and label != directory.name
        else label
        for label, directory in zip(labels, directories, strict=True)
    ]


def _task(directory):
    summary = directory / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text()).get("task", directory.name)
    return directory.name


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        metavar="PNG",
        help="the figure to write",
    )
    parser.add_argument(
        "--metric",
        action="append",
        help="a metrics.csv column, one panel each; repeatable "
        "(default: val_loss)",
    )
    parser.add_argument(
        "--x",
        default="step",
        help="the column for the x axis: step or epoch (default: step)",
    )
    parser.add_argument(
        "--baseline", type=float, help="draw a dashed line at this value"
    )
    parser.add_argument("--title", help="a title for the figure")
    flags = parser.parse_args(argv)
    metrics = flags.metric or ["val_loss"]

    runs = []
    for directory in flags.runs:
        path = directory / "metrics.csv"
        if not path.is_file():
            parser.error(f"{directory} has no metrics.csv")
        columns = read_metrics(path)
        for key in [flags.x, *metrics]:
            if key not in columns:
                parser.error(
                    f"{path} has no column {key!r}; it has "
                    + ", ".join(columns)
                )
        runs.append(columns)
    runs = list(zip(run_labels(flags.runs), runs, strict=True))
    baseline = None
    if flags.baseline is not None:
        baseline = (flags.baseline, f"{flags.baseline:g}")
    plot_runs(
        runs,
        [[key] for key in metrics],
        flags.x,
        flags.output,
        baseline=baseline,
        title=flags.title,
    )
    print(f"Wrote {flags.output}")


if __name__ == "__main__":
    main()
