"""`GTokDataset`: `.gtok` shards streamed into PyTorch, split over DDP ranks and DataLoader workers.

Why it is built this way:

- Each epoch is planned up front from record lengths alone (numpy, no token reads): a permutation
  of the shards, a permutation of the records within each shard, an equal share per rank, and a
  contiguous slice of that share per worker. Equal shares keep DDP ranks in lock-step (a rank that
  runs out first would leave the others waiting in an all-reduce forever); contiguous slices keep
  each worker on one shard at a time, so reads stay local.
- The plan is a pure function of (seed, epoch, rank, worker), so a worker's whole position is two
  integers, (epoch, items yielded). That is the state `StatefulDataLoader` keeps per worker, and
  a resume in a new process skips straight to it without reading what came before.
- Per record the hot path is one memory-map slice and one conversion to int64.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from gtok.errors import FingerprintMismatchError, GtokError, ShardFormatError, describe
from gtok.manifest import Manifest, ManifestEntry, check_shard, common_vocabulary, expand_shards, load_manifest
from gtok.shard import ShardReader
from gtok.tokenizer import SPECIAL_TOKENS

IGNORE_LABEL = -100
"""Class id of an unlabeled record in a labeled data set: torch's cross-entropy skips it by default."""

_CHUNK = 4096  # plan entries converted to Python ints at a time in the hot loops
_MAX_OPEN = 8  # shards kept memory-mapped per DataLoader worker
_SORT_WINDOW = 1024  # records sorted by length together when packing to a token budget
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass
class _ShardMeta:
    """What the plan needs from one shard, copied out so the shard's file can be closed again."""

    name: str
    fingerprint: str | None
    vocab_size: int | None
    starts: np.ndarray
    lengths: np.ndarray
    names: list[str]  # only read when a split needs them
    labels: list[str | None] | None
    max_token: int  # the largest token id, or -1 where the CRCs were checked (the writer checked the ids)


