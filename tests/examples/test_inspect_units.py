"""examples/inspect_units.py on a tiny saved model."""

import adding_problem
import inspect_units
import numpy as np
import pytest
from example_runs import assert_usage_error


@pytest.fixture
def adding_model(tmp_path):
    model = adding_problem.build_model(timesteps=12, units=6, lr=2e-4)
    path = tmp_path / "model.keras"
    model.save(path)
    return path


def test_writes_the_figures_and_a_report(adding_model, tmp_path):
    output = tmp_path / "units"
    report = inspect_units.main(
        [str(adding_model), "--adding", "--output", str(output)]
    )
    for name in ("memory.png", "activations.png", "units.json"):
        assert (output / name).stat().st_size > 0
    assert [r["units"] for r in report.values()] == [6, 6]
    # |u| <= 2**(1/12) from the initializers: the memory of every unit of
    # the second layer, u in U(2**(-1/12), 2**(1/12)), is 12 steps or more.
    second = list(report.values())[1]
    assert second["median_memory"] >= 12


def test_states_are_those_of_the_model(adding_model):
    model = inspect_units.keras.models.load_model(adding_model)
    x, _ = adding_problem.adding_batch(np.random.default_rng(0), 1, 12)
    first, second = inspect_units.layer_states(model, x)
    assert first.shape == second.shape == (1, 12, 6)
    # The model reads the second layer's last step.
    dense = model.layers[-1]
    expected = second[:, -1] @ dense.get_weights()[0] + dense.get_weights()[1]
    np.testing.assert_allclose(
        model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6
    )


def test_a_model_without_indrnn_is_a_usage_error(tmp_path, capsys):
    keras = inspect_units.keras
    model = keras.Sequential([keras.Input((4, 2)), keras.layers.Dense(1)])
    model.save(tmp_path / "dense.keras")
    with pytest.raises(SystemExit) as excinfo:
        inspect_units.main(
            [str(tmp_path / "dense.keras"), "--output", str(tmp_path / "o")]
        )
    assert excinfo.value.code == 2
    assert_usage_error(capsys.readouterr().err, "has no IndRNN layer")
