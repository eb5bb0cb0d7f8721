"""Sample names of cell inputs (fragment files and `.h5ad` files), and the record names they give.

10x barcodes repeat across samples (each sample's cells are `AAACGAACAGGTCCAC-1` and so on), and
the obs names of two `.h5ad` files may repeat too. A record named by its barcode alone would then
stand for two cells, one label sheet would label both, and `gtok manifest` refuses the duplicates.
So a cell input can carry a sample name, and its records are named by a format holding both, by
default ArchR's `{sample}#{barcode}` (docs/tokenization.md, "Samples and record names").
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gtok.errors import GtokError

#: How a cell's record name is made from its sample and its barcode (or obs name).
DEFAULT_NAME_FORMAT = "{sample}#{barcode}"
#: What is taken off a file name to give its default sample name, in any case.
_SUFFIXES = (".tsv.gz", ".tsv.bgz", ".tsv", ".h5ad", ".h5mu", ".bed.gz", ".bed", ".txt.gz", ".txt", ".gz")


def check_name_format(text: str, what: str = "--name-format") -> str:
    """A format holding `{sample}` and `{barcode}` once each and no other field."""
    if sorted(re.findall(r"\{([^{}]*)\}", text)) != ["barcode", "sample"] or text.count("{") != 2 or text.count("}") != 2:
        raise GtokError(f"{what} {text!r}: a record name format holds {{sample}} and {{barcode}} once each and no other "
                        "braces, like '{sample}#{barcode}' or '{barcode}-{sample}'.")
    return text


def check_sample(name: str, what: str = "--sample") -> str:
    """A sample name is used in record names and the workflow's shard paths: no braces, slashes
    or control characters, and not empty."""
    if not name or re.search(r"[{}/\x00-\x1f]", name):
        raise GtokError(f"{what} {name!r}: a sample name must not be empty or hold braces, slashes or tabs.")
    return name


def sample_of(path: str | os.PathLike) -> str:
    """A cell input's default sample name: its file name without its suffix (`pbmc.tsv.gz` -> `pbmc`)."""
    name = os.path.basename(os.fspath(path))
    return next((name[: -len(s)] for s in _SUFFIXES if name.lower().endswith(s) and len(name) > len(s)), name)


@dataclass(frozen=True)
class CellNames:
    """The record names of one cell input: its barcodes as they are when it has no sample, else
    within the format's prefix and suffix for its sample."""

    sample: str | None = None
    prefix: str = ""
    suffix: str = ""

    @classmethod
    def of(cls, sample: str | None, name_format: str = DEFAULT_NAME_FORMAT) -> "CellNames":
        if sample is None:
            return cls()
        prefix, suffix = name_format.replace("{sample}", sample).split("{barcode}")
        return cls(sample, prefix, suffix)

    def name(self, barcode: str) -> str:
        return f"{self.prefix}{barcode}{self.suffix}"

    def names(self, barcodes: Sequence[str]) -> list[str]:
        if not (self.prefix or self.suffix):
            return [str(b) for b in barcodes]
        return [f"{self.prefix}{b}{self.suffix}" for b in barcodes]

    def barcode_of(self, name: str) -> str | None:
        """The barcode in one of this input's record names; None for a name of another form."""
        if name.startswith(self.prefix) and name.endswith(self.suffix) and len(name) > len(self.prefix) + len(self.suffix):
            return name[len(self.prefix) : len(name) - len(self.suffix)]
        return None

    def own(self, listed: Sequence[str]) -> list[str]:
        """This input's barcodes in a list of cells: the list as it is when it holds bare barcodes;
        when it holds record names (a merged object's obs names, `sample#barcode`), the barcodes
        of this sample's, the other samples' left out."""
        if self.sample is None:
            return list(listed)
        mine = [b for b in map(self.barcode_of, listed) if b is not None]
        return mine or list(listed)


def cell_names(paths: Sequence[str], samples: Sequence[str] | None, name_format: str | None) -> dict[str, CellNames]:
    """The record names of each cell input (fragment and `.h5ad` files, in the order given).

    With `samples`, one per input. Without: a single input keeps its names (barcodes or obs names,
    as gtars names them); several are named by their file names (`sample_of`), since their
    barcodes may repeat. Sample names must differ, and an input may be given once."""
    if samples is not None and len(samples) != len(paths):
        raise GtokError(f"--sample is given {len(samples)} time(s) for {len(paths)} cell input(s) (fragment and .h5ad "
                        "files); give one per input, in their order.")
    if name_format is not None and samples is None and len(paths) < 2:
        raise GtokError("--name-format makes record names of a sample name and a barcode; give --sample NAME too.")
    fmt = check_name_format(name_format) if name_format is not None else DEFAULT_NAME_FORMAT
    if samples is None:
        samples = [sample_of(p) for p in paths] if len(paths) > 1 else [None] * len(paths)
    seen: dict[str, str] = {}
    for path, sample in zip(paths, samples):
        if path in seen.values():
            raise GtokError(f"{path}: given twice; each of its cells would be two records.")
        if sample is not None:
            check_sample(sample)
            if sample in seen:
                raise GtokError(f"{seen[sample]} and {path} have the same sample name {sample!r}, so their barcodes could "
                                "give the same record names; give --sample NAME once per input.")
            seen[sample] = path
    return {p: CellNames.of(s, fmt) for p, s in zip(paths, samples)}


#: The record names of an input without a sample: its barcodes or obs names as they are.
AS_THEY_ARE = CellNames()
