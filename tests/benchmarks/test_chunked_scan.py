"""benchmarks/chunked_scan.py: the chunked-scan candidate computes the
recurrence and its gradients exactly, so that its timings compare like
with like. Checked against the float64 reference."""

import sys
from pathlib import Path

import numpy as np
import pytest
import reference
from gradients import finite_differences
from keras import activations
from keras import ops
from test_recurrence import f32
from test_recurrence import loss_gradients
from test_recurrence import run_reference

from keras_indrnn import recurrence

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import chunked_scan  # noqa: E402


@pytest.fixture
def chunked(monkeypatch):
    """Swaps the chunked scan in for the sequential implementation."""

    def swap(chunk):
        states, backward = chunked_scan.patched_recurrence(chunk)
        monkeypatch.setattr(recurrence, "_sequential_states", states)
        monkeypatch.setattr(recurrence, "_sequential_backward", backward)

    return swap


# 1: every chunk a step; 4: chunks that do not divide T = 10; 16: one
# chunk longer than the sequence.
@pytest.mark.parametrize("chunk", [1, 4, 16])
@pytest.mark.parametrize("per_sample_u", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("activation", ["relu", "hard_tanh"])
def test_states_and_gradients(
    rng, chunked, chunk, per_sample_u, with_mask, activation
):
    chunked(chunk)
    batch, steps, units = 3, 10, 4
    z = f32(rng.normal(size=(batch, steps, units)))
    u_shape = (batch, units) if per_sample_u else (units,)
    u = f32(rng.uniform(-1.2, 1.2, size=u_shape))
    h0 = f32(rng.normal(size=(batch, units)))
    mask = rng.random((batch, steps)) < 0.7 if with_mask else None
    probe = f32(rng.normal(size=(batch, steps, units)))
    act = activations.get(activation)

    _, outputs, _ = recurrence.indrnn_recurrence(
        *(a.astype("float32") for a in (z, u, h0)), act, mask=mask
    )
    expected = run_reference(z, u, h0, activation, mask)
    assert reference.relative_error(outputs, expected) < 1e-5

    def reference_loss(z, u, h0):
        outputs = run_reference(z, u, h0, activation, mask)
        return np.sum(outputs * probe)

    probe32 = ops.convert_to_tensor(probe.astype("float32"))

    def loss(z, u, h0):
        _, outputs, _ = recurrence.indrnn_recurrence(z, u, h0, act, mask=mask)
        return ops.sum(outputs * probe32)

    grads = loss_gradients(loss, [a.astype("float32") for a in (z, u, h0)])
    wanted = finite_differences(reference_loss, [z, u, h0])
    for grad, want in zip(grads, wanted, strict=True):
        assert reference.relative_error(grad, want) < 1e-5
