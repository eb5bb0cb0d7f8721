"""BED inputs (a record per file): reading BED files into numpy arrays, vectorized over the whole
file, and the source that tokenizes many files at a time (`BedFiles`).

A 1,000,000-line universe must load in a fraction of a second, so the text is parsed with numpy
over the raw bytes (line and field boundaries by `flatnonzero`, integers by digit arithmetic)
instead of a Python loop or pandas. Only the first bad line, if any, is looked at in Python, to
say exactly what is wrong with it.
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gtok.errors import BedFormatError, GtokError, describe
from gtok.formats.shard import record_name
from gtok.paths import input_file
from gtok.sources.base import Batch, Source, progress_bar
from gtok.sources.labels import read_label_sheet
from gtok.sources.text import refuse_unless_utf8

if TYPE_CHECKING:
    from gtok.tokenizer import Tokenizer

#: BED files are tokenized together in batches of about this many regions (one vectorized call).
BATCH_REGIONS = 2_000_000

#: Field separators. BED is tab-separated, but space-separated files are common enough to accept.
_DELIMITERS = (ord("\t"), ord(" "))
_MAX_DIGITS = 18  # fits int64 with room to spare; more significant digits are "too large" without parsing them
#: The largest coordinate accepted anywhere (queries, universes, h5ad var): gtars reads coordinates as
#: 32-bit unsigned integers, and the universe index folds positions into 34 bits of an int64 key, so
#: a larger one would be misread by one tool and wrap onto the next chromosome in the other.
MAX_COORDINATE = 2**32 - 1
_SKIP_PREFIXES = (b"#", b"track", b"browser")


@dataclass(frozen=True)
class Intervals:
    """Genomic intervals as parallel arrays; `codes[i]` indexes `chrom_names`."""

    chrom_names: tuple[str, ...]
    codes: np.ndarray  # int32
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.codes.size)

    def take(self, index: np.ndarray) -> "Intervals":
        return Intervals(self.chrom_names, self.codes[index], self.starts[index], self.ends[index])

    def in_genomic_order(self) -> bool:
        """Whether each chromosome's intervals come together, by start (the chromosomes in any
        order): what a model with position embeddings needs to see a cell's tokens as in sorted data,
        whichever order its training data put the chromosomes in (gtok.sources.cells)."""
        same = self.codes[1:] == self.codes[:-1]
        runs = np.count_nonzero(~same) + (self.codes.size > 0)  # blocks of one chromosome
        return bool(runs == np.unique(self.codes).size and not (same & (self.starts[1:] < self.starts[:-1])).any())

    def tiles_genome(self) -> bool:
        """Whether these are bins of one width on that width's grid (ArchR's TileMatrix, whole or
        filtered), not peaks: most of them lie outside any universe of peaks, as they should."""
        widths = self.ends - self.starts
        return bool(widths.size > 1 and widths[0] > 0 and (widths == widths[0]).all() and not (self.starts % widths[0]).any())

    def sorted_like_files(self) -> "Intervals":
        """Stable sort by (chromosome name as bytes, start): the order gtars gives a BED file."""
        order = self.file_order()
        return self if order is None else self.take(order)

    def file_order(self) -> np.ndarray | None:
        """The permutation that puts these in a BED file's order (stable, by chromosome name as
        bytes, then start), or None when they are in it already."""
        rank_of_name = np.argsort(np.argsort([n.encode() for n in self.chrom_names], kind="stable"))
        chrom_rank = rank_of_name.astype(np.int64)[self.codes] if self.chrom_names else self.codes
        key = (chrom_rank << 40) | self.starts  # starts are < 2**40 (1 Tbp)
        if np.all(key[1:] >= key[:-1]):
            return None
        return np.argsort(key, kind="stable")

    @staticmethod
    def from_columns(chroms, starts, ends, source: str = "the regions", column_names=("start", "end")) -> "Intervals":
        """Build from array-likes of names and coordinates (DataFrame columns, tuple lists, h5ad
        var), checked like BED text: `source` and the row are named for any bad value."""
        chroms = chromosome_names(chroms, source)
        starts = coordinates(starts, f"{source}, column {column_names[0]!r}")
        ends = coordinates(ends, f"{source}, column {column_names[1]!r}")
        if not chroms.size == starts.size == ends.size:
            raise GtokError(f"{source}: the chromosome, start and end columns differ in length.")
        backwards = np.flatnonzero(starts > ends)
        if backwards.size:
            i = int(backwards[0])
            raise GtokError(f"{source}, row {i}: start {starts[i]} is greater than end {ends[i]}.")
        names, codes = np.unique(chroms, return_inverse=True) if chroms.size else ([], chroms)
        return Intervals(tuple(str(n) for n in names), np.asarray(codes, dtype=np.int32).reshape(-1), starts, ends)


#: Column names of coordinates in tables (in any case, after a leading '#' as a BED header has it):
#: BED-like frames (UCSC's chromStart / chromEnd), PyRanges, GRanges' seqnames, h5ad var
#: (epiScanpy writes chr / start / stop).
CHROM_COLUMNS = ("chr", "chrom", "chromosome", "seqnames", "seqname", "contig")
START_COLUMNS = ("start", "chromstart", "begin")
END_COLUMNS = ("end", "stop", "chromend")


def coordinate_columns(columns: Sequence[Any], source: str) -> tuple[Any, Any, Any]:
    """The chromosome, start and end columns among `columns`, found by name in any case (None for
    each not found): tables put them in any order, beside columns of other data. Two columns of
    one role (chr and chrom, start and Start) are refused, naming them: neither is guessed."""
    keys = [(str(c).lower().lstrip("#"), c) for c in columns]
    found = []
    for role, names in (("chromosome", CHROM_COLUMNS), ("start", START_COLUMNS), ("end", END_COLUMNS)):
        both = [c for name in names for key, c in keys if key == name]
        if len(both) > 1:
            raise GtokError(f"{source} has {len(both)} {role} columns ({', '.join(map(repr, map(str, both)))}); keep one.")
        found.append(both[0] if both else None)
    return tuple(found)


def chromosome_names(values, source: str) -> np.ndarray:
    """`values` as an array of str, refusing a missing name (None, NaN: a categorical's missing
    value would otherwise become the chromosome 'None' or 'nan') and an empty one."""
    arr = np.asarray(values, dtype=object).reshape(-1)
    bad = np.flatnonzero(_missing(arr) | (arr == ""))
    if bad.size:
        i = int(bad[0])
        what = "empty" if isinstance(arr[i], str) else "missing"
        raise GtokError(f"{source}, row {i}: the chromosome name is {what}.")
    return arr.astype(str)


def _missing(arr: np.ndarray) -> np.ndarray:
    """Which entries of an object array are None or NaN (NaN is the one value not equal to itself)."""
    return (arr == None) | (arr != arr)  # noqa: E711 (elementwise)


def coordinates(values, what: str) -> np.ndarray:
    """`values` as int64 coordinates, refusing what a cast would silently change or wrap: missing
    values, fractions (150.7; 150.0 is 150), negatives, and values above `MAX_COORDINATE`."""
    arr = np.asarray(values).reshape(-1)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.floor(arr)) | (arr < 0) | (arr > MAX_COORDINATE)
    elif arr.dtype.kind in "iu":
        bad = (arr < 0) | (arr > MAX_COORDINATE)
    else:  # strings or objects (a nullable column holds None where missing): each must be a plain non-negative integer
        text = arr.astype(str)
        bad = np.array([coordinate_problem(t) is not None for t in text], dtype=bool)
        if not bad.any():
            return text.astype(np.int64)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = arr[i].item() if isinstance(arr[i], np.generic) else arr[i]
        shown = "the value is missing" if value is None else f"{value!r} is not a coordinate"
        raise GtokError(f"{what}, row {i}: {shown} (a whole number from 0 to {MAX_COORDINATE:,} is needed).")
    return arr.astype(np.int64)


def read_bed(path: str | os.PathLike) -> Intervals:
    """Parse a BED file (plain or gzipped, BED3 to BED12) into intervals, in file order.

    Raises `BedFormatError` naming the file and line for a malformed line, and `GtokError` for a
    missing, unreadable or empty file.
    """
    data = read_bytes(path)
    intervals = parse_bed_bytes(data, describe(path))
    if len(intervals) == 0:
        raise BedFormatError(f"{describe(path)}: no regions found (the file is empty or has only header lines).")
    return intervals


def read_sorted(path: str | os.PathLike) -> Intervals:
    """A BED file's regions in the order gtars tokenizes a file in (`Intervals.sorted_like_files`)."""
    return read_bed(path).sorted_like_files()


