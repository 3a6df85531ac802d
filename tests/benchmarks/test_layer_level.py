"""benchmarks/layer_level.py: the worker times the real forward and backward
pass, on the backend the tests run on, and writes what the report reads.
No assertion is about speed."""

import json
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import reference
from gradients import finite_differences

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import layer_level  # noqa: E402

BACKEND = keras.backend.backend()
MODELS = list(layer_level.MODELS[BACKEND])
INDRNNS = [m for m in MODELS if m.startswith("indrnn")]
# Small enough for central differences over every input and weight.
TINY = {"layers": 1, "units": 4, "batch_size": 3, "features": 2}


def tiny_job(**overrides):
    return layer_level.default_job(
        config=TINY,
        timesteps=[5, 9],
        repeats=2,
        warmup=2,
        count_kernels=False,
        **overrides,
    )


@pytest.mark.parametrize("model", INDRNNS)
def test_the_timed_indrnn_gradient_is_the_references(model):
    # What the benchmark times must be the layer's actual gradient: of
    # sum(outputs * probe), with respect to the inputs and every weight.
    timesteps = 6
    step = layer_level.build_step(model, timesteps, TINY)
    loss, grads = step.numpy()
    x, probe = layer_level.make_inputs(timesteps, TINY)
    kernel, recurrent, bias = step.weights

    def reference_loss(x, kernel, recurrent, bias):
        outputs, _, _ = reference.indrnn(x, kernel, recurrent, bias)
        return np.sum(outputs * probe)

    arrays = [x, kernel, recurrent, bias]
    assert reference.relative_error(loss, reference_loss(*arrays)) < 1e-5
    expected = finite_differences(reference_loss, arrays)
    assert len(grads) == len(expected)
    for grad, want in zip(grads, expected, strict=True):
        assert reference.relative_error(grad, want) < 1e-5


def test_the_timed_floor_gradient_is_the_references():
    timesteps = 6
    step = layer_level.build_step("dense_floor", timesteps, TINY)
    loss, (dx, dkernel, dbias) = step.numpy()
    x, probe = (a.astype(np.float64) for a in layer_level.make_inputs(6, TINY))
    kernel, bias = (np.asarray(w, np.float64) for w in step.weights)
    if BACKEND == "torch":
        kernel = kernel.T  # torch.nn.Linear keeps (out, in)
    pre = x @ kernel + bias
    d_pre = probe * (pre > 0)
    assert (
        reference.relative_error(loss, np.sum(np.maximum(pre, 0) * probe))
        < 1e-5
    )
    assert reference.relative_error(dx, d_pre @ kernel.T) < 1e-5
    d_kernel = np.einsum("btf,btu->fu", x, d_pre)
    if BACKEND == "torch":
        d_kernel = d_kernel.T
    assert reference.relative_error(dkernel, d_kernel) < 1e-5
    assert reference.relative_error(dbias, d_pre.sum(axis=(0, 1))) < 1e-5


def test_the_lstm_step_differentiates_the_inputs_and_every_weight():
    step = layer_level.build_step("lstm", 6, TINY)
    loss, grads = step.numpy()
    x, _ = layer_level.make_inputs(6, TINY)
    assert np.isfinite(loss)
    assert [g.shape for g in grads] == [x.shape] + [
        np.shape(w) for w in step.weights
    ]
    assert all(np.isfinite(g).all() and np.abs(g).max() > 0 for g in grads)


