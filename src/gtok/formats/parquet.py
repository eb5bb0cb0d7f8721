"""Token records as a parquet table, the interchange format of geniml and Hugging Face `datasets`.

geniml's `Region2VecDataset` and `datasets.load_dataset("parquet", ...)` read one document per row
from a `tokens` column of integer lists; so `gtok export-parquet` writes shards in that shape, and
`gtok tokenize` takes such a table back as input (layout in docs/format.md). A token id means
nothing without its vocabulary, so the writer records the vocabulary's size and fingerprint in
the schema metadata, and the reader refuses ids or a fingerprint that do not fit the universe it
is given (gtok.sources.parquet). Both stream in row batches, so memory holds one batch whatever the
file's size.

pyarrow is imported only inside the functions: `gtok tokenize` of BED files must not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from gtok import __version__
from gtok.atomic import atomic_path
from gtok.errors import GtokError, describe
from gtok.formats.manifest import common_vocabulary, id_problem
from gtok.formats.shard import ShardReader
from gtok.paths import has_magic, output_file, refuse_repeats

if TYPE_CHECKING:
    import pyarrow as pa

PARQUET_MAGIC = b"PAR1"
META_VOCAB_SIZE = b"gtok.vocab_size"
META_FINGERPRINT = b"gtok.fingerprint"
META_VERSION = b"gtok.version"
#: Tokens per written row group: bounds the writer's memory, and keeps list offsets within int32.
BATCH_TOKENS = 1 << 24


class ParquetExport(NamedTuple):
    """What `write_parquet` wrote, for the command's summary line."""

    path: Path
    shards: int
    records: int
    tokens: int
    vocab_size: int | None
    fingerprint: str | None


def import_pyarrow() -> tuple[Any, Any]:
    """(pyarrow, pyarrow.parquet), or one line saying how to get them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise GtokError("parquet files need pyarrow, which is not installed (pip install 'pyarrow>=14').") from None
    return pa, pq


# -- writing ----------------------------------------------------------------------------------------


def write_parquet(readers_or_shard_paths: Sequence[ShardReader | str | os.PathLike],
                  output: str | os.PathLike) -> ParquetExport:
    """Write the records of shards, in order, to one parquet file with `name`, `tokens`, `label`.

    All shards must share one vocabulary (size and fingerprint), which the file's metadata then
    records, and their ids must fit it (a gtars file records no vocabulary). The output is checked first (a `.parquet` name, not an input, only a parquet file
    replaced) and written atomically, a row group of at most `BATCH_TOKENS` tokens at a time.
    """
    pa, pq = import_pyarrow()
    if not readers_or_shard_paths:
        raise GtokError("give at least one shard to export.")
    refuse_repeats(r.path if isinstance(r, ShardReader) else r for r in readers_or_shard_paths)
    readers = [r if isinstance(r, ShardReader) else ShardReader(r) for r in readers_or_shard_paths]
    fingerprint, vocab_size = common_vocabulary([(describe(r.path), r.fingerprint, r.vocab_size) for r in readers])
    for reader in readers:
        reader.verify()  # a corrupt shard must not turn into a clean-looking parquet; checked before writing
        problem = id_problem(describe(reader.path), reader.max_id, vocab_size)  # gtars files: ids no writer checked
        if problem:
            raise GtokError(problem)
    target = output_file(output, (".parquet",), [r.path for r in readers], has_magic(PARQUET_MAGIC), "parquet file")
    schema = _schema(pa, vocab_size, fingerprint)
    with atomic_path(target) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for reader in readers:
                for table in _shard_tables(pa, schema, reader):
                    writer.write_table(table)
    return ParquetExport(target, len(readers), sum(len(r) for r in readers), sum(r.n_tokens for r in readers),
                         vocab_size, fingerprint)


def _schema(pa: Any, vocab_size: int | None, fingerprint: str | None) -> pa.Schema:
    """name: string, tokens: list<int32> (int64 for a vocabulary beyond int32), label: string (nullable)."""
    wide = vocab_size is None or vocab_size > 2**31
    meta = {META_VERSION: __version__.encode()}
    if vocab_size is not None:
        meta[META_VOCAB_SIZE] = str(vocab_size).encode()
    if fingerprint is not None:
        meta[META_FINGERPRINT] = fingerprint.encode()
    fields = [pa.field("name", pa.string(), nullable=False),
              pa.field("tokens", pa.list_(pa.int64() if wide else pa.int32()), nullable=False),
              pa.field("label", pa.string())]
    return pa.schema(fields, metadata=meta)


def _shard_tables(pa: Any, schema: pa.Schema, reader: ShardReader) -> Iterator[pa.Table]:
    """A shard's records as tables of consecutive records holding at most `BATCH_TOKENS` tokens each
    (at least one record), built from the shard's offsets without a loop over records."""
    offsets = reader.offsets.astype(np.int64)
    names, labels = reader.names, reader.labels
    value_type = schema.field("tokens").type.value_type
    lo, n = 0, len(reader)
    while lo < n:
        hi = max(lo + 1, int(np.searchsorted(offsets, offsets[lo] + BATCH_TOKENS, side="right")) - 1)
        ids = np.asarray(reader.tokens[offsets[lo] : offsets[hi]]).astype(value_type.to_pandas_dtype())
        rel = (offsets[lo : hi + 1] - offsets[lo]).astype(np.int32)
        tokens = pa.ListArray.from_arrays(pa.array(rel, pa.int32()), pa.array(ids, value_type))
        label = pa.array(labels[lo:hi] if labels is not None else [None] * (hi - lo), pa.string())
        yield pa.Table.from_arrays([pa.array(names[lo:hi], pa.string()), tokens, label], schema=schema)
        lo = hi
