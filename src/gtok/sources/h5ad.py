"""A small `.h5ad` / `.h5mu` reader over h5py: row chunks of X, and the obs/var columns tokenization needs.

anndata takes 1.5 s to import (pandas, zarr, ...), longer than tokenizing thousands of cells, and
its backed mode still goes through pandas. The on-disk layout (anndata's "encoding-type"
attributes) is simple for what we read, so a tokenization job reads it directly: X as dense, CSR or
CSC row chunks, and dataframe columns as plain, categorical or nullable arrays. A MuData file
(`.h5mu`) holds one such layout per modality under `mod/<name>/`, read the same way. Anything else
raises `Unsupported`, and the caller falls back to anndata.

CSC matrices store columns contiguously, so the rows of one chunk are scattered over the whole
file. Rather than scanning every column for each chunk (the whole matrix read once per chunk),
`csc_row_blocks` reads the matrix once, in blocks of entries, and files each kept entry under its
row chunk in a temporary spill; each chunk is then read back from the spill alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from gtok.errors import GtokError

#: The modality of a MuData (`.h5mu`) read when none is named: the one that holds the peaks.
DEFAULT_MODALITY = "atac"

#: CSC entries read at a time while regrouping a column-major X into row chunks: about 30 MiB of
#: work arrays, whatever the matrix's size (larger blocks were no faster, measured on 100M entries).
CSC_BLOCK_ENTRIES = 1 << 20
#: The regrouped entries (an 8-byte key each) stay in memory up to this size, then spill to a temporary
#: file in $TMPDIR.
CSC_SPILL_IN_MEMORY = 64 << 20


class Unsupported(Exception):
    """This file uses an encoding the small reader does not handle; use anndata instead."""


class NotCounts(Exception):
    """A stored value of X that is not a count (negative or NaN): tokenizing it as a
    peak would count a scaled matrix's every entry as accessible. The caller, who knows the cells'
    names, says which cell."""

    def __init__(self, row: int, column: int, value: Any):
        super().__init__(row, column, value)
        self.row, self.column, self.value = row, column, value


@dataclass(frozen=True)
class CsrRows:
    """Rows of a matrix in CSR form: row i's columns are indices[indptr[i]:indptr[i+1]]."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray | None  # None: every stored value is nonzero


@dataclass(frozen=True)
class CscArrays:
    """A CSC matrix's arrays; `indices` and `data` only need slicing (h5py datasets or numpy)."""

    indptr: np.ndarray  # int64, one per column plus one, read whole (8 bytes a column)
    indices: Any
    data: Any
    n_rows: int


def file_kind(path: str) -> str:
    """What the file is called in messages: a MuData file by its suffix, else an AnnData one."""
    return ".h5mu" if path.lower().endswith(".h5mu") else ".h5ad"


