"""Single-cell matrices (AnnData / `.h5ad`) to one token document per cell, vectorized.

A cell's document is its nonzero columns in column order, each column standing for its peak
region. Instead of tokenizing every cell's regions (what geniml does, one gtars call per cell), the
peaks are tokenized once, giving each column its token list; then a whole chunk of rows is a
gather over those lists, driven by the sparse matrix's own index arrays.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from gtok.bed import Intervals
from gtok.errors import GtokError
from gtok.tokenizer import Tokenizer
from gtok.universe import expand_ranges

_REGION_NAME = re.compile(r"^(.+?)[:_-](\d+)[-_](\d+)$")
_CHROM_COLUMNS = ("chr", "chrom", "chromosome", "seqnames")


@dataclass(frozen=True)
class CellChunk:
    names: list[str]
    tokens: np.ndarray  # int64, all cells of the chunk concatenated
    lengths: np.ndarray  # int64, one per cell
    labels: list[str] | None


def var_intervals(var: Any, source: str) -> Intervals:
    """The region of every column: from `var` columns chr/start/end, else parsed from var_names."""
    cols = {str(c).lower(): c for c in var.columns}
    chrom = next((cols[c] for c in _CHROM_COLUMNS if c in cols), None)
    if chrom is not None and "start" in cols and "end" in cols:
        try:
            iv = Intervals.from_columns(var[chrom].astype(str), var[cols["start"]], var[cols["end"]])
        except (TypeError, ValueError):
            raise GtokError(f"{source}: var columns start/end are not integers.") from None
    else:
        parsed = var.index.astype(str).str.extract(_REGION_NAME)
        if parsed.isna().any(axis=None):
            bad = var.index[parsed.isna().any(axis=1).to_numpy()][0]
            raise GtokError(
                f"{source}: no usable region coordinates: var has no chr/start/end columns and var name "
                f"{bad!r} is not a region like 'chr1:100-200', 'chr1-100-200' or 'chr1_100_200'."
            )
        iv = Intervals.from_columns(parsed[0], parsed[1].astype(np.int64), parsed[2].astype(np.int64))
    if np.any(iv.starts > iv.ends) or np.any(iv.starts < 0):
        raise GtokError(f"{source}: some var regions have start > end or a negative start.")
    return iv


class ColumnTokens:
    """Each matrix column's token ids, as a CSR-like (pointer, ids) pair."""

    def __init__(self, tokenizer: Tokenizer, regions: Intervals):
        q, ids = tokenizer.universe.overlaps(regions)
        self.ptr = np.concatenate(([0], np.cumsum(np.bincount(q, minlength=len(regions))))).astype(np.int64)
        self.ids = ids
        self.tokenizer = tokenizer

    def tokenize_rows(self, rows: np.ndarray, cols: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Documents of `n_rows` cells from their nonzero (row, col) pairs in row-major order."""
        owner, pos = expand_ranges(self.ptr[cols], self.ptr[cols + 1])
        return self.tokenizer.group(rows[owner], self.ids[pos], n_rows)


def nonzero_row_major(block: Any) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the nonzero entries of a dense or sparse block, rows first, columns ascending."""
    if isinstance(block, np.ndarray) or not hasattr(block, "tocsr"):
        return np.nonzero(np.asarray(block))
    csr = block.tocsr()
    if not csr.has_sorted_indices:
        csr = csr.copy()
        csr.sort_indices()
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    keep = csr.data != 0
    return rows[keep], csr.indices[keep].astype(np.int64)


def open_anndata(source: Any):
    """An AnnData as given, or an `.h5ad` path opened backed (rows are read on demand)."""
    if not isinstance(source, (str, os.PathLike)):
        return source
    import anndata

    path = os.fspath(source)
    if not os.path.exists(path):
        raise GtokError(f"{path}: no such file.")
    try:
        return anndata.read_h5ad(path, backed="r")
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise GtokError(f"{path}: not a readable .h5ad file ({exc}).") from None


def iter_cell_tokens(
    tokenizer: Tokenizer,
    source: Any,
    rows: tuple[int, int] | None = None,
    chunk_rows: int = 2048,
    label_key: str | None = None,
) -> Iterator[CellChunk]:
    """Tokenize cells `rows=(start, stop)` (default all) in chunks of `chunk_rows`, in bounded memory."""
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "the AnnData"
    adata = open_anndata(source)
    start, stop = _row_range(rows, adata.n_obs, name)
    columns = ColumnTokens(tokenizer, var_intervals(adata.var, name))
    labels = _labels(adata, label_key, name)
    obs_names = adata.obs_names
    for a in range(start, stop, chunk_rows):
        b = min(stop, a + chunk_rows)
        r, c = nonzero_row_major(adata.X[a:b])
        tokens, lengths = columns.tokenize_rows(np.asarray(r, np.int64), np.asarray(c, np.int64), b - a)
        yield CellChunk(list(obs_names[a:b]), tokens, lengths, None if labels is None else labels[a:b])


def _row_range(rows: tuple[int, int] | None, n_obs: int, name: str) -> tuple[int, int]:
    if rows is None:
        return 0, n_obs
    start, stop = rows
    if not 0 <= start < max(n_obs, 1) or stop < start:
        raise GtokError(f"{name}: row range {start}:{stop} is outside the file's {n_obs} cells.")
    return start, min(stop, n_obs)  # the last range of a fan-out may run past the end


def _labels(adata: Any, key: str | None, name: str) -> list[str] | None:
    if key is None:
        return None
    if key not in adata.obs.columns:
        raise GtokError(f"{name}: obs has no column {key!r} (columns: {', '.join(map(str, adata.obs.columns))}).")
    return adata.obs[key].astype(str).tolist()