def read_bytes(path: str | os.PathLike, what: str = "BED file") -> bytes:
    """The file's bytes, decompressed if it is gzip, refused when they are not ASCII or UTF-8 text
    (UTF-16, or a binary file's zero bytes)."""
    raw = read_decompressed(path, what)
    refuse_unless_utf8(raw, describe(path), what)
    return raw


def read_decompressed(path: str | os.PathLike, what: str) -> bytes:
    """The file's bytes, decompressed if it is gzip (told by its magic number, not its name)."""
    name = describe(path)
    try:
        raw = input_file(path, what).read_bytes()
    except OSError as exc:
        raise GtokError(f"{name}: cannot read the file ({os.strerror(exc.errno).lower()}).") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise GtokError(f"{name}: not a readable gzip file, it may be truncated or corrupt ({exc}).") from None
    return raw


def parse_bed_bytes(data: bytes, name: str) -> Intervals:
    """Parse BED text. `name` is only used in error messages."""
    buf = np.frombuffer(data, dtype=np.uint8)
    line_starts, line_ends = _line_bounds(buf)
    keep = line_ends > line_starts
    keep &= ~_has_prefix(buf, line_starts, line_ends, _SKIP_PREFIXES)
    rows = np.flatnonzero(keep)
    ls, le = line_starts[rows], line_ends[rows]

    fields = _field_bounds(buf, ls, le)
    starts, start_ok = _parse_uints(buf, fields[1], fields[2])
    ends, end_ok = _parse_uints(buf, fields[3], fields[4])
    ok = fields[5] & start_ok & end_ok & (fields[0] > ls) & (starts <= ends) & (ends <= MAX_COORDINATE)
    if b" " in data:  # one memchr pass; most files are tab-only and cannot mix
        ok &= ~_mixed_delimiters(buf, fields[0], fields[2], fields[4], le)

    # A column-name row ("chrom start end") before the first region is a header, not an error. Only
    # start and end columns that both begin with a letter make one: an empty field (a doubled or
    # leading delimiter) or one malformed number ("chr1 abc 200") is an error like anywhere else.
    if rows.size and fields[5][0] and fields[0][0] > ls[0] and _is_letter(buf[fields[1][0]]) and \
            _is_letter(buf[min(fields[3][0], buf.size - 1)]):
        ls, le, rows = ls[1:], le[1:], rows[1:]
        fields = tuple(f[1:] for f in fields)
        starts, ends, ok = starts[1:], ends[1:], ok[1:]
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        line = data[line_starts[rows[bad]] : line_ends[rows[bad]]]
        raise BedFormatError(f"{name}, line {rows[bad] + 1}: {_explain(line)} Fix or remove this line.")

    names, codes, first = _factorize(buf, ls, fields[0])
    return Intervals(_decoded(names, rows[first], name), codes, starts, ends)


