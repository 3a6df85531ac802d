"""examples/runs.py: a resumed run lowers its learning rate on a plateau
as one uninterrupted run would."""

import argparse
import json

import keras
import numpy as np
import pytest

import runs

# Validation losses with plateaus: improvements, then two epochs without.
VAL_LOSSES = [5.0, 4.0, 4.1, 3.9, 3.95, 3.97, 3.8, 3.85, 3.9, 3.91, 3.7]


def learning_rates(plateaus, losses, optimizer):
    """The learning rate after each epoch of `losses`, each epoch run as one
    `fit` of its own callback from `plateaus` (a callable of the epochs
    finished before), sharing `optimizer` as a restored backup would."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer, "mse")
    rates, callback = [], None
    for epoch, loss in enumerate(losses):
        fresh = plateaus(losses[:epoch])
        if fresh is not None:
            callback = fresh
            callback.set_model(model)
            callback.on_train_begin()
        callback.on_epoch_end(epoch, {"val_loss": loss})
        rates.append(float(optimizer.learning_rate))
    return rates


# Keras ends a cooldown of 1 before the epoch after the cut counts, so
# only a cooldown of 2 or more changes the rates.
@pytest.mark.parametrize("patience, cooldown", [(1, 0), (2, 0), (1, 2)])
def test_resuming_every_epoch_lowers_the_rate_as_one_run(patience, cooldown):
    options = dict(monitor="val_loss", factor=0.5, patience=patience)
    options["cooldown"] = cooldown

    def once(finished):
        if finished:
            return None  # the same callback goes on
        return keras.callbacks.ReduceLROnPlateau(**options)

    def resumed(finished):
        return runs.ResumedPlateau(finished, **options)

    def forgetful(finished):
        return keras.callbacks.ReduceLROnPlateau(**options)

    expected = learning_rates(once, VAL_LOSSES, keras.optimizers.SGD(1.0))
    assert min(expected) < 1.0, "the losses must make the rate drop"
    got = learning_rates(resumed, VAL_LOSSES, keras.optimizers.SGD(1.0))
    np.testing.assert_array_equal(got, expected)
    # Keras's own callback, resumed, forgets and lowers the rate later.
    forgot = learning_rates(forgetful, VAL_LOSSES, keras.optimizers.SGD(1.0))
    assert forgot != expected


def test_finished_values_take_the_last_row_of_each_backed_up_epoch(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "backup").mkdir(parents=True)
    # Epoch 1 was interrupted after its row and ran again; epoch 3 has a
    # row but no backup yet.
    (run_dir / "metrics.csv").write_text(
        "epoch,val_loss\n0,3.0\n1,2.5\n1,2.0\n2,2.2\n3,1.0\n"
    )
    (run_dir / "backup" / "training_metadata.json").write_text(
        json.dumps({"epoch": 3})
    )
    run = runs.Run(run_dir)
    assert run.finished_values("val_loss") == [3.0, 2.0, 2.2]
    plateau = run.plateau("val_loss", factor=0.2, patience=1)
    assert isinstance(plateau, runs.ResumedPlateau)
    assert plateau.finished == [3.0, 2.0, 2.2]
    assert runs.Run(tmp_path / "new").finished_values("val_loss") == []


def test_a_flag_added_since_a_run_began_resumes_at_its_default(tmp_path):
    def parser(new_flag):
        parser = argparse.ArgumentParser()
        parser.add_argument("--units", type=int, default=4)
        if new_flag:
            parser.add_argument("--bound", type=float, default=0.99)
        return parser

    def check(new_flag, argv):
        run = runs.Run(tmp_path)
        flags = parser(new_flag).parse_args(argv)
        run.check_flags(parser(new_flag), flags)

    check(False, [])  # a run that began before --bound
    backup = runs.Run(tmp_path).backup_dir
    backup.mkdir()
    (backup / "training_metadata.json").write_text('{"epoch": 1}')
    check(True, [])  # resumes: --bound has the value the run had
    with pytest.raises(SystemExit):
        check(True, ["--bound", "0.5"])
