"""Reading 10x-style fragment files (`chrom start end barcode count ...`), one block at a time.

A fragments file holds tens to hundreds of millions of lines, and gtars reads one at a time in
Rust. numpy would need a dozen passes over every byte (line ends, tabs, digits, names), so the
lines are parsed by one compiled pass (numba) that also numbers chromosomes and barcodes: each
name is hashed to 128 bits on the fly and looked up in a dictionary, so a barcode's bytes are
decoded to a Python string only the first time it is seen. Decompression (gzip, bgzip) runs on
its own thread (python-isal), beside the parsing.

The rules of the format are in gtok.sources.fragments.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from gtok.errors import GtokError, describe
from gtok.kernels import kernel
from gtok.paths import input_file
from gtok.sources.bed import MAX_COORDINATE
from gtok.sources.fragments import SUFFIXES, explain, named_fragments

#: Bytes of decompressed text parsed at a time: with about 40 bytes a line, 400,000 fragments.
BLOCK_BYTES = 16 << 20

_TAB, _NL, _CR, _SPACE, _HASH = 9, 10, 13, 32, 35
_NO_CODE = -1  # a chromosome outside the universe, or a barcode that is not kept


@dataclass
class Block:
    """The fragments of one block of lines: chromosome code (universe numbering, -1 if absent),
    coordinates and barcode code, for the fragments of barcodes that are kept."""

    chroms: np.ndarray  # int32
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64
    barcodes: np.ndarray  # int64


class Table:
    """Names by their 128-bit key: an open-addressing hash table in numpy arrays, which the
    compiled parser reads and extends (numba's typed dict costs several times more per lookup)."""

    def __init__(self, size: int = 1 << 12):
        self.a = np.zeros(size, np.uint64)
        self.b = np.zeros(size, np.uint64)
        self.values = np.full(size, _NO_CODE, np.int64)
        self.count = 0

    def add(self, name: str, value: int) -> bool:
        """Insert `name` unless present; False when it was there already."""
        self.make_room(self.count + 1)
        a, b = hash_name(name.encode())
        slot = _slot(self.a, self.b, self.values, a, b)
        if self.values[slot] != _NO_CODE:
            return False
        self.a[slot], self.b[slot], self.values[slot] = a, b, value
        self.count += 1
        return True

    def make_room(self, count: int) -> None:
        """Keep the table at most half full for `count` keys (the parser stops before that)."""
        while 2 * count > self.values.size:
            self.a, self.b, self.values = _rehash(self.a, self.b, self.values, 2 * self.values.size)


@kernel(nogil=True, cache=True, inline="always")
def _slot(keys_a, keys_b, values, a, b):
    """The slot holding key (a, b), or the empty slot where it would go (linear probing)."""
    mask = values.size - 1
    i = np.int64(b & np.uint64(mask))
    while values[i] != _NO_CODE and (keys_a[i] != a or keys_b[i] != b):
        i = (i + 1) & mask
    return i


@kernel(nogil=True, cache=True)
def _rehash(keys_a, keys_b, values, size):
    new_a = np.zeros(size, np.uint64)
    new_b = np.zeros(size, np.uint64)
    new_v = np.full(size, _NO_CODE, np.int64)
    for i in range(values.size):
        if values[i] != _NO_CODE:
            j = _slot(new_a, new_b, new_v, keys_a[i], keys_b[i])
            new_a[j], new_b[j], new_v[j] = keys_a[i], keys_b[i], values[i]
    return new_a, new_b, new_v


class Barcodes:
    """Barcode numbering in order of first appearance, shared by the blocks of one or more files.

    With `keep`, only those barcodes get codes (in the list's order) and all others are dropped;
    `part=(k, n)` keeps the barcodes whose hash is k modulo n, a split that does not depend on the
    file, so each of n jobs can take its share of the same file."""

    def __init__(self, keep: list[str] | None = None, part: tuple[int, int] = (0, 1)):
        self.table = Table()
        self.names: list[str] = []
        self.open = keep is None
        self.part = part
        for name in keep or ():
            if in_part(name, part) and self.table.add(name, len(self.names)):
                self.names.append(name)

    def __len__(self) -> int:
        return len(self.names)


def in_part(barcode: str, part: tuple[int, int]) -> bool:
    """Whether a barcode belongs to part k of n (the parser's rule, for lists given in Python)."""
    return int(hash_name(barcode.encode())[0]) % part[1] == part[0]


def hash_name(data: bytes) -> tuple[np.uint64, np.uint64]:
    """The 128-bit key of a name, the same as the parser computes."""
    buf = np.frombuffer(data, dtype=np.uint8)
    a, b = _hash(buf, 0, buf.size)
    return np.uint64(a), np.uint64(b)  # as Python ints, numba would type a small one as int64


@kernel(nogil=True, cache=True, inline="always")
def _hash(buf, lo, hi):
    """Two independent 64-bit hashes (FNV-1a and a multiply-add), so that two names share a key
    with a probability of about 2**-128 per pair instead of 2**-64."""
    a = np.uint64(0xCBF29CE484222325)
    b = np.uint64(0x9E3779B97F4A7C15)
    for i in range(lo, hi):
        a = (a ^ np.uint64(buf[i])) * np.uint64(0x100000001B3)
        b = (b + np.uint64(buf[i]) + np.uint64(1)) * np.uint64(0xFF51AFD7ED558CCD)
    return (a, np.uint64(b ^ (b >> np.uint64(33))))


@kernel(nogil=True, cache=True)
def _parse(buf, pos, line, chroms, bc_a, bc_b, bc_v, n_codes, open_, part_k, part_n, out_c, out_s, out_e, out_b, new_lo, new_hi):
    """Parse the lines of buf[pos:] until the end, a full output or table, or a bad line.

    Returns (status, position, lines, fragments, new barcodes, fragment lines): status 0 is the end
    of `buf`, 1 a full output (or barcode table: call again from `position` after making room), 2 a
    bad line starting at `position` (explained in Python). Fragments are those of kept barcodes;
    fragment lines count every valid one, kept or not (a file without any is empty)."""
    ch_a, ch_b, ch_v = chroms
    n = 0
    seen = 0
    n_new = 0
    size = buf.size
    prev_lo = -1
    prev_len = -1
    prev_code = np.int64(_NO_CODE)  # not a literal type: pycc (gtok.kernels) would keep it constant
    while pos < size:
        if n == out_c.size or 2 * (n_codes + 1) > bc_v.size:
            return 1, pos, line, n, n_new, seen
        begin = pos
        # fields 1-4 end at tabs (a fifth, not blank, must follow), the line at a newline
        t0 = _field_end(buf, begin, size)
        t1 = _next_field_end(buf, t0, size)
        t2 = _next_field_end(buf, t1, size)
        t3 = _next_field_end(buf, t2, size)
        stop = t3
        while stop < size and buf[stop] != _NL:
            stop += 1
        end_of_line = stop - 1 if stop > begin and buf[stop - 1] == _CR else stop
        if end_of_line == begin or buf[begin] == _HASH:
            pos = stop + 1
            line += 1
            continue
        start = _uint(buf, t0 + 1, t1)
        end = _uint(buf, t1 + 1, t2)
        if (t3 >= end_of_line or buf[t3] != _TAB or t0 == begin or t3 == t2 + 1 or start < 0 or end < 0 or start > end
                or _blank(buf, t3 + 1, end_of_line)):
            return 2, begin, line + 1, n, n_new, seen
        # the chromosome: most lines repeat the previous line's; a new one must hold no space, as gtars
        # splits on whitespace and would read other columns ('chr 1' as chromosome 'chr', start 1)
        if not (t0 - begin == prev_len and _same(buf, begin, prev_lo, prev_len)):
            if _holds(buf, begin, t0, _SPACE):
                return 2, begin, line + 1, n, n_new, seen
            a, b = _hash(buf, begin, t0)
            prev_code = ch_v[_slot(ch_a, ch_b, ch_v, a, b)]
            prev_lo = begin
            prev_len = t0 - begin
        pos = stop + 1
        line += 1
        seen += 1
        a, b = _hash(buf, t2 + 1, t3)
        slot = _slot(bc_a, bc_b, bc_v, a, b)
        code = bc_v[slot]
        if code == _NO_CODE:
            if not open_ or a % np.uint64(part_n) != part_k:
                continue
            code = n_codes
            bc_a[slot] = a
            bc_b[slot] = b
            bc_v[slot] = code
            n_codes += 1
            new_lo[n_new] = t2 + 1
            new_hi[n_new] = t3
            n_new += 1
        out_c[n] = prev_code
        out_s[n] = start
        out_e[n] = end
        out_b[n] = code
        n += 1
    return 0, pos, line, n, n_new, seen


@kernel(nogil=True, cache=True, inline="always")
def _field_end(buf, i, size):
    """Where the field from i ends: the next tab, newline or the end of `buf`."""
    while i < size and buf[i] != _TAB and buf[i] != _NL:
        i += 1
    return i


@kernel(nogil=True, cache=True, inline="always")
def _next_field_end(buf, t, size):
    """The end of the field after the one ending at t; t itself when that was the line's last."""
    return _field_end(buf, t + 1, size) if t < size and buf[t] == _TAB else t


@kernel(nogil=True, cache=True, inline="always")
def _blank(buf, lo, hi):
    """Whether buf[lo:hi] is only whitespace: then the count column is missing, since gtars splits a
    line on whitespace and refuses one of fewer than five fields. Costs one byte on a good line."""
    for i in range(lo, hi):
        if buf[i] != _SPACE and (buf[i] < _TAB or buf[i] > _CR):
            return False
    return True


@kernel(nogil=True, cache=True, inline="always")
def _uint(buf, lo, hi):
    """buf[lo:hi] as a coordinate, or -1 when it is not one (empty, not digits, too large).
    Leading zeros are skipped (gtars reads 000100 as 100), so only significant digits count."""
    while hi - lo > 1 and buf[lo] == 48:
        lo += 1
    if hi <= lo or hi - lo > 10:
        return -1
    value = 0
    for i in range(lo, hi):
        d = buf[i] - 48
        if d < 0 or d > 9:
            return -1
        value = value * 10 + d
    return value if value <= MAX_COORDINATE else -1


@kernel(nogil=True, cache=True, inline="always")
def _holds(buf, lo, hi, byte):
    for i in range(lo, hi):
        if buf[i] == byte:
            return True
    return False


@kernel(nogil=True, cache=True, inline="always")
def _same(buf, a, b, length):
    for i in range(length):
        if buf[a + i] != buf[b + i]:
            return False
    return True


class FragmentFile:
    """One fragments file, read as blocks of parsed fragments.

    `chromosomes` numbers the chromosome names (the universe's codes); lines of other chromosomes
    keep code -1, so that they still count as fragments (and tokenize to `<unk>`, as in gtars)."""

    def __init__(self, path: str | os.PathLike, chromosomes: list[str], barcodes: Barcodes):
        self.path = os.fspath(path)
        self.name = describe(path)
        input_file(path, "fragments file")
        self.barcodes = barcodes
        self.chroms = Table()
        for code, name in enumerate(chromosomes):
            self.chroms.add(name, code)
        self.lines = 0
        self.fragments = 0  # valid fragment lines read, of every barcode

    def blocks(self) -> Iterator[Block]:
        for i, (text, size) in enumerate(_text_blocks(self.path, self.name, BLOCK_BYTES)):
            if i == 0:
                self._check_line_ends(text, size)
            self._check_utf8(text, size)
            yield from self._parse(text, size)

    def _check_line_ends(self, text: bytearray, size: int) -> None:
        """Refuse lines that end in CR alone (classic Mac): with no LF, the whole file was one line,
        read as one fragment whose count column held every other line (gtars reads it so too)."""
        cr = text.find(b"\r", 0, size)
        if 0 <= cr < size - 1 and text.find(b"\n", 0, size) < 0:
            raise GtokError(f"{self.name}: its lines end in \\r alone (classic Mac), so it would read as one line; "
                            "convert them to \\n, e.g. with  tr '\\r' '\\n' < IN > OUT.")

    def _check_utf8(self, text: bytearray, size: int) -> None:
        """Refuse bytes that are not UTF-8, as gtars does: two barcodes `\\xff1` and `\\xfe1` must not
        both become `\\ufffd1`. A block that is all ASCII (one vectorized max) needs no decoding."""
        if size == 0 or np.frombuffer(text, np.uint8, count=size).max() < 0x80:
            return
        try:
            text[:size].decode()
        except UnicodeDecodeError as exc:
            line = self.lines + text.count(b"\n", 0, exc.start) + 1
            begin, end = text.rfind(b"\n", 0, exc.start) + 1, text.find(b"\n", exc.start, size)
            raise GtokError(f"{self.name}, line {line}: {bytes(text[begin : end if end >= 0 else size])!r} is not "
                            "UTF-8 text; barcodes and chromosome names must be UTF-8 (gtars refuses such a file too). "
                            "Fix or remove this line.") from None

    def _parse(self, text: bytearray, size: int, cap: int = 1 << 20) -> Iterator[Block]:
        buf = np.frombuffer(text, dtype=np.uint8, count=size)
        bc, table, chroms = self.barcodes, self.barcodes.table, self.chroms
        pos = 0
        while pos < buf.size:
            out = np.empty(cap, np.int32), np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64)
            new_lo, new_hi = np.empty(cap, np.int64), np.empty(cap, np.int64)
            start, lines = pos, self.lines
            status, pos, self.lines, n, n_new, seen = _parse(
                buf, pos, self.lines, (chroms.a, chroms.b, chroms.values), table.a, table.b, table.values,
                len(bc.names), bc.open, bc.part[0], bc.part[1], *out, new_lo, new_hi,
            )
            self.fragments += seen
            new = [text[lo:hi].decode() for lo, hi in zip(new_lo[:n_new].tolist(), new_hi[:n_new].tolist())]
            spaced = next((i for i, name in enumerate(new) if " " in name), None)
            if spaced is not None:  # gtars splits on any whitespace and would read another barcode
                line = lines + text.count(b"\n", start, int(new_lo[spaced])) + 1
                raise GtokError(f"{self.name}, line {line}: barcode {new[spaced]!r} holds a space; a fragment file's "
                                "columns are separated by tabs and its barcodes hold none. Fix the file's barcodes.")
            bc.names.extend(new)
            table.count = len(bc.names)
            table.make_room(table.count + 1)
            if n:
                yield Block(*(a[:n] for a in out))
            if status == 2:
                stop = text.find(b"\n", pos, size)
                line = bytes(text[pos : stop if stop >= 0 else size])
                raise GtokError(f"{self.name}, line {self.lines}: {explain(line)} {self._what_to_do()}")

    def _what_to_do(self) -> str:
        """Fix the line; but when no line before it was a fragment and only the file's name made it
        a fragments file, the likelier cause is a BED file named .tsv (pandas and R write those)."""
        if self.fragments or not named_fragments(self.path):
            return "Fix or remove this line."
        return (f"It is read as a fragments file because its name ends in {'/'.join(SUFFIXES)}; if it is a BED file, "
                "name it .bed, else fix or remove this line.")


