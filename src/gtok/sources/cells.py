"""Single-cell matrices (AnnData / `.h5ad` / `.h5mu`) to one token document per cell, vectorized:
the h5ad source of `gtok tokenize` (`H5adSource`, its options in `CellOptions`).

A cell's document is its nonzero columns in column order, each column standing for its peak
region. Instead of tokenizing every cell's regions (what geniml does, one gtars call per cell), the
peaks are tokenized once, giving each column its token list; then a whole chunk of rows is a
gather over those lists, driven by the sparse matrix's own index arrays.

An `.h5ad` path (or one modality of an `.h5mu`) is read a row chunk at a time with h5py (see
gtok.sources.h5ad), so memory stays bounded whatever the file's size; an AnnData object is sliced the
same way. CSC matrices, on disk or in memory, are regrouped into row chunks in one pass.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from gtok.errors import GtokError
from gtok.paths import input_file
from gtok.pipeline import prefetched
from gtok.sources.base import Batch, Source, progress_bar
from gtok.sources.bed import (
    CHROM_COLUMNS,
    END_COLUMNS,
    START_COLUMNS,
    Intervals,
    chromosome_names,
    coordinate_columns,
    coordinates,
)
from gtok.sources.h5ad import (
    DEFAULT_MODALITY,
    CscArrays,
    CsrRows,
    H5adFile,
    NotCounts,
    Unsupported,
    checked_block,
    csc_row_blocks,
    dense_to_csr,
    file_kind,
    matrix,
    reading,
)
from gtok.sources.samples import AS_THEY_ARE, CellNames
from gtok.universe import Universe, expand_ranges

if TYPE_CHECKING:
    from gtok.tokenizer import Tokenizer

_REGION_NAME = re.compile(r"^(.*?[^:_-])[:_-](\d+)[-_](\d+)$")  # a name cannot end in a separator: chr1:-5-9 is no region
#: The var columns var_intervals may use (case-insensitive): a file's others are not read.
_COORDINATE_COLUMNS = {*CHROM_COLUMNS, *START_COLUMNS, *END_COLUMNS, "idx"}


@dataclass(frozen=True)
class CellOptions:
    """What `gtok tokenize` may be told about .h5ad and .h5mu inputs (their flags in comments)."""

    rows: tuple[int, int] | None = None  # --rows START:STOP, of one .h5ad
    label_key: str | None = None  # --label-key COLUMN of obs
    chunk_rows: int = 2048  # --chunk-rows
    modality: str = DEFAULT_MODALITY  # --modality, of an .h5mu
    tile_width: int | None = None  # --tile-width
    layer: str | None = None  # --layer

    @classmethod
    def of(cls, rows: str | None, label_key: str | None = None, chunk_rows: int = 2048,
           modality: str = DEFAULT_MODALITY, tile_width: int | None = None, layer: str | None = None) -> "CellOptions":
        """The options with `rows` as the command line gives it, START:STOP, parsed and checked."""
        return cls(_parse_rows(rows), label_key, chunk_rows, modality, tile_width, layer)


def _parse_rows(rows: str | None) -> tuple[int, int] | None:
    if rows is None:
        return None
    try:
        start, stop = (int(x) for x in rows.split(":"))
    except ValueError:
        raise GtokError(f"--rows {rows!r}: expected START:STOP, two integers like 0:50000.") from None
    if not 0 <= start <= stop:
        raise GtokError(f"--rows {rows!r}: need 0 <= START <= STOP.")
    return start, stop


class H5adSource(Source):
    """One .h5ad (or .h5mu) file, a record per cell, named by `names`. The next chunk is read and
    tokenized on a thread while this one is written, since both release the GIL for most of their
    time."""

    kind = "h5ad"

    def __init__(self, path: str, options: CellOptions | None = None, names: CellNames = AS_THEY_ARE,
                 progress: bool = False):
        self.path, self.options, self.names, self.progress = path, options or CellOptions(), names, progress

    def check(self, tok: Tokenizer) -> None:
        """The options against the file (its modality, layer, label column and row range), and that
        it holds cells: said on a line of their own, before a progress bar starts or a record is written."""
        o = self.options
        cells = _Cells(self.path, o.modality, o.layer)
        try:
            start, stop = _row_range(o.rows, cells.n_obs, cells.name)
            if cells.n_obs == 0:
                raise GtokError(f"{cells.name}: holds no cells (its matrix has no rows); nothing to tokenize.")
            if start == stop:
                raise GtokError(f"{cells.name}: row range {start}:{stop} is empty (the file holds {cells.n_obs:,} cells); "
                                "give START < STOP.")
            if o.label_key:
                cells.labels(o.label_key)
        finally:
            cells.close()

    def batches(self, tok: Tokenizer, spill_dir: Path) -> Iterator[Batch]:
        o = self.options
        orders: list[str] = []
        chunks = iter_cell_tokens(tok, self.path, rows=o.rows, chunk_rows=o.chunk_rows, label_key=o.label_key,
                                  modality=o.modality, tile_width=o.tile_width, spill_dir=str(spill_dir), layer=o.layer,
                                  orders=orders)
        self.token_orders = tuple(orders) or None  # var's order is its cells' (var_orders)
        bar = progress_bar(None, self.progress, desc=os.path.basename(self.path), unit="cell")  # after var's warnings
        for chunk in prefetched(chunks):
            yield Batch(self.names.names(chunk.names), chunk.tokens, chunk.lengths, chunk.labels)
            if bar is not None:
                bar.update(len(chunk.names))


def var_intervals(columns: Mapping[str, Any], var_names: Any, source: str, tile_width: int | None = None) -> Intervals:
    """The region of every column, from the most explicit coordinates the var has.

    In order: `var` columns chr/start/end (or stop); chr/start with the given `tile_width`;
    var_names such as 'chr1:100-200' (an array, or a function returning it: a file's 100,000
    names are read only when needed); chr/start alone as fixed-width tiles (ArchR's TileMatrix)
    whose width is inferred from the starts."""
    cols = {str(c).lower(): c for c in columns}
    chrom, start, end = coordinate_columns(columns, f"{source}: var")
    if tile_width is not None and (chrom is None or start is None or end is not None):
        raise GtokError(f"{source}: --tile-width (tile_width= in Python) applies to tile matrices whose var has chromosome "
                        "and start columns but no end; this var "
                        f"{'has an end column' if end is not None else 'has no chromosome and start columns'}.")
    if chrom is not None and start is not None and end is not None:
        return Intervals.from_columns(
            columns[chrom], columns[start], columns[end],
            f"{source}: var", column_names=(str(start), str(end)),
        )
    tiles = chrom is not None and start is not None
    if tiles and tile_width is not None:
        return _tiles(columns[chrom], columns[start], str(start), _checked_width(tile_width, source), source)
    names = var_names() if callable(var_names) else var_names
    parsed = _parse_region_names(names, source)
    if parsed is not None:
        return parsed if isinstance(parsed, Intervals) else _bad_names(parsed, source)
    if tiles:
        idx = columns[cols["idx"]] if "idx" in cols else None
        return _tiles(columns[chrom], columns[start], str(start), None, source, idx)
    return _bad_names(str(names[0]) if len(names) else "", source)


def _parse_region_names(names: Any, source: str) -> Intervals | str | None:
    """Regions parsed from names like 'chr1:100-200'; None when the first name is not one (so a
    tile matrix's million plain names are neither converted nor tried), else the first bad name."""
    if len(names) and _REGION_NAME.match(str(names[0])) is None:
        return None
    names = [str(n) for n in names]
    parsed = [_REGION_NAME.match(n) for n in names]
    bad = next((n for n, m in zip(names, parsed) if m is None), None)
    if bad is not None:
        return bad
    return Intervals.from_columns([m[1] for m in parsed], [m[2] for m in parsed], [m[3] for m in parsed],
                                  f"{source}: var names", column_names=("start", "end"))


def _bad_names(bad: str, source: str) -> NoReturn:
    raise GtokError(
        f"{source}: no usable region coordinates: var has no chr/start/end columns and var name "
        f"{bad!r} is not a region like 'chr1:100-200', 'chr1-100-200' or 'chr1_100_200'."
    )


def _checked_width(width: Any, source: str) -> int:
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise GtokError(f"{source}: tile width {width!r} is not a whole number of bases (1 or more); give e.g. 500.")
    return int(width)


def _tiles(chroms: Any, starts: Any, start_name: str, width: int | None, source: str, idx: Any = None) -> Intervals:
    """Fixed-width tiles [start, start + width): the var has a start per column but no end."""
    chroms = chromosome_names(chroms, f"{source}: var")
    starts = coordinates(starts, f"{source}: var, column {start_name!r}")
    if width is None:
        width = _width_from_idx(starts, idx) or _width_from_starts(chroms, starts, source)
    return Intervals.from_columns(chroms, starts, starts + width, f"{source}: var",
                                  column_names=(start_name, f"{start_name} + tile width {width}"))


def _width_from_idx(starts: np.ndarray, idx: Any) -> int | None:
    """ArchR's `idx` numbers the tiles of a chromosome from 1 (start = (idx - 1) * width): with it,
    even one tile per chromosome tells the width. None when idx is absent or does not fit."""
    if idx is None:
        return None
    try:
        steps = coordinates(idx, "idx").astype(np.int64)
    except GtokError:
        return None
    for base in (1, 0):  # ArchR's 1-based tile numbers, or 0-based ones
        n = steps - base
        known = n > 0
        if steps.size == starts.size and (n >= 0).all() and known.any():
            width = int(starts[known][0] // n[known][0])
            if width > 0 and np.array_equal(starts, n * width):
                return width
    return None


def _width_from_starts(chroms: np.ndarray, starts: np.ndarray, source: str) -> int:
    """The smallest gap between consecutive starts on a chromosome, required to divide every gap
    (a filtered tile matrix skips tiles, so gaps are multiples of the width)."""
    order = np.lexsort((starts, chroms))
    same = chroms[order][1:] == chroms[order][:-1]
    gaps = np.diff(starts[order])[same]
    how = "add an end column, or give the tile width (tile_width=, --tile-width N; ArchR's default is 500)"
    if gaps.size == 0:
        raise GtokError(f"{source}: var has chromosome and start columns but no end, and no chromosome has two "
                        f"tiles to tell the tile width from; {how}.")
    if (gaps == 0).any():
        i = order[1:][same][np.flatnonzero(gaps == 0)[0]]
        raise GtokError(f"{source}: var has no end column and two columns start at {chroms[i]}:{starts[i]}, so they "
                        f"are not fixed-width tiles; {how}.")
    width = int(gaps.min())
    off = gaps[gaps % width != 0]
    if off.size:
        raise GtokError(f"{source}: var has no end column and its starts are not on one grid of fixed-width tiles "
                        f"(consecutive starts differ by {width} and by {int(off[0])}); {how}.")
    return width


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

    def universe_key(self) -> np.ndarray:
        """Each column's place in the universe's order: the smallest token id it gives, or the
        number of regions (after every id) for a column of no universe region."""
        key = np.full(self.count.size, len(self.tokenizer.universe), np.int64)
        hit = self.count > 0
        if hit.any():
            key[hit] = np.minimum.reduceat(self.ids, self.ptr[:-1][hit])
        return key

    def in_universe_order(self) -> bool:
        """Whether the columns that give tokens come in the universe's order (the others give none,
        wherever they are)."""
        key = self.universe_key()
        key = key[key < len(self.tokenizer.universe)]
        return bool(np.all(key[1:] >= key[:-1]))

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
    """indptr (int64) and column indices without stored zeros, sorted within each row, each column
    once (a matrix not in canonical form may store one entry in parts, which scipy adds up): a
    cell's document is the set of its nonzero columns, whatever the matrix's layout."""
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
        repeated = np.zeros(indices.size, bool)
        repeated[1:] = (indices[1:] == indices[:-1]) & (rows[1:] == rows[:-1])
        if repeated.any():
            indptr = np.concatenate(([0], np.cumsum(~repeated)))[indptr]
            indices = indices[~repeated]
    return indptr, indices


class _Cells:
    """What tokenization needs from a cell matrix, whatever holds it."""

    def __init__(self, source: Any, modality: str = DEFAULT_MODALITY, layer: str | None = None):
        is_path = isinstance(source, (str, os.PathLike))
        self.name = os.fspath(source) if is_path else "the AnnData"
        self.modality = modality
        self.layer = layer
        self._h5: H5adFile | None = None
        self._adata = None
        self._opened = is_path  # a file this opened, and closes (close)
        if is_path:
            input_file(source, f"{file_kind(self.name)} file")
            try:
                self._h5 = H5adFile(source, modality=modality, layer=layer)
            except Unsupported as why:
                self._adata = self._read_backed(why)
        else:
            self._adata = _modality_of(source, modality)
        if self._adata is not None:
            self._X = matrix(self._adata.X, self._adata.layers, layer, self.name)
        self.n_obs, self.n_vars = (self._h5.n_obs, self._h5.n_vars) if self._h5 else self._adata.shape

    def var(self) -> tuple[dict[str, Any], Any]:
        if self._h5:
            try:
                h5 = self._h5
                wanted = [c for c in h5.columns("var") if c.lower().lstrip("#") in _COORDINATE_COLUMNS]
                return {c: h5.column("var", c) for c in wanted}, lambda: h5.index("var")
            except Unsupported as why:
                self._adata = self._read_backed(why)
        var = self._adata.var
        return {c: _values(var[c]) for c in var.columns}, var.index

    def obs_names(self) -> np.ndarray:
        return self._h5.index("obs") if self._h5 else np.asarray(self._adata.obs_names)

    def labels(self, key: str) -> np.ndarray:
        columns = self._h5.columns("obs") if self._h5 else list(self._adata.obs.columns)
        if key not in columns:
            present = f"columns: {', '.join(map(str, columns))}" if columns else "it has no columns at all"
            raise GtokError(f"{self.name}: obs has no column {key!r} ({present}).")
        values = self._h5.column("obs", key) if self._h5 else _values(self._adata.obs[key])
        return np.array([None if _missing(v) else str(v) for v in values], dtype=object)

    def row_blocks(self, start: int, stop: int, chunk_rows: int, spill_dir: str | None) -> Iterator[CsrRows]:
        """Consecutive CSR blocks of rows start:stop; a CSC matrix is regrouped in one pass, since
        slicing its rows chunk by chunk would read the whole matrix once per chunk."""
        if self._h5:
            yield from self._h5.row_blocks(start, stop, chunk_rows, spill_dir)
            return
        X = self._X
        if getattr(X, "format", None) == "csc" and hasattr(X, "indptr"):  # scipy, in memory
            arrays = CscArrays(np.asarray(X.indptr, dtype=np.int64), X.indices, X.data, X.shape[0])
            yield from csc_row_blocks(arrays, start, stop, chunk_rows, self.name, spill_dir)
            return
        for a in range(start, stop, chunk_rows):
            yield self._rows(a, min(stop, a + chunk_rows))

    def _rows(self, start: int, stop: int) -> CsrRows:
        with reading(self.name):
            block = self._X[start:stop]
        if hasattr(block, "tocsr"):
            import scipy.sparse as sp

            csr = sp.csr_matrix(block)
            return CsrRows(csr.indptr, csr.indices, csr.data)
        return dense_to_csr(block)

    def layers(self) -> list[str]:
        return self._h5.layers if self._h5 else list(map(str, self._adata.layers))

    def close(self) -> None:
        """Close the file this opened (an AnnData given in memory stays as it is)."""
        if self._h5:
            self._h5.close()
        elif self._opened and self._adata is not None:  # read backed, when h5py alone could not
            self._adata.file.close()

    def not_counts(self, bad: NotCounts, names: np.ndarray, regions: Intervals) -> str:
        """Why a value that is not a count is refused, naming its cell and peak."""
        region = f"{regions.chrom_names[regions.codes[bad.column]]}:{regions.starts[bad.column]}-{regions.ends[bad.column]}"
        others = [n for n in self.layers() if n != self.layer]
        hint = f" (its layers: {', '.join(others)}; --layer NAME, or layer= in Python)" if others else ""
        return (f"{self.name}: {f'layer {self.layer!r}' if self.layer else 'X'} holds {bad.value:g} for cell "
                f"{str(names[bad.row])!r} (row {bad.row}) at peak {region} (column {bad.column}): it is not a matrix of "
                f"counts, and such values cannot stand for accessible peaks; tokenize the raw counts{hint}, not a scaled "
                "matrix.")

    def _read_backed(self, why: Unsupported):
        """anndata's backed mode for what the small reader does not handle; a MuData modality has
        no such mode, so it is refused in one line instead of being loaded whole."""
        if file_kind(self.name) == ".h5mu":
            raise GtokError(f"{self.name}: modality {self.modality!r} uses an encoding gtok cannot read in chunks "
                            f"({why}); write it out as an .h5ad (mudata: mdata[{self.modality!r}].write_h5ad(...)) "
                            "and tokenize that.")
        return _read_backed(self.name)


def _modality_of(source: Any, modality: str) -> Any:
    """An in-memory MuData's modality (an AnnData), or the AnnData itself."""
    mods = getattr(source, "mod", None)
    if not isinstance(mods, Mapping):
        if not all(hasattr(source, a) for a in ("X", "layers", "var", "obs_names")):
            raise GtokError(f"cannot read cells from a {type(source).__name__}; give an AnnData, a MuData, "
                            "or the path of an .h5ad or .h5mu file.")
        if modality != DEFAULT_MODALITY:
            raise GtokError(f"the AnnData has no modality {modality!r}: modality= applies to a MuData.")
        return source
    if modality not in mods:
        raise GtokError(f"the MuData has no modality {modality!r} (modalities present: "
                        f"{', '.join(map(str, mods)) or 'none'}); pass --modality NAME (modality= in Python) to choose one.")
    return mods[modality]


def _values(column: Any) -> np.ndarray:
    """A pandas column as numpy, its missing values as the h5py reader gives them: NaN in floats,
    None elsewhere (a categorical's NaN, the pd.NA of nullable dtypes)."""
    if not column.hasnans:
        return column.to_numpy()
    if column.dtype.kind == "f":
        return column.to_numpy(dtype=float, na_value=np.nan)
    return column.to_numpy(dtype=object, na_value=None)


def _missing(value: Any) -> bool:
    """None, or a NaN of any float type: a file's float32 column gives np.float32, not a float."""
    return value is None or (isinstance(value, (float, np.floating)) and np.isnan(value))


def _read_backed(path: str):
    import warnings

    import anndata

    with reading(path), warnings.catch_warnings():
        warnings.simplefilter("ignore", anndata.OldFormatWarning)  # a file from before anndata 0.7 is read as it is
        return anndata.read_h5ad(path, backed="r")


def iter_cell_tokens(
    tokenizer: Tokenizer,
    source: Any,
    rows: tuple[int, int] | None = None,
    chunk_rows: int = 2048,
    label_key: str | None = None,
    modality: str = DEFAULT_MODALITY,
    tile_width: int | None = None,
    spill_dir: str | None = None,
    layer: str | None = None,
    order_sensitive: tuple[str, str, tuple[str, ...] | None] | None = None,
    orders: list[str] | None = None,
) -> Iterator[Batch]:
    """Tokenize cells `rows=(start, stop)` (default all) in chunks of `chunk_rows`, in bounded memory.

    `source`: an AnnData, a MuData, or an `.h5ad` / `.h5mu` path; of a MuData, the cells of
    `modality`. `layer`: tokenize that layer instead of X. `tile_width`: the width of fixed-width
    tiles whose var gives starts but no ends (inferred from the starts when not given).
    `spill_dir`: where a CSC matrix's rows are regrouped (default $TMPDIR). `order_sensitive`:
    the name and path of a model whose vectors depend on token order, and the orders its folder
    records it was trained in (None: not recorded), which a var in another order is warned about
    (var_order_warning). `orders`, when given, is filled with the orders var is in (var_orders),
    which a shard records.

    The matrix must hold counts (or any non-negative values: a nonzero entry is an accessible
    peak); a negative or NaN value, a column index outside var or damaged row pointers
    are refused in one line naming the cell or the problem.

    The file and its var are read, checked and warned of when this is called, not when the first
    chunk is asked for, so that those lines come before a caller's progress bar starts."""
    if chunk_rows < 1:
        raise GtokError(f"chunk_rows must be 1 or more, not {chunk_rows}.")
    cells = _Cells(source, modality, layer)
    start, stop = _row_range(rows, cells.n_obs, cells.name)
    var_columns, var_names = cells.var()
    regions = var_intervals(var_columns, var_names, cells.name, tile_width=tile_width)
    foreign = tokenizer.universe.foreign_input(regions.chrom_names, f"{cells.name} (var)")
    if not len(regions):
        foreign = f"{cells.name}: var is empty (no peaks), so every cell's tokens are <unk> alone."
    if foreign:
        warnings.warn(foreign, stacklevel=2)
    names = cells.obs_names()
    _check_shape(cells, len(names), len(regions))
    column_tokens = ColumnTokens(tokenizer, regions)
    if orders is not None:
        orders.extend(var_orders(regions, column_tokens))
    unsorted = order_sensitive and var_order_warning(regions, column_tokens, cells.name, *order_sensitive)
    if unsorted:
        warnings.warn(unsorted, stacklevel=2)
    unmatched = None if foreign or regions.tiles_genome() else unmatched_peaks(column_tokens.count, cells.name)
    if unmatched:
        warnings.warn(unmatched, stacklevel=2)
    labels = cells.labels(label_key) if label_key else None

    def batches() -> Iterator[Batch]:
        a = start  # the first row of the next chunk
        try:
            for block in cells.row_blocks(start, stop, chunk_rows, spill_dir):
                b = a + block.indptr.size - 1
                tokens, lengths = column_tokens.tokenize(checked_block(block, cells.n_vars, a, cells.name))
                yield Batch([str(n) for n in names[a:b]], tokens, lengths, None if labels is None else list(labels[a:b]))
                a = b
        except NotCounts as bad:
            raise GtokError(cells.not_counts(bad, names, regions)) from None

    return batches()


def unmatched_peaks(count: np.ndarray, source: str) -> str | None:
    """Why most peaks overlapping no universe region (`count`: universe regions per peak) is
    warned of, or None: the data and the universe disagree, most likely on the genome assembly
    (hg19 peaks against an hg38 universe share the chromosome names, so foreign_input cannot see
    it), and the cells keep a few chance overlaps as their tokens, in silence. Not asked of a tile
    matrix's var (Intervals.tiles_genome), most of whose tiles miss any universe of peaks by design."""
    missed = int(np.count_nonzero(count == 0))
    if missed * 2 <= count.size:
        return None
    return (f"{source}: {missed:,} of its {count.size:,} peaks overlap no universe region, so its cells keep only the "
            "others as tokens; is it on another genome assembly than the universe (hg19 vs hg38)?")


def var_orders(regions: Intervals, columns: ColumnTokens) -> tuple[str, ...]:
    """The orders (gtok.formats.metadata.TOKEN_ORDERS, sorted) a cell's tokens come in with this
    var, which are var's: "bed" when var is in a BED file's order (chromosome name as text, then
    start), "universe" when in its universe's (token ids), both when the two coincide on it, none
    when in neither. Judged by the peaks that give tokens (the others give none, wherever they are)."""
    giving = regions.take(np.flatnonzero(columns.count > 0))
    return tuple(order for order, holds in (("bed", giving.file_order() is None), ("universe", columns.in_universe_order()))
                 if holds)


def var_order_warning(regions: Intervals, columns: ColumnTokens, source: str, model: str, path: str,
                      trained: tuple[str, ...] | None = None) -> str | None:
    """Why `model` (loaded from `path`) may embed these cells unlike the cells it was trained on, or
    None when var is in an order its training records' tokens came in: `trained`, as its folder
    records them (gtok train, from its shards), else either of the two orders gtok's training gives
    tokens in: its universe's (token ids), that of cells whose var was the universe, and a BED file's
    (chromosome name as text, then start), that of BED files. A cell's tokens come in var's order,
    as geniml's tokenize_anndata gives them to gtars (which keeps a list's order), so a model with
    position embeddings (Atacformer) gives a cell another vector when var is in another order (0.175
    apart, norm 1.75, for chr1, chr10, chr2 against the chr1, chr2, chr10 it was trained on). When
    the folder records the order, the warning gives its one line (sort_var); else one for each."""
    if set(var_orders(regions, columns)) & set(trained or ("universe", "bed")):
        return None
    lines = {"universe": f"adata = gtok.sort_var(adata, gtok.Tokenizer.from_pretrained({path!r}))",
             "bed": 'adata = gtok.sort_var(adata, "bed")'}
    if trained:
        names = " and ".join(_ORDER_NAMES[order] for order in trained)
        return (f"{source}: var is not in the order {model} was trained in, {names}, as its model folder records, and "
                "the model has position embeddings, so a cell's vector depends on the order of its tokens, which is "
                f"var's; put var in that order: {'; or '.join(lines[order] for order in trained)}")
    return (f"{source}: var is not in its model's universe order nor in a BED file's, and {model} has position "
            "embeddings, so a cell's vector depends on the order of its tokens, which is var's; put var in the order "
            "the model was trained on first, which its model folder does not record: trained on cells whose var was its "
            f"universe, the universe's, {lines['universe']}; trained "
            f'on BED files, their order (chromosome name as text: chr1, chr10, chr2; then start), {lines["bed"]}')


_ORDER_NAMES = {"universe": "its universe's (token ids)", "bed": "a BED file's (chromosome name as text: chr1, chr10, chr2; then start)"}


def sort_var(adata: Any, order: Any, tile_width: int | None = None) -> Any:
    """A copy of the AnnData `adata` with var (and the columns of X, its layers and varm) in `order`,
    so that its cells' tokens, which come in var's order, come in the order a model with position
    embeddings (Atacformer) was trained on, which a model gtok trained records (docs/models.md):

    - a Tokenizer (`gtok.Tokenizer.from_pretrained(model)`): the order of its universe file, which
      token ids follow; a peak goes where the smallest id it overlaps is, a peak of no universe region
      last (it gives no token). The order of cells whose var was the universe, as gtok and geniml
      train on them.
    - "bed": by chromosome name as text (chr1, chr10, chr2), then start, stably: the order gtok and
      gtars read a BED file in, so the order of a model trained on BED files.

    A backed AnnData (`read_h5ad(backed="r")`) comes back in memory. `tile_width` as in
    iter_cell_tokens."""
    by_universe = isinstance(getattr(order, "universe", None), Universe)  # a Tokenizer (its module imports this one)
    if not by_universe and not (isinstance(order, str) and order == "bed"):
        raise GtokError(f'sort_var: order must be "bed" or the model\'s tokenizer (gtok.Tokenizer.from_pretrained(MODEL)), '
                        f"not {order!r}.")
    if getattr(adata, "mod", None) is not None or not hasattr(adata, "var"):
        raise GtokError(f"sort_var takes an AnnData, not a {type(adata).__name__}: read an .h5ad with anndata.read_h5ad, "
                        "and sort a MuData's modality (mdata.mod['atac']).")
    var_columns, var_names = _Cells(adata).var()
    regions = var_intervals(var_columns, var_names, "the AnnData", tile_width=tile_width)
    if by_universe:
        permutation = np.argsort(ColumnTokens(order, regions).universe_key(), kind="stable")
    else:
        permutation = regions.file_order()
    sorted_var = adata[:, np.arange(len(regions)) if permutation is None else permutation]
    return sorted_var.to_memory() if adata.isbacked else sorted_var.copy()  # a backed one copies only to a file


def _check_shape(cells: _Cells, n_names: int, n_regions: int) -> None:
    """The matrix must be as wide as var and as tall as obs: a column without its region, or a
    cell without its name, would shift every later one."""
    what = f"layer {cells.layer!r}" if cells.layer else "X"
    if n_regions != cells.n_vars:
        raise GtokError(f"{cells.name}: {what} has {cells.n_vars:,} columns but var has {n_regions:,} rows (peaks); "
                        "they must match, one column per peak.")
    if n_names != cells.n_obs:
        raise GtokError(f"{cells.name}: {what} has {cells.n_obs:,} rows but obs has {n_names:,} names; they must "
                        "match, one row per cell.")


def _row_range(rows: tuple[int, int] | None, n_obs: int, name: str) -> tuple[int, int]:
    if rows is None:
        return 0, n_obs
    start, stop = rows
    if not 0 <= start < max(n_obs, 1) or stop < start:
        raise GtokError(f"{name}: row range {start}:{stop} is outside the file's {n_obs} cells.")
    return start, min(stop, n_obs)  # the last range of a fan-out may run past the end