class GTokDataset(IterableDataset):
    """Token records of `.gtok` shards as `{"input_ids": LongTensor[T], "label": int}` samples.

    `source` is a manifest (`*.json`), a folder of shards (`*.gtok`, sorted) or a list of shard
    paths. Unlabeled records of a labeled data set get the label `IGNORE_LABEL` (-100), which
    cross-entropy ignores, so they still train a masked-token objective and count in the epoch.

    Batching: by default it yields samples for `DataLoader(ds, batch_size=B, collate_fn=ds.collate)`.
    With `batch_size=B` (fixed count) or `token_budget=N` (padded B*T <= N) it yields ready padded
    batches instead, for `DataLoader(ds, batch_size=None)`; then `len(ds)` counts batches and is
    exact whatever the number of workers (with sample batching and workers, each worker's last
    batch may be partial, so the DataLoader can yield up to `num_workers - 1` batches more than
    its `len()` says; Lightning stops at `len()`).

    Every rank yields the same number of items per epoch: the shortfall is filled by repeating
    the epoch's first items, or dropped with `drop_remainder=True`. The epoch is kept in shared
    memory, so `set_epoch` reaches persistent workers too. The rank and world size are
    `rank=`/`world_size=` when given, else torch.distributed's when initialised (read again at
    `len()` and `iter()`), else 0 and 1.

    `max_length` keeps a random, order-preserving subset of that many tokens of a longer record and
    `shuffle_tokens` permutes a record's tokens, both drawn per (seed, epoch, record). Shards of
    different fingerprints are refused, as is data whose fingerprint differs from
    `expected_fingerprint` (gtars files carry none: they pass, and a vocabulary made only of them
    is sized max id + 1 + 7, so the special ids never collide with data). `verify=True` checks
    every shard's checksums, and a manifest's sha256, before the first batch.
    """

    def __init__(
        self,
        source: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        shuffle: bool = True,
        seed: int = 0,
        max_length: int | None = None,
        shuffle_tokens: bool = False,
        token_budget: int | None = None,
        drop_remainder: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        split: str | None = None,
        val_fraction: float = 0.0,
        expected_fingerprint: str | None = None,
        verify: bool = False,
        batch_size: int | None = None,
    ):
        _check_options(max_length, token_budget, batch_size, split, val_fraction, seed)
        self.shuffle, self.seed, self.max_length, self.shuffle_tokens = shuffle, int(seed), max_length, shuffle_tokens
        self.token_budget, self.batch_size, self.drop_remainder = token_budget, batch_size, drop_remainder
        self._explicit_world = rank is not None or world_size is not None
        self.rank, self.world_size = (rank or 0), (world_size or 1)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world_size {self.world_size}")
        self._resolve_world()

        paths, manifest = _resolve_source(source)
        self._paths = paths
        entries = manifest.entries if manifest else [None] * len(paths)
        metas = [_scan_shard(p, e, verify, manifest, split is not None) for p, e in zip(paths, entries)]
        self.fingerprint, self.vocab_size = _vocabulary(metas, manifest, expected_fingerprint)
        self.label_classes = _label_classes(metas, manifest)
        self._build_index(metas, entries, split, val_fraction)

        self.unk_token_id = self.vocab_size - len(SPECIAL_TOKENS)
        self.pad_token_id, self.mask_token_id, self.cls_token_id = self.unk_token_id + 1, self.unk_token_id + 2, self.unk_token_id + 3
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._progress: dict[str, Any] | None = None
        self._resume: dict[str, Any] | None = None
        self._plan_cache: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None
        self._open: dict[int, np.ndarray] = {}
        self._pool = _BufferPool()

    # -- construction ----------------------------------------------------------------------------

    def _build_index(self, metas: list[_ShardMeta], entries: list, split: str | None, val_fraction: float) -> None:
        """Concatenate the selected records of every shard into flat numpy columns."""
        keep = [_split_mask(m, e, split, val_fraction) for m, e in zip(metas, entries)]
        self._shard = np.concatenate([np.full(int(k.sum()), s, np.int32) for s, k in enumerate(keep)])
        self._start = np.concatenate([m.starts[k] for m, k in zip(metas, keep)])
        self._length = np.concatenate([m.lengths[k] for m, k in zip(metas, keep)])
        self._shard_records = [m.lengths.size for m in metas]
        self._label = _label_ids(metas, keep, self.label_classes)
        self.num_records = int(self._length.size)
        self.num_tokens = int(self._length.sum())
        if not self.num_records:
            what = f" in split {split!r} (val_fraction={val_fraction})" if split else ""
            raise GtokError(f"{_source_name(metas)}: no records to read{what}.")

    # -- rank, epoch, length ---------------------------------------------------------------------

    def _resolve_world(self) -> None:
        if self._explicit_world:
            return
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next `iter()` yields (call before each epoch)."""
        self._epoch.fill_(int(epoch))

    @property
    def _batched(self) -> bool:
        return self.token_budget is not None or self.batch_size is not None

    def _num_items(self, epoch: int) -> int:
        """Samples, or batches in a batching mode, in the whole epoch (all ranks)."""
        if self.token_budget is not None:
            return self._batch_plan(epoch)[1].size - 1
        if self.batch_size is not None:
            return -(-self.num_records // self.batch_size)
        return self.num_records

    def _per_rank(self, n_items: int) -> int:
        return n_items // self.world_size if self.drop_remainder else -(-n_items // self.world_size)

    def __len__(self) -> int:
        """Samples (or batches, in a batching mode) this rank yields in the current epoch."""
        self._resolve_world()
        return self._per_rank(self._num_items(self.epoch))

    # -- planning --------------------------------------------------------------------------------

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """Record indices in epoch order: shards in a random order, records shuffled within each."""
        if not self.shuffle:
            return np.arange(self.num_records)
        rng = np.random.default_rng([self.seed, epoch])
        shard_position = rng.permutation(len(self._paths))
        return np.lexsort((rng.random(self.num_records), shard_position[self._shard]))

    def _batch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(records, bounds): batch b is records[bounds[b]:bounds[b + 1]]. Planned for all ranks."""
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        order = self._epoch_order(epoch)
        if self.batch_size is not None:
            plan = order, np.append(np.arange(0, order.size, self.batch_size), order.size)
        else:
            plan = self._budget_batches(order, np.random.default_rng([self.seed, epoch, 1]))
        self._plan_cache = epoch, plan
        return plan

    def _budget_batches(self, order: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Pack each shard's run of the order into batches under the token budget.

        When shuffling, each window of _SORT_WINDOW consecutive records is sorted by length first,
        so a batch holds records of near-equal length (little padding) while its members still
        change from epoch to epoch; the batches of a run are then shuffled, so that batch sizes do
        not follow a trend through the epoch.
        """
        width = np.maximum(self._length if self.max_length is None else np.minimum(self._length, self.max_length), 1)
        batches: list[np.ndarray] = []
        for run in np.split(order, np.flatnonzero(np.diff(self._shard[order])) + 1):
            if self.shuffle:
                run = run[np.lexsort((width[run], np.arange(run.size) // _SORT_WINDOW))]
            packed = np.split(run, _greedy_ends(width[run], self.token_budget)[:-1])
            batches.extend(packed[i] for i in (rng.permutation(len(packed)) if self.shuffle else range(len(packed))))
        return np.concatenate(batches), np.cumsum([0, *map(len, batches)])

    def _my_items(self, n_items: int, worker: int, workers: int) -> np.ndarray:
        """Positions (into the epoch's items) of this rank's share, then this worker's slice of it.

        A share past the end wraps around, so the shortfall is filled by repeating the first items.
        """
        per = self._per_rank(n_items)
        lo, hi = per * worker // workers, per * (worker + 1) // workers
        return (np.arange(lo, hi) + self.rank * per) % n_items

    # -- iteration -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Eager set-up (plan, resume point, progress), then a generator that only reads."""
        self._resolve_world()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self.epoch
        start = self._take_resume(epoch, worker, workers)
        self._progress = {"epoch": epoch, "yielded": start, "worker": worker, "num_workers": workers,
                          "rank": self.rank, "world_size": self.world_size}
        if self._batched:
            records, bounds = self._batch_plan(epoch)
            mine = self._my_items(bounds.size - 1, worker, workers)
            return self._yield_batches(records, bounds, mine, start, epoch)
        order = self._epoch_order(epoch)
        return self._yield_samples(order[self._my_items(order.size, worker, workers)], start, epoch)

    def _yield_samples(self, records: np.ndarray, start: int, epoch: int) -> Iterator[dict[str, Any]]:
        progress = self._progress
        for lo in range(start, records.size, _CHUNK):
            idx = records[lo : lo + _CHUNK]
            labels = self._label[idx].tolist() if self._label is not None else None
            for k, row in enumerate(self._rows(idx, epoch)):
                sample = {"input_ids": torch.from_numpy(row.astype(np.int64))}
                if labels is not None:
                    sample["label"] = labels[k]
                progress["yielded"] = lo + k + 1
                yield sample

    def _yield_batches(self, records: np.ndarray, bounds: np.ndarray, mine: np.ndarray, start: int, epoch: int):
        progress = self._progress
        lo_hi = np.stack([bounds[mine], bounds[mine + 1]], axis=1).tolist()
        for j in range(start, mine.size):
            idx = records[lo_hi[j][0] : lo_hi[j][1]]
            progress["yielded"] = j + 1
            yield self._pad(self._rows(idx, epoch), self._label[idx].tolist() if self._label is not None else None)

    def _rows(self, idx: np.ndarray, epoch: int) -> list[np.ndarray]:
        """The tokens of records `idx`: views of the shards, or copies where cropped or shuffled.
        This is the per-record hot path, hence Python ints and one shard lookup per shard change."""
        crop = self.max_length if self.max_length is not None else sys.maxsize
        rows, current, tokens = [], -1, None
        columns = (self._shard[idx].tolist(), self._start[idx].tolist(), self._length[idx].tolist(), idx.tolist())
        for s, a, n, rec in zip(*columns):
            if s != current:
                current, tokens = s, self._shard_tokens(s)
            row = tokens[a : a + n]
            rows.append(row[self._positions(n, rec, epoch)] if self.shuffle_tokens or n > crop else row)
        return rows

    def _positions(self, length: int, record: int, epoch: int) -> np.ndarray:
        """Kept positions of a record: a random subset of `max_length` in order (Atacformer's
        crop), shuffled with `shuffle_tokens`. Random keys come from a hash of (seed, epoch,
        record), so any worker, in any process, draws the same crop."""
        keys = _record_keys(self.seed, epoch, record, length)
        m = self.max_length
        if m is None or length <= m:
            return np.argsort(keys)
        pick = np.argpartition(keys, m - 1)[:m]
        return pick[np.argsort(keys[pick])] if self.shuffle_tokens else np.sort(pick)

    def _shard_tokens(self, shard: int) -> np.ndarray:
        """The token array of a shard. A few shards stay mapped, so small data sets are not
        re-opened every epoch; each mapping holds a file descriptor, so not all of them."""
        tokens = self._open.pop(shard, None)
        if tokens is None:
            reader = ShardReader(self._paths[shard])
            if len(reader) != self._shard_records[shard]:
                raise ShardFormatError(f"{describe(reader.path)}: changed since the data set was opened; restart.")
            tokens = reader.tokens
            if len(self._open) >= _MAX_OPEN:
                self._open.pop(next(iter(self._open)))
        self._open[shard] = tokens  # most recently used last
        return tokens

    # -- batches ---------------------------------------------------------------------------------

    def collate(self, samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad samples into `input_ids`, `attention_mask` (LongTensor[B, T]) and `labels` (LongTensor[B])."""
        labels = [s["label"] for s in samples] if samples and "label" in samples[0] else None
        return self._pad([s["input_ids"].numpy() for s in samples], labels)

    def _pad(self, rows: Sequence[np.ndarray], labels: list[int] | None) -> dict[str, torch.Tensor]:
        """Right-pad rows into a recycled buffer, writing each byte once: padding is memory-bound
        (see _BufferPool), so pre-filling what a row then overwrites would cost a second pass."""
        lengths = [row.size for row in rows]
        ids, mask = self._pool.take((2, len(rows), max(lengths, default=0)))
        mask.fill(1)
        pad = self.pad_token_id
        for out, out_mask, row, n in zip(ids, mask, rows, lengths):
            out[:n] = row
            out[n:] = pad
            out_mask[n:] = 0
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if labels is not None:
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch

    # -- exact resume ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where this copy (one per DataLoader worker) stands: the epoch and items yielded in it."""
        progress = self._progress or {"epoch": self.epoch, "yielded": 0, "worker": None, "num_workers": None,
                                      "rank": self.rank, "world_size": self.world_size}
        return {**progress, "seed": self.seed, "num_records": self.num_records}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at a saved position: the next `iter()`, if of the saved epoch, skips what was yielded.

        It sets the epoch too, so a restored worker resumes the right epoch whatever its copy held.
        """
        if (state.get("seed"), state.get("num_records")) != (self.seed, self.num_records):
            raise GtokError(
                f"cannot resume: the loader state is for seed {state.get('seed')} and {state.get('num_records')} "
                f"records, this data set has seed {self.seed} and {self.num_records} records."
            )
        self.set_epoch(state["epoch"])
        self._resume = dict(state)
        self._progress = None

    def _take_resume(self, epoch: int, worker: int, workers: int) -> int:
        resume, self._resume = self._resume, None
        if resume is None or resume["epoch"] != epoch or not resume["yielded"]:
            return 0
        saved = (resume["worker"], resume["num_workers"], resume["rank"], resume["world_size"])
        if saved != (worker, workers, self.rank, self.world_size):
            raise GtokError(
                f"cannot resume exactly: the loader state is of worker {saved[0]} of {saved[1]} on rank {saved[2]} "
                f"of {saved[3]}, this is worker {worker} of {workers} on rank {self.rank} of {self.world_size}; "
                "resume with the same num_workers and number of devices."
            )
        return int(resume["yielded"])

    # -- pickling (DataLoader workers, spawn) ----------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        self._resolve_world()  # a spawned worker has no process group: take the rank along
        return {**self.__dict__, "_open": {}, "_plan_cache": None, "_pool": _BufferPool()}

    def __repr__(self) -> str:
        mode = (f"token_budget={self.token_budget}" if self.token_budget is not None
                else f"batch_size={self.batch_size}" if self.batch_size is not None else "samples")
        return (f"GTokDataset(shards={len(self._paths)}, records={self.num_records}, vocab_size={self.vocab_size}, "
                f"{mode}, rank={self.rank}/{self.world_size}, epoch={self.epoch})")


class _BufferPool:
    """Recycles the int64 buffers of padded batches once nothing else references them.

    Fresh memory costs a page fault per 4 KiB page on first write (about a microsecond each in a
    VM), and the allocator hands megabyte blocks back to the system on free, so a new buffer per
    batch spends more time faulting than copying. A buffer is reused only while the pool holds
    the sole reference, so a batch the caller still holds (or any tensor or view of it) is never
    overwritten.
    """

    _SOLE = 3  # references to a free buffer inside take(): the list, the loop variable, getrefcount's argument

    def __init__(self, keep: int = 4):
        self._keep = keep
        self._buffers: list[np.ndarray] = []

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        size = math.prod(shape)
        for buf in self._buffers:
            if buf.size >= size and sys.getrefcount(buf) == self._SOLE:
                return buf[:size].reshape(shape)
        buf = np.empty(size + size // 4, dtype=np.int64)  # headroom: the next batch may be a little wider
        self._buffers.append(buf)
        if len(self._buffers) > self._keep:
            self._buffers.pop(0)  # forget the oldest; whoever still holds it keeps it alive
        return buf[:size].reshape(shape)


# -- helpers ----------------------------------------------------------------------------------------


def _check_options(max_length, token_budget, batch_size, split, val_fraction, seed) -> None:
    if max_length is not None and max_length < 1:
        raise ValueError("max_length must be at least 1")
    if token_budget is not None and batch_size is not None:
        raise ValueError("give token_budget or batch_size, not both")
    if (token_budget is not None and token_budget < 1) or (batch_size is not None and batch_size < 1):
        raise ValueError("token_budget and batch_size must be at least 1")
    if split not in (None, "train", "val"):
        raise ValueError(f"split must be 'train', 'val' or None, not {split!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must lie in [0, 1)")
    if seed < 0:
        raise ValueError("seed must be non-negative")


def _resolve_source(source) -> tuple[list[Path], Manifest | None]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.suffix == ".json":
            manifest = load_manifest(path)
            return manifest.paths, manifest
        return expand_shards([path]), None
    paths = expand_shards(source)
    if not paths:
        raise GtokError("GTokDataset: the list of shards is empty.")
    return paths, None


def _scan_shard(path: Path, entry: ManifestEntry | None, verify: bool, manifest: Manifest | None, names: bool) -> _ShardMeta:
    """Open a shard (errors name it), check it against its manifest entry, copy out its index.

    Without `verify` the token ids are still scanned once for the largest (a fast read, several
    times quicker than the CRCs), so a damaged id is refused here instead of failing an embedding
    lookup hours into training; with `verify` the CRCs guarantee the ids the writer checked.
    """
    if entry is not None:
        reader = check_shard(entry, manifest.path, integrity=verify, sha256=verify)
    else:
        reader = ShardReader(path)
        if verify:
            reader.verify()
    return _ShardMeta(
        name=describe(path),
        fingerprint=reader.fingerprint,
        vocab_size=reader.vocab_size,
        starts=np.asarray(reader.offsets[:-1], dtype=np.int64),
        lengths=reader.lengths,
        names=reader.names if names else [],
        labels=reader.labels,
        max_token=-1 if verify and reader.vocab_size is not None else int(reader.tokens.max(initial=0)),
    )


def _source_name(metas: list[_ShardMeta]) -> str:
    return metas[0].name + (f" (and {len(metas) - 1} more shards)" if len(metas) > 1 else "")


def _vocabulary(metas: list[_ShardMeta], manifest: Manifest | None, expected: str | None) -> tuple[str | None, int]:
    """The shards' common fingerprint and vocabulary size; gtars-only data get max id + 1 regions."""
    parties = [(m.name, m.fingerprint, m.vocab_size) for m in metas]
    if manifest is not None:
        parties.insert(0, (describe(manifest.path), manifest.fingerprint, manifest.vocab_size))
    fingerprint, vocab_size = common_vocabulary(parties)
    if expected is not None and fingerprint is not None and expected != fingerprint:
        raise FingerprintMismatchError(
            f"{_source_name(metas)}: tokenized with universe fingerprint {fingerprint}, but the model expects "
            f"{expected}; tokenize the data with the model's universe."
        )
    top = max(m.max_token for m in metas)
    if vocab_size is None:
        return fingerprint, top + 1 + len(SPECIAL_TOKENS)
    if top >= vocab_size:
        bad = next(m.name for m in metas if m.max_token == top)
        raise ShardFormatError(
            f"{bad}: token id {top} does not fit the vocabulary of size {vocab_size}; the shard is damaged or "
            "from another vocabulary (run 'gtok verify', or re-create it)."
        )
    return fingerprint, vocab_size


def _label_classes(metas: list[_ShardMeta], manifest: Manifest | None) -> list[str] | None:
    if manifest is not None and manifest.label_classes is not None:
        return list(manifest.label_classes)
    if all(m.labels is None for m in metas):
        return None
    return sorted({x for m in metas if m.labels for x in m.labels if x is not None})


def _label_ids(metas: list[_ShardMeta], keep: list[np.ndarray], classes: list[str] | None) -> np.ndarray | None:
    if classes is None:
        return None
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for m, k in zip(metas, keep):
        labels = m.labels or [None] * m.lengths.size
        unknown = {x for x in labels if x is not None} - index.keys()
        if unknown:
            raise GtokError(f"{m.name}: label {sorted(unknown)[0]!r} is not among the manifest's label_classes.")
        ids = np.fromiter((IGNORE_LABEL if x is None else index[x] for x in labels), np.int64, len(labels))
        out.append(ids[k])
    return np.concatenate(out)


def _split_mask(meta: _ShardMeta, entry: ManifestEntry | None, split: str | None, val_fraction: float) -> np.ndarray:
    """Which records of a shard belong to `split`: the manifest's per-shard `split` when it has
    one, else a stable hash of the record name, so a record never changes sides between runs."""
    n = meta.lengths.size
    if split is None:
        return np.ones(n, dtype=bool)
    if entry is not None and entry.split is not None:
        return np.full(n, entry.split == split)
    in_val = _name_hash_unit(meta.names) < val_fraction
    return in_val if split == "val" else ~in_val


def _name_hash_unit(names: list[str]) -> np.ndarray:
    """blake2b of each name mapped to [0, 1): stable across runs, machines and Python versions."""
    digests = (int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "little") for n in names)
    return np.fromiter(digests, np.uint64, len(names)) / 2.0**64


def _greedy_ends(widths: np.ndarray, budget: int) -> np.ndarray:
    """End index of each batch when consecutive records are packed while count * max width <= budget.

    One Python step per batch (not per record): the cost of extending a batch is monotone, so the
    batch's end is a binary search over a window no longer than budget // first width.
    """
    ends, i, n = [], 0, widths.size
    while i < n:
        window = widths[i : i + max(1, budget // int(widths[i]))]
        cost = np.maximum.accumulate(window) * np.arange(1, window.size + 1)
        i += max(1, int(np.searchsorted(cost, budget, side="right")))
        ends.append(i)
    return np.array(ends, dtype=np.int64)


def _record_keys(seed: int, epoch: int, record: int, length: int) -> np.ndarray:
    """`length` pseudo-random uint64 keys, a pure function of (seed, epoch, record) (splitmix64)."""
    base = hashlib.blake2b(f"{seed}:{epoch}:{record}".encode(), digest_size=8).digest()
    x = np.arange(1, length + 1, dtype=np.uint64) * _GOLDEN + np.uint64(int.from_bytes(base, "little"))
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x
