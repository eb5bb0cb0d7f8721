"""The `.gtok` shard: many token records in one memory-mappable file (layout in docs/format.md).

Readers map the file and hand out zero-copy numpy views, so a training loader pays one slice per
record. Writers stream tokens to a temporary file and rename it into place only when complete.
gtars' single-record `.gtok` files (magic, one flag byte, tokens; `gtok.formats.gtars`) open as
one-record shards. A shard may end in a metadata section (`gtok.formats.metadata`: its dataset and
universe), announced by a flag bit and located by its length in the header, so that readers
older than it still read the records and ignore it.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import sys
import zlib
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import NoReturn

import numpy as np

from gtok.atomic import atomic_path
from gtok.errors import ShardFormatError, describe, kind_of_file
from gtok.formats.metadata import ShardMeta, UniverseRecord

MAGIC = b"GTOK"
_STEP = 1 << 24  # bytes checked and hashed at a time (ShardReader.verify)
GTARS_FLAGS = {0x01: np.dtype("<u2"), 0x02: np.dtype("<u4")}  # gtars single-record files (gtok.formats.gtars)
KIND_SHARD = 0x53  # 'S'; gtars single-record files carry 0x01 (u16) or 0x02 (u32) in this byte
VERSION = 1
HEADER = struct.Struct("<4sBBBBQQQ32sQQQQQIIIIII")
HEADER_SIZE = 128
FLAG_LABELS = 0x01
FLAG_META = 0x02  # a metadata section ends the file; meta_len and crc_metadata (once reserved bytes) locate and check it
assert HEADER.size == HEADER_SIZE


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id the vocabulary can produce fits, else uint32."""
    return np.dtype("<u2") if vocab_size <= 0x10000 else np.dtype("<u4")


