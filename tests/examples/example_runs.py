"""Checks shared by the tests of the example scripts."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from plotting import read_metrics

ROOT = Path(__file__).resolve().parents[2]


def assert_run_files(output, summary):
    """The files every example writes, with finite metrics; returns the
    columns of metrics.csv."""
    for name in ("metrics.csv", "summary.json", "curves.png", "model.keras"):
        assert (output / name).is_file(), name
    assert json.loads((output / "summary.json").read_text()) == summary
    for key in ("task", "backend", "device", "wall_seconds", "flags"):
        assert key in summary, key
    metrics = read_metrics(output / "metrics.csv")
    assert metrics, "metrics.csv is empty"
    for key, column in metrics.items():
        assert all(math.isfinite(v) for v in column), key
    return metrics


def assert_usage_error(err, *fragments):
    """argparse's way: usage, then one line `prog: error: ...`."""
    last = err.strip().splitlines()[-1]
    assert ": error: " in last, err
    for fragment in fragments:
        assert fragment in last, last
    assert "Traceback" not in err


def run_script(name, *args, env=None):
    """Runs an example as a command, with `env` added to the environment:
    `(exit code, stderr)`."""
    # The package under test may be importable only from the repo root.
    path = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
    )
    return done.returncode, done.stderr
