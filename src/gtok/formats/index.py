"""The binary universe index (`.gtokidx`): a universe parsed, deduplicated and sorted, ready to query.

Loading a 1,000,000-region universe from its BED text costs a parse and several sorts (about a
second); loading this file costs one read and a checksum pass (tens of milliseconds). Every
tokenization job of the workflow loads the same index, so a damaged index must never be trusted:
the whole file is covered by CRC-32s, and the vocabulary fingerprint is recomputed from the
arrays that were loaded and compared with the one recorded when it was written. Layout
(little-endian; docs/format.md):

    0   8  magic b"GTOKIDX\\0"
    8   4  version (u32) = 1
   12   4  length of the JSON table (u32), a multiple of 8
   16   8  length of the array data (u64)
   24  32  sha256 of the universe file's bytes it was built from
   56  32  vocabulary fingerprint (sha256, raw bytes)
   88   4  CRC-32 of everything after the 96-byte header
   92   4  CRC-32 of bytes 0..91
   96      JSON table {"names": [chromosomes], "arrays": {name: [dtype, count, offset]},
           "source": path of the universe BED, relative to the index's folder}, space-padded
           array data, each array at its offset from the start of the data
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gtok.atomic import atomic_path
from gtok.errors import GtokError, describe
from gtok.paths import path_in, recorded_path

MAGIC = b"GTOKIDX\0"
VERSION = 1
SUFFIX = ".gtokidx"
_HEADER = struct.Struct("<8sIIQ32s32sII")
_HEADER_SIZE = 96
ARRAYS = ("codes", "starts", "ends", "rank_to_id", "class_order", "class_bounds")
assert _HEADER.size == _HEADER_SIZE


class IndexFormatError(GtokError):
    """A universe index file that is damaged, truncated or of an unknown version."""


def is_index(path: str | os.PathLike) -> bool:
    """Whether a file starts with the index's magic bytes (so `--universe` may name either kind)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def write_index(path: str | os.PathLike, names: list[str], arrays: dict[str, np.ndarray], fingerprint: str,
                source_sha256: str, source: str | os.PathLike | None = None) -> Path:
    """Write a universe's chromosome names and arrays (`ARRAYS`) as an index file, atomically.

    `source` is the universe BED it is built from: its path relative to the index's folder is
    recorded (an absolute one would make the same index built elsewhere other bytes), so that
    shards tokenized against the index can name the BED (`gtok.formats.metadata`)."""
    layout, offset = {}, 0
    for name in ARRAYS:
        arr = arrays[name]
        layout[name] = [arr.dtype.str, int(arr.size), offset]
        offset += arr.nbytes
    extra = {"source": recorded_path(os.path.abspath(source), os.path.dirname(os.path.abspath(path)))} if source is not None else {}
    table = json.dumps({"names": list(names), "arrays": layout, **extra}).encode()
    table += b" " * (-len(table) % 8)
    body = [table, *(memoryview(np.ascontiguousarray(arrays[n])).cast("B") for n in ARRAYS)]
    crc = 0
    for part in body:
        crc = zlib.crc32(part, crc)
    fields = (MAGIC, VERSION, len(table), offset, bytes.fromhex(source_sha256), bytes.fromhex(fingerprint), crc)
    head = _HEADER.pack(*fields, 0)
    head = _HEADER.pack(*fields, zlib.crc32(head[:-4]))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        for part in (head, *body):
            fh.write(part)
    return Path(path)


@dataclass(frozen=True)
class IndexContent:
    """What an index file holds, its checksums verified (the fingerprint is checked by its user,
    `gtok.universe.Universe.from_index`, against the regions it rebuilds)."""

    names: list[str]
    arrays: dict[str, np.ndarray]
    fingerprint: str
    source_sha256: str


def read_index(path: str | os.PathLike) -> IndexContent:
    """The content of an index file; any damage is an `IndexFormatError` naming the file."""
    name = describe(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise IndexFormatError(f"{name}: cannot read the universe index ({os.strerror(exc.errno).lower()}).") from None
    if len(raw) < _HEADER_SIZE or raw[:8] != MAGIC:
        raise IndexFormatError(f"{name}: not a gtok universe index (the magic bytes are missing).")
    magic, version, table_len, data_len, source, fingerprint, crc, crc_head = _HEADER.unpack_from(raw)
    if version != VERSION:  # before the header's checksum: another version may lay its header out otherwise
        index_error(name, f"format version {version} is not supported (this gtok reads version {VERSION})")
    if zlib.crc32(raw[: _HEADER_SIZE - 4]) != crc_head:
        index_error(name, "the header is corrupt (checksum mismatch)")
    if len(raw) != _HEADER_SIZE + table_len + data_len:
        index_error(name, f"truncated or padded: {len(raw)} bytes, the header says {_HEADER_SIZE + table_len + data_len}")
    if zlib.crc32(memoryview(raw)[_HEADER_SIZE:]) != crc:
        index_error(name, "the index data is corrupt (checksum mismatch)")
    try:
        table = json.loads(raw[_HEADER_SIZE : _HEADER_SIZE + table_len])
        base = _HEADER_SIZE + table_len
        arrays = {
            key: np.frombuffer(raw, dtype=dtype, count=count, offset=base + offset)
            for key, (dtype, count, offset) in ((k, table["arrays"][k]) for k in ARRAYS)
        }
        return IndexContent(list(table["names"]), arrays, fingerprint.hex(), source.hex())
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        index_error(name, f"its table is inconsistent ({exc})")


def index_source(path: str | os.PathLike) -> tuple[str | None, str]:
    """(absolute path of the BED an index was built from, or None where it did not record one (the
    index records it relative to its folder; older ones, absolute);
    the sha256 of that BED's bytes), read from its header and table alone. Only a header that
    passes its checksum is trusted; the rest is checked by whoever loads the index."""
    name = describe(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEADER_SIZE)
            fields = _HEADER.unpack(head) if len(head) == _HEADER_SIZE else None
            if fields is None or fields[0] != MAGIC or zlib.crc32(head[:-4]) != fields[-1]:
                index_error(name, "the header is corrupt or missing")
            table = json.loads(fh.read(fields[2]))
    except OSError as exc:
        raise IndexFormatError(f"{name}: cannot read the universe index ({os.strerror(exc.errno).lower()}).") from None
    except ValueError:
        index_error(name, "its table is not JSON")
    source = table.get("source") if isinstance(table, dict) else None
    if not isinstance(source, str):
        return None, fields[4].hex()
    return path_in(source, os.path.dirname(os.path.abspath(path))), fields[4].hex()


def index_error(name: str, what: str) -> None:
    raise IndexFormatError(f"{name}: {what}. Delete it and build it again from the universe BED.")
