"""How badly a language model trained by language_model.py reads the tokens
after a zero state: the loss of the first --head tokens after a zero state
against the loss of the rest.

Cuts a split into segments of --segment tokens and reads each from a zero
state, as the scorer reads a split, window by window in the run's --bptt
steps, with the run's weights in a model built for --rows rows (segments
side by side; the rows do not interact at inference). A segment's last
window may be part full: the padding comes after its last token, which
cannot see it. Each token's loss is the cross-entropy of its prediction.

Prints a line and the JSON of: the mean loss (and BPC or perplexity) of
the first --head tokens of the segments and of the rest, and of the
tokens by their distance from the zero state, in buckets 0, 1, 2-3,
4-7, and so on; --output FILE also writes the JSON.

    python examples/reset_gap.py runs/ptb-char --segment 500 --head 50
"""

import argparse
import json
from pathlib import Path

import keras
import numpy as np

import language_model
import ptb_data
from ptb_data import ResetStates
from runs import positive_int
from runs import print_engine


def token_losses(model, segments):
    """`(segments, length)` losses of the tokens of `segments`, `(segments,
    length + 1)` token ids (the inputs, then one more target), each read
    by `model` from a zero state."""
    rows, bptt = model.input.shape
    count, length = segments.shape[0], segments.shape[1] - 1
    steps = -(-length // bptt) * bptt  # whole windows
    padded = np.zeros((-(-count // rows) * rows, steps + 1), dtype="int32")
    padded[:count, : length + 1] = segments
    losses = np.zeros(padded[:, 1:].shape)
    for row in range(0, len(padded), rows):
        ResetStates.of(model)
        for start in range(0, steps, bptt):
            x = padded[row : row + rows, start : start + bptt]
            y = padded[row : row + rows, start + 1 : start + bptt + 1]
            logits = keras.ops.convert_to_numpy(model.predict_on_batch(x))
            logits = logits.astype("float64")
            logits -= logits.max(axis=-1, keepdims=True)
            log_z = np.log(np.exp(logits).sum(axis=-1))
            picked = np.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
            losses[row : row + rows, start : start + bptt] = log_z - picked
    return losses[:count, :length]


def report(losses, head, level):
    """The mean losses of the first `head` positions and of the rest, and
    by distance from the zero state, with the level's score."""
    name, score = language_model.SCORES[level]

    def part(values):
        loss = float(np.mean(values))
        return {"tokens": int(np.size(values)), "loss": loss, name: score(loss)}

    length = losses.shape[1]
    edges = [0, *(2**k for k in range(length.bit_length()) if 2**k < length)]
    buckets = [
        {"from": a, "to": b - 1, **part(losses[:, a:b])}
        for a, b in zip(edges, [*edges[1:], length], strict=True)
    ]
    return {
        "head": part(losses[:, :head]),
        "rest": part(losses[:, head:]),
        "all": part(losses),
        "buckets": buckets,
    }


def main(argv=None):
    parser, args = parse_flags(argv)
    flags, weights = language_model.trained_run(parser, args)
    vocab, tokens = language_model.load_tokens(parser, flags)
    try:
        stream = ptb_data.encode(tokens[args.split], vocab)
    except ValueError as error:
        source = language_model.split_source(flags, args.split)
        parser.error(f"argument --data-dir: {source}: {error}")
    count = (len(stream) - 1) // args.segment
    if not count:
        parser.error(
            f"argument --segment: the {args.split} split holds "
            f"{len(stream):,} tokens, fewer than one segment needs: "
            f"--segment {args.segment} + 1"
        )
    starts = np.arange(count)[:, None] * args.segment
    segments = stream[starts + np.arange(args.segment + 1)]
    print_engine()
    model = language_model.trained_copy(
        parser, flags, weights, len(vocab), args.rows
    )
    result = {
        "run": str(args.run_dir),
        "weights": str(weights),
        "level": flags.level,
        "bptt": flags.bptt,
        "split": args.split,
        "segments": count,
        "segment": args.segment,
        "rows": args.rows,
        **report(token_losses(model, segments), args.head, flags.level),
    }
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    name = language_model.SCORES[flags.level][0]
    print(
        f"{args.split}: {count:,} segments of {args.segment} tokens, each "
        f"from a zero state: {name} {result['head'][name]:.4g} over the "
        f"first {args.head} tokens, {result['rest'][name]:.4g} over the rest"
    )
    return result


def parse_flags(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: python examples/reset_gap.py runs/ptb-word",
    )
    language_model.add_trained_run_flags(parser)
    parser.add_argument(
        "--split",
        choices=ptb_data.SPLITS,
        default="valid",
        help="the split to score (default: valid)",
    )
    parser.add_argument(
        "--segment",
        type=positive_int,
        default=500,
        metavar="N",
        help="tokens read from each zero state (default: 500)",
    )
    parser.add_argument(
        "--head",
        type=positive_int,
        default=50,
        metavar="N",
        help="the first tokens after each zero state, scored apart from the "
        "rest (default: 50)",
    )
    parser.add_argument(
        "--rows",
        type=positive_int,
        default=1,
        metavar="R",
        help="segments read side by side; more is faster, the same numbers "
        "(default: 1)",
    )
    parser.add_argument(
        "--output", type=Path, metavar="FILE", help="also write the JSON"
    )
    args = parser.parse_args(argv)
    if args.head >= args.segment:
        parser.error(
            f"argument --head: expected fewer tokens than --segment "
            f"{args.segment}, got {args.head}"
        )
    return parser, args


if __name__ == "__main__":
    main()
