"""Fragment files (10x-style `chrom start end barcode count ...`), a record per barcode: what makes
an input one, which barcodes to keep (its options), and the words for a bad line. The compiled
parser is in gtok.sources.fragments.parser and the source in gtok.sources.fragments.records,
imported only when a fragments file is read (numba takes 0.3 s); this module stays light, since
every text input is asked whether it is a fragments file.

Rules (docs/tokenization.md): tab-separated, at least 5 fields (gtars requires the count column,
and so do we, but neither reads it); `#` lines and blank lines are skipped wherever they are; the
file need not be sorted.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

from gtok.errors import GtokError, describe
from gtok.paths import input_file
from gtok.sources.bed import coordinates_problem, read_decompressed
from gtok.sources.h5ad import read_array, reading
from gtok.sources.text import decode_text

#: Name suffixes that make an input a fragments file, in any case (`.tsv.bgz` is bgzip; gtars reads only `.gz`).
SUFFIXES = (".tsv.gz", ".tsv.bgz", ".tsv")
#: Decompressed text read to tell an input without a fragments name by its content, and its
#: lines at most: enough for a barcode to repeat among the first fragments of a sorted file.
SNIFF_BYTES = 1 << 20
SNIFF_LINES = 20_000
_STRANDS = (b"+", b"-", b".")


def named_fragments(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(SUFFIXES)


def is_fragments(path: str | os.PathLike) -> bool:
    """Whether a text input is a fragments file (one record per barcode) rather than a BED file
    (one record), by its name, else by its content (docs/tokenization.md, "What makes a
    fragments file"): a name ending in .tsv, .tsv.gz or .tsv.bgz, in any case, is one; any other
    is one when its first lines are all `chrom start end barcode count` (a barcode: not a number
    and not '.'; no strand in a sixth column, as BED6 and BED12 have) and a barcode repeats among
    them, since cells have many fragments and BED names rarely repeat. Both surprising outcomes
    warn: a file read as fragments without a fragments name, and one read as BED whose lines
    look like fragments but whose names do not repeat (a BED5 of names and scores, or a few
    cells)."""
    if named_fragments(path):
        return True
    lines = first_data_lines(path, 1, 1 << 13) or first_data_lines(path, 1)  # the second: long comments first
    if not lines or not _fragment_shaped(lines[0]):  # BED3, BED4, BED6+: told by the first line
        return False
    lines = first_data_lines(path, SNIFF_LINES)
    if not all(_fragment_shaped(line) for line in lines):
        return False
    barcodes = [line.split(b"\t", 4)[3] for line in lines]
    name = describe(path)
    if len(set(barcodes)) < len(barcodes):
        warnings.warn(f"{name}: read as a fragments file (one record per barcode): its lines are chrom, start, end, "
                      "barcode, count with barcodes repeating; name it .tsv.gz to say so.", stacklevel=2)
        return True
    warnings.warn(f"{name}: read as a BED file (one record), though its lines look like fragments (chrom, start, end, "
                  "barcode, count) with no barcode repeating; if it is a fragments file, name it .tsv.gz.", stacklevel=2)
    return False


def _fragment_shaped(line: bytes) -> bool:
    fields = line.split(b"\t")
    if len(fields) < 5 or (len(fields) > 5 and fields[5] in _STRANDS):
        return False
    start, end, barcode, count = fields[1:5]
    return start.isdigit() and end.isdigit() and count.isdigit() and barcode not in (b"", b".") and not _is_number(barcode)


def _is_number(field: bytes) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def first_data_lines(path: str | os.PathLike, count: int, limit: int = SNIFF_BYTES) -> list[bytes]:
    """Up to `count` lines of a text file (gzip or not) that are neither blank nor comments (`#`,
    `track`, `browser`), from its first `limit` bytes of text; [] when it cannot be read (its
    reader says why later)."""
    text, whole = read_head(path, limit) or (b"", True)
    lines: list[bytes] = []
    at = 0
    while len(lines) < count and at < len(text):
        end = text.find(b"\n", at)
        if end < 0 and not whole:
            break  # a line cut short by the read
        line = text[at : end if end >= 0 else len(text)].rstrip(b"\r")
        at = end + 1 if end >= 0 else len(text)
        if line.strip() and not line.startswith((b"#", b"track", b"browser")):
            lines.append(line)
    return lines


def read_head(path: str | os.PathLike, limit: int) -> tuple[bytes, bool] | None:
    """The first `limit` bytes of a file's text, decompressed if it is gzip (told by its magic
    number), and whether they are all of it; None when it cannot be read (its reader says why later)."""
    import gzip
    import zlib

    try:
        with open(path, "rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"
            fh.seek(0)
            if not gzipped:
                text = fh.read(limit)
                return text, len(text) < limit
            if limit <= 1 << 16:  # within the first gzip member (a bgzip block holds 64 KiB): 4x cheaper
                raw = fh.read(limit)
                inflate = zlib.decompressobj(31)
                text = inflate.decompress(raw, limit)
                return text, len(raw) < limit and inflate.eof and not inflate.unused_data
            with gzip.GzipFile(fileobj=fh) as text_file:
                text = text_file.read(limit)
            return text, len(text) < limit
    except (OSError, EOFError, zlib.error):
        return None


@dataclass(frozen=True)
class FragmentOptions:
    """Which barcodes of a fragments file become records."""

    barcodes: str | None = None  # a list of cells to keep (text or .h5ad)
    min_fragments: int = 1
    part: tuple[int, int] = (0, 1)  # keep barcodes whose hash is k mod n (a job's share of a file)


def read_barcode_list(path: str) -> list[str]:
    """Cells to keep: the obs_names of an `.h5ad`, or a text file (`.gz` too) with one barcode per
    line (the first tab-separated column; Cell Ranger's barcodes.tsv.gz works as it is), in UTF-8
    or UTF-16 (Excel's 'Unicode text'), as label sheets are read. A byte-order mark (Excel, Notepad)
    is dropped: kept, it would hide the first barcode."""
    input_file(path, "barcode list")
    if path.lower().endswith(".h5ad"):  # in any case, as an input's kind is told
        return _obs_names(path)
    lines = decode_text(read_decompressed(path, "barcode list"), describe(path), "barcode list").splitlines()
    names = [line.split("\t")[0].strip() for line in lines if line.strip() and not line.startswith("#")]
    if not names:
        raise GtokError(f"{describe(path)}: the barcode list is empty; give one barcode per line.")
    return names



def column_name_like(name: str) -> bool:
    """Whether a barcode list's first name may be its column name ('barcode', 'cell_id',
    'Cell Barcode'): letters, '_', '.', '-' or spaces and no digit, and not a nucleotide string,
    which is a barcode's shape (10x's without its -1)."""
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z_. -]*", name)) and not re.fullmatch(r"[ACGTNacgtn]+(-\w*)?", name)


def _obs_names(path: str) -> list[str]:
    """The obs_names of an `.h5ad`, which need not have an X (a table of cells is enough)."""
    import h5py

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
    if len(fields) < 5 and len(text.split()) >= 5:
        return (f"its columns are separated by spaces, not tabs, in {text!r}; a fragments file is tab-separated "
                "(convert it, e.g. with  tr ' ' '\\t' < IN > OUT).")
    if len(fields) < 5:
        return (f"expected at least 5 tab-separated columns (chrom, start, end, barcode, count), "
                f"found {len(fields)} in {text!r}.")
    chrom, start, end, barcode = fields[:4]
    if not chrom.strip():  # spaces alone too: gtars, splitting on whitespace, would shift every column
        return f"the chromosome name is empty in {text!r}."
    if " " in chrom:
        return (f"the chromosome name {chrom!r} holds a space; a fragment file's columns are separated by tabs and its "
                f"chromosome names hold none (gtars would read chromosome {chrom.split()[0]!r} and shift the columns).")
    problem = coordinates_problem(start, end)
    if problem:
        return problem
    if not barcode:
        return f"the barcode (column 4) is empty in {text!r}."
    if not "".join(fields[4:]).strip():
        return f"the count (column 5) is empty in {text!r}; gtars requires it (any value, gtok does not read it)."
    return f"start {start} is greater than end {end}."
