"""Renders a measurement file of `benchmarks/measure.py` as Markdown
tables and a plot, and regenerates the README's benchmark table.

    python benchmarks/report.py benchmarks/results/cpu-2core-x86_64.json
    python benchmarks/report.py RESULTS.json --readme README.md

Writes `<RESULTS>.md` and `<RESULTS>.png` beside the JSON file. With
`--readme`, the table between the README's `<!-- benchmark table -->`
markers is replaced by the headline numbers. A file of
`benchmarks/layer_level.py` gets that script's tables in `<RESULTS>.md`.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import MODELS  # noqa: E402

README_START = "<!-- benchmark table: start -->"
README_END = "<!-- benchmark table: end -->"


def config_label(config):
    return (
        f"T={config['timesteps']}, {config['layers']}x{config['units']}, "
        f"batch {config['batch_size']}"
    )


def _key(row):
    return (
        row["timesteps"],
        row["layers"],
        row["units"],
        row["batch_size"],
        row["features"],
    )


def lookup(result):
    """`{(config key, model): row}` of one backend's rows."""
    return {(_key(r), r["model"]): r for r in result["rows"]}


def ratio(rows, key, model, other, field):
    a, b = rows.get((key, model)), rows.get((key, other))
    if not a or not b or a[field] is None or b[field] is None:
        return None
    return a[field] / b[field]


def backend_tables(result):
    rows = lookup(result)
    configs = sorted({_key(r): r for r in result["rows"]}.items())
    lines = []
    for key, config in configs:
        lines += [
            f"### {result['backend']} on {result['device']}: "
            f"{config_label(config)}",
            "",
            "| model | train ms | train / floor | infer ms | infer / floor "
            "| LSTM train / this |",
            "|---|---|---|---|---|---|",
        ]
        for model, label in MODELS.items():
            row = rows.get((key, model))
            if row is None:
                continue
            if row["train_s"] is None:
                lines.append(f"| {label} | dropped as too slow | | | | |")
                continue
            cells = [
                f"{1000 * row['train_s']:.1f}",
                _times(ratio(rows, key, model, "dense_floor", "train_s")),
                f"{1000 * row['infer_s']:.1f}",
                _times(ratio(rows, key, model, "dense_floor", "infer_s")),
                _times(ratio(rows, key, "lstm", model, "train_s")),
            ]
            if model == "dense_floor":
                cells[1] = cells[3] = ""
            if row["samples"] == 1:
                cells[0] += " (1 sample)"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    memory = result.get("memory")
    if memory and memory["models"]:
        lines += [
            f"Peak memory of a training step, {config_label(memory['config'])}"
            f" ({memory['models'][0]['kind']}):",
            "",
            "| model | peak MiB |",
            "|---|---|",
        ]
        for m in memory["models"]:
            lines.append(
                f"| {MODELS[m['model']]} | {m['peak_bytes'] / 2**20:.0f} |"
            )
        lines.append("")
    return lines


def _times(value):
    return "" if value is None else f"{value:.2f}x"


def markdown(document):
    lines = [
        f"# Recurrent layers on {document['machine']}",
        "",
        f"Measured {document['date']} on {document['cores']} cores "
        f"({document['processor']}) by `benchmarks/measure.py`. "
        "`train_on_batch` (forward, backward, Adam) and `predict_on_batch` of "
        "`Input(T, features) -> layer x L -> Dense(1)`; medians of "
        f"{document['repeats']} round-robin repeats after warm-up. "
        "'/ floor' divides by the dense floor (the same matmuls without a "
        "recurrence); 'LSTM train / this' is how many times faster than LSTM "
        "a model trains.",
        "",
    ]
    for result in document["results"]:
        versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
        lines += [f"## {result['backend']} ({versions})", ""]
        lines += backend_tables(result)
    return "\n".join(lines)


