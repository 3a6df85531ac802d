"""examples/reset_gap.py: on tiny runs of language_model.py, IndRNN and
LSTM, its means are those of Keras's own loss over the same windows, each
segment read from a zero state; the rows change nothing; the padding of a
segment's last window is not seen; and bad input is a usage error."""

import argparse
import json

import keras
import numpy as np
import pytest
import reset_gap
from example_runs import assert_usage_error
from lm_runs import tiny_run
from lm_runs import write_split_files

import language_model
import ptb_data
from ptb_data import ResetStates
from ptb_data import Windows


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    return tiny_run(tmp_path_factory, "char")


@pytest.fixture(scope="module")
def short_text(tmp_path_factory):
    """The run's text with only the first 12 lines of valid and test: fewer
    segments to score one by one."""
    directory = tmp_path_factory.mktemp("short") / "ptb"
    return write_split_files(directory, {"valid": 12, "test": 12})


def gap(run, *flags):
    return reset_gap.main([str(run), *map(str, flags)])


def segments_of(run, split, length, data_dir):
    """`(flags, segments)`: the run's flags, and the split's segments of
    `length` tokens, each with the token after it."""
    parser, args = reset_gap.parse_flags(
        [str(run), "--data-dir", str(data_dir)]
    )
    flags, _ = language_model.trained_run(parser, args)
    vocab, tokens = language_model.load_tokens(parser, flags)
    stream = ptb_data.encode(tokens[split], vocab)
    count = (len(stream) - 1) // length
    return flags, np.stack(
        [stream[k * length : (k + 1) * length + 1] for k in range(count)]
    )


def window_losses(run, split, length, data_dir):
    """Keras's mean loss of each window of each segment of `length` tokens,
    `(segments, windows)`: a one-row copy of the run's model.keras reads
    each segment from a zero state, as the scorer reads a split."""
    flags, segments = segments_of(run, split, length, data_dir)
    model = keras.saving.load_model(run / "model.keras")
    one_row = argparse.Namespace(**{**vars(flags), "eval_batch_size": 1})
    scorer = language_model.Scorer(
        one_row, model.get_layer("embedding").input_dim
    )
    scorer.model.set_weights(model.get_weights())
    losses = []
    for segment in segments:
        windows = Windows(segment, 1, flags.bptt)
        ResetStates.of(scorer.model)
        losses.append(
            [
                scorer.model.test_on_batch(*windows[k])
                for k in range(len(windows))
            ]
        )
    return np.array(losses, dtype="float64")


@pytest.mark.parametrize("kind", [None, "lstm"])
def test_means_are_keras_losses_from_a_zero_state(
    tmp_path_factory, tmp_path, short_text, kind
):
    if kind == "lstm" and keras.backend.backend() != "tensorflow":
        pytest.skip("--model lstm is for TensorFlow only")
    run = tiny_run(tmp_path_factory, "char", kind)
    bptt = 10  # TINY's
    # Segments of 3 windows; the head is the first.
    flags = ["--weights", "final", "--segment", 3 * bptt, "--head", bptt]
    flags += ["--data-dir", short_text]
    output = tmp_path / "gap.json"
    result = gap(run, *flags, "--split", "test", "--output", output)
    assert json.loads(output.read_text()) == result
    expected = window_losses(run, "test", 3 * bptt, short_text)
    # Tight: the engines agree to about 1e-8 here, and a state carried from
    # one segment into the next moves the tiny LSTM's means by about 1e-4.
    assert result["segments"] == len(expected) > 20
    for part, windows in [("head", np.s_[:1]), ("rest", np.s_[1:])]:
        assert result[part]["tokens"] == expected[:, windows].size * bptt
        np.testing.assert_allclose(
            result[part]["loss"], expected[:, windows].mean(), rtol=1e-6
        )
        assert result[part]["bpc"] == result[part]["loss"] / np.log(2)
    np.testing.assert_allclose(
        result["all"]["loss"], expected.mean(), rtol=1e-6
    )
    # The buckets: 0, 1, 2-3, ..., 16-29, every token once.
    buckets = result["buckets"]
    assert [(b["from"], b["to"]) for b in buckets] == [
        *[(0, 0), (1, 1), (2, 3), (4, 7), (8, 15), (16, 29)]
    ]
    tokens = np.array([b["tokens"] for b in buckets])
    assert tokens.sum() == result["all"]["tokens"]
    np.testing.assert_allclose(
        tokens @ [b["loss"] for b in buckets] / tokens.sum(),
        result["all"]["loss"],
        rtol=1e-9,
    )
    # More rows read the same segments side by side (the last row of 7
    # partly empty).
    wide = gap(run, *flags, "--split", "test", "--rows", 7)
    assert wide["segments"] % 7
    for part in ("head", "rest", "all"):
        assert wide[part]["tokens"] == result[part]["tokens"]
        np.testing.assert_allclose(
            wide[part]["loss"], result[part]["loss"], rtol=1e-6
        )


def test_a_part_full_last_window_does_not_see_its_padding(char_run, short_text):
    flags, segments = segments_of(char_run, "valid", 30, short_text)
    parser, _ = reset_gap.parse_flags([str(char_run)])
    model = language_model.trained_copy(
        parser, flags, char_run / "best.weights.h5", 50, 3
    )
    whole = reset_gap.token_losses(model, segments)
    assert whole.shape == (len(segments), 30)
    # 25 tokens: 2 windows and half a window of padding.
    np.testing.assert_allclose(
        reset_gap.token_losses(model, segments[:, :26]),
        whole[:, :25],
        rtol=1e-5,
    )
    result = gap(char_run, "--segment", 25, "--head", 7, "--rows", 8)
    assert result["head"]["tokens"] == 7 * result["segments"]
    assert result["rest"]["tokens"] == 18 * result["segments"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--head", "30", "--segment", "30"], "argument --head: expected "),
        (["--segment", "0"], "argument --segment: expected a positive"),
        (["--rows", "0"], "argument --rows: expected a positive"),
        (["--split", "dev"], "argument --split: invalid choice: 'dev'"),
        (
            ["--segment", "100000"],
            "tokens, fewer than one segment needs: --segment 100000 + 1",
        ),
        (["--weights", "last"], "argument --weights: invalid choice"),
    ],
)
def test_bad_flags_are_usage_errors(char_run, capsys, flags, message):
    with pytest.raises(SystemExit) as excinfo:
        gap(char_run, *flags)
    assert excinfo.value.code == 2
    assert_usage_error(capsys.readouterr().err, message)


def test_a_missing_run_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as excinfo:
        gap(tmp_path / "nothing")
    assert excinfo.value.code == 2
    assert_usage_error(capsys.readouterr().err, "argument RUN_DIR: no dir")
