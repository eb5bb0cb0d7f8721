"""The workflow's inputs: BED glob patterns or a sample sheet (`path`, `label`, `split`), .h5ad
files, and fragment files.

The sheet's columns are checked against `workflow/schemas/samples.schema.yaml` by the workflow;
what only the rows together can tell (a file listed twice) is checked here.
"""

from __future__ import annotations

import csv
import glob
import os

from gtok.errors import GtokError


def refuse_braces(path: str, what: str, fix: str = "rename the file") -> None:
    """Snakemake reads `{...}` in a file name as a wildcard, whatever the rule: say so, by name."""
    if "{" in path or "}" in path:
        raise GtokError(f"{what} {path}: Snakemake cannot use file names with braces {{ }}; {fix}.")


def read_sample_sheet(sheet: str) -> list[dict]:
    """The rows of a tab-separated sample sheet with a header line."""
    try:
        with open(sheet, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except OSError as exc:
        raise GtokError(f"{sheet}: cannot read the BED sample sheet ({os.strerror(exc.errno).lower()}).") from None
    if not rows or "path" not in rows[0]:
        raise GtokError(f"{sheet}: the BED sample sheet needs a header with a 'path' column and at least one row.")
    return rows


def bed_rows(spec: str | list[str]) -> list[dict]:
    """BED inputs as rows with a normalised `path` (and `label`, `split` from a sheet), in a stable
    order: a sheet's order, or the sorted matches of the glob patterns."""
    if isinstance(spec, str):
        rows = read_sample_sheet(spec)
    else:
        paths = set()
        for pattern in spec:
            matches = glob.glob(pattern, recursive=True)
            if not matches:
                raise GtokError(f"config inputs.bed: the pattern {pattern!r} matches no file.")
            paths.update(matches)
        rows = [{"path": p} for p in sorted(paths)]
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        row["path"] = os.path.normpath(row["path"])
        refuse_braces(row["path"], "BED input")
        if row["path"] in seen:
            where = f"{spec}, lines {seen[row['path']]} and {line}: " if isinstance(spec, str) else ""
            raise GtokError(f"{where}BED input {row['path']} is listed twice.")
        seen[row["path"]] = line
    return rows


def h5ad_samples(paths: list[str]) -> dict[str, str]:
    """Sample name (file name without .h5ad) -> path."""
    samples: dict[str, str] = {}
    for path in paths:
        refuse_braces(path, "inputs.h5ad")
        name = os.path.basename(path).removesuffix(".h5ad")
        if name in samples:
            raise GtokError(f"inputs.h5ad: {samples[name]} and {path} have the same file name {name!r}.")
        samples[name] = path
    return samples


def fragment_samples(entries: list) -> dict[str, dict[str, str | None]]:
    """Sample name (file name without .tsv.gz / .tsv.bgz / .tsv) -> its path and barcode list.
    An entry is a path, or a mapping with `path` and an optional `barcodes` (the cells to keep)."""
    from gtok.inputs.fragments import SUFFIXES

    samples: dict[str, dict[str, str | None]] = {}
    for entry in entries:
        path, barcodes = (entry, None) if isinstance(entry, str) else (entry["path"], entry.get("barcodes"))
        for p in (path, barcodes):
            if p:
                refuse_braces(p, "inputs.fragments")
        name = os.path.basename(path)
        name = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)
        if name in samples:
            raise GtokError(f"inputs.fragments: {samples[name]['path']} and {path} have the same sample name {name!r}.")
        samples[name] = {"path": path, "barcodes": barcodes}
    return samples


def n_obs(path: str) -> int:
    """Rows of an .h5ad, from the length of its obs index: reads a few bytes, not the matrix."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            obs = f["obs"]
            if isinstance(obs, h5py.Dataset):  # anndata < 0.7 stored obs as one record array
                return int(obs.shape[0])
            return int(obs[obs.attrs.get("_index", "_index")].shape[0])
    except (OSError, KeyError) as exc:
        raise GtokError(f"{path}: cannot read the number of cells from this .h5ad ({exc}).") from None
