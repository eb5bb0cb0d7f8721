"""A small `.h5ad` reader over h5py: row ranges of X, and the obs/var columns tokenization needs.

anndata takes 1.5 s to import (pandas, zarr, ...), longer than tokenizing thousands of cells, and
its backed mode still goes through pandas. The on-disk layout (anndata's "encoding-type"
attributes) is simple for what we read, so a tokenization job reads it directly: X as dense or CSR
row ranges, and dataframe columns as plain, categorical or nullable arrays. Anything else raises
`Unsupported`, and the caller falls back to anndata.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from gtok.errors import GtokError


class Unsupported(Exception):
    """This file uses an encoding the small reader does not handle; use anndata instead."""


@dataclass(frozen=True)
class CsrRows:
    """Rows of a matrix in CSR form: row i's columns are indices[indptr[i]:indptr[i+1]]."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray | None  # None: every stored value is nonzero


@contextlib.contextmanager
def reading(path: str) -> Iterator[None]:
    """Turn what h5py raises on a damaged or truncated file into one line naming the file."""
    try:
        yield
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GtokError(f"{path}: not a readable .h5ad file, it may be truncated or damaged ({detail}).") from None


class H5adFile:
    """Read-only access to an `.h5ad` file, a row range at a time."""

    def __init__(self, path: str | os.PathLike):
        import h5py

        self.path = os.fspath(path)
        with reading(self.path):
            self._file = h5py.File(self.path, "r")
            self._open()

    def _open(self) -> None:
        if "X" not in self._file or "obs" not in self._file or "var" not in self._file:
            raise GtokError(f"{self.path}: not an AnnData .h5ad file (X, obs or var is missing).")
        self._x = self._file["X"]
        encoding = _attr(self._x, "encoding-type")
        if encoding == "csr_matrix":
            self.n_obs, self.n_vars = (int(v) for v in self._x.attrs["shape"])
        elif hasattr(self._x, "shape") and len(self._x.shape) == 2:
            self.n_obs, self.n_vars = self._x.shape
        else:
            raise Unsupported(f"X encoding {encoding!r}")

    def close(self) -> None:
        self._file.close()

    def rows(self, start: int, stop: int) -> CsrRows:
        with reading(self.path):
            return self._rows(start, stop)

    def _rows(self, start: int, stop: int) -> CsrRows:
        if _attr(self._x, "encoding-type") != "csr_matrix":
            return dense_to_csr(self._x[start:stop])
        indptr = self._x["indptr"][start : stop + 1].astype(np.int64)
        lo, hi = int(indptr[0]), int(indptr[-1])
        data = self._x["data"][lo:hi]
        return CsrRows(indptr - lo, self._x["indices"][lo:hi], None if np.all(data != 0) else data)

    def column(self, frame: str, name: str) -> np.ndarray:
        with reading(self.path):
            group = self._file[frame]
            if name not in group:
                raise Unsupported(f"{frame} has no column {name!r}")
            return read_array(group[name])

    def columns(self, frame: str) -> list[str]:
        with reading(self.path):
            group = self._file[frame]
            index = _attr(group, "_index")
            return [k for k in group.keys() if k != index and not k.startswith("__")]

    def index(self, frame: str) -> np.ndarray:
        with reading(self.path):
            group = self._file[frame]
            key = _attr(group, "_index")
            if key is None or key not in group:
                raise Unsupported(f"{frame} has no _index")
            return read_array(group[key])


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
    """CSR row structure of a dense block (its nonzero entries, row-major)."""
    block = np.asarray(block)
    rows, cols = np.nonzero(block)
    counts = np.bincount(rows, minlength=block.shape[0])
    return CsrRows(np.concatenate(([0], np.cumsum(counts))), cols, None)


def _attr(node, name: str):
    value = node.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else value
