"""Samples text from a language model trained by language_model.py.

Builds the run's model for one row (language_model.build_model with batch
size 1), loads the run's weights into it, reads --prime, then samples one
token at a time and feeds it back. The vocabulary is rebuilt from the
run's text (its --data-dir, from summary.json, or --data-dir here).

The model reads the text as the scorer reads a split in one row: from a
zero state, in windows of the run's --bptt steps, each token at its place
in its window (the batch norms keep statistics per place), the state
carried from window to window. A token inside a window is predicted by
reading that window so far from the state at its start.

The prime is read as ptb_data.py reads the text: characters, the space
between words as one, or words; a line end is `<eos>`. An empty prime
starts after an `<eos>`, at the start of a sentence. PTB's text is lower
case, with `N` for numbers and `<unk>` for rare words. --temperature
divides the logits; 0 takes the most likely token.

    python examples/generate_text.py runs/ptb-char --prime "the company " \\
        --length 300 --temperature 0.8
"""

import argparse
from pathlib import Path

import keras
import numpy as np
from keras import tree

import language_model
import ptb_data
from ptb_data import ResetStates
from runs import non_negative_float
from runs import positive_int
from runs import print_engine
from runs import seed_int


class Reader:
    """Reads tokens into a one-row stateful `model`, window by window."""

    def __init__(self, model):
        self.model, self.bptt = model, model.input.shape[1]
        self.states = [
            state
            for layer in model.layers
            if getattr(layer, "stateful", False)
            for state in tree.flatten(layer.states)
        ]
        ResetStates.of(model)
        self.tokens, self.read = [], 0  # read: tokens the state holds

    def next_logits(self, tokens):
        """Appends `tokens`; the logits of the token that follows."""
        self.tokens.extend(tokens)
        last = len(self.tokens) - 1
        while self.read + self.bptt <= last:  # windows before the last's
            self.predict(self.tokens[self.read : self.read + self.bptt])
            self.read += self.bptt
        window = self.tokens[self.read :]
        if len(window) == self.bptt:
            self.read += self.bptt
            return self.predict(window)[-1]
        # The window is not full: read it so far (the padding comes after
        # the last token, which cannot see it), then go back to its start.
        saved = [keras.ops.convert_to_numpy(s) for s in self.states]
        padded = window + [0] * (self.bptt - len(window))
        logits = self.predict(padded)[len(window) - 1]
        for state, value in zip(self.states, saved, strict=True):
            state.assign(value)
        return logits

    def predict(self, window):
        x = np.array([window], dtype="int32")
        return keras.ops.convert_to_numpy(self.model.predict_on_batch(x))[0]


def sample(logits, temperature, rng):
    if temperature == 0:
        return int(np.argmax(logits))
    z = np.asarray(logits, "float64") / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def prime_tokens(text, level):
    """`text` as tokens of `level`: a line end is `<eos>`; the last line
    has none unless the text ends with one, and at char level keeps a
    space at its end."""
    *lines, last = text.split("\n")
    tokens = ptb_data.tokenize("\n".join(lines), level)
    tokens += ptb_data.tokenize(last, level)[:-1]
    if level == "char" and last.strip() and last[-1].isspace():
        tokens.append(" ")
    return tokens


def detokenize(tokens, level):
    """`tokens` as text: words joined by spaces, `<eos>` a line end."""
    lines, line = [], []
    for token in tokens:
        if token == ptb_data.EOS:
            lines.append(line)
            line = []
        else:
            line.append(token)
    joiner = " " if level == "word" else ""
    return "\n".join(joiner.join(line) for line in [*lines, line])


def main(argv=None):
    parser, args = parse_flags(argv)
    flags, weights = language_model.trained_run(parser, args)
    vocab, _ = language_model.load_tokens(parser, flags)
    prime = prime_tokens(args.prime, flags.level)
    unknown = [token for token in prime if token not in vocab]
    if unknown:
        parser.error(
            f"argument --prime: {unknown[0]!r} is not in the run's "
            f"{flags.level} vocabulary of {len(vocab):,} tokens (PTB is "
            "lower case, with N for numbers and <unk> for rare words)"
        )
    print_engine()
    model = language_model.trained_copy(parser, flags, weights, len(vocab), 1)
    ids = {token: index for index, token in enumerate(vocab)}
    rng = np.random.default_rng(args.seed)
    reader = Reader(model)
    token = [ids[t] for t in prime or [ptb_data.EOS]]
    generated = []
    for _ in range(args.length):
        token = [sample(reader.next_logits(token), args.temperature, rng)]
        generated.append(vocab[token[0]])
    text = detokenize(prime + generated, flags.level)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)
    return {"prime": prime, "generated": generated, "text": text}


def parse_flags(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: python examples/generate_text.py runs/ptb-word "
        "--prime 'the company said' --length 50",
    )
    language_model.add_trained_run_flags(parser)
    parser.add_argument(
        "--prime",
        default="",
        metavar="TEXT",
        help="the text to go on from (default: none)",
    )
    parser.add_argument(
        "--length",
        type=positive_int,
        default=200,
        metavar="N",
        help="tokens to generate (default: 200)",
    )
    parser.add_argument(
        "--temperature",
        type=non_negative_float,
        default=1.0,
        metavar="T",
        help="divides the logits; 0: the most likely token (default: 1)",
    )
    parser.add_argument(
        "--seed", type=seed_int, default=0, help="of the sampling (default: 0)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="also write the text to FILE",
    )
    return parser, parser.parse_args(argv)


if __name__ == "__main__":
    main()
