"""Token records as a parquet table, the interchange format of geniml and Hugging Face `datasets`.

geniml's `Region2VecDataset` and `datasets.load_dataset("parquet", ...)` read one document per row
from a `tokens` column of integer lists; so `gtok export-parquet` writes shards in that shape, and
`gtok tokenize` takes such a table back as input (layout in docs/format.md). A token id means
nothing without its vocabulary, so the writer records the vocabulary's size and fingerprint in
the schema metadata, and the reader refuses ids or a fingerprint that do not fit the universe it
is given. Both stream in row batches, so memory holds one batch whatever the file's size.

pyarrow is imported only inside the functions: `gtok tokenize` of BED files must not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from gtok.atomic import atomic_path
from gtok.errors import FingerprintMismatchError, GtokError, describe
from gtok.formats.manifest import common_vocabulary, id_problem
from gtok.paths import has_magic, input_file, output_file

if TYPE_CHECKING:
    import pyarrow as pa

    from gtok.formats.shard import ShardReader

PARQUET_MAGIC = b"PAR1"
META_VOCAB_SIZE = b"gtok.vocab_size"
META_FINGERPRINT = b"gtok.fingerprint"
META_VERSION = b"gtok.version"
#: Tokens per written row group: bounds the writer's memory, and keeps list offsets within int32.
BATCH_TOKENS = 1 << 24
#: Rows per batch when reading.
BATCH_ROWS = 65536


class ParquetExport(NamedTuple):
    """What `write_parquet` wrote, for the command's summary line."""

    path: Path
    shards: int
    records: int
    tokens: int
    vocab_size: int | None
    fingerprint: str | None


class RecordBatch(NamedTuple):
    """A batch of records as `ShardWriter.add_batch` takes them: names, concatenated ids, lengths, labels."""

    names: list[str]
    tokens: np.ndarray
    lengths: np.ndarray
    labels: list[str | None] | None


def _pyarrow() -> tuple[Any, Any]:
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
    from gtok.formats.shard import ShardReader

    pa, pq = _pyarrow()
    if not readers_or_shard_paths:
        raise GtokError("give at least one shard to export.")
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
    from gtok import __version__

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


# -- reading ----------------------------------------------------------------------------------------


def parquet_vocabulary(path: str | os.PathLike) -> tuple[int | None, str | None]:
    """The (vocabulary size, fingerprint) a gtok-written parquet records; None for what it does not."""
    return _recorded_vocabulary(_open(path))


def read_parquet_records(path: str | os.PathLike, vocab_size: int | None = None, fingerprint: str | None = None,
                         batch_rows: int = BATCH_ROWS) -> Iterator[RecordBatch]:
    """Yield the records of a token parquet as (names, tokens int64, lengths int64, labels) batches.

    `tokens` must be a column of integer lists; `name` (else records are `row{i}`) and `label`
    are optional (labels is None without that column). With the universe's `vocab_size` and
    `fingerprint`, ids outside the vocabulary and a file whose recorded fingerprint differs are
    refused, one line naming the file: `gtok tokenize` writes the records into a shard of that
    vocabulary, and the ids must mean its regions. The file is checked before the first batch.
    """
    pf = _open(path)
    name = describe(path)
    columns = _columns(pf.schema_arrow, name)
    recorded_size, recorded_fp = _recorded_vocabulary(pf)
    _check_vocabulary(name, recorded_size, recorded_fp, vocab_size, fingerprint)
    return _batches(pf, columns, name, vocab_size if vocab_size is not None else recorded_size, batch_rows)


def _batches(pf: Any, columns: list[str], name: str, vocab_size: int | None, batch_rows: int) -> Iterator[RecordBatch]:
    row = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        yield _records(batch, row, name, vocab_size)
        row += batch.num_rows


def _recorded_vocabulary(pf: Any) -> tuple[int | None, str | None]:
    meta = pf.schema_arrow.metadata or {}
    size, fingerprint = meta.get(META_VOCAB_SIZE), meta.get(META_FINGERPRINT)
    return (int(size) if size and size.isdigit() else None), (fingerprint.decode() if fingerprint else None)


def _open(path: str | os.PathLike) -> Any:
    """A `pyarrow.parquet.ParquetFile`, or one line saying why the file is not one."""
    _, pq = _pyarrow()
    name = describe(path)
    input_file(path, "parquet file")
    if not has_magic(PARQUET_MAGIC)(path):
        raise GtokError(f"{name}: not a parquet file (it does not start with 'PAR1').")
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError ... for a damaged file
        raise GtokError(f"{name}: not a readable parquet file ({type(exc).__name__}: {exc}).") from None


