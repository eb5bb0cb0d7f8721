"""Fragment files (10x-style `chrom start end barcode count ...`): what makes an input one, which
barcodes to keep, and the words for a bad line. The compiled parser is in
gtok.inputs.fragment_parser, imported only when a fragments file is read (numba takes 0.3 s).

Rules (docs/tokenization.md): tab-separated, at least 5 fields (gtars requires the count column,
and so do we, but neither reads it); `#` lines and blank lines are skipped wherever they are; the
file need not be sorted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gtok.errors import GtokError, describe
from gtok.inputs.bed import coordinates_problem
from gtok.paths import input_file

#: Name suffixes that make an input a fragments file (`.tsv.bgz` is bgzip; gtars reads only `.gz`).
SUFFIXES = (".tsv.gz", ".tsv.bgz", ".tsv")


def is_fragments(path: str | os.PathLike) -> bool:
    return os.fspath(path).endswith(SUFFIXES)


@dataclass(frozen=True)
class FragmentOptions:
    """Which barcodes of a fragments file become records."""

    barcodes: str | None = None  # a list of cells to keep (text or .h5ad)
    min_fragments: int = 1
    part: tuple[int, int] = (0, 1)  # keep barcodes whose hash is k mod n (a job's share of a file)


def read_barcode_list(path: str) -> list[str]:
    """Cells to keep: the obs_names of an `.h5ad`, or a text file (`.gz` too) with one barcode per
    line (the first tab-separated column; Cell Ranger's barcodes.tsv.gz works as it is)."""
    input_file(path, "barcode list")
    if path.endswith(".h5ad"):
        return _obs_names(path)
    from gtok.inputs.bed import read_bytes

    lines = read_bytes(path, "barcode list").decode("utf-8", "replace").splitlines()
    names = [line.split("\t")[0].strip() for line in lines if line.strip() and not line.startswith("#")]
    if not names:
        raise GtokError(f"{describe(path)}: the barcode list is empty; give one barcode per line.")
    return names



def _obs_names(path: str) -> list[str]:
    """The obs_names of an `.h5ad`, which need not have an X (a table of cells is enough)."""
    import h5py

    from gtok.inputs.h5ad import read_array, reading

    with reading(path), h5py.File(path, "r") as f:
        obs = f.get("obs")
        index = obs.attrs.get("_index") if obs is not None else None
        if index is None or index not in obs:
            raise GtokError(f"{describe(path)}: no obs names found; is it an AnnData .h5ad file?")
        return [str(n) for n in read_array(obs[index])]


def explain(line: bytes) -> str:
    """Why one line is not a fragment, in words."""
    text = line.decode("utf-8", "replace").rstrip("\r")
    fields = text.split("\t")
    if len(fields) < 5:
        return (f"expected at least 5 tab-separated columns (chrom, start, end, barcode, count), "
                f"found {len(fields)} in {text!r}.")
    chrom, start, end, barcode = fields[:4]
    if not chrom:
        return f"the chromosome name is empty in {text!r}."
    problem = coordinates_problem(start, end)
    if problem:
        return problem
    if not barcode:
        return f"the barcode (column 4) is empty in {text!r}."
    return f"start {start} is greater than end {end}."
