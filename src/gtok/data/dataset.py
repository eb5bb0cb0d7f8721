"""`GTokDataset`: `.gtok` shards streamed into PyTorch, split over DDP ranks and DataLoader workers.

Which records go where, in which order, is the epoch plan (`gtok.data.plan`); which records
there are is `gtok.data.records`. This module iterates the plan, pads batches, and keeps the
position that a resume continues from. Per record the hot path is one memory-map slice and one
conversion to int64.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from gtok.crop import check_max_length
from gtok.data import plan
from gtok.data.distributed import world
from gtok.data.records import IGNORE_LABEL, Records
from gtok.errors import GtokError
from gtok.options import mixture_problem, plain
from gtok.vocabulary import Vocabulary

__all__ = ["GTokDataset", "IGNORE_LABEL"]

_CHUNK = 4096  # plan entries converted to Python ints at a time in the hot loops


class GTokDataset(IterableDataset):
    """Token records of `.gtok` shards as `{"input_ids": LongTensor[T], "label": int, "index": int}`
    samples (`index` is the record's position in this data set).

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

    Resuming: `state_dict()` of a data set iterated in this process (no DataLoader workers) is a
    position in the epoch that any rank of any world size continues from with `load_state_dict`
    (the rest of the epoch is exactly the items not yet consumed); the states that a torchdata
    `StatefulDataLoader` keeps per worker resume that same worker (same workers, same ranks).

    Mixtures: `mixture={dataset: weight}` draws the records by the dataset each shard's manifest
    entry (else the shard) records, in those proportions: an epoch is `samples_per_epoch` draws
    (default: as many as there are records), exactly largest-remainder shares of it per dataset,
    a dataset smaller than its share repeating, a larger one subsampled without repeats, each
    dataset's draws shard by shard, the datasets interleaved in a seeded order
    (`gtok.data.plan.mixture_order`). Datasets the mixture
    leaves out are not drawn. Everything above (ranks, padding, resume) applies to the draws.

    `max_length` keeps a random, order-preserving subset of that many tokens of a longer record and
    `shuffle_tokens` permutes a record's tokens, both drawn per (seed, epoch, record). Shards of
    different fingerprints are refused, as is data whose fingerprint differs from
    `expected_fingerprint` (gtars files carry none: they pass). `verify=True` checks every shard's
    checksums, and a manifest's sha256, before the first batch.
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
        mixture: Mapping[str, float] | None = None,
        samples_per_epoch: int | None = None,
    ):
        mixture, samples_per_epoch = plain(mixture), plain(samples_per_epoch)  # numbers computed with numpy too
        _check_options(max_length, token_budget, batch_size, split, val_fraction, seed)
        _check_mixture_options(mixture, samples_per_epoch, shuffle)
        self.shuffle, self.seed, self.max_length, self.shuffle_tokens = shuffle, int(seed), max_length, shuffle_tokens
        self.token_budget, self.batch_size, self.drop_remainder = token_budget, batch_size, drop_remainder
        self._explicit = (rank, world_size) if rank is not None or world_size is not None else None
        self.rank, self.world_size = world(*(self._explicit or (None, None)))

        self.records = Records.open(source, verify=verify, split=split, val_fraction=val_fraction,
                                    expected_fingerprint=expected_fingerprint)
        self.fingerprint, self.vocab_size = self.records.fingerprint, self.records.vocab_size
        self.label_classes = self.records.label_classes
        self.num_records = len(self.records)
        self.num_tokens = int(self.records.length.sum())
        self.vocabulary = Vocabulary.of_size(self.vocab_size, self.fingerprint)
        self.unk_token_id, self.pad_token_id = self.vocabulary.unk_token_id, self.vocabulary.pad_token_id
        self.mask_token_id, self.cls_token_id = self.vocabulary.mask_token_id, self.vocabulary.cls_token_id
        self.mixture = dict(mixture) if mixture is not None else None
        self._weights = _mixture_weights(self.records, self.mixture, split)
        if self._weights is not None:  # one shard of each drawn dataset at a time, and one to turn to
            self.records.keep_open_at_once(int(np.count_nonzero(self._weights)) + 1)
        self.samples_per_epoch = None if mixture is None else samples_per_epoch or self.num_records

        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._start: dict[str, int] = {"epoch": 0, "position": 0, "done": 0}
        self._copy_resume: dict[str, Any] | None = None
        self._progress: dict[str, Any] | None = None
        self._plan_cache: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None
        self._pool = _BufferPool()

    # -- rank, epoch, length ---------------------------------------------------------------------

    def _resolve_world(self) -> None:
        self.rank, self.world_size = world(*(self._explicit or (None, None)))

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next `iter()` yields (call before each epoch)."""
        self._epoch.fill_(int(epoch))

    def resume_at(self, epoch: int, position: int, done: int) -> None:
        """Start `epoch` at `position`: the items before it are consumed (by any number of ranks),
        and each rank has yielded `done` of its items so far (counted in `len()`, as a resumed
        DataLoader's batch count expects)."""
        self.set_epoch(epoch)
        self._start = {"epoch": int(epoch), "position": int(position), "done": int(done)}
        self._copy_resume = None

    def _session(self, epoch: int) -> tuple[int, int]:
        """(position, done) where `epoch` starts in this process: 0, 0 unless resumed into it."""
        if self._start["epoch"] != epoch:
            return 0, 0
        return self._start["position"], self._start["done"]

    @property
    def _batched(self) -> bool:
        return self.token_budget is not None or self.batch_size is not None

    def _num_items(self, epoch: int) -> int:
        """Samples, or batches in a batching mode, in the whole epoch (all ranks)."""
        if self._batched:
            return self._batch_plan(epoch)[1].size - 1
        return self.num_records if self.samples_per_epoch is None else self.samples_per_epoch

    def __len__(self) -> int:
        """Samples (or batches, in a batching mode) this rank yields in the current epoch,
        counting those it yielded before a resume."""
        self._resolve_world()
        position, done = self._session(self.epoch)
        return done + plan.per_rank(self._num_items(self.epoch), position, self.world_size, self.drop_remainder)

    def _batch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(records, bounds): batch b is records[bounds[b]:bounds[b + 1]]. Planned for all ranks."""
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        r = self.records
        order = self._order(epoch)
        if self.batch_size is not None:
            batches = plan.fixed_batches(order, self.batch_size)
        else:
            widths = np.maximum(r.length if self.max_length is None else np.minimum(r.length, self.max_length), 1)
            rng = np.random.default_rng([self.seed, epoch, 1]) if self.shuffle else None
            runs = r.shard if self._weights is None else np.zeros_like(r.shard)  # mixed: packed as one run
            batches = plan.budget_batches(order, widths, runs, self.token_budget, rng)
        self._plan_cache = epoch, batches
        return batches

    def _order(self, epoch: int) -> np.ndarray:
        """The epoch's records in order: each once (the plain epoch), or a mixture's draws."""
        r = self.records
        if self._weights is None:
            return plan.epoch_order(r.shard, len(r.paths), self.seed, epoch, self.shuffle)
        return plan.mixture_order(r.dataset, r.shard, self._weights, self.samples_per_epoch, self.seed, epoch)

    # -- iteration -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Eager set-up (plan, share, resume point), then a generator that only reads."""
        self._resolve_world()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self.epoch
        position, done = self._session(epoch)
        skip = self._take_copy_resume(epoch, worker, workers)
        self._progress = {"epoch": epoch, "position": position, "done": done, "yielded": skip, "worker": worker,
                          "num_workers": workers, "rank": self.rank, "world_size": self.world_size}
        if self._batched:
            records, bounds = self._batch_plan(epoch)
        else:
            records, bounds = self._order(epoch), None
        n_items = records.size if bounds is None else bounds.size - 1
        items = plan.rank_items(n_items, position, self.rank, self.world_size, self.drop_remainder)
        mine = plan.worker_items(items, worker, workers)
        if bounds is None:
            return self._yield_samples(records[mine], skip, epoch)
        return self._yield_batches(records, bounds, mine, skip, epoch)

    def _yield_samples(self, records: np.ndarray, start: int, epoch: int) -> Iterator[dict[str, Any]]:
        progress, label = self._progress, self.records.label
        for lo in range(start, records.size, _CHUNK):
            idx = records[lo : lo + _CHUNK]
            labels = label[idx].tolist() if label is not None else None
            for k, row in enumerate(self._rows(idx, epoch)):
                sample = {"input_ids": torch.from_numpy(row.astype(np.int64)), "index": int(idx[k])}
                if labels is not None:
                    sample["label"] = labels[k]
                progress["yielded"] = lo + k + 1
                yield sample

    def _yield_batches(self, records: np.ndarray, bounds: np.ndarray, mine: np.ndarray, start: int, epoch: int):
        progress, label = self._progress, self.records.label
        lo_hi = np.stack([bounds[mine], bounds[mine + 1]], axis=1).tolist()
        for j in range(start, mine.size):
            idx = records[lo_hi[j][0] : lo_hi[j][1]]
            progress["yielded"] = j + 1
            yield self._pad(self._rows(idx, epoch), label[idx].tolist() if label is not None else None, idx)

    def _rows(self, idx: np.ndarray, epoch: int) -> list[np.ndarray]:
        """The tokens of records `idx`: views of the shards, or copies where cropped or shuffled.
        This is the per-record hot path, hence Python ints and one shard lookup per shard change."""
        crop = self.max_length if self.max_length is not None else sys.maxsize
        rows, current, tokens = [], -1, None
        r = self.records
        for s, a, n, rec in zip(r.shard[idx].tolist(), r.start[idx].tolist(), r.length[idx].tolist(), idx.tolist()):
            if s != current:
                current, tokens = s, r.tokens(s)
            row = tokens[a : a + n]
            if self.shuffle_tokens or n > crop:
                row = row[plan.crop_positions(self.seed, epoch, rec, n, self.max_length, self.shuffle_tokens)]
            rows.append(row)
        return rows

    # -- batches ---------------------------------------------------------------------------------

    def collate(self, samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad samples into `input_ids`, `attention_mask` (LongTensor[B, T]), `labels` and `index`
        (LongTensor[B])."""
        labels = [s["label"] for s in samples] if samples and "label" in samples[0] else None
        index = np.array([s["index"] for s in samples], dtype=np.int64)
        return self._pad([s["input_ids"].numpy() for s in samples], labels, index)

    def _pad(self, rows: Sequence[np.ndarray], labels: list[int] | None, index: np.ndarray) -> dict[str, torch.Tensor]:
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
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                 "index": torch.from_numpy(np.array(index, dtype=np.int64))}  # which records: for the run summary
        if labels is not None:
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch

    # -- resume ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where this copy stands: its epoch's starting point, its share, and the items it yielded."""
        progress = self._progress or {"epoch": self.epoch, **dict(zip(("position", "done"), self._session(self.epoch))),
                                      "yielded": 0, "worker": None, "num_workers": None,
                                      "rank": self.rank, "world_size": self.world_size}
        mixed = {"mixture": self.mixture, "samples_per_epoch": self.samples_per_epoch} if self.mixture is not None else {}
        return {**progress, "seed": self.seed, "num_records": self.num_records, **mixed, "batching": self._batching()}

    def _batching(self) -> dict[str, Any]:
        """What makes the items a saved position counts: records or batches, and how batches are formed."""
        return {"batch_size": self.batch_size, "token_budget": self.token_budget, "drop_remainder": self.drop_remainder,
                "max_length": self.max_length if self.token_budget is not None else None}  # widths pack budgets

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved state, also at another rank and world size.

        A state of a data set iterated in one process (no DataLoader workers) is a position in the
        epoch: the next `iter()` yields exactly this rank's part of the items not consumed yet. A
        state a `StatefulDataLoader` kept for one of several workers resumes only that worker of
        the same rank and world size.
        """
        if (state.get("seed"), state.get("num_records")) != (self.seed, self.num_records):
            raise GtokError(
                f"cannot resume: the loader state is for seed {state.get('seed')} and {state.get('num_records')} "
                f"records, this data set has seed {self.seed} and {self.num_records} records."
            )
        if (state.get("mixture"), state.get("samples_per_epoch")) != (self.mixture, self.samples_per_epoch):
            raise GtokError(
                f"cannot resume: the loader state is of mixture {state.get('mixture')} with {state.get('samples_per_epoch')} "
                f"samples per epoch, this data set has mixture {self.mixture} with {self.samples_per_epoch}."
            )
        refuse_other_items(state.get("batching"), self._batching(), "loader state")
        position, done, yielded = int(state.get("position", 0)), int(state.get("done", 0)), int(state["yielded"])
        if (state.get("num_workers") or 1) == 1:
            self.resume_at(state["epoch"], position + yielded * int(state["world_size"]), done + yielded)
        else:
            self.resume_at(state["epoch"], position, done)
            self._copy_resume = dict(state)
        self._progress = None

    def _take_copy_resume(self, epoch: int, worker: int, workers: int) -> int:
        """Items of its share this copy skips: those a saved worker state says it yielded."""
        resume, self._copy_resume = self._copy_resume, None
        if resume is None or resume["epoch"] != epoch or not resume["yielded"]:
            return 0
        saved = (resume["worker"], resume["num_workers"], resume["rank"], resume["world_size"])
        if saved != (worker, workers, self.rank, self.world_size):
            raise GtokError(
                f"cannot resume exactly: the loader state is of worker {saved[0]} of {saved[1]} on rank {saved[2]} "
                f"of {saved[3]}, this is worker {worker} of {workers} on rank {self.rank} of {self.world_size}; "
                "resume a worker's state with the same num_workers and number of devices (the state of a data set "
                "read without workers resumes at any world size)."
            )
        return int(resume["yielded"])

    # -- pickling (DataLoader workers, spawn) ----------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        self._resolve_world()  # a spawned worker has no process group: take the rank along
        return {**self.__dict__, "_plan_cache": None, "_pool": _BufferPool()}

    def __repr__(self) -> str:
        mode = (f"token_budget={self.token_budget}" if self.token_budget is not None
                else f"batch_size={self.batch_size}" if self.batch_size is not None else "samples")
        return (f"GTokDataset(shards={len(self.records.paths)}, records={self.num_records}, vocab_size={self.vocab_size}, "
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


def _check_mixture_options(mixture: Mapping[str, float] | None, samples_per_epoch: int | None, shuffle: bool) -> None:
    """A mixture's own options, before any shard is opened (the data's datasets come after)."""
    if mixture is not None:
        problem = mixture_problem(mixture)
        if problem:
            raise ValueError(f"mixture {problem}")
        if not shuffle:
            raise ValueError("a mixture draws records at random: it needs shuffle=True")
    if samples_per_epoch is not None:
        if mixture is None:
            raise ValueError("samples_per_epoch is the length of a mixture's epoch: give a mixture too")
        if isinstance(samples_per_epoch, bool) or not isinstance(samples_per_epoch, int) or samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be a positive integer, not {samples_per_epoch!r}")


def _mixture_weights(records: Records, mixture: dict[str, float] | None, split: str | None) -> np.ndarray | None:
    """The mixture's weight of each of the data's datasets (0 for those it leaves out), once every
    dataset it names has records here."""
    if mixture is None:
        return None
    sizes = dict(zip(records.datasets, np.bincount(records.dataset, minlength=len(records.datasets)).tolist()))
    for name, weight in mixture.items():
        if name not in sizes:
            raise GtokError(f"mixture: the data has no dataset {name!r} (its datasets: "
                            f"{', '.join(map(repr, records.datasets))}); name one of those (`gtok info` lists them).")
        if weight > 0 and not sizes[name]:
            where = f" in the {split} split" if split else ""
            raise GtokError(f"mixture: dataset {name!r} has no records{where} to draw; "
                            "give it weight 0, or give it records of that split.")
    return np.array([float(mixture.get(name, 0.0)) for name in records.datasets])


def _check_options(max_length, token_budget, batch_size, split, val_fraction, seed) -> None:
    check_max_length(max_length)
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


def refuse_other_items(saved: dict[str, Any] | None, current: dict[str, Any], what: str) -> None:
    """A saved position counts items (records, or batches) of one way of forming them: resumed
    under another, it would skip or repeat records. A state that records none (an older gtok's)
    is taken as it is."""
    if saved is None or saved == current:
        return
    changed = ", ".join(f"{key} {saved.get(key)!r} -> {current.get(key)!r}" for key in sorted(saved.keys() | current.keys())
                        if saved.get(key) != current.get(key))
    raise GtokError(f"cannot resume: the {what} counts items of other batching ({changed}); resume with the "
                    "options it was saved with, or start the epoch over.")