@contextlib.contextmanager
def reading(path: str) -> Iterator[None]:
    """Turn what h5py raises on a damaged or truncated file into one line naming the file.

    A file another process holds open for writing is locked by HDF5, and h5py refuses it with
    EAGAIN: said as such, not as damage, which would send the user to delete a good file."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise _unreadable(path, exc) from None
        raise GtokError(f"{path}: another process has it open for writing (HDF5 locked it); wait until it is done "
                        "with it, or close it, and run again.") from None
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: str, exc: Exception) -> GtokError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return GtokError(f"{path}: not a readable {file_kind(path)} file, it may be truncated or damaged ({detail}).")


class H5adFile:
    """Read-only access to an `.h5ad` file, or one modality of an `.h5mu`, a row chunk at a time.

    `group` is the HDF5 group laid out like an `.h5ad`; by default the file's root, or
    `mod/<modality>` when the file is a MuData file. `layer` reads that layer instead of X."""

    def __init__(self, path: str | os.PathLike, group: str | None = None, modality: str = DEFAULT_MODALITY,
                 layer: str | None = None):
        import h5py

        self.path = os.fspath(path)
        with reading(self.path):
            self._file = h5py.File(self.path, "r")
            try:
                self._root = self._file[self._group(group, modality)]
                self._open(layer)
            except BaseException:
                self._file.close()
                raise

    def _group(self, group: str | None, modality: str) -> str:
        if group is None:
            if not is_mudata(self._file) and modality != DEFAULT_MODALITY:
                raise GtokError(f"{self.path}: an AnnData file, not a MuData one, so it has no modality {modality!r}; "
                                "--modality (modality= in Python) applies to .h5mu files.")
            group = f"mod/{modality}" if is_mudata(self._file) else "/"
        if group in self._file:
            return group
        if group.startswith("mod/") and "mod" in self._file:
            present = ", ".join(sorted(self._file["mod"].keys())) or "none"
            raise GtokError(
                f"{self.path}: no modality {group[4:]!r} in this MuData file (modalities present: "
                f"{present}); pass --modality NAME (modality= in Python) to choose one."
            )
        raise GtokError(f"{self.path}: has no group {group!r}; give the group that holds X, obs and var.")

    def _open(self, layer: str | None) -> None:
        import h5py

        root = self._root
        if "obs" not in root or "var" not in root:
            where = "" if root.name == "/" else f" in {root.name.lstrip('/')}"
            raise GtokError(f"{self.path}: not an AnnData {file_kind(self.path)} file (obs or var is missing{where}).")
        if isinstance(root["obs"], h5py.Dataset) or isinstance(root["var"], h5py.Dataset):
            raise Unsupported("obs and var are tables, as anndata wrote them before 0.7")
        self.layers = list(root["layers"].keys()) if isinstance(root.get("layers"), h5py.Group) else []
        self._x = matrix(root.get("X"), root["layers"] if self.layers else {}, layer, self.path)
        self._format = sparse_format(self._x)
        if self._format in ("csr", "csc"):
            self.n_obs, self.n_vars = sparse_shape(self._x)
        elif hasattr(self._x, "shape") and len(self._x.shape) == 2:
            self.n_obs, self.n_vars = self._x.shape
        else:
            raise Unsupported(f"X encoding {_attr(self._x, 'encoding-type')!r}")

    def close(self) -> None:
        self._file.close()

    def row_blocks(self, start: int, stop: int, chunk_rows: int, spill_dir: str | None = None) -> Iterator[CsrRows]:
        """Rows start:stop as consecutive CSR blocks of `chunk_rows` rows (the last may be shorter);
        a CSC matrix is regrouped through a spill in `spill_dir` (see csc_row_blocks)."""
        if self._format == "csc":
            with reading(self.path):
                yield from csc_row_blocks(self._csc(), start, stop, chunk_rows, self.path, spill_dir)
            return
        for a in range(start, stop, chunk_rows):
            with reading(self.path):
                block = self._csr_rows(a, min(stop, a + chunk_rows))
            yield block

    def _csr_rows(self, start: int, stop: int) -> CsrRows:
        """Rows start:stop; `data` is kept only when a value is not positive (a stored zero, which
        is no peak, or a value that is not a count), so that the usual block skips both checks."""
        if self._format != "csr":
            return dense_to_csr(self._x[start:stop])
        indptr = self._x["indptr"][start : stop + 1].astype(np.int64)
        check_pointers(indptr, stop - start, self._entries(), "CSR", self.path)
        lo, hi = int(indptr[0]), int(indptr[-1])
        data = self._x["data"][lo:hi]
        return CsrRows(indptr - lo, self._x["indices"][lo:hi], None if np.all(data > 0) else data)

    def _entries(self) -> int:
        return min(self._x["indices"].shape[0], self._x["data"].shape[0])

    def _csc(self) -> CscArrays:
        indptr = self._x["indptr"][...].astype(np.int64)
        check_pointers(indptr, self.n_vars, self._entries(), "CSC", self.path)
        return CscArrays(indptr, self._x["indices"], self._x["data"], self.n_obs)

    def column(self, frame: str, name: str) -> np.ndarray:
        with reading(self.path):
            group = self._root[frame]
            if name not in group:
                raise Unsupported(f"{frame} has no column {name!r}")
            return read_array(group[name])

    def columns(self, frame: str) -> list[str]:
        with reading(self.path):
            group = self._root[frame]
            index = _attr(group, "_index")
            return [k for k in group.keys() if k != index and not k.startswith("__")]

    def index(self, frame: str) -> np.ndarray:
        with reading(self.path):
            group = self._root[frame]
            key = _attr(group, "_index")
            if key is None or key not in group:
                raise Unsupported(f"{frame} has no _index")
            return read_array(group[key])


def matrix(x: Any, layers: Any, layer: str | None, name: str) -> Any:
    """The matrix of cells: `layers[layer]` when a layer is named, else X; one line listing the
    layers when the one named is not there, or when X is empty (an AnnData with X=None keeps its
    data in layers)."""
    present = ", ".join(map(str, layers)) or "none"
    if layer is not None:
        if layer not in layers:
            raise GtokError(f"{name}: has no layer {layer!r} (its layers: {present}).")
        return layers[layer]
    if x is None:
        raise GtokError(f"{name}: X is empty (None), so there is no matrix of cells to tokenize; its layers: {present}"
                        f"{'; pass --layer NAME (layer= in Python) to tokenize one' if layers else ''}.")
    return x


def is_mudata(file) -> bool:
    """A MuData file: mudata marks its root "MuData"; a root with `mod/` and no X is one too."""
    return _attr(file, "encoding-type") == "MuData" or ("mod" in file and "X" not in file)


def sparse_format(x) -> str | None:
    """"csr", "csc" or None (dense), from anndata's encoding-type or the pre-0.7 h5sparse_format."""
    encoding = _attr(x, "encoding-type") or ""
    if encoding in ("csr_matrix", "csc_matrix"):
        return encoding[:3]
    legacy = _attr(x, "h5sparse_format")
    return legacy if legacy in ("csr", "csc") else None


