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


#: Files people give where another kind was meant, by their first bytes (longest magic first).
_MAGIC_KINDS = ((b"GTOKIDX\0", "a gtok universe index"), (b"GTOK", "a .gtok shard"), (b"\x89HDF", "an HDF5 file (.h5ad?)"),
                (b"PK\x03\x04", "a zip archive (a PyTorch checkpoint?)"), (b"\x1f\x8b", "a gzip file"),
                (b"\x93NUMPY", "a .npy array"))


def magic_kind(head: bytes) -> str | None:
    """The kind of binary file whose magic bytes `head` starts with (a shard, HDF5, a checkpoint...), or None."""
    return next((kind for magic, kind in _MAGIC_KINDS if head.startswith(magic)), None)


def kind_of_file(head: bytes) -> str | None:
    """What a file is from its first bytes (at least 8), for a message about a file of the wrong
    kind: a shard, HDF5, a checkpoint, an empty file or text; None for a binary file of no known kind."""
    if kind := magic_kind(head):
        return kind
    if not head:
        return "an empty file"
    if all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head):  # printable text, not just 7-bit bytes
        return "a JSON file (a manifest?)" if head.lstrip().startswith((b"{", b"[")) else "a text file (a BED file?)"
    return None


def describe(path: str | os.PathLike) -> str:
    """How a path is shown in messages (as given, so users recognise it)."""
    return os.fspath(path)