# The README's headline numbers: the configurations the project's targets
# are stated for.
HEADLINE = {
    "train": {"timesteps": 784, "layers": 2, "units": 128},
    "lstm": {"timesteps": 1024, "layers": 1, "units": 128},
    "wide": {"timesteps": 100, "layers": 6, "units": 512},
}


def _find(result, **wanted):
    for row in result["rows"]:
        if all(row[k] == v for k, v in wanted.items()):
            return _key(row)
    return None


def readme_table(document):
    lines = [
        "| backend | T=784, 2x128: train ms, IndRNN / floor | infer ms, "
        "IndRNN / floor | T=1024, 1x128: train, LSTM / IndRNN | "
        "T=100, 6x512: train, IndRNN / floor |",
        "|---|---|---|---|---|",
    ]
    model = "indrnn_sequential"
    for result in document["results"]:
        rows = lookup(result)
        cells = []
        key = _find(result, **HEADLINE["train"])
        for field in ("train_s", "infer_s"):
            a, b = rows.get((key, model)), rows.get((key, "dense_floor"))
            if a and b and a[field] and b[field]:
                cells.append(
                    f"{1000 * a[field]:.1f} / {1000 * b[field]:.1f} = "
                    f"{a[field] / b[field]:.2f}x"
                )
            else:
                cells.append("-")
        key = _find(result, **HEADLINE["lstm"])
        speedup = ratio(rows, key, "lstm", model, "train_s")
        lstm = rows.get((key, "lstm"))
        if speedup is not None:
            cells.append(f"{speedup:.1f}x")
        elif lstm is not None and lstm["train_s"] is None:
            cells.append("LSTM dropped as too slow")
        else:
            cells.append("-")
        key = _find(result, **HEADLINE["wide"])
        wide = ratio(rows, key, model, "dense_floor", "train_s")
        cells.append("-" if wide is None else f"{wide:.2f}x")
        lines.append(f"| {result['backend']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update_readme(path, document):
    text = Path(path).read_text()
    start, end = text.index(README_START), text.index(README_END)
    table = readme_table(document)
    source = (
        f"From `benchmarks/results/{document['machine']}.json`, "
        f"{document['date']}."
    )
    text = (
        text[: start + len(README_START)]
        + f"\n{source}\n\n{table}\n"
        + text[end:]
    )
    Path(path).write_text(text)


def plot(document, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (result, layers)
        for result in document["results"]
        for layers in sorted(
            {r["layers"] for r in result["rows"] if r["units"] == 128}
        )
    ]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False
    )
    for ax, (result, layers) in zip(axes[0], panels, strict=True):
        for model, label in MODELS.items():
            points = sorted(
                (r["timesteps"], r["train_s"])
                for r in result["rows"]
                if r["model"] == model
                and r["layers"] == layers
                and r["units"] == 128
                and r["train_s"]
            )
            if points:
                ts, ss = zip(*points, strict=True)
                style = "--" if model == "dense_floor" else "-"
                ax.plot(
                    ts, [1000 * s for s in ss], style, marker="o", label=label
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("timesteps T")
        ax.set_ylabel("training step (ms)")
        ax.set_title(f"{result['backend']}, {layers} x 128", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a JSON file of measure.py")
    parser.add_argument("--readme", type=Path, help="README to update")
    args = parser.parse_args(argv)
    document = json.loads(args.results.read_text())
    if document.get("benchmark") == "layer_level":
        # A file of `benchmarks/layer_level.py`: its own tables, no plot,
        # and no README table (that one is measure.py's).
        if args.readme:
            parser.error("--readme takes a file of measure.py")
        import layer_level

        print(layer_level.write_report(args.results))
        return
    args.results.with_suffix(".md").write_text(markdown(document) + "\n")
    plot(document, args.results.with_suffix(".png"))
    if args.readme:
        update_readme(args.readme, document)
    print(readme_table(document))


if __name__ == "__main__":
    main()
