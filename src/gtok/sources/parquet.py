"""Parquet inputs of `gtok tokenize`: token documents (from `gtok export-parquet` or geniml), a
record per row, copied into the shard once their ids are checked against the universe's
vocabulary (the layout and its writer are in gtok.formats.parquet).

Read in row batches, so memory holds one batch whatever the file's size; pyarrow is imported only
inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gtok.errors import FingerprintMismatchError, GtokError, describe
from gtok.formats.parquet import META_FINGERPRINT, META_VOCAB_SIZE, PARQUET_MAGIC, import_pyarrow
from gtok.paths import has_magic, input_file
from gtok.sources.base import Batch, Source

if TYPE_CHECKING:
    import pyarrow as pa

    from gtok.tokenizer import Tokenizer

#: Rows per batch when reading.
BATCH_ROWS = 65536


class ParquetSource(Source):
    """A parquet of token documents: its records hold tokens already, so they are copied, checked
    against this universe's vocabulary; an empty list is a document without a match, `[<unk>]`, as
    everywhere else (a 0-token record would crash training)."""

    kind = "parquet"

    def __init__(self, path: str):
        self.path = path

    def check(self, tok: Tokenizer) -> None:
        """A parquet without rows is refused, as an .h5ad without cells is: it would make a shard
        of no records, which only a later step would refuse."""
        if not _open(self.path).metadata.num_rows:
            raise GtokError(f"{describe(self.path)}: holds no rows (no records); nothing to tokenize.")

    def batches(self, tok: Tokenizer, spill_dir: Path) -> Iterator[Batch]:
        for batch in read_parquet_records(self.path, tok.vocab_size, tok.fingerprint):
            yield Batch(batch.names, *tok.fill_empty(batch.tokens, batch.lengths), batch.labels)


def read_parquet_records(path: str | os.PathLike, vocab_size: int | None = None, fingerprint: str | None = None,
                         batch_rows: int = BATCH_ROWS) -> Iterator[Batch]:
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
    recorded_size, recorded_fp = _recorded_vocabulary(pf, name)
    _check_vocabulary(name, recorded_size, recorded_fp, vocab_size, fingerprint)
    return _batches(pf, columns, name, vocab_size if vocab_size is not None else recorded_size, batch_rows)


def _batches(pf: Any, columns: list[str], name: str, vocab_size: int | None, batch_rows: int) -> Iterator[Batch]:
    row = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        yield _records(batch, row, name, vocab_size)
        row += batch.num_rows


def _recorded_vocabulary(pf: Any, name: str) -> tuple[int | None, str | None]:
    meta = pf.schema_arrow.metadata or {}
    size, fingerprint = meta.get(META_VOCAB_SIZE), meta.get(META_FINGERPRINT)
    try:
        text = fingerprint.decode() if fingerprint else None
    except UnicodeDecodeError:
        raise GtokError(f"{name}: its recorded vocabulary fingerprint (metadata {META_FINGERPRINT.decode()}) is not text; "
                        "the file is damaged, or not gtok's: write it again with gtok export-parquet, or drop that "
                        "metadata.") from None
    return (int(size) if size and size.isdigit() else None), text


def _open(path: str | os.PathLike) -> Any:
    """A `pyarrow.parquet.ParquetFile`, or one line saying why the file is not one."""
    _, pq = import_pyarrow()
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


def _records(batch: pa.Batch, row0: int, name: str, vocab_size: int | None) -> Batch:
    """One batch of rows as a Batch, its ids checked (no nulls, within the vocabulary)."""
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
    names = _strings(batch, "name", name)
    if names is None or None in names:  # unnamed rows are named by their row
        names = [n if n is not None else f"row{row0 + i}" for i, n in enumerate(names or [None] * batch.num_rows)]
    return Batch(names, ids.astype(np.int64, copy=False), lengths, _strings(batch, "label", name))


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


def _strings(batch: pa.Batch, column: str, name: str) -> list[str | None] | None:
    """A column as Python strings (numbers and the like are cast), None when the batch has no such
    column; one that cannot be text (lists, structs, bytes that are not UTF-8) is refused in one
    line naming the file (`name`) and the column, not with pyarrow's traceback."""
    import pyarrow as pa

    index = batch.schema.get_field_index(column)
    if index < 0:
        return None
    values = batch.column(index)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        try:
            values = values.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise GtokError(f"{name}: its {column!r} column is {values.type}, not text ({str(exc).splitlines()[0]}); "
                            f"store the record {'names' if column == 'name' else 'labels'} as strings.") from None
    return values.to_pylist()


def _first_null(array: pa.Array) -> int:
    return int(np.argmax(np.asarray(array.is_null())))
