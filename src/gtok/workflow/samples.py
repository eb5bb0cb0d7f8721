"""The workflow's inputs: BED glob patterns or a sample sheet (`path`, `label`, `split`), .h5ad
files, and fragment files, and the rule that no two of their records share a name: BED files
are named by their file names, cells `SAMPLE#BARCODE` (config/README.md, "Record names").

The sheet's columns are checked against `workflow/schemas/samples.schema.yaml` by the workflow;
what only the rows together can tell (a file listed twice) is checked here.
"""

from __future__ import annotations

import difflib
import glob
import os

from gtok.errors import GtokError
from gtok.formats.shard import record_name
from gtok.sources.labels import read_sheet, sheet_header
from gtok.sources.samples import check_name_format, check_sample, sample_of


def refuse_braces(path: str, what: str, fix: str = "rename the file") -> None:
    """Snakemake reads `{...}` in a file name as a wildcard, whatever the rule: say so, by name."""
    if "{" in path or "}" in path:
        raise GtokError(f"{what} {path}: Snakemake cannot use file names with braces {{ }}; {fix}.")


SHEET_COLUMNS = ("path", "label", "split")
"""The sample sheet's columns the workflow reads (workflow/schemas/samples.schema.yaml)."""


def require_file(path: str, what: str) -> None:
    """Refuse a missing input file in one line naming where it is given. Snakemake itself would take
    an existing output of a job whose input went missing for up to date, or drop the job."""
    if os.path.isdir(path):
        raise GtokError(f"{what} {path}: is a folder; give the file itself (or list the folder's files), or take it "
                        "out of the inputs.")
    if not os.path.isfile(path):
        raise GtokError(f"{what} {path}: no such file; fix the path, or take it out of the inputs.")


def read_sample_sheet(sheet: str) -> list[dict]:
    """The rows of a tab-separated sample sheet with a header line (UTF-8, or UTF-16 with its mark)."""
    require_file(sheet, "config inputs.bed: the sample sheet")
    header, rows = read_sheet(sheet, "BED sample sheet")
    for column in header:  # other columns are the user's notes, but a misspelt one would drop its values unsaid
        close = difflib.get_close_matches(column.lower(), SHEET_COLUMNS, n=1, cutoff=0.8)
        if column not in SHEET_COLUMNS and close and close[0] not in header:
            raise GtokError(f"{sheet}: column {column!r} is not one the workflow reads; did you mean {close[0]!r}? "
                            f"(it reads {', '.join(map(repr, SHEET_COLUMNS))}; other columns are kept as notes)")
    if "path" not in header:
        raise GtokError(f"{sheet}: the BED sample sheet needs a 'path' column (its columns: {', '.join(map(repr, header))}).")
    if not rows:
        raise GtokError(f"{sheet}: the BED sample sheet has a header but no rows; add one row per BED file.")
    return rows


def _refuse_sheets_as_beds(pattern: str, matches: list[str]) -> None:
    """A sample sheet put in the list of patterns matches itself: every job would read it as a BED
    file and fail on its header. A .tsv or .txt whose header has a 'path' column is a sheet."""
    for path in matches:
        if path.lower().endswith((".tsv", ".txt")) and os.path.isfile(path) and "path" in sheet_header(path, "sheet"):
            raise GtokError(f"config inputs.bed: the pattern {pattern!r} matches {path}, a sample sheet, not a BED file; "
                            f"give a sample sheet alone, not in a list (inputs.bed: {path}).")


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
            _refuse_sheets_as_beds(pattern, matches)
            paths.update(matches)
        rows = [{"path": p} for p in sorted(paths)]
    seen: dict[str, int] = {}
    named: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        row["path"] = os.path.normpath(row["path"])
        refuse_braces(row["path"], "BED input")
        if isinstance(spec, str):  # a pattern's matches exist
            require_file(row["path"], f"config inputs.bed: {spec}, line {line}:")
        if row["path"] in seen:
            where = f"{spec}, lines {seen[row['path']]} and {line}: " if isinstance(spec, str) else ""
            raise GtokError(f"{where}BED input {row['path']} is listed twice.")
        seen[row["path"]] = line
        name = record_name(row["path"])
        if name in named:  # a record is named by its file name: two would share it, which `gtok manifest` refuses
            raise GtokError(f"BED inputs {named[name]} and {row['path']} would both be records named {name!r} (a record "
                            "is named by its file name without .bed or .bed.gz); rename one of the files.")
        named[name] = row["path"]
    return rows


