"""The universe: the vocabulary of regions, and vectorized overlap queries against it.

Overlap search without a tree: universe regions are grouped by length class (the bit length of
their length). Within one class every region is at most `maxlen` long, so a region overlapping a
query [s, e) must start in (s - maxlen, e); two `searchsorted` calls bound the candidates, and one
comparison of ends filters them. Very long regions therefore cost nothing to the short ones, and
the work stays proportional to the answer.

Positions are folded with the chromosome into one int64 key (`code << 34 | position`), so a whole
genome is one sorted array per class and queries of all chromosomes go through in one call.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gtok.atomic import atomic_path
from gtok.bed import Intervals, parse_bed_bytes, read_bytes
from gtok.errors import GtokError

_POS_BITS = 34  # positions up to 17 Gbp; chromosome codes take the bits above
_CACHE_VERSION = 1


@dataclass(frozen=True)
class _LengthClass:
    start_keys: np.ndarray  # sorted
    end_keys: np.ndarray
    ranks: np.ndarray  # rank of each region in (chrom, start, end) order
    maxlen: int


class Universe:
    """Unique universe regions in first-appearance order: region i has token id i."""

    def __init__(self, chrom_names: tuple[str, ...], codes: np.ndarray, starts: np.ndarray, ends: np.ndarray):
        self.chrom_names = tuple(chrom_names)
        self.codes = np.ascontiguousarray(codes, dtype=np.int32)
        self.starts = np.ascontiguousarray(starts, dtype=np.int64)
        self.ends = np.ascontiguousarray(ends, dtype=np.int64)
        self._code_of = {name: i for i, name in enumerate(self.chrom_names)}
        self._rank_to_id = np.lexsort((self.ends, self.starts, self.codes))
        self._classes = self._build_classes()

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_intervals(cls, intervals: Intervals, source: str = "universe") -> "Universe":
        """Deduplicate (first occurrence wins) and renumber chromosomes by first appearance."""
        order = np.lexsort((intervals.ends, intervals.starts, intervals.codes))
        a, b = order[1:], order[:-1]
        same = (
            (intervals.codes[a] == intervals.codes[b])
            & (intervals.starts[a] == intervals.starts[b])
            & (intervals.ends[a] == intervals.ends[b])
        )
        keep = np.ones(len(intervals), dtype=bool)
        keep[a[same]] = False  # lexsort is stable: the earlier line of a pair comes first
        if not keep.all():
            warnings.warn(
                f"{source}: {int((~keep).sum())} duplicate region line(s) ignored; each region keeps the id "
                "of its first line.",
                stacklevel=2,
            )
        unique = intervals.take(np.flatnonzero(keep))
        first_codes, first_pos = np.unique(unique.codes, return_index=True)
        appearance = first_codes[np.argsort(first_pos)]
        recode = np.empty(len(intervals.chrom_names), dtype=np.int32)
        recode[appearance] = np.arange(appearance.size, dtype=np.int32)
        names = tuple(intervals.chrom_names[c] for c in appearance)
        return cls(names, recode[unique.codes], unique.starts, unique.ends)

    @classmethod
    def from_bed(cls, path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> "Universe":
        """Load a universe BED, through a binary cache keyed by the file's content when one is usable.

        The cache makes repeated loads of a large universe (one per tokenization job) cost a hash
        and a memory copy instead of a text parse. It cannot go stale: its name is the content hash.
        """
        raw = read_bytes(path)
        cache = _cache_path(raw, cache_dir)
        if cache is not None and cache.exists():
            try:
                return cls._load_cache(cache)
            except (OSError, ValueError, KeyError):
                pass  # unreadable cache: rebuild it below
        intervals = parse_bed_bytes(raw, os.fspath(path))
        if len(intervals) == 0:
            raise GtokError(f"{os.fspath(path)}: the universe has no regions.")
        universe = cls.from_intervals(intervals, os.fspath(path))
        if cache is not None:
            universe._save_cache(cache)
        return universe

    def _save_cache(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    version=np.int64(_CACHE_VERSION),
                    names=np.array(self.chrom_names, dtype=str),
                    codes=self.codes,
                    starts=self.starts,
                    ends=self.ends,
                )
        except OSError:
            pass  # a cache is an optimisation; a read-only disk must not fail tokenization

    @classmethod
    def _load_cache(cls, path: Path) -> "Universe":
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != _CACHE_VERSION:
                raise ValueError("old cache")
            return cls(tuple(str(n) for n in z["names"]), z["codes"], z["starts"], z["ends"])

    def _build_classes(self) -> list[_LengthClass]:
        lengths = self.ends - self.starts
        bits = np.zeros(lengths.size, dtype=np.int64)
        positive = lengths > 0
        bits[positive] = np.floor(np.log2(lengths[positive])).astype(np.int64) + 1
        ranks = np.empty(len(self), dtype=np.int64)
        ranks[self._rank_to_id] = np.arange(len(self))
        classes = []
        for b in np.unique(bits):
            ids = self._rank_to_id[bits[self._rank_to_id] == b]  # already in key order
            classes.append(
                _LengthClass(
                    start_keys=self._key(self.codes[ids], self.starts[ids]),
                    end_keys=self._key(self.codes[ids], self.ends[ids]),
                    ranks=ranks[ids],
                    maxlen=int(lengths[ids].max()),
                )
            )
        return classes

    @staticmethod
    def _key(codes: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return (codes.astype(np.int64) << _POS_BITS) | positions

    # -- vocabulary ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.codes.size)

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical vocabulary: equal iff every id maps to the same region."""
        h = hashlib.sha256(b"gtok-vocabulary-v1\0")
        h.update("\0".join(self.chrom_names).encode() + b"\0\0")
        for arr in (self.codes.astype("<i4"), self.starts.astype("<i8"), self.ends.astype("<i8")):
            h.update(arr.tobytes())
        return h.hexdigest()

    def region_names(self, ids: np.ndarray) -> list[str]:
        return [f"{self.chrom_names[self.codes[i]]}:{self.starts[i]}-{self.ends[i]}" for i in ids]

    # -- queries ------------------------------------------------------------------------------

    def overlaps(self, query: Intervals) -> tuple[np.ndarray, np.ndarray]:
        """All (query index, token id) pairs with >= 1 bp overlap, in query order, then by the
        universe region's (start, end)."""
        qcodes = np.array([self._code_of.get(n, -1) for n in query.chrom_names], dtype=np.int64)
        codes = qcodes[query.codes] if len(query) else np.zeros(0, np.int64)
        known = np.flatnonzero(codes >= 0)
        q_start = self._key(codes[known], query.starts[known])
        q_end = self._key(codes[known], query.ends[known])
        hits_q, hits_rank = [], []
        for cls in self._classes:
            lo = np.searchsorted(cls.start_keys, q_start - cls.maxlen, side="right")
            hi = np.searchsorted(cls.start_keys, q_end, side="left")
            qi, cand = expand_ranges(lo, hi)
            match = cls.end_keys[cand] > q_start[qi]
            hits_q.append(known[qi[match]])
            hits_rank.append(cls.ranks[cand[match]])
        q = np.concatenate(hits_q) if hits_q else np.zeros(0, np.int64)
        rank = np.concatenate(hits_rank) if hits_rank else np.zeros(0, np.int64)
        order = np.argsort(q * len(self) + rank, kind="stable") if len(self._classes) > 1 else np.arange(q.size)
        return q[order], self._rank_to_id[rank[order]]


def expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [lo[i], hi[i]): the owner i and the value of every element, flattened."""
    counts = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(lo.size), counts)
    first = np.cumsum(counts) - counts
    values = np.arange(owner.size) - np.repeat(first - lo, counts)
    return owner, values


def _cache_path(raw: bytes, cache_dir: str | os.PathLike | None) -> Path | None:
    root = cache_dir or os.environ.get("GTOK_CACHE_DIR")
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "gtok")
    if str(root).lower() in ("0", "off", "none", ""):
        return None
    digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
    return Path(root) / f"universe-{digest}.npz"