def _text_blocks(path: str, name: str, block_bytes: int) -> Iterator[tuple[bytearray, int]]:
    """The file's text in blocks of whole lines (the last may lack its newline), decompressed on a
    background thread when it is gzip or bgzip (told by its magic number, not its name)."""
    import zlib

    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    try:
        if gzipped:
            from isal import igzip_threaded

            stream = igzip_threaded.open(path, "rb", threads=1, block_size=8 << 20)
        else:
            stream = open(path, "rb")
        with stream:
            yield from _whole_lines(stream, block_bytes)
    except (EOFError, OSError, zlib.error, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise GtokError(f"{name}: cannot read the file ({os.strerror(exc.errno).lower()}).") from None
        raise GtokError(f"{name}: not a readable gzip file, it may be truncated or corrupt ({exc}).") from None


def _whole_lines(stream, block_bytes: int) -> Iterator[tuple[bytearray, int]]:
    """(buffer, size): buffer[:size] is the next run of whole lines. One buffer is read into and
    reused (valid until the next item), so 16 MiB blocks cost no copies; the partial line at its
    end moves to its start. A line longer than the buffer doubles it."""
    buf = bytearray(block_bytes)
    have = 0
    while True:
        with memoryview(buf) as view, view[have:] as free:
            n = stream.readinto(free)
        if not n:
            if have:
                yield buf, have
            return
        total = have + n
        cut = buf.rfind(b"\n", 0, total) + 1
        if cut == 0:
            have = total
            if have == len(buf):
                buf.extend(bytes(len(buf)))
            continue
        yield buf, cut
        buf[: total - cut] = buf[cut:total]
        have = total - cut
