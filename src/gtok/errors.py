"""User-facing errors.

Anything a user can fix (a bad line, a missing file, a corrupt shard) raises `GtokError` with one
readable sentence that names the file. The command line prints that sentence and exits non-zero;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os


class GtokError(Exception):
    """An error caused by the input, with a message meant for people."""


class BedFormatError(GtokError, ValueError):
    """A BED file that cannot be parsed."""


class ShardFormatError(GtokError, ValueError):
    """A `.gtok` shard that is truncated, corrupt or of an unknown version."""


class FingerprintMismatchError(GtokError, ValueError):
    """Data tokenized with one vocabulary fed to something built for another."""


def one_line(exc: BaseException) -> str:
    """`Type: message` of an exception raised by code gtok does not own (a brought class,
    transformers, an imported package), in one line: their messages often span several, and a
    gtok error is one line."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def describe(path: str | os.PathLike) -> str:
    """How a path is shown in messages (as given, so users recognise it)."""
    return os.fspath(path)
