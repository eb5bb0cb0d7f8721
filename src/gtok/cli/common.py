"""What every command shares: how it is registered, and argument types that accept only valid values."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from gtok.sources.h5ad import DEFAULT_MODALITY


def add_command(sub, name: str, help_: str, run: Callable[[argparse.Namespace], int | None]) -> argparse.ArgumentParser:
    """A subcommand whose `--help` repeats its one-line description, run by `run(args)`."""
    p = sub.add_parser(name, help=help_, description=help_)
    p.set_defaults(run=run)
    return p


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no informational messages")


def inform(args: argparse.Namespace, text: str) -> None:
    """An informational line (what was written), unless the command was asked to be --quiet."""
    if not getattr(args, "quiet", False):
        print(text)


def add_cell_options(p: argparse.ArgumentParser, verb: str) -> None:
    """How an .h5ad or .h5mu input's cells are read: `gtok tokenize` and `gtok embed` alike."""
    p.add_argument("--layer", type=name, metavar="NAME",
                   help=f".h5ad / .h5mu inputs: {verb} this layer (e.g. counts) instead of X")
    p.add_argument("--modality", type=name, default=DEFAULT_MODALITY, metavar="NAME",
                   help=f".h5mu inputs: the modality whose cells to {verb} (default {DEFAULT_MODALITY})")
    p.add_argument("--tile-width", type=positive_int, metavar="BP",
                   help="tile matrices (e.g. ArchR's) whose var has chromosome and start but no end: the tile width "
                        "(default: from var's idx column, or the spacing of the starts)")


def name(text: str) -> str:
    """A name that is not empty (a layer, a modality)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name names nothing")
    return text


def positive_int(text: str) -> int:
    """An integer >= 1 (counts and sizes)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return value


def steps(text: str) -> int:
    """A positive number of steps, or -1 for no limit."""
    value = _integer(text)
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer (or -1 for no limit)")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    if not 0 < (value := _float(text)) < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def fraction(text: str) -> float:
    """A share in [0, 1)."""
    if not 0 <= (value := _float(text)) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in [0, 1)")
    return value


def devices(text: str) -> int | str | list[int]:
    """`auto`, a positive count, -1 for every GPU, or a list of device indices like `0,1`
    (the rule is gtok.options.devices_problem's)."""
    from gtok.options import devices_problem

    if text == "auto":
        value: int | str | list[int] = text
    elif "," in text:
        value = [_integer(x) for x in text.split(",") if x]
    else:
        value = _integer(text)
    if devices_problem(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto', a positive count, -1 (every GPU) or distinct indices like 0,1")
    return value


def part(text: str) -> tuple[int, int]:
    """`K/N`: part K (from 0) of N."""
    k, _, n = text.partition("/")
    if not (k.isascii() and k.isdigit() and n.isascii() and n.isdigit()) or not 0 <= int(k) < int(n):
        raise argparse.ArgumentTypeError(f"{text!r} is not a part K/N with 0 <= K < N, like 0/4")
    return int(k), int(n)


def _float(text: str) -> float:
    """The number a text spells, or NaN (which no range accepts)."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _integer(text: str) -> int:
    if not (text.isascii() and text.lstrip("-").isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
    return int(text)
