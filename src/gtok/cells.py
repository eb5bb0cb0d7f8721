"""Single-cell matrices (AnnData / `.h5ad`) to one token document per cell, vectorized.

A cell's document is its nonzero columns in column order, each column standing for its peak
region. Instead of tokenizing every cell's regions (what geniml does, one gtars call per cell), the
peaks are tokenized once, giving each column its token list; then a whole chunk of rows is a
gather over those lists, driven by the sparse matrix's own index arrays.

An `.h5ad` path is read a row range at a time with h5py (see gtok.inputs.h5ad), so memory stays bounded
whatever the file's size; an AnnData object is sliced the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gtok.errors import GtokError
from gtok.inputs.bed import Intervals
from gtok.inputs.h5ad import CsrRows, H5adFile, Unsupported, dense_to_csr, reading
from gtok.paths import input_file
from gtok.universe import expand_ranges

if TYPE_CHECKING:
    from gtok.tokenizer import Tokenizer

_REGION_NAME = re.compile(r"^(.+?)[:_-](\d+)[-_](\d+)$")
_CHROM_COLUMNS = ("chr", "chrom", "chromosome", "seqnames")
_END_COLUMNS = ("end", "stop")  # epiScanpy writes chr / start / stop


@dataclass(frozen=True)
class CellChunk:
    names: list[str]
    tokens: np.ndarray  # integer ids (int32 or int64), all cells of the chunk concatenated
    lengths: np.ndarray  # int64, one per cell
    labels: list[str | None] | None


def var_intervals(columns: Mapping[str, Any], var_names: Any, source: str) -> Intervals:
    """The region of every column: from `var` columns chr/start/end (or stop), else parsed from var_names
    (an array, or a function returning it: a file's 100,000 names are read only when needed)."""
    cols = {str(c).lower(): c for c in columns}
    chrom = next((cols[c] for c in _CHROM_COLUMNS if c in cols), None)
    end = next((cols[c] for c in _END_COLUMNS if c in cols), None)
    if chrom is not None and "start" in cols and end is not None:
        return Intervals.from_columns(
            np.asarray(columns[chrom]).astype(str), columns[cols["start"]], columns[end],
            f"{source}: var", column_names=(str(cols["start"]), str(end)),
        )
    names = [str(n) for n in (var_names() if callable(var_names) else var_names)]
    parsed = [_REGION_NAME.match(n) for n in names]
    bad = next((n for n, m in zip(names, parsed) if m is None), None)
    if bad is not None:
        raise GtokError(
            f"{source}: no usable region coordinates: var has no chr/start/end columns and var name "
            f"{bad!r} is not a region like 'chr1:100-200', 'chr1-100-200' or 'chr1_100_200'."
        )
    return Intervals.from_columns([m[1] for m in parsed], [m[2] for m in parsed], [m[3] for m in parsed],
                                  f"{source}: var names", column_names=("start", "end"))


class ColumnTokens:
    """Each matrix column's token ids, as a CSR-like (pointer, ids) pair."""

    def __init__(self, tokenizer: Tokenizer, regions: Intervals):
        q, ids = tokenizer.universe.overlaps(regions)
        self.count = np.bincount(q, minlength=len(regions)).astype(np.int64)
        self.ptr = np.concatenate(([0], np.cumsum(self.count)))
        self.ids = ids
        # The usual case, a peak that is at most one universe region, is a plain lookup table.
        self.single = np.where(self.count == 1, np.append(ids, 0)[self.ptr[:-1]], -1).astype(np.int32)
        self.tokenizer = tokenizer

    def tokenize(self, block: CsrRows) -> tuple[np.ndarray, np.ndarray]:
        """(concatenated token ids, length per row) for the rows of a CSR block."""
        indptr, indices = _canonical(block)
        if self.count.max(initial=0) <= 1:
            tokens = self.single[indices]
            hit = tokens >= 0
            if hit.all():  # every peak is a universe region: lengths are the row sizes
                return self.tokenizer.fill_empty(tokens, np.diff(indptr))
            before = np.concatenate(([0], np.cumsum(hit)))
            return self.tokenizer.fill_empty(tokens[hit], before[indptr[1:]] - before[indptr[:-1]])
        starts = np.concatenate(([0], np.cumsum(self.count[indices])))  # where each entry's tokens go
        out = np.empty(int(starts[-1]), dtype=np.int64)
        counts = np.diff(starts)
        single = counts == 1
        out[starts[:-1][single]] = self.single[indices[single]]
        multi = np.flatnonzero(counts > 1)
        if multi.size:
            first = self.ptr[indices[multi]]
            owner, pos = expand_ranges(first, self.ptr[indices[multi] + 1])
            out[starts[multi][owner] + pos - first[owner]] = self.ids[pos]
        return self.tokenizer.fill_empty(out, starts[indptr[1:]] - starts[indptr[:-1]])


def _canonical(block: CsrRows) -> tuple[np.ndarray, np.ndarray]:
    """indptr (int64) and column indices without stored zeros, sorted within each row."""
    indptr, indices = block.indptr.astype(np.int64, copy=False), block.indices
    if block.data is not None:
        keep = np.asarray(block.data) != 0
        indptr = np.concatenate(([0], np.cumsum(keep)))[indptr]
        indices = indices[keep]
    ascending = indices[1:] > indices[:-1]
    row_starts = indptr[1:-1]
    ascending[row_starts[(row_starts > 0) & (row_starts < indices.size)] - 1] = True  # rows restart
    if not ascending.all():
        rows = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
        indices = indices[np.lexsort((indices, rows))]
    return indptr, indices


class _Cells:
    """What tokenization needs from a cell matrix, whatever holds it."""

    def __init__(self, source: Any):
        self.name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "the AnnData"
        self._h5: H5adFile | None = None
        self._adata = None
        if isinstance(source, (str, os.PathLike)):
            input_file(source, ".h5ad file")
            try:
                self._h5 = H5adFile(source)
            except Unsupported:
                self._adata = _read_backed(self.name)
        else:
            self._adata = source
        self.n_obs = self._h5.n_obs if self._h5 else self._adata.n_obs

    def var(self) -> tuple[dict[str, Any], Any]:
        if self._h5:
            try:
                h5 = self._h5
                return {c: h5.column("var", c) for c in h5.columns("var")}, lambda: h5.index("var")
            except Unsupported:
                self._adata = _read_backed(self.name)
        var = self._adata.var
        return {c: var[c].to_numpy() for c in var.columns}, var.index

    def obs_names(self) -> np.ndarray:
        return self._h5.index("obs") if self._h5 else np.asarray(self._adata.obs_names)

    def labels(self, key: str) -> np.ndarray:
        columns = self._h5.columns("obs") if self._h5 else list(self._adata.obs.columns)
        if key not in columns:
            raise GtokError(f"{self.name}: obs has no column {key!r} (columns: {', '.join(map(str, columns))}).")
        values = self._h5.column("obs", key) if self._h5 else self._adata.obs[key].to_numpy(dtype=object)
        return np.array([None if _missing(v) else str(v) for v in values], dtype=object)

    def rows(self, start: int, stop: int) -> CsrRows:
        if self._h5:
            return self._h5.rows(start, stop)
        with reading(self.name):
            block = self._adata.X[start:stop]
        if hasattr(block, "tocsr"):
            import scipy.sparse as sp

            csr = sp.csr_matrix(block)
            return CsrRows(csr.indptr, csr.indices, csr.data)
        return dense_to_csr(block)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _read_backed(path: str):
    import anndata

    with reading(path):
        return anndata.read_h5ad(path, backed="r")


def iter_cell_tokens(
    tokenizer: Tokenizer,
    source: Any,
    rows: tuple[int, int] | None = None,
    chunk_rows: int = 2048,
    label_key: str | None = None,
) -> Iterator[CellChunk]:
    """Tokenize cells `rows=(start, stop)` (default all) in chunks of `chunk_rows`, in bounded memory."""
    cells = _Cells(source)
    start, stop = _row_range(rows, cells.n_obs, cells.name)
    columns = ColumnTokens(tokenizer, var_intervals(*cells.var(), cells.name))
    labels = cells.labels(label_key) if label_key else None
    names = cells.obs_names()
    for a in range(start, stop, chunk_rows):
        b = min(stop, a + chunk_rows)
        tokens, lengths = columns.tokenize(cells.rows(a, b))
        yield CellChunk([str(n) for n in names[a:b]], tokens, lengths, None if labels is None else list(labels[a:b]))


def _row_range(rows: tuple[int, int] | None, n_obs: int, name: str) -> tuple[int, int]:
    if rows is None:
        return 0, n_obs
    start, stop = rows
    if not 0 <= start < max(n_obs, 1) or stop < start:
        raise GtokError(f"{name}: row range {start}:{stop} is outside the file's {n_obs} cells.")
    return start, min(stop, n_obs)  # the last range of a fan-out may run past the end