def _decoded(names: list[bytes], lines: np.ndarray, source: str) -> tuple[str, ...]:
    """Chromosome names as text; a name that is not UTF-8 is refused at the first line holding
    it (gtars refuses such a file, and two such names must not both become '\ufffd...')."""
    try:
        return tuple(n.decode() for n in names)
    except UnicodeDecodeError:
        bad = [i for i, n in enumerate(names) if not _is_utf8(n)]
        i = min(bad, key=lambda k: lines[k])
        raise BedFormatError(f"{source}, line {lines[i] + 1}: the chromosome name {names[i]!r} is not UTF-8 text; "
                             "save the file as UTF-8 (gtars refuses it too).") from None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _is_letter(byte: int) -> bool:
    return chr(byte).isascii() and chr(byte).isalpha()


def _line_bounds(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, without '\\r') of every line."""
    newlines = np.flatnonzero(buf == ord("\n"))
    ends = newlines if buf.size == 0 or buf[-1] == ord("\n") else np.append(newlines, buf.size)
    starts = np.concatenate(([0], newlines + 1))[: ends.size]
    has_cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == ord("\r")) if buf.size else ends > starts
    return starts.astype(np.int64), (ends - has_cr).astype(np.int64)


def _has_prefix(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, prefixes) -> np.ndarray:
    """Which lines start with one of `prefixes`; only lines whose first byte could match are read."""
    hit = np.zeros(starts.size, dtype=bool)
    nonempty = np.flatnonzero(ends > starts)
    first = buf[starts[nonempty]]
    for prefix in prefixes:
        cand = nonempty[(first == prefix[0]) & (ends[nonempty] - starts[nonempty] >= len(prefix))]
        match = np.ones(cand.size, dtype=bool)
        for j in range(1, len(prefix)):
            match &= buf[starts[cand] + j] == prefix[j]
        hit[cand[match]] = True
    return hit


def _field_bounds(buf: np.ndarray, ls: np.ndarray, le: np.ndarray):
    """(chrom end, start field begin, start field end, end field begin, end field end, has 3 fields)."""
    is_delim = buf == _DELIMITERS[0]
    for d in _DELIMITERS[1:]:
        is_delim |= buf == d
    delims = np.append(np.flatnonzero(is_delim), [buf.size] * 3)
    k = np.searchsorted(delims, ls)
    t1, t2, t3 = delims[k], delims[k + 1], delims[k + 2]
    three = t2 < le
    return t1, t1 + 1, t2, t2 + 1, np.minimum(t3, le), three


def _mixed_delimiters(buf: np.ndarray, t1: np.ndarray, t2: np.ndarray, t3: np.ndarray, le: np.ndarray) -> np.ndarray:
    """Lines whose first three columns are separated (and the third ended) by both a tab and a
    space: gtars splits on tabs alone, so it reads such a line otherwise ('chr 1<TAB>100<TAB>200'
    as chromosome 'chr 1') or refuses it ('... 200 x'), where either delimiter would read chr:1-100."""
    last = buf.size - 1
    first = buf[np.minimum(t1, last)]
    mixed = buf[np.minimum(t2, last)] != first
    mixed |= (t3 < le) & (buf[np.minimum(t3, last)] != first)
    return mixed & (t2 < le)


def _windows(buf: np.ndarray, begin: np.ndarray, width: int) -> np.ndarray:
    """The `width` bytes from each position in `begin` as rows of a (n, width) array.

    A strided view of the buffer makes this one row gather, instead of building an index
    array of n x width positions. Bytes past the end of the buffer read as zero.
    """
    padded = np.concatenate((buf, np.zeros(width + 2, np.uint8)))  # field bounds may point 1 past the end
    view = np.lib.stride_tricks.as_strided(padded, shape=(buf.size + 2, width), strides=(1, 1), writeable=False)
    return view[begin]


def _parse_uints(buf: np.ndarray, begin: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decimal digits in buf[begin:end] as int64, with a mask of the spans that were valid."""
    begin = _skip_zero_padding(buf, begin, end)
    length = end - begin
    ok = (length >= 1) & (length <= _MAX_DIGITS)
    width = int(np.where(ok, length, 0).max(initial=0))
    digits = _windows(buf, begin, width) - np.uint8(ord("0"))  # non-digits wrap around to > 9
    values = np.zeros(begin.size, dtype=np.int64)
    for j in range(width):  # Horner's rule, one digit column at a time
        inside = j < length
        ok &= (digits[:, j] <= 9) | ~inside
        values = np.where(inside, values * 10 + digits[:, j], values)
    return np.where(ok, values, 0), ok


