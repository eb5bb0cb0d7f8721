"""gtok: genomic interval collections to token sequences, on disk (`.gtok` shards) or in memory.

Importing `gtok` stays light (numpy only): the torch layer (data/, models/, training/, inference/,
evaluation/) loads on first use, so the `gtok tokenize` command never pays for torch or Lightning.
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

_LAZY = {  # imported on first use: the torch layer, and sort_var (cells.py and its h5ad reader)
    "GTokDataset": "gtok.data.dataset",
    "GTokDataModule": "gtok.data.datamodule",
    "Embedder": "gtok.inference.embed",
    "embed_regions": "gtok.inference.embed",
    "embed_anndata": "gtok.inference.embed",
    "load_model": "gtok.inference.loading",
    "sort_var": "gtok.sources.cells",
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
