"""benchmarks/gpu.sh, read without a GPU: the models it names exist, and
its steps' time limits fit one call of the GPU machine (10 minutes)."""

import re
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from models import MODELS  # noqa: E402

SCRIPT = (BENCHMARKS / "gpu.sh").read_text()


def test_the_models_it_times_exist():
    named = re.search(r"^MODELS=(\S+)$", SCRIPT, re.MULTILINE).group(1)
    assert set(named.split(",")) <= set(MODELS)


def test_its_time_limits_fit_one_call():
    # `timeout N` limits a step; measure.py runs once per backend.
    limits = [int(n) for n in re.findall(r"(?<![-\w])timeout (\d+) ", SCRIPT)]
    backends = re.search(r"for backend in ([\w ]+); do", SCRIPT).group(1)
    per_backend = int(
        re.search(r"timeout (\d+) python3 benchmarks/measure", SCRIPT).group(1)
    )
    total = sum(limits) + per_backend * (len(backends.split()) - 1)
    assert len(limits) == 4
    assert total <= 570  # of 600 s, leaving time to start and copy out
