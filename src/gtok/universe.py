"""The universe: the vocabulary of regions, and vectorized overlap queries against it.

Overlap search without a tree: universe regions are grouped by length class (the bit length of
their length). Within one class every region is at most `maxlen` long, so a region overlapping a
query [s, e) must start in (s - maxlen, e); two `searchsorted` calls bound the candidates, and one
comparison of ends filters them. Very long regions therefore cost nothing to the short ones, and
the work stays proportional to the answer.

Positions are folded with the chromosome into one int64 key (`code << 34 | position`), so a whole
genome is one sorted array per class and queries of all chromosomes go through in one call.
Chromosome codes follow the byte order of the names, the order gtars sorts a BED file in, so the
queries of a file arrive as increasing keys and `searchsorted` walks the arrays in cache order.

Fragment files use the same search one fragment at a time, compiled (`overlap_kernel`, over
`search_arrays`, with the same key layout); numba is imported only when it is first used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gtok.errors import GtokError, describe
from gtok.formats.index import (
    IndexFormatError,
    index_error,
    is_index,
    read_index,
    write_index,
)
from gtok.paths import make_folder
from gtok.sources.bed import Intervals, parse_bed_bytes, read_bytes

POS_BITS = 34  # positions up to 17 Gbp (parsers accept up to 2**32 - 1); chromosome codes take the bits above


@dataclass(frozen=True)
class _LengthClass:
    start_keys: np.ndarray  # sorted
    end_keys: np.ndarray
    ranks: np.ndarray  # rank of each region in (chrom, start, end) order
    maxlen: int


@dataclass(frozen=True)
class IndexPlan:
    """What the overlap index is built from; cached, since computing it needs sorts."""

    rank_to_id: np.ndarray  # token ids in (chrom, start, end) order
    class_order: np.ndarray  # positions in rank order, grouped by length class
    class_bounds: np.ndarray  # class k is class_order[bounds[k]:bounds[k+1]]


class Universe:
    """Unique universe regions in first-appearance order: region i has token id i."""

    def __init__(self, chrom_names, codes, starts, ends, plan: IndexPlan | None = None):
        self.chrom_names = tuple(chrom_names)
        self.codes = np.ascontiguousarray(codes, dtype=np.int32)
        self.starts = np.ascontiguousarray(starts, dtype=np.int64)
        self.ends = np.ascontiguousarray(ends, dtype=np.int64)
        self._code_of = {name: i for i, name in enumerate(self.chrom_names)}
        self._plan = plan or self._make_plan()
        self._classes = self._build_classes(self._plan)
        self._fingerprint: str | None = None
        self.duplicate_lines = 0  # dropped by from_intervals (a universe loaded from an index does not know)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_intervals(cls, intervals: Intervals, source: str = "universe") -> "Universe":
        """Deduplicate (first occurrence wins) and number chromosomes in byte order of their names."""
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
        used = np.unique(unique.codes)
        names = sorted((intervals.chrom_names[c] for c in used), key=str.encode)
        recode = np.zeros(len(intervals.chrom_names), dtype=np.int32)
        old_code = {n: i for i, n in enumerate(intervals.chrom_names)}
        recode[[old_code[n] for n in names]] = np.arange(len(names), dtype=np.int32)
        universe = cls(names, recode[unique.codes], unique.starts, unique.ends)
        universe.duplicate_lines = int((~keep).sum())
        return universe

    @classmethod
    def from_bed(cls, path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> "Universe":
        """Load a universe BED (or an index file written by `gtok index`), through a binary cache
        keyed by the file's content when one is usable.

        The cache makes repeated loads of a large universe (one per tokenization job) cost a hash
        and a read instead of a text parse and sorts. It cannot go stale, its name being the
        content hash, and a damaged entry is detected by its checksums and rebuilt. `cache_dir`
        (or $GTOK_CACHE_DIR) chooses its folder; "off" disables it.
        """
        if is_index(path):
            return cls.from_index(path)[0]
        raw = universe_text(path)
        digest = hashlib.sha256(raw).hexdigest()
        cache = _cache_path(digest, cache_dir)
        if cache is not None and cache.is_file():
            try:
                universe, source = cls.from_index(cache)
                if source == digest:
                    return universe
            except IndexFormatError:
                pass  # a damaged cache entry: rebuilt below
        universe = cls.from_text(raw, os.fspath(path))
        if cache is not None and (cache.is_file() or not cache.exists()):  # a folder in its place is left alone
            with contextlib.suppress(GtokError, OSError):  # a cache is an optimisation: a read-only disk must not fail
                make_folder(cache.parent)
                write_index(cache, list(universe.chrom_names), universe.index_arrays(), universe.fingerprint, digest)
        return universe

    @classmethod
    def from_index(cls, path: str | os.PathLike) -> tuple["Universe", str]:
        """The universe of an index file, and the sha256 of the BED it was built from. The
        fingerprint is recomputed from the loaded regions: a mismatch means a damaged file."""
        content = read_index(path)
        a = content.arrays
        try:
            plan = IndexPlan(a["rank_to_id"], a["class_order"], a["class_bounds"])
            universe = cls(content.names, a["codes"], a["starts"], a["ends"], plan=plan)
        except (ValueError, IndexError) as exc:
            index_error(describe(path), f"its arrays are inconsistent ({exc})")
        if universe.fingerprint != content.fingerprint:
            index_error(describe(path), "the vocabulary it holds does not match its recorded fingerprint")
        return universe, content.source_sha256

    @classmethod
    def from_text(cls, raw: bytes, source: str) -> "Universe":
        """Parse universe BED text (already decompressed); `source` names it in messages."""
        intervals = parse_bed_bytes(raw, source)
        if len(intervals) == 0:
            raise GtokError(f"{source}: the universe has no regions.")
        return cls.from_intervals(intervals, source)

    def index_arrays(self) -> dict[str, np.ndarray]:
        """The arrays an index file stores: the regions and the search plan built from them."""
        return {
            "codes": self.codes, "starts": self.starts, "ends": self.ends,
            "rank_to_id": self._plan.rank_to_id, "class_order": self._plan.class_order,
            "class_bounds": self._plan.class_bounds,
        }

    def _make_plan(self) -> IndexPlan:
        rank_to_id = np.lexsort((self.ends, self.starts, self.codes))
        lengths = (self.ends - self.starts)[rank_to_id]
        bits = np.zeros(lengths.size, dtype=np.int64)
        positive = lengths > 0
        bits[positive] = np.floor(np.log2(lengths[positive])).astype(np.int64) + 1
        group = _merge_length_classes(bits, lengths, self._span())
        class_order = np.lexsort((np.arange(bits.size), group[bits]))  # rank order within a group
        bounds = np.searchsorted(group[bits][class_order], np.arange(group.max(initial=0) + 2))
        return IndexPlan(rank_to_id, class_order, np.unique(bounds))

    def _span(self) -> float:
        """Base pairs the universe spans (sum over chromosomes of the last end): for density."""
        last_end = np.zeros(len(self.chrom_names), dtype=np.int64)
        np.maximum.at(last_end, self.codes, self.ends)
        return float(max(last_end.sum(), 1))

    def _build_classes(self, plan: IndexPlan) -> list[_LengthClass]:
        classes = []
        for lo, hi in zip(plan.class_bounds[:-1], plan.class_bounds[1:]):
            ranks = plan.class_order[lo:hi]
            ids = plan.rank_to_id[ranks]
            classes.append(
                _LengthClass(
                    start_keys=self._key(self.codes[ids], self.starts[ids]),
                    end_keys=self._key(self.codes[ids], self.ends[ids]),
                    ranks=ranks,
                    maxlen=int((self.ends[ids] - self.starts[ids]).max()),
                )
            )
        return classes

    def search_arrays(self) -> tuple[np.ndarray, ...]:
        """The length classes as flat arrays, for a compiled search that walks them like
        `overlaps` does: start keys, end keys, ranks, class bounds, class maxlen, rank_to_id."""
        cat = (lambda arrays: np.concatenate(arrays) if arrays else np.zeros(0, np.int64))  # noqa: E731
        sizes = [c.start_keys.size for c in self._classes]
        return (
            cat([c.start_keys for c in self._classes]),
            cat([c.end_keys for c in self._classes]),
            cat([c.ranks for c in self._classes]).astype(np.int64),
            np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
            np.array([c.maxlen for c in self._classes], dtype=np.int64),
            self._plan.rank_to_id.astype(np.int64),
        )

    @staticmethod
    def _key(codes: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return (codes.astype(np.int64) << POS_BITS) | positions

    # -- vocabulary ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.codes.size)

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical vocabulary: equal iff every id maps to the same region."""
        if self._fingerprint is None:
            h = hashlib.sha256(b"gtok-vocabulary-v1\0")
            h.update("\0".join(self.chrom_names).encode() + b"\0\0")
            for arr in (self.codes.astype("<i4"), self.starts.astype("<i8"), self.ends.astype("<i8")):
                h.update(arr.tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def shares_chromosomes(self, names) -> bool:
        """Whether any of the chromosome `names` is one of the universe's."""
        return any(n in self._code_of for n in names)

    def foreign_input(self, names, source: str) -> str | None:
        """A one-line warning for an input none of whose chromosomes (`names`, the input's, not
        per region) is in the universe: gtars gives every region `<unk>` without a word, and the
        usual cause is a naming mismatch (`1` vs `chr1`). None when they share one, or when the
        input has no chromosome at all."""
        if not len(names) or self.shares_chromosomes(names):
            return None
        return (f"{source}: none of its chromosomes ({_few(names)}) is in the universe ({_few(self.chrom_names)}), "
                "so all its tokens are <unk>; are the chromosomes named differently (1 vs chr1)?")

    def region_names(self, ids) -> list[str]:
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
        if len(self._classes) > 1:  # one class is already in (query, rank) order
            order = np.argsort(q * len(self) + rank)
            q, rank = q[order], rank[order]
        return q, self._plan.rank_to_id[rank]


# -- the compiled search of fragment files ------------------------------------------------------


def overlap_kernel():
    """`_overlap` compiled (gtok.kernels: the ahead-of-time module, else numba's JIT), on first use:
    numba is imported by the fragment files that need it, never by a BED file's tokenizing."""
    _compile("_gallop", nogil=True, cache=True, inline="always")  # first: _overlap's compilation binds it
    return _compile("_overlap", nogil=True, cache=True)


def _compile(name: str, **options):
    """The kernel `name` of this module, compiled once; it then stands in its place here."""
    fn = globals()[name]
    if hasattr(fn, "py_func"):  # a numba dispatcher or a gtok.kernels.Kernel already
        return fn
    from gtok.kernels import kernel

    compiled = globals()[name] = kernel(**options)(fn)
    return compiled


def _overlap(chroms, starts, ends, start_keys, end_keys, ranks, bounds, maxlen, rank_to_id, unk, out, counts):
    """Universe.overlaps for one fragment at a time; -1 when `out` is too small (compiled by
    overlap_kernel, with the length classes of `search_arrays`).

    Fragments come sorted by position, so each search starts from where the previous fragment's
    ended (a galloping search), which costs a few comparisons instead of a full binary search."""
    n = 0
    hits = np.empty(64, np.int64)
    n_classes = bounds.size - 1
    lo_at = bounds[:-1].copy()
    hi_at = bounds[:-1].copy()
    for i in range(chroms.size):
        m = 0
        if chroms[i] >= 0:
            q_start = (np.int64(chroms[i]) << POS_BITS) | starts[i]
            q_end = (np.int64(chroms[i]) << POS_BITS) | ends[i]
            for k in range(n_classes):
                lo = _gallop(start_keys, bounds[k], bounds[k + 1], q_start - maxlen[k] + 1, lo_at[k])
                hi = _gallop(start_keys, bounds[k], bounds[k + 1], q_end, hi_at[k])
                lo_at[k] = lo
                hi_at[k] = hi
                for j in range(lo, hi):
                    if end_keys[j] > q_start:
                        if m == hits.size:
                            hits = np.concatenate((hits, np.empty(m, np.int64)))
                        hits[m] = ranks[j]
                        m += 1
            if n_classes > 1:
                hits[:m].sort()
        if n + max(m, 1) > out.size:
            return -1
        if m == 0:
            out[n] = unk
            n += 1
        for j in range(m):
            out[n] = rank_to_id[hits[j]]
            n += 1
        counts[i] = max(m, 1)
    return n


def _gallop(keys, first, last, x, hint):
    """The first index in [first, last) whose key is >= x (searchsorted, side left), searched by
    doubling steps from `hint` in the direction of the answer, then bisection."""
    if hint > first and keys[hint - 1] >= x:  # the answer lies before the hint
        lo, hi, step = hint - 1, hint - 1, 1
        while lo > first and keys[lo - 1] >= x:
            hi = lo - 1
            lo = max(first, lo - step)
            step *= 2
        return lo + np.searchsorted(keys[lo:hi], x)
    lo, hi, step = hint, hint, 1
    while hi < last and keys[hi] < x:
        lo = hi + 1
        hi = min(last, hi + step)
        step *= 2
    return lo + np.searchsorted(keys[lo:hi], x)



#: A length class costs two binary searches per query; merging two classes instead costs the
#: extra candidates that the wider search window lets in. Merge while those stay below this many
#: per query (a candidate costs about a tenth of a binary search).
_MERGE_BUDGET = 4.0


def _merge_length_classes(bits: np.ndarray, lengths: np.ndarray, span: float) -> np.ndarray:
    """Map each bit-length class to a search group, merging neighbours where that is cheaper.

    The expected wasted candidates of a group with longest region M are
    sum(count_i * M - total_length_i) / span over its classes: regions shorter than M are searched
    as if they were M long.
    """
    n_bits = int(bits.max(initial=0)) + 1
    count = np.bincount(bits, minlength=n_bits).astype(float)
    total = np.bincount(bits, weights=lengths, minlength=n_bits)
    longest = np.zeros(n_bits)
    np.maximum.at(longest, bits, lengths)
    group = np.zeros(n_bits, dtype=np.int64)
    g, g_count, g_total, g_longest = 0, 0.0, 0.0, 0.0
    for b in np.flatnonzero(count):
        merged_waste = ((g_count + count[b]) * longest[b] - g_total - total[b]) / span
        apart_waste = (g_count * g_longest - g_total + count[b] * longest[b] - total[b]) / span
        if g_count and merged_waste - apart_waste > _MERGE_BUDGET:
            g, g_count, g_total = g + 1, 0.0, 0.0
        group[b] = g
        g_count, g_total, g_longest = g_count + count[b], g_total + total[b], longest[b]
    return group


def _few(names, shown: int = 3) -> str:
    names = list(names)
    return ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")


def universe_text(path: str | os.PathLike) -> bytes:
    """A universe BED's text, decompressed (what its cache and an index are keyed by)."""
    return read_bytes(path, "universe BED")


def expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [lo[i], hi[i]): the owner i and the value of every element, flattened."""
    counts = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(lo.size), counts)
    first = np.cumsum(counts) - counts
    values = np.arange(owner.size) - np.repeat(first - lo, counts)
    return owner, values


def _cache_path(digest: str, cache_dir: str | os.PathLike | None) -> Path | None:
    """Where the index of a universe with content sha256 `digest` is cached, or None when off."""
    root = cache_dir or os.environ.get("GTOK_CACHE_DIR")
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "gtok")
    if str(root).lower() in ("0", "off", "none", ""):
        return None
    return Path(root) / f"universe-{digest[:32]}.gtokidx"
