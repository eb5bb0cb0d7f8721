"""gtok: genomic interval collections to token sequences, on disk (`.gtok` shards) or in memory.

Importing `gtok` stays light (numpy only): the torch-based pieces load on first use, so the
`gtok tokenize` command never pays for torch or Lightning.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from gtok.errors import (
    BedFormatError,
    FingerprintMismatchError,
    GtokError,
    ShardFormatError,
)
from gtok.formats.shard import ShardReader, ShardWriter, write_shard
from gtok.tokenizer import Tokenizer
from gtok.universe import Universe

__version__ = "0.1.0"

_LAZY = {
    "GTokDataset": "gtok.data.dataset",
    "GTokDataModule": "gtok.data.datamodule",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gtok' has no attribute {name!r}")


__all__ = [
    "GtokError",
    "ShardFormatError",
    "BedFormatError",
    "FingerprintMismatchError",
    "ShardReader",
    "ShardWriter",
    "write_shard",
    "Tokenizer",
    "Universe",
    *_LAZY,
]
