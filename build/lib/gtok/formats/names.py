"""Record names unique across the shards of a manifest, checked for millions of names in a second.

Splits, evaluation and embeddings tell records apart by name, so `gtok manifest` and `gtok verify`
refuse a name that two records share, in one shard or in two. Building a Python set of a million
decoded names costs about two seconds and 100 MB; instead each name is hashed to 64 bits straight
from the bytes of its shard's names table, vectorized (a polynomial hash: prefix sums of
byte x P**position, wrapping modulo 2**64, differenced at the name's ends and shifted back by
P**-start, P being odd and so invertible modulo 2**64). Equal names always hash equal; the rare
pairs of equal hashes are then compared byte for byte, so a collision never refuses a manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gtok.errors import describe
from gtok.formats.shard import ShardReader

_P = 0x100000001B3  # the 64-bit FNV prime; odd, so it has an inverse modulo 2**64
_P_INV = pow(_P, -1, 2**64)
CHUNK = 1 << 16  # names hashed at a time

HOW_TO_FIX = ("record names must be unique in a manifest (splits and embeddings tell records apart by name): rename "
              "the inputs (e.g. give each sample's cells a prefix) and tokenize them again, or leave one of the shards out.")


def name_hashes(ends: np.ndarray, blob: np.ndarray) -> np.ndarray:
    """A uint64 hash of each name blob[ends[i]:ends[i+1]] (bytes), in one vectorized pass."""
    powers, inverse = _powers(blob.size)
    prefix = np.concatenate(([np.uint64(0)], np.cumsum((blob.astype(np.uint64) + np.uint64(1)) * powers[1 : blob.size + 1])))
    starts, stops = ends[:-1], ends[1:]
    return (prefix[stops] - prefix[starts]) * inverse[starts]


_POWERS: list[np.ndarray] = [np.ones(1, np.uint64), np.ones(1, np.uint64)]


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(P**k, P**-k) for k = 0..n at least, wrapping modulo 2**64; computed once, grown by doubling."""
    if _POWERS[0].size <= n:
        size = max(n + 1, 2 * _POWERS[0].size)
        for i, base in enumerate((_P, _P_INV)):
            _POWERS[i] = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, base, dtype=np.uint64))))
    return _POWERS[0], _POWERS[1]


class UniqueNames:
    """The names of shard after shard (`add`), then the first name two records share (`problem`)."""

    def __init__(self) -> None:
        self._paths: list[Path] = []
        self._hashes: list[np.ndarray] = []

    def add(self, reader: ShardReader) -> None:
        """Hash a shard's names, `CHUNK` at a time (the hash's work arrays take 24 bytes per name byte)."""
        ends, blob = reader.name_table()
        parts = [name_hashes(ends[lo : lo + CHUNK + 1] - ends[lo], blob[ends[lo] : ends[min(lo + CHUNK, len(ends) - 1)]])
                 for lo in range(0, len(ends) - 1, CHUNK)]
        self._paths.append(reader.path)
        self._hashes.append(np.concatenate(parts) if parts else np.zeros(0, np.uint64))

    def problem(self) -> str | None:
        """One sentence naming a repeated record name and its shards (or records), or None."""
        if not self._hashes:
            return None
        hashes = np.concatenate(self._hashes)
        shard = np.repeat(np.arange(len(self._hashes)), [h.size for h in self._hashes])
        record = np.concatenate([np.arange(h.size) for h in self._hashes])
        order = np.argsort(hashes)  # equal hashes side by side
        sorted_hashes = hashes[order]
        repeats = np.flatnonzero(sorted_hashes[1:] == sorted_hashes[:-1])
        starts = repeats[np.diff(repeats, prepend=-2) > 1]  # the first of each run of equal hashes
        for lo in starts.tolist():
            seen: dict[bytes, tuple[int, int]] = {}
            hi = np.searchsorted(sorted_hashes, sorted_hashes[lo], side="right")
            for i in sorted(order[lo:hi].tolist()):  # in shard and record order
                key, name = (int(shard[i]), int(record[i])), self._name(shard[i], record[i])
                if name in seen:
                    return self._repeated(name.decode("utf-8", "replace"), seen[name], key)
                seen[name] = key
        return None

    def _name(self, shard: int, record: int) -> bytes:
        ends, blob = ShardReader(self._paths[shard]).name_table()
        return blob[ends[record] : ends[record + 1]].tobytes()

    def _repeated(self, name: str, a: tuple[int, int], b: tuple[int, int]) -> str:
        if a[0] == b[0]:
            return f"{describe(self._paths[a[0]])}: record name {name!r} is used by records {a[1]} and {b[1]}; {HOW_TO_FIX}"
        return f"record name {name!r} is in both {describe(self._paths[a[0]])} and {describe(self._paths[b[0]])}; {HOW_TO_FIX}"
