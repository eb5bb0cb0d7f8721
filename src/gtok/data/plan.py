"""The epoch plan: which records, in which order and batches, go to which rank and worker.

Pure numpy over record lengths alone, with no token read, so every process (each DDP rank, each
DataLoader worker, a resumed run) computes the same plan from (seed, epoch) without talking to
the others.

An epoch is a sequence of *items*: records, or ready batches of records. Item `g` of the epoch
goes to rank `g % world_size`, and a rank's items go round-robin to its DataLoader workers, which
a DataLoader delivers back in that same order. So after every rank has consumed `k` items, what
the whole job has consumed is exactly the first `k * world_size` items of the epoch: one number,
the epoch's *position*, says where training stands whatever the number of ranks and workers.
That is what lets a run saved at one world size resume at another (the rest of the epoch is
exactly the items not yet seen), and at the same world size resume bit-exactly.

With a weighted mixture (`mixture_order`), the epoch's records are drawn by dataset instead: an
exact count per dataset, repeated or subsampled, each dataset's draws shard by shard, the datasets
interleaved in a seeded order. That index list
takes the place of the plain order and everything after it (batches, ranks, resume, padding)
applies to it unchanged.

A rank's share is padded to the common count by wrapping around to the epoch's first items, so
every rank yields the same number of items (a rank that ran out first would wait forever in an
all-reduce); `drop_remainder` drops the tail instead.
"""

from __future__ import annotations

import hashlib

import numpy as np

from gtok.crop import kept_positions