def _skip_zero_padding(buf: np.ndarray, begin: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Field starts moved past the leading zeros of numbers longer than _MAX_DIGITS digits:
    gtars reads `0000000000000000000100` as 100. A step per padding zero, over those fields only
    (shorter numbers parse as they are, zeros included)."""
    padded = np.flatnonzero(end - begin > _MAX_DIGITS)
    if not padded.size:
        return begin
    begin = begin.copy()
    while padded.size:
        padded = padded[(buf[begin[padded]] == ord("0")) & (end[padded] - begin[padded] > _MAX_DIGITS)]
        begin[padded] += 1
    return begin


_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)
#: Names longer than this (bytes) are numbered one line at a time (as fast as the vectorized path
#: for 100-byte names, measured on a million lines): the vectorized path reads every
#: name as wide as the longest, so one 20 kB name among a million lines would take 20 GB.
_LONG_NAME = 64


def _factorize(buf: np.ndarray, begin: np.ndarray, end: np.ndarray) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Chromosome names of the spans (bytes), a code per span, and the first span of each name;
    exact. Names up to _LONG_NAME bytes go through `_factorize_short`; longer ones, rare, through
    a dict, so that they cost memory of their own lines only."""
    long = end - begin > _LONG_NAME
    if not long.any():
        return _factorize_short(buf, begin, end)
    short = np.flatnonzero(~long)
    names, short_codes, short_reps = _factorize_short(buf, begin[short], end[short])
    codes = np.empty(begin.size, np.int32)
    codes[short] = short_codes
    reps = short[short_reps].tolist()
    seen: dict[bytes, int] = {}
    for i in np.flatnonzero(long).tolist():
        name = buf[begin[i] : end[i]].tobytes()
        if name not in seen:
            seen[name] = len(names)
            names.append(name)
            reps.append(i)
        codes[i] = seen[name]
    return names, codes, np.array(reps, dtype=np.int64)


def _factorize_short(buf: np.ndarray, begin: np.ndarray, end: np.ndarray) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """`_factorize` vectorized: each name as a row of uint64 words, hashed, with an exact check."""
    if not begin.size:
        return [], np.zeros(0, np.int32), np.zeros(0, np.int64)
    length = end - begin
    n_words = -(-int(length.max()) // 8)
    words = np.ascontiguousarray(_windows(buf, begin, 8 * n_words)).view("<u8")  # names as uint64 words
    for w in range(n_words):  # clear the bytes past each name's end
        words[:, w] &= _BYTE_MASKS[np.clip(length - 8 * w, 0, 8)]
    key = words[:, 0].copy()
    for w in range(1, n_words):
        key = key * np.uint64(0x100000001B3) ^ words[:, w]
    # Files are mostly runs of one chromosome: factorize the runs, not every line.
    heads = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    _, first_head, inv = np.unique(key[heads], return_index=True, return_inverse=True)
    codes = np.repeat(inv.reshape(-1), np.diff(np.append(heads, key.size))).astype(np.int32)
    reps = heads[first_head]
    if n_words > 1 and not (words == words[reps[codes]]).all():  # a hash collision: go exact
        _, reps, codes = np.unique(words, axis=0, return_index=True, return_inverse=True)
        codes = codes.reshape(-1).astype(np.int32)
    return [bytes(buf[begin[r] : end[r]]) for r in reps], codes, reps


def _explain(line: bytes) -> str:
    """Why one line is not a valid BED region, in words."""
    text = line.decode("utf-8", "replace")
    if "\r" in text.rstrip("\r"):
        return (f"it holds a carriage return (\\r) inside {text[:60]!r}: the file's lines end in \\r alone (classic "
                "Mac); convert them to \\n, e.g. with  tr '\\r' '\\n' < IN > OUT.")
    fields = re.split("[\t ]", text)
    if len(fields) < 3:
        return f"expected at least 3 columns (chrom, start, end), found {len(fields)} in {text!r}."
    chrom, start, end = fields[:3]
    if not chrom:
        return f"the chromosome name is empty in {text!r} (a leading tab or space?)."
    problem = coordinates_problem(start, end)
    if problem:
        return problem
    if len(set(re.findall("[\t ]", text)[:3])) > 1:
        return (f"both tabs and spaces separate its first three columns in {text!r}, which gtars, splitting on tabs "
                "alone, reads otherwise or refuses; separate them by tabs alone (or spaces alone).")
    return f"start {start} is greater than end {end}."


def coordinates_problem(start: str, end: str) -> str | None:
    """What is wrong with a line's start or end field (the first that is wrong), or None."""
    for label, value in (("start", start), ("end", end)):
        problem = coordinate_problem(value)
        if problem:
            return f"{label} coordinate {problem}"
    return None


def coordinate_problem(value: str) -> str | None:
    """What is wrong with one coordinate field, or None when it is a valid coordinate."""
    digits = value.isascii() and value.isdigit()
    if not value:
        return "is empty (two delimiters in a row?)."
    if value.startswith("-") and value[1:].isascii() and value[1:].isdigit():
        return f"{value} is negative; BED coordinates are 0-based and non-negative."
    if not digits:
        return f"{value!r} is not a non-negative integer (only the digits 0-9)."
    significant = value.lstrip("0")
    if len(significant) > _MAX_DIGITS or int(significant or "0") > MAX_COORDINATE:
        return f"{value} is too large (the largest supported is {MAX_COORDINATE:,}, as in gtars)."
    return None


# -- the source ------------------------------------------------------------------------------------


def refuse_shared_names(paths: Sequence[str]) -> None:
    """Refuse BED files whose records would share a name (a file's name without .bed): a manifest
    refuses them after the work, and embed's .names.txt could not tell their rows apart."""
    first: dict[str, str] = {}
    for path in paths:
        name = record_name(path)
        if name in first and os.path.realpath(first[name]) == os.path.realpath(path):
            raise GtokError(f"{path}: given twice; it would be two records named {name!r}. Give each file once.")
        if name in first:
            raise GtokError(f"{first[name]} and {path} would both be the record {name!r} (a BED file's record is "
                            "named by its file name); rename one of them.")
        first[name] = path


class BedFiles(Source):
    """BED files, a record each (named by gtok.formats.shard.record_name), labelled by a label
    sheet when one is given. Files are read side by side on `threads` threads (default: the CPUs
    this process may use, its affinity, which a SLURM job or `taskset` limits; never all the
    machine's cores) and tokenized about BATCH_REGIONS regions at a time."""

    kind = "bed"
    token_orders = ("bed",)  # read sorted (sorted_like_files)

    def __init__(self, paths: Sequence[str], labels_sheet: str | None = None, threads: int | None = None,
                 progress: bool = False):
        self.paths, self.labels_sheet, self.threads, self.progress = list(paths), labels_sheet, threads, progress
        self._labels: dict[str, str | None] | None = None

    def check(self, tok: Tokenizer) -> None:
        refuse_shared_names(self.paths)  # a manifest refuses a name used twice: say so before the work, not after
        if self.labels_sheet:
            self._labels = read_label_sheet(self.labels_sheet, self.paths)

    def batches(self, tok: Tokenizer, spill_dir: Path) -> Iterator[Batch]:
        labels, foreign = self._labels, []
        for batch in _bed_batches(self.paths, self.progress, self.threads or len(os.sched_getaffinity(0))):
            tokens, lengths = tok.tokenize_many([iv for _, iv in batch])
            yield Batch([record_name(p) for p, _ in batch], tokens, lengths, [labels[p] for p, _ in batch] if labels else None)
            foreign += filter(None, (tok.universe.foreign_input(iv.chrom_names, p) for p, iv in batch))
        warn_foreign(foreign)


def warn_foreign(messages: list[str], shown: int = 3) -> None:
    """A warning per BED file that shares no chromosome with the universe, the first few of them,
    and then one with the count (a collection of thousands named `1` instead of `chr1`)."""
    for message in messages[:shown]:
        warnings.warn(message, stacklevel=3)
    if len(messages) > shown:
        warnings.warn(f"{len(messages) - shown:,} more BED files share no chromosome with the universe either.", stacklevel=3)


def _bed_batches(paths: Sequence[str], progress: bool, threads: int) -> Iterator[list]:
    """Parsed files grouped so that each group is tokenized in one vectorized call."""
    batch, size = [], 0
    parsed = _ordered_map(read_sorted, paths, threads)
    for path, iv in progress_bar(zip(paths, parsed), progress and len(paths) > 1, total=len(paths), desc="BED files",
                                 unit="file"):
        batch.append((path, iv))
        size += len(iv)
        if size >= BATCH_REGIONS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _ordered_map(fn, items: Sequence, workers: int, window: int = 64) -> Iterator:
    """fn over items on `workers` threads (numpy releases the GIL while parsing), in order, with
    at most `window` results waiting, so memory stays bounded however many files there are."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    if workers == 1 or len(items) < 2:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