def test_a_step_sets_its_environment_only_while_it_runs():
    # The TorchScript row turns the compiled kernels off for its own steps
    # only; the engines read the variables at call time.
    before = os.environ.get("KERAS_INDRNN_TRITON")
    step = layer_level.Step(
        run=lambda: os.environ.get("KERAS_INDRNN_TRITON"),
        sync=lambda result: None,
        weights=[],
        env=layer_level.TORCHSCRIPT_ONLY,
    )
    assert step() == "0"
    assert os.environ.get("KERAS_INDRNN_TRITON") == before


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch engine's rows")
def test_the_torchscript_row_turns_the_compiled_kernels_off(monkeypatch):
    from keras_indrnn.engines import torch as engine
    from keras_indrnn.engines import torch_numba
    from keras_indrnn.engines import torch_triton

    # Which compiled kernel ran, counted where it runs.
    ran = []
    for name, binding in (("Numba", torch_numba), ("Triton", torch_triton)):
        for direction in ("forward", "backward"):
            original = getattr(binding, direction)

            def counted(*args, _original=original, _name=name):
                result = _original(*args)
                if result is not None:  # None: it failed, and others ran
                    ran.append(_name)
                return result

            monkeypatch.setattr(binding, direction, counted)

    step = layer_level.build_step("indrnn_sequential_torchscript", 6, TINY)
    step()
    assert ran == []
    assert step.describe() == "TorchScript"
    step = layer_level.build_step("indrnn_sequential", 6, TINY)
    step()
    if engine.on_accelerator():
        expected = "Triton" if torch_triton.serves("cuda") else None
    else:
        # The torch environment installs Numba.
        expected = "Numba"
    assert ran == ([expected] * 2 if expected else [])
    assert step.describe() == (expected or "TorchScript")


def test_the_worker_times_every_model_and_the_report_renders(tmp_path):
    emitted = []
    result = layer_level.run_backend(
        tiny_job(), emit=lambda kind, payload: emitted.append(kind)
    )
    assert result["backend"] == BACKEND
    assert {"device", "versions", "notes"} <= set(result)
    assert emitted == ["header"] + ["row"] * len(result["rows"])
    assert [(r["timesteps"], r["model"]) for r in result["rows"]] == [
        (t, m) for t in (5, 9) for m in MODELS
    ]
    for row in result["rows"]:
        assert row["status"] == "timed", row
        assert row["samples"] == 2
        assert 0 < row["min_ms"] <= row["median_ms"]
        assert row["first_call_s"] > 0
    document = layer_level.make_document(tiny_job(), [result])
    # What the driver writes: plain JSON, with the ratios at each T.
    document = json.loads(json.dumps(document))
    assert document["benchmark"] == "layer_level"
    assert document["config"]["units"] == TINY["units"]
    rows = {(r["timesteps"], r["model"]): r for r in result["rows"]}
    for (t, _), row in rows.items():
        lstm, floor = rows[t, "lstm"], rows[t, "dense_floor"]
        assert row["speedup_vs_lstm"] == pytest.approx(
            lstm["median_ms"] / row["median_ms"]
        )
        assert row["vs_floor"] == pytest.approx(
            row["median_ms"] / floor["median_ms"]
        )
    path = tmp_path / "layer-level.json"
    path.write_text(json.dumps(document))
    layer_level.main(["--report", str(path)])
    table = path.with_suffix(".md").read_text()
    for t in (5, 9):
        assert f"\n| {t} | " in table
    assert "LSTM / seq." in table


def test_a_model_too_slow_is_timed_once_and_dropped_for_longer_t():
    result = layer_level.run_backend(
        tiny_job(slow_seconds=0.0, models=["indrnn_sequential", "lstm"])
    )
    first, second = (
        [r for r in result["rows"] if r["timesteps"] == t] for t in (5, 9)
    )
    assert [r["status"] for r in first] == ["slow", "slow"]
    assert all(r["samples"] == 1 and r["median_ms"] > 0 for r in first)
    assert [r["status"] for r in second] == ["dropped", "dropped"]
    assert all(r["median_ms"] is None for r in second)


def test_no_length_starts_past_the_deadline():
    result = layer_level.run_backend(
        tiny_job(deadline=time.time(), models=["dense_floor"])
    )
    # The first length has no estimate to go by and runs.
    assert [(r["timesteps"], r["status"]) for r in result["rows"]] == [
        (5, "timed"),
        (9, "skipped"),
    ]