def _columns(schema: pa.Schema, name: str) -> list[str]:
    """The columns to read, once `tokens` is known to hold lists of integers."""
    import pyarrow as pa

    if "tokens" not in schema.names:
        raise GtokError(f"{name}: has no 'tokens' column (its columns: {', '.join(schema.names) or 'none'}); "
                        "a token parquet holds one list of token ids per row in 'tokens'.")
    kind = schema.field("tokens").type
    is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    if not (is_list and pa.types.is_integer(kind.value_type)):
        raise GtokError(f"{name}: its 'tokens' column is {kind}, not a list of integers (token ids).")
    return [c for c in ("name", "tokens", "label") if c in schema.names]


def _check_vocabulary(name: str, recorded_size: int | None, recorded_fp: str | None,
                      vocab_size: int | None, fingerprint: str | None) -> None:
    """Refuse a file whose recorded vocabulary is not the given one (unknown on either side passes)."""
    if fingerprint and recorded_fp and fingerprint != recorded_fp:
        raise FingerprintMismatchError(f"{name}: tokenized with vocabulary {recorded_fp[:12]}, not with this "
                                       f"universe's {fingerprint[:12]}; use the universe it was tokenized with.")
    if vocab_size is not None and recorded_size is not None and vocab_size != recorded_size:
        raise FingerprintMismatchError(f"{name}: tokenized with a vocabulary of {recorded_size} tokens, not with this "
                                       f"universe's {vocab_size}; use the universe it was tokenized with.")


def _records(batch: pa.RecordBatch, row0: int, name: str, vocab_size: int | None) -> RecordBatch:
    """One batch of rows as a RecordBatch, its ids checked (no nulls, within the vocabulary)."""
    column = batch.column(batch.schema.get_field_index("tokens"))
    if column.null_count:
        raise GtokError(f"{name}: row {row0 + _first_null(column)} has no tokens (null); every row needs a list of ids.")
    lengths = np.asarray(column.value_lengths(), dtype=np.int64)
    values = column.flatten()
    if values.null_count:
        row = row0 + _row_of(lengths, _first_null(values))
        raise GtokError(f"{name}: row {row} holds a null token id; every id must be an integer.")
    ids = values.to_numpy(zero_copy_only=False)
    _check_ids(ids, lengths, row0, name, vocab_size)
    names = _strings(batch, "name")
    if names is None or None in names:  # unnamed rows are named by their row
        names = [n if n is not None else f"row{row0 + i}" for i, n in enumerate(names or [None] * batch.num_rows)]
    return RecordBatch(names, ids.astype(np.int64, copy=False), lengths, _strings(batch, "label"))


def _check_ids(ids: np.ndarray, lengths: np.ndarray, row0: int, name: str, vocab_size: int | None) -> None:
    """Negative ids, and ids >= vocab_size when it is known, are refused with the row they are in."""
    if not ids.size or (ids.min() >= 0 and (vocab_size is None or ids.max() < vocab_size)):
        return
    bad = ids < 0 if vocab_size is None else (ids < 0) | (ids >= vocab_size)
    at = int(np.argmax(bad))
    row = row0 + _row_of(lengths, at)
    value = int(ids[at])
    if value < 0:
        raise GtokError(f"{name}: row {row} has the negative token id {value}; token ids are 0 or more.")
    raise GtokError(f"{name}: row {row} has token id {value}, outside the vocabulary of {vocab_size} tokens "
                    f"(ids 0..{vocab_size - 1}); it was tokenized with another universe.")


def _row_of(lengths: np.ndarray, at: int) -> int:
    """The row (from 0) that holds flat position `at` of rows of these lengths."""
    return int(np.searchsorted(np.cumsum(lengths), at, side="right"))


def _strings(batch: pa.RecordBatch, column: str) -> list[str | None] | None:
    """A column as Python strings (other types are cast), None when the batch has no such column."""
    import pyarrow as pa

    index = batch.schema.get_field_index(column)
    if index < 0:
        return None
    values = batch.column(index)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    return values.to_pylist()


def _first_null(array: pa.Array) -> int:
    return int(np.argmax(np.asarray(array.is_null())))
