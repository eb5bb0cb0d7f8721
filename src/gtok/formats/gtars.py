"""gtars' single-record `.gtok` files: b"GTOK", a flag byte for the token width, then the tokens.

`gtars.utils.write_tokens_to_gtok` writes one such file per record; `ShardReader` opens one as a
one-record shard, and `export_gtars_folder` writes a shard's records in this format, byte for byte
as gtars itself would.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gtok.atomic import atomic_path, staged_files
from gtok.formats.shard import MAGIC, ShardReader, record_name
from gtok.paths import has_magic, output_file, output_folder

#: Longest file stem taken from a record name, in bytes: with `.gtok`, a number for a repeated
#: name, and the hidden temporary name of an atomic write (`.NAME.XXXXXXXX.lock`, 15 bytes more),
#: it stays under the 255 bytes a file name may have.
MAX_STEM_BYTES = 200


def export_gtars_folder(reader: ShardReader, outdir: str | os.PathLike) -> list[tuple[str, str]]:
    """Write every record of `reader` as OUTDIR/NAME.gtok in gtars' format.

    File names must be unique, or one record would silently replace another: a name already
    taken (two BED files `a/s.bed` and `b/s.bed` are both record `s`) gets a number, `s-2.gtok`.
    A name that cannot be a file name as it is (`file_stem`) is made into one. Returns the
    (record name, file name) pairs whose file reads back under another name (numbered, made into a
    file name, or ending in .bed or .gz, which a reader takes off). A file in the way that is not a
    `.gtok` file is refused before anything is written, and so is a shard whose bytes fail their
    checksums: damaged tokens must not leave as clean-looking files.
    """
    reader.verify()
    folder = output_folder(outdir, "folder for the gtars files")
    files, renamed, taken = [], [], set()
    for name in reader.names:
        base = file_stem(name)
        stem, k = base, 1
        while stem in taken:
            k += 1
            stem = f"{base}-{k}"
        taken.add(stem)
        files.append(output_file(folder / f"{stem}.gtok", (".gtok",), [reader.path], is_gtars_file, "gtars .gtok file"))
        if record_name(stem) != name:  # the name the file reads back as (.bed and .gz are taken off it)
            renamed.append((name, files[-1].name))
    with staged_files(folder) as stage:  # a full disk half-way leaves the folder as it was
        for tokens, path in zip(reader, files):
            export_gtars(tokens, stage / path.name)
    return renamed


def is_gtars_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a gtars single-record file, which an export may replace; a gtok shard
    has the same magic, but its fifth byte is 'S', not a width flag."""
    return has_magic(MAGIC + b"\x01")(Path(path)) or has_magic(MAGIC + b"\x02")(Path(path))


def file_stem(name: str) -> str:
    """A record name as a file stem: `/` and NUL (which no file name may hold) become `_`, and so
    does a leading `.` (a hidden file, which a folder listing skips and a publication takes for
    a temporary), an empty name becomes `record`, and a name longer than `MAX_STEM_BYTES` in UTF-8
    is cut there (at a character boundary)."""
    stem = name.replace("/", "_").replace("\0", "_") or "record"
    if stem.startswith("."):
        stem = "_" + stem[1:]
    return stem.encode()[:MAX_STEM_BYTES].decode("utf-8", errors="ignore")


def export_gtars(tokens: np.ndarray, path: str | os.PathLike) -> Path:
    """Write one record as a gtars `.gtok` file: 'GTOK', a width flag, little-endian ids."""
    tokens = np.asarray(tokens)
    wide = tokens.size and int(tokens.max()) > 0xFFFF
    flag, dtype = (0x02, "<u4") if wide else (0x01, "<u2")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(MAGIC + bytes([flag]) + tokens.astype(dtype).tobytes())
    return Path(path)