SORT_WINDOW = 1024  # records sorted by length together when packing to a token budget
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def epoch_order(shard_of: np.ndarray, n_shards: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Record indices in epoch order: shards in a random order, records shuffled within each (so
    a worker reads one shard at a time)."""
    if not shuffle:
        return np.arange(shard_of.size)
    rng = np.random.default_rng([seed, epoch])
    shard_position = rng.permutation(n_shards)
    return np.lexsort((rng.random(shard_of.size), shard_position[shard_of]))


def mixture_counts(weights: np.ndarray, samples: int) -> np.ndarray:
    """Draws per dataset in one epoch: `samples` split in proportion to `weights` by largest
    remainder (each gets the floor of its quota, the few left over go to the largest fractions,
    ties to the first), so the counts are exact shares to within one and sum to `samples`. The
    weights are scaled by the largest first: weights near the float limit would sum to infinity."""
    scaled = np.asarray(weights, dtype=np.float64) / float(np.max(weights))
    quota = scaled / float(np.sum(scaled)) * samples
    counts = np.floor(quota).astype(np.int64)
    left = samples - int(counts.sum())
    counts[np.argsort(counts - quota, kind="stable")[:left]] += 1  # most negative: largest fraction first
    return counts


def mixture_order(dataset_of: np.ndarray, shard_of: np.ndarray, weights: np.ndarray, samples: int, seed: int,
                  epoch: int) -> np.ndarray:
    """Record indices of a mixed epoch: `mixture_counts` draws from each dataset, interleaved.

    `dataset_of` is each record's dataset id (an index into `weights`), `shard_of` its shard. A
    dataset drawn more often than it has records repeats whole permutations of itself plus part of
    one more (each record k or k + 1 times); one drawn less often is subsampled without repeats.
    Each dataset's draws go shard by shard (`_by_shard`), so a reader keeps one shard of each
    dataset open. A pure function of (seed, epoch), like the plain order, so every rank and every
    resume draws the same epoch.
    """
    counts = mixture_counts(weights, samples)
    sizes = np.bincount(dataset_of, minlength=counts.size)
    empty = np.flatnonzero((counts > 0) & (sizes == 0))
    if empty.size:
        raise ValueError(f"dataset {int(empty[0])} is drawn {int(counts[empty[0]])} times but has no records")
    rng = np.random.default_rng([seed, epoch, 2])
    members = np.split(np.argsort(dataset_of, kind="stable"), np.cumsum(sizes)[:-1])
    shard_rank = rng.permutation(int(shard_of.max(initial=0)) + 1)  # the shards' order in every lap
    runs = [_by_shard(rng, members[d][_draw(rng, int(sizes[d]), int(counts[d]))], int(sizes[d]), shard_of, shard_rank)
            for d in range(counts.size) if counts[d]]
    slots = rng.permutation(np.repeat(np.arange(counts.size), counts))  # the dataset of each draw of the epoch
    order = np.empty(samples, dtype=np.int64)
    order[np.argsort(slots, kind="stable")] = np.concatenate([np.zeros(0, np.int64), *runs])  # each dataset's slots get its run
    return order


def _by_shard(rng: np.random.Generator, draws: np.ndarray, size: int, shard_of: np.ndarray,
              shard_rank: np.ndarray) -> np.ndarray:
    """A dataset's `draws` (laps of `size`) with each lap's records grouped by shard, in `shard_rank`
    order, shuffled within the shard. Reopening a shard checks its header and tables again (up to
    a millisecond), so draws that hopped between shards reopened one nearly per record.

    One sort of (lap, rank) plus a random fraction: several times quicker than a lexsort of
    three keys, and stable, so that equal keys (rounded sums) keep one order on every machine."""
    group = np.arange(draws.size) // size * shard_rank.size + shard_rank[shard_of[draws]]
    return draws[np.argsort(group + rng.random(draws.size), kind="stable")]


def _draw(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """`count` positions in range(size): each one `count // size` times (whole laps), then distinct
    ones for the rest; in lap order, which `_by_shard` shuffles."""
    whole, rest = divmod(count, size)
    return np.concatenate([np.tile(np.arange(size), whole), rng.choice(size, rest, replace=False)])


def fixed_batches(order: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(records, bounds) of consecutive batches of `batch_size`: batch b is records[bounds[b]:bounds[b+1]]."""
    return order, np.append(np.arange(0, order.size, batch_size), order.size)


def budget_batches(order: np.ndarray, widths: np.ndarray, shard_of: np.ndarray, budget: int,
                   rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """(records, bounds) of batches whose padded size (count x widest record) stays under `budget`.

    Each shard's run of the order is packed on its own. With `rng` (when shuffling), each window
    of SORT_WINDOW consecutive records is sorted by width first, so a batch holds records of
    near-equal length (little padding) while its members still change from epoch to epoch; the
    batches of a run are then shuffled, so batch sizes follow no trend through the epoch.
    """
    batches: list[np.ndarray] = []
    for run in np.split(order, np.flatnonzero(np.diff(shard_of[order])) + 1):
        if rng is not None:
            run = run[np.lexsort((widths[run], np.arange(run.size) // SORT_WINDOW))]
        packed = np.split(run, greedy_ends(widths[run], budget)[:-1])
        batches.extend(packed[i] for i in (rng.permutation(len(packed)) if rng is not None else range(len(packed))))
    return np.concatenate(batches), np.cumsum([0, *map(len, batches)])


def greedy_ends(widths: np.ndarray, budget: int) -> np.ndarray:
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


def per_rank(n_items: int, position: int, world_size: int, drop_remainder: bool) -> int:
    """Items each rank yields from `position` to the end of an epoch of `n_items`."""
    left = max(n_items - position, 0)
    return left // world_size if drop_remainder else -(-left // world_size)


def rank_items(n_items: int, position: int, rank: int, world_size: int, drop_remainder: bool) -> np.ndarray:
    """The epoch items of one rank from `position` on: position + rank, then every world_size-th.
    Past the end they wrap around to the epoch's first items (the padding)."""
    count = per_rank(n_items, position, world_size, drop_remainder)
    return (position + rank + world_size * np.arange(count)) % max(n_items, 1)


def worker_items(items: np.ndarray, worker: int, num_workers: int) -> np.ndarray:
    """A DataLoader worker's part of a rank's items: every num_workers-th, which the DataLoader
    delivers back round-robin, so the rank still sees its items in order."""
    return items[worker::num_workers]


def crop_positions(seed: int, epoch: int, record: int, length: int, max_length: int | None,
                   shuffle_tokens: bool) -> np.ndarray:
    """Kept positions of a record in training: gtok.crop's random, ordered subset of `max_length`,
    shuffled with `shuffle_tokens`. The random keys are a pure function of (seed, epoch, record),
    so any worker, in any process, draws the same crop."""
    keys = record_keys(seed, epoch, record, length)
    pick = kept_positions(length, max_length, keys)
    return pick[np.argsort(keys[pick])] if shuffle_tokens else pick


def record_keys(seed: int, epoch: int, record: int, length: int) -> np.ndarray:
    """`length` pseudo-random uint64 keys, a pure function of (seed, epoch, record) (splitmix64)."""
    base = hashlib.blake2b(f"{seed}:{epoch}:{record}".encode(), digest_size=8).digest()
    x = np.arange(1, length + 1, dtype=np.uint64) * _GOLDEN + np.uint64(int.from_bytes(base, "little"))
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x