def record_name(path: str | os.PathLike) -> str:
    """A BED file's record name: its file name without `.bed`, `.bed.gz` or `.gz`.

    By string operations rather than `Path(path).name`, which costs ten times as much: every
    Snakemake process of the workflow names each of its 100,000+ BED inputs (plan.bed_rows)."""
    name = os.path.basename(os.fspath(path).rstrip("/"))
    for suffix in (".bed.gz", ".gz", ".bed"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


class ShardWriter:
    """Stream records into a new shard; nothing appears at `path` until `close()` succeeds.

    Use as a context manager: leaving the block with an exception discards everything written.
    """

    def __init__(self, path: str | os.PathLike, vocab_size: int, fingerprint: str | None, meta: ShardMeta | None = None):
        self.path = Path(path)
        self.meta = meta
        self.vocab_size = int(vocab_size)
        self.fingerprint = bytes.fromhex(fingerprint) if fingerprint else bytes(32)
        if len(self.fingerprint) != 32:
            raise ValueError("fingerprint must be a sha256 hex digest")
        self.dtype = token_dtype(self.vocab_size)
        self._lengths: list[np.ndarray] = []
        self._names: list[str] = []
        self._labels: list[str | None] = []
        self._n_tokens = 0
        self._crc = 0
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._fh = self._stack.enter_context(open(tmp, "wb"))
        self._fh.write(bytes(HEADER_SIZE))

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._stack.__exit__(exc_type, exc, tb)

    def add(self, name: str, tokens: np.ndarray, label: str | None = None) -> None:
        tokens = np.asarray(tokens)
        self.add_batch([name], tokens, np.array([tokens.size]), None if label is None else [label])

    def add_batch(
        self,
        names: Sequence[str],
        tokens: np.ndarray,
        lengths: np.ndarray,
        labels: Sequence[str | None] | None = None,
    ) -> None:
        """Append len(names) records whose tokens are concatenated in `tokens`."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.size != len(names) or int(lengths.sum()) != np.size(tokens):
            raise ValueError("names, lengths and tokens disagree")
        if np.size(tokens) and (np.min(tokens) < 0 or np.max(tokens) >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}) for this vocabulary")
        data = memoryview(np.ascontiguousarray(tokens, dtype=self.dtype)).cast("B")  # no extra copy
        self._fh.write(data)
        self._crc = zlib.crc32(data, self._crc)
        self._n_tokens += int(lengths.sum())
        self._lengths.append(lengths)
        self._names.extend(str(n) for n in names)
        self._labels.extend(labels if labels is not None else [None] * len(names))

    def close(self) -> Path:
        """Write the index, names, labels and header, then move the file into place. A failure (a
        disk that fills while the tables are written) discards the file, as one in `add` does."""
        try:
            self._write_tables()
        except BaseException:
            if not self._stack.__exit__(*sys.exc_info()):  # atomic_path turns a full disk into one line
                raise
        else:
            self._stack.close()
        return self.path

    def _write_tables(self) -> None:
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        offsets = np.concatenate(([0], np.cumsum(lengths))).astype("<u8")
        tokens_end = HEADER_SIZE + self._n_tokens * self.dtype.itemsize
        pad = -tokens_end % 8
        self._fh.write(bytes(pad))
        offsets_at = tokens_end + pad
        offsets_bytes = offsets.tobytes()
        names_bytes = _pack_strings(self._names)
        has_labels = any(label is not None for label in self._labels)
        labels_bytes = _pack_strings(["" if x is None else str(x) for x in self._labels]) if has_labels else b""
        names_at = offsets_at + len(offsets_bytes)
        labels_at = names_at + len(names_bytes) if has_labels else 0
        meta_bytes = self.meta.to_bytes() if self.meta is not None else b""
        for part in (offsets_bytes, names_bytes, labels_bytes, meta_bytes):
            self._fh.write(part)
        file_size = names_at + len(names_bytes) + len(labels_bytes) + len(meta_bytes)
        flags = (FLAG_LABELS if has_labels else 0) | (FLAG_META if self.meta is not None else 0)
        fields = (
            MAGIC, KIND_SHARD, VERSION, self.dtype.itemsize, flags,
            len(self._names), self._n_tokens, self.vocab_size, self.fingerprint,
            HEADER_SIZE, offsets_at, names_at, labels_at, file_size,
            self._crc, zlib.crc32(offsets_bytes), zlib.crc32(meta_bytes, zlib.crc32(names_bytes + labels_bytes)),
            len(meta_bytes), zlib.crc32(meta_bytes),
        )
        head = HEADER.pack(*fields, 0)
        head = HEADER.pack(*fields, zlib.crc32(head[:-4]))
        self._fh.seek(0)
        self._fh.write(head)
        self._fh.flush()


def write_shard(
    path: str | os.PathLike,
    records: Iterable[tuple[str, np.ndarray] | tuple[str, np.ndarray, str | None]],
    vocab_size: int,
    fingerprint: str | None,
    meta: ShardMeta | None = None,
) -> Path:
    """Write (name, tokens[, label]) records to a new shard at `path`, atomically."""
    with ShardWriter(path, vocab_size, fingerprint, meta) as writer:
        for name, tokens, *label in records:
            writer.add(name, tokens, label[0] if label else None)
    return writer.path


def _pack_strings(items: Sequence[str]) -> bytes:
    encoded = [s.encode("utf-8") for s in items]
    ends = np.cumsum([len(b) for b in encoded], dtype=np.int64) if encoded else np.zeros(0, np.int64)
    return np.concatenate(([0], ends)).astype("<u8").tobytes() + b"".join(encoded)


class ShardReader:
    """Read-only, memory-mapped access to a shard (or a gtars single-record `.gtok` file).

    Opening validates the header and the index against the file's length; `verify()` also checks
    the checksums of every byte. Every error names the file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._name = describe(path)
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        except FileNotFoundError:
            raise ShardFormatError(f"{self._name}: no such shard file.") from None
        except IsADirectoryError:
            raise ShardFormatError(f"{self._name}: is a folder, not a .gtok shard; give the shards in it "
                                   f"({os.path.join(self._name, '*.gtok')}), or a manifest (.json).") from None
        except OSError as exc:
            raise ShardFormatError(f"{self._name}: cannot read the shard ({exc.strerror}).") from None
        self._size = size
        if size < 5 or bytes(self._map[:4]) != MAGIC:
            self._refuse_another_kind(bytes(self._map[:8]))
        kind = self._map[4]
        if kind in GTARS_FLAGS:
            self._open_gtars(GTARS_FLAGS[kind])
        elif kind == KIND_SHARD:
            self._open_shard()
        else:
            self._fail(f"unknown .gtok variant (byte 4 is {kind:#04x})")

    # -- opening --------------------------------------------------------------------------------

    def _refuse_another_kind(self, head: bytes) -> NoReturn:
        """A file that is not a shard: one of another kind (a checkpoint, a BED file, an .h5ad) is
        named as what it is, since re-creating it would not help; an empty one was cut short."""
        kind = kind_of_file(head)
        if kind == "an empty file":
            self._fail("is an empty file, not a .gtok shard (a shard cut short?)")
        if kind is None or kind == "a .gtok shard":
            self._fail("not a .gtok file (the magic bytes 'GTOK' are missing)")
        raise ShardFormatError(f"{self._name}: is {kind}, not a .gtok shard; give a shard that 'gtok tokenize' wrote, or "
                               "a manifest (.json).")

    def _fail(self, what: str) -> NoReturn:
        raise ShardFormatError(self._problem(what))

    def _problem(self, what: str) -> str:
        return f"{self._name}: {what}. Re-create it (e.g. rerun the tokenization job)."

    def _open_gtars(self, dtype: np.dtype) -> None:
        body = self._size - 5
        if body % dtype.itemsize:
            self._fail(f"gtars token file is truncated ({body} token bytes is not a multiple of {dtype.itemsize})")
        self.version, self.dtype, self.vocab_size, self._fingerprint = 0, dtype, None, None
        self.meta, self.header_crc = None, None
        self.tokens = np.frombuffer(self._map, dtype=dtype, offset=5)
        self.offsets = np.array([0, self.tokens.size], dtype=np.uint64)
        self._names: list[str] | None = [record_name(self.path.name.removesuffix(".gtok"))]
        self._labels: list[str | None] | None = None
        self._crcs = None
        self._names_at = self._labels_at = 0

    def _open_shard(self) -> None:
        if self._size < HEADER_SIZE:
            self._fail(f"truncated: {self._size} bytes is shorter than the {HEADER_SIZE}-byte header")
        (_, _, version, itemsize, flags, n_records, n_tokens, vocab_size, fp, tokens_at, offsets_at,
         names_at, labels_at, file_size, crc_tok, crc_off, crc_tables, meta_len, crc_metadata,
         crc_head) = HEADER.unpack_from(self._map)
        if version != VERSION:
            self._fail(f"format version {version} is not supported (this gtok reads version {VERSION})")
        if zlib.crc32(self._map[: HEADER_SIZE - 4]) != crc_head:
            self._fail("the header is corrupt (checksum mismatch)")
        if file_size != self._size:
            self._fail(f"truncated or padded: the header says {file_size} bytes, the file has {self._size}")
        if itemsize not in (2, 4):
            self._fail(f"unsupported token width of {itemsize} bytes")
        if flags & ~(FLAG_LABELS | FLAG_META):  # a reader refuses what it does not understand
            self._fail(f"unknown flags 0x{flags & ~(FLAG_LABELS | FLAG_META):02x} in the header (a newer gtok wrote it?)")
        self.version, self.dtype, self.vocab_size = version, np.dtype(f"<u{itemsize}"), int(vocab_size)
        self._fingerprint = fp.hex() if any(fp) else None
        tokens_end = tokens_at + n_tokens * itemsize
        if not (tokens_at == HEADER_SIZE and offsets_at == tokens_end + (-tokens_end % 8)
                and offsets_at + 8 * (n_records + 1) == names_at <= file_size):
            self._fail("the section table does not fit the file")
        if any(self._map[tokens_end:offsets_at]):  # the only bytes no checksum covers: must be zero
            self._fail("the alignment padding after the token data is not zero (the file is damaged)")
        self.tokens = np.frombuffer(self._map, dtype=self.dtype, count=n_tokens, offset=tokens_at)
        self.offsets = np.frombuffer(self._map, dtype="<u8", count=n_records + 1, offset=offsets_at)
        if self.offsets[0] != 0 or self.offsets[-1] != n_tokens or np.any(np.diff(self.offsets.view(np.int64)) < 0):
            self._fail("the record index is corrupt")
        self._names_at, self._labels_at = names_at, labels_at if flags & FLAG_LABELS else 0
        self._names = self._labels = None
        self._crcs = (crc_tok, crc_off, crc_tables, tokens_at, offsets_at, names_at)
        self.header_crc = crc_head
        if not flags & FLAG_META and (meta_len or crc_metadata):
            self._fail("the header's reserved bytes are not zero (the file is damaged)")
        table_at = self._names_at  # the tables follow each other without gaps (docs/format.md)
        for at in (self._names_at, self._labels_at) if self._labels_at else (self._names_at,):
            if at != table_at:
                self._fail("the names, labels and metadata sections do not fit the file")
            ends, blob_at = self._string_table(at)  # checks the table's structure now; its text is decoded on use
            table_at = blob_at + int(ends[-1])
        if table_at != file_size - meta_len:  # the last table ends where the metadata starts
            self._fail("the names, labels and metadata sections do not fit the file")
        self.meta = self._read_meta(file_size - meta_len, crc_metadata) if flags & FLAG_META else None

    def _read_meta(self, at: int, crc: int) -> ShardMeta:
        """The metadata section, checked against its own CRC (it is small: checked at every opening)."""
        raw = bytes(self._map[at : self._size])
        if zlib.crc32(raw) != crc:
            self._fail("the metadata section is corrupt (checksum mismatch)")
        try:
            return ShardMeta.from_bytes(raw)
        except ValueError as exc:
            self._fail(f"the metadata section is malformed ({exc})")

    def _string_table(self, at: int) -> tuple[np.ndarray, int]:
        """The byte ends of a names or labels table and where its text starts, checked."""
        n = len(self)
        if at + 8 * (n + 1) > self._size:
            self._fail("the names or labels table is corrupt")
        ends = np.frombuffer(self._map, dtype="<u8", count=n + 1, offset=at)
        blob_at = at + 8 * (n + 1)
        if ends[0] != 0 or np.any(np.diff(ends.view(np.int64)) < 0) or blob_at + int(ends[-1]) > self._size:
            self._fail("the names or labels table is corrupt")
        return ends, blob_at

    def _read_strings(self, at: int) -> list[str]:
        ends, blob_at = self._string_table(at)
        blob = bytes(self._map[blob_at : blob_at + int(ends[-1])])
        e = ends.tolist()
        if blob.isascii():  # byte offsets are character offsets: one decode, then slices (1.5x faster)
            text = blob.decode("ascii")
            return [text[a:b] for a, b in zip(e, e[1:])]
        try:
            return [blob[a:b].decode("utf-8") for a, b in zip(e, e[1:])]
        except UnicodeDecodeError:
            self._fail("a record name or label is not valid UTF-8")

    # -- access ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"record {i} out of range for {self._name} ({n} records)")
        i %= n
        return self.tokens[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets).astype(np.int64)

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.size)

    @property
    def max_id(self) -> int:
        """The largest token id (-1 without tokens): one read of the tokens, faster than the CRCs.
        For what the writer did not check: gtars files, and shards whose bytes were not verified."""
        return int(self.tokens.max()) if self.tokens.size else -1

    @property
    def dataset(self) -> str | None:
        """The dataset its metadata names; None without metadata (older shards, gtars files)."""
        return self.meta.dataset if self.meta is not None else None

    @property
    def universe(self) -> UniverseRecord | None:
        """The universe its metadata records, its paths absolute (recorded relative to the shard);
        None without metadata or a universe in it (older shards, gtars files)."""
        recorded = self.meta.universe if self.meta is not None else None
        return None if recorded is None else recorded.resolved(self.path.absolute().parent)

    @property
    def fingerprint(self) -> str | None:
        """The tokenizer's vocabulary fingerprint; None for gtars files, which do not record one."""
        return self._fingerprint

    @property
    def names(self) -> list[str]:
        if self._names is None:
            self._names = self._read_strings(self._names_at)
        return self._names

    def name_table(self) -> tuple[np.ndarray, np.ndarray]:
        """The record names as UTF-8 bytes, undecoded: (n + 1 byte ends as int64, the bytes as a
        uint8 view of the file), for checks over millions of names (`gtok.formats.names`)."""
        if self._crcs is None:  # a gtars file: its one name is its file name
            raw = np.frombuffer(self.names[0].encode(), dtype=np.uint8)
            return np.array([0, raw.size], dtype=np.int64), raw
        ends, blob_at = self._string_table(self._names_at)
        return ends.astype(np.int64), np.frombuffer(self._map, dtype=np.uint8, count=int(ends[-1]), offset=blob_at)

    @property
    def labels(self) -> list[str | None] | None:
        """Per-record labels, None when the shard has none; unlabeled records read as None."""
        if self._labels is None and self._labels_at:
            self._labels = [x or None for x in self._read_strings(self._labels_at)]
        return self._labels

    def verify(self, sha256: bool = False) -> str | None:
        """Check every byte against the stored checksums (a full read of the file; gtars files have
        none), raising at the first mismatch. With `sha256`, also return the file's SHA-256, from
        the same read: what a manifest records of a shard it has checked."""
        problems, digest = self.check_bytes(sha256)
        if problems:
            raise ShardFormatError(problems[0])
        return digest

    def check_bytes(self, sha256: bool = False) -> tuple[list[str], str | None]:
        """`verify` that reports instead of raising: a sentence for each section whose bytes do not
        match its checksum, and with `sha256` the file's SHA-256, from one full read."""
        sections = self._checked_sections()
        digest = hashlib.sha256() if sha256 else None
        crcs = [0] * len(sections)
        spans = [(0, self._size)] if digest else [(lo, hi) for _, lo, hi, _ in sections]
        with memoryview(self._map) as view:  # slices of it are not copies
            for start, stop in spans:
                for a in range(start, stop, _STEP):
                    b = min(stop, a + _STEP)
                    if digest:
                        digest.update(view[a:b])
                    for i, (_, lo, hi, _) in enumerate(sections):
                        if lo < b and a < hi:
                            crcs[i] = zlib.crc32(view[max(a, lo) : min(b, hi)], crcs[i])
        problems = [self._problem(f"the {what} is corrupt (checksum mismatch)")
                    for (what, _, _, crc), found in zip(sections, crcs) if found != crc]
        return problems, digest.hexdigest() if digest else None

    def _checked_sections(self) -> list[tuple[str, int, int, int]]:
        """(what, first byte, end, CRC-32) of each checksummed section; none in a gtars file."""
        if self._crcs is None:
            return []
        crc_tok, crc_off, crc_tables, tokens_at, offsets_at, names_at = self._crcs
        tokens_end = tokens_at + self.n_tokens * self.dtype.itemsize
        return [("token data", tokens_at, tokens_end, crc_tok), ("record index", offsets_at, names_at, crc_off),
                ("names and labels", names_at, self._size, crc_tables)]

    # Readers travel to DataLoader workers by path and are mapped again there.
    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __repr__(self) -> str:
        return f"ShardReader({self._name!r}, records={len(self)}, tokens={self.n_tokens}, dtype={self.dtype.name})"