def h5ad_samples(entries: list) -> dict[str, str]:
    """Sample name -> path of the .h5ad inputs. An entry is a path, or a mapping with `path` and an
    optional `sample` (default: the file name without .h5ad)."""
    samples: dict[str, str] = {}
    for entry in entries:
        path, sample = _path_and_sample(entry, "inputs.h5ad")
        require_file(path, "config inputs.h5ad:")
        if sample in samples:
            raise GtokError(f"inputs.h5ad: {samples[sample]} and {path} have the same sample name {sample!r}; "
                            "give one of them a `sample:` of its own.")
        samples[sample] = path
    return samples


def fragment_samples(entries: list) -> dict[str, dict[str, str | None]]:
    """Sample name -> path and barcode list of the fragment files. An entry is a path, or a
    mapping with `path`, an optional `sample` (default: the file name without .tsv.gz, .tsv.bgz
    or .tsv) and an optional `barcodes` (the cells to keep)."""
    samples: dict[str, dict[str, str | None]] = {}
    for entry in entries:
        path, sample = _path_and_sample(entry, "inputs.fragments")
        require_file(path, "config inputs.fragments:")
        barcodes = None if isinstance(entry, str) else entry.get("barcodes")
        if barcodes:
            refuse_braces(barcodes, "inputs.fragments")
            require_file(barcodes, f"config inputs.fragments: {path}: barcodes")
        if sample in samples:
            raise GtokError(f"inputs.fragments: {samples[sample]['path']} and {path} have the same sample name {sample!r}; "
                            "give one of them a `sample:` of its own.")
        samples[sample] = {"path": path, "barcodes": barcodes}
    return samples


def _path_and_sample(entry: str | dict, what: str) -> tuple[str, str]:
    path = entry if isinstance(entry, str) else entry["path"]
    refuse_braces(path, what)
    sample = sample_of(path) if isinstance(entry, str) or not entry.get("sample") else entry["sample"]
    return path, check_sample(sample, f"{what}: {path}: sample")


def check_cell_samples(h5ad: dict[str, str], fragments: dict[str, dict], name_format: str) -> None:
    """Every cell record of the workflow is `name_format` of its sample and barcode, so the samples
    of .h5ad and fragment inputs must all differ: a sample name in both would let an .h5ad cell
    and a barcode share a record name, which `gtok manifest` refuses after every job has run."""
    check_name_format(name_format, "config inputs.name_format")
    shared = sorted(h5ad.keys() & fragments.keys())
    if shared:
        sample = shared[0]
        raise GtokError(f"inputs.h5ad {h5ad[sample]} and inputs.fragments {fragments[sample]['path']} have the same "
                        f"sample name {sample!r}, so their cells could share record names; give one a `sample:` of its own.")


def check_fragment_labels(sheet: str | None, samples: dict) -> None:
    """A label sheet keyed by `barcode` alone cannot tell the samples apart: with several fragment
    samples it needs a `sample` column, or whole record names in `name` (its header is read)."""
    if not sheet or len(samples) < 2:
        return
    header = sheet_header(sheet, "label sheet")
    if "label" in header and "barcode" in header and "sample" not in header:
        raise GtokError(f"config inputs.fragment_labels: {sheet} matches cells by 'barcode' alone, but the fragment "
                        f"files are {len(samples)} samples and barcodes repeat across samples; add a 'sample' column "
                        "(or give whole record names, SAMPLE#BARCODE, in a 'name' column).")


def check_label_key(path: str, key: str) -> None:
    """A label column that an .h5ad's obs lacks would fail every one of its shard jobs: say so at
    the dry run. A MuData file (labels per modality), an older layout or an unreadable file is
    left to the jobs, which name the problem themselves."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            obs = f.get("obs")
            if "mod" in f or not isinstance(obs, h5py.Group):
                return
            index = obs.attrs.get("_index", "_index")
            columns = [name for name in obs.keys() if name not in (index, "__categories")]
    except OSError:
        return
    if key not in columns:
        raise GtokError(f"config inputs.label_key: {key!r} is not a column of obs in {path} (its columns: "
                        f"{', '.join(map(repr, columns[:12]))}{' ...' if len(columns) > 12 else ''}).")


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