def sparse_shape(x) -> tuple[int, int]:
    shape = x.attrs["shape"] if "shape" in x.attrs else x.attrs["h5sparse_shape"]
    return int(shape[0]), int(shape[1])


def read_array(node) -> np.ndarray:
    """A dataframe column as a numpy array (strings as str objects, missing categories as None)."""
    import h5py

    encoding = _attr(node, "encoding-type")
    if isinstance(node, h5py.Dataset):
        if node.dtype.kind in ("O", "S"):
            return np.asarray(node.asstr()[...], dtype=object)
        return node[...]
    if encoding == "categorical":
        categories = read_array(node["categories"])
        codes = node["codes"][...].astype(np.int64)
        values = np.asarray(categories, dtype=object)[np.maximum(codes, 0)]
        values[codes < 0] = None
        return values
    if encoding in ("nullable-integer", "nullable-boolean", "nullable-string-array"):
        values = read_array(node["values"]).astype(object)
        values[node["mask"][...].astype(bool)] = None
        return values
    raise Unsupported(f"column encoding {encoding!r}")


def dense_to_csr(block) -> CsrRows:
    """CSR row structure of a dense block (its nonzero entries, row-major, with their values)."""
    block = np.asarray(block)
    rows, cols = np.nonzero(block)
    counts = np.bincount(rows, minlength=block.shape[0])
    return CsrRows(np.concatenate(([0], np.cumsum(counts))), cols, block[rows, cols])


# -- checks of what is read ------------------------------------------------------------------------


def check_pointers(indptr: np.ndarray, n: int, entries: int, layout: str, name: str) -> None:
    """Refuse the pointers of n rows (CSR) or columns (CSC) that do not fit: n + 1 of them,
    non-decreasing, within the stored entries. Damaged ones would misplace every later cell."""
    if indptr.size != n + 1 or indptr[0] < 0 or indptr[-1] > entries or np.any(np.diff(indptr) < 0):
        what = "rows" if layout == "CSR" else "columns"
        raise GtokError(f"{name}: X is a damaged {layout} matrix (its indptr does not fit its {what} and its "
                        f"{entries:,} entries); rewrite the file.")


