#!/usr/bin/env python
"""Write a large scATAC-like `.h5ad` in bounded memory, for the scale drill.

    python bench/make_big_h5ad.py OUT.h5ad --universe UNIVERSE.bed [--cells 1000000] [--peaks 50000]

bench/make_data.py builds the whole matrix in memory, which a million cells do not fit. This
writes the same kind of file (CSR X of uint8 counts, peaks drawn from the universe, a
`cell_type` column) a block of rows at a time with h5py, in anndata's on-disk encoding, so
`anndata.read_h5ad` and `gtok tokenize` read it like any other.
"""

from __future__ import annotations

import argparse
import time

import h5py
import numpy as np

from gtok.sources.bed import read_bed

STR = h5py.string_dtype("utf-8")
CELL_TYPES = np.array(["B", "T", "NK", "Mono", "DC"], dtype=object)


def encode(node, kind: str, version: str = "0.2.0") -> None:
    node.attrs["encoding-type"] = kind
    node.attrs["encoding-version"] = version


def strings(group, name: str, values) -> None:
    encode(group.create_dataset(name, data=np.asarray(values, dtype=object), dtype=STR), "string-array")


def categorical(group, name: str, categories, codes) -> None:
    node = group.create_group(name)
    encode(node, "categorical")
    node.attrs["ordered"] = False
    strings(node, "categories", categories)
    node.create_dataset("codes", data=codes)


def write_var(f, chroms, starts, ends) -> None:
    var = f.create_group("var")
    encode(var, "dataframe")
    var.attrs["_index"] = "_index"
    var.attrs["column-order"] = ["chr", "start", "end"]
    strings(var, "_index", [f"{c}:{s}-{e}" for c, s, e in zip(chroms, starts, ends)])
    names, codes = np.unique(chroms, return_inverse=True)
    categorical(var, "chr", names, codes.astype(np.int16))
    for col, values in (("start", starts), ("end", ends)):
        encode(var.create_dataset(col, data=values), "array")


def random_rows(rng, n_cells: int, n_peaks: int, density: tuple[float, float]):
    """CSR rows with sorted, distinct column indices; 1-8% duplicates are dropped, as in real data."""
    want = (rng.uniform(*density, size=n_cells) * n_peaks).astype(np.int64)
    rows = np.repeat(np.arange(n_cells), want)
    cols = rng.integers(0, n_peaks, size=rows.size, dtype=np.int32)
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    keep = np.ones(rows.size, dtype=bool)
    keep[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    rows, cols = rows[keep], cols[keep]
    indptr = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=n_cells))))
    return indptr, cols


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--universe", required=True)
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--peaks", type=int, default=50_000)
    ap.add_argument("--density", type=float, nargs=2, default=(0.005, 0.04), metavar=("LO", "HI"))
    ap.add_argument("--block", type=int, default=50_000, help="rows generated at a time")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    uni = read_bed(a.universe)
    pick = np.sort(rng.choice(len(uni), size=a.peaks, replace=False))
    chroms = np.array(uni.chrom_names, dtype=object)[uni.codes[pick]]
    with h5py.File(a.out, "w") as f:
        encode(f, "anndata", "0.1.0")
        write_var(f, chroms, uni.starts[pick], uni.ends[pick])
        x = f.create_group("X")
        encode(x, "csr_matrix", "0.1.0")
        x.attrs["shape"] = (a.cells, a.peaks)
        data = x.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(1 << 20,))
        indices = x.create_dataset("indices", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(1 << 20,))
        indptr = x.create_dataset("indptr", shape=(a.cells + 1,), dtype=np.int64)
        indptr[0] = 0
        nnz = 0
        for lo in range(0, a.cells, a.block):
            n = min(a.block, a.cells - lo)
            ptr, cols = random_rows(rng, n, a.peaks, tuple(a.density))
            for ds in (data, indices):
                ds.resize((nnz + cols.size,))
            indices[nnz:] = cols
            data[nnz:] = rng.integers(1, 5, size=cols.size, dtype=np.uint8)
            indptr[lo + 1 : lo + n + 1] = nnz + ptr[1:]
            nnz += cols.size
            print(f"\r{lo + n:,} / {a.cells:,} cells, {nnz:,} nonzeros", end="", flush=True)
        obs = f.create_group("obs")
        encode(obs, "dataframe")
        obs.attrs["_index"] = "_index"
        obs.attrs["column-order"] = ["cell_type"]
        strings(obs, "_index", [f"cell{i}" for i in range(a.cells)])
        categorical(obs, "cell_type", CELL_TYPES, rng.integers(0, CELL_TYPES.size, size=a.cells).astype(np.int8))
        for name in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            encode(f.create_group(name), "dict", "0.1.0")
    print(f"\nwrote {a.out}: {a.cells:,} cells x {a.peaks:,} peaks, {nnz:,} nonzeros in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