def checked_block(block: CsrRows, n_cols: int, first_row: int, name: str) -> CsrRows:
    """`block` (rows from `first_row`) once its column indices are columns of X and its values
    counts; without `data` when every value is positive (there is nothing left to filter).
    Raises NotCounts at the first value that is not a count."""
    indices = np.asarray(block.indices)
    if indices.size and (indices.min() < 0 or indices.max() >= n_cols):
        i = int(np.argmax((indices < 0) | (indices >= n_cols)))
        raise GtokError(f"{name}: X is a damaged matrix: row {first_row + _row_of(block.indptr, i)} has column index "
                        f"{int(indices[i])}, outside its {n_cols} columns; rewrite the file.")
    if block.data is None:
        return block
    data = np.asarray(block.data)
    rest = np.flatnonzero(~(data > 0))  # zeros, and what is not a count
    if not rest.size:
        return CsrRows(block.indptr, indices, None)
    bad = not_counts(data[rest], name)
    if bad is not None:
        i = int(rest[np.argmax(bad)])
        raise NotCounts(first_row + _row_of(block.indptr, i), int(indices[i]), data[i].item())
    return block


def not_counts(values: np.ndarray, name: str) -> np.ndarray | None:
    """Where values are not counts (negative or NaN), or None when all are. A positive value of any
    size is a peak (binarized, TF-IDF or log-normalized matrices are fine)."""
    kind = values.dtype.kind
    if kind in "ub":
        return None
    if kind == "i":
        bad = values < 0
    elif kind == "f":
        bad = ~(values >= 0)
    else:
        raise GtokError(f"{name}: X holds values of type {values.dtype}, not numbers; tokenize a matrix of counts.")
    return bad if bad.any() else None


def _row_of(indptr: np.ndarray, entry: int) -> int:
    return int(np.searchsorted(indptr, entry, side="right")) - 1


# -- CSC to row chunks ---------------------------------------------------------------------------


def csc_row_blocks(csc: CscArrays, start: int, stop: int, chunk_rows: int, name: str = "X",
                   spill_dir: str | None = None) -> Iterator[CsrRows]:
    """Rows start:stop of a CSC matrix as CSR blocks of `chunk_rows` rows, reading it once.

    One pass over `indices`/`data` in blocks of CSC_BLOCK_ENTRIES turns each kept entry into a key
    (row, column), sorts each block's keys, which groups them by row chunk, and writes them to a
    spill (memory, then a temporary file) with a table of where each block's part of each chunk
    lies; a chunk is then its parts read back and sorted. Cost: the matrix read once plus 8 bytes
    per kept entry written and read back, instead of the whole matrix read once per chunk; memory:
    one block's work arrays and one chunk. The spill goes to `spill_dir` (default $TMPDIR, which
    on a cluster node may be small or in memory: `gtok tokenize` puts it beside its output)."""
    n_chunks = -(-(stop - start) // chunk_rows)
    if n_chunks <= 1:  # one chunk: its entries are needed in memory anyway
        parts = list(_csc_keys(csc, start, stop, name))
        if stop > start:
            yield _keys_to_csr(np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64), 0, stop - start)
        return
    with tempfile.SpooledTemporaryFile(max_size=CSC_SPILL_IN_MEMORY, prefix=".gtok-csc-", dir=spill_dir) as spill:
        try:
            table = _spill_by_chunk(csc, start, stop, chunk_rows, n_chunks, spill, name)
        except OSError as exc:
            if exc.errno is None:
                raise  # h5py's read errors: `reading` names the input
            where = spill_dir or tempfile.gettempdir()
            raise GtokError(f"{name}: cannot write the temporary copy of X's rows in {where} "
                            f"({os.strerror(exc.errno).lower()}); free space there.") from None
        for c in range(n_chunks):
            first = c * chunk_rows
            keys = _read_chunk(spill, table, c, name)
            keys.sort()
            yield _keys_to_csr(keys, first, min(chunk_rows, stop - start - first))


@dataclass(frozen=True)
class _SpillTable:
    base: np.ndarray  # int64 [n_blocks]: the entry where each block's keys begin in the spill
    cum: np.ndarray  # int64 [n_blocks, n_chunks + 1]: within a block, where each chunk's keys begin


def _spill_by_chunk(csc: CscArrays, start: int, stop: int, chunk_rows: int, n_chunks: int, spill, name: str) -> _SpillTable:
    """Write every block's keys sorted (so grouped by chunk) and say where each chunk's lie."""
    chunk_bounds = (np.arange(n_chunks + 1, dtype=np.int64) * chunk_rows) << 32
    bases, cums, at = [], [], 0
    for keys in _csc_keys(csc, start, stop, name):
        keys.sort()
        spill.write(memoryview(keys).cast("B"))
        bases.append(at)
        cums.append(np.searchsorted(keys, chunk_bounds))
        at += keys.size
    cum = np.array(cums, dtype=np.int64).reshape(len(cums), n_chunks + 1)
    return _SpillTable(np.array(bases, dtype=np.int64), cum)


def _csc_keys(csc: CscArrays, start: int, stop: int, name: str) -> Iterator[np.ndarray]:
    """Per block of entries, each kept entry as one int64 key `(row - start) << 32 | column`, so that
    sorting keys orders entries by row, then column. Kept: the row is in start:stop and the stored
    value is not zero. A row index outside the matrix is refused (dropping it would lose a peak
    silently), and so is a value of a kept row that is not a count (NotCounts)."""
    nnz = int(csc.indptr[-1])
    for lo in range(0, nnz, CSC_BLOCK_ENTRIES):
        hi = min(nnz, lo + CSC_BLOCK_ENTRIES)
        rows = np.asarray(csc.indices[lo:hi])
        cols = _columns_of(csc.indptr, lo, hi)
        if rows.size and (rows.min() < 0 or rows.max() >= csc.n_rows):
            i = int(np.argmax((rows < 0) | (rows >= csc.n_rows)))
            raise GtokError(f"{name}: X is a damaged CSC matrix: column {int(cols[i])} has row index {int(rows[i])}, "
                            f"outside its {csc.n_rows} rows; rewrite the file.")
        values = np.asarray(csc.data[lo:hi])
        keep = (rows >= start) & (rows < stop) & (values != 0)
        bad = not_counts(values, name)
        if bad is not None and (bad & keep).any():
            i = int(np.argmax(bad & keep))
            raise NotCounts(int(rows[i]), int(cols[i]), values[i].item())
        if not keep.all():
            rows, cols = rows[keep], cols[keep]
        yield ((rows.astype(np.int64) - start) << 32) | cols


def _columns_of(indptr: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The column of each entry lo:hi, from the column pointers (only the columns that touch it)."""
    first = int(np.searchsorted(indptr, lo, side="right")) - 1
    last = int(np.searchsorted(indptr, hi, side="left"))
    counts = np.diff(np.clip(indptr[first : last + 1], lo, hi))
    return np.repeat(np.arange(first, last, dtype=np.int32), counts)


def _read_chunk(spill, table: _SpillTable, c: int, name: str) -> np.ndarray:
    """Chunk c's keys: its part of every block, read back into one array."""
    sizes = table.cum[:, c + 1] - table.cum[:, c]
    out = np.empty(int(sizes.sum()), dtype=np.int64)
    at = 0
    for b in np.flatnonzero(sizes):
        spill.seek(int(table.base[b] + table.cum[b, c]) * 8)
        view = memoryview(out[at : at + sizes[b]]).cast("B")
        if spill.readinto(view) != len(view):
            raise GtokError(f"{name}: the temporary copy of X's rows was cut short (is its folder full?).")
        at += int(sizes[b])
    return out


def _keys_to_csr(keys: np.ndarray, first: int, n_rows: int) -> CsrRows:
    """CSR rows first:first + n_rows (of the range) from sorted keys: each row's columns ascending,
    as a canonical CSR matrix has them."""
    indptr = np.searchsorted(keys, (first + np.arange(n_rows + 1, dtype=np.int64)) << 32)
    indptr -= indptr[0]
    return CsrRows(indptr, (keys & 0xFFFFFFFF).astype(np.int32), None)


def _attr(node, name: str):
    value = node.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else value
