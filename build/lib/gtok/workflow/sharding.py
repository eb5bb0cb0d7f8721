"""Which shard each BED file goes into: linear hashing, so adding files reruns few shards."""

from __future__ import annotations

import hashlib
import math


def shard_buckets(keys: list[str], per_shard: int) -> list[int]:
    """Assign each key to one of n = ceil(len(keys) / per_shard) buckets by linear hashing.

    A key's bucket is its 64-bit hash modulo 2**(L+1), or modulo 2**L when that lands at or past
    n, where 2**L <= n < 2**(L+1). Why not `hash % n`: that moves almost every file whenever n
    changes. With linear hashing, adding files changes n only once every `per_shard` files, and
    then exactly one bucket (n - 2**L) splits in two; every other file keeps its bucket. So
    adding files reruns only the shards they land in, plus at most one split shard per
    `per_shard` files added. Buckets average `per_shard` files: the ones already split hold about
    half the share of the others, so sizes range over about per_shard/2 .. 2*per_shard.
    """
    n = max(1, math.ceil(len(keys) / per_shard))
    level = n.bit_length() - 1
    wide, narrow = (2 << level) - 1, (1 << level) - 1
    buckets = []
    for key in keys:
        h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
        b = h & wide
        buckets.append(b if b < n else h & narrow)
    return buckets


def group_shards(rows: list[dict], per_shard: int) -> dict[str, list[dict]]:
    """Shard id -> its rows (dicts with a normalised `path`, and `split` when the sheet has one).

    Rows of different splits never share a shard; ids are `SPLIT-NNNN`, or `NNNN` without a split.
    """
    by_split: dict[str, list[dict]] = {}
    for row in rows:
        by_split.setdefault(row.get("split") or "", []).append(row)
    shards: dict[str, list[dict]] = {}
    for split, members in sorted(by_split.items()):
        prefix = f"{split}-" if split else ""
        for row, b in zip(members, shard_buckets([r["path"] for r in members], per_shard)):
            shards.setdefault(f"{prefix}{b:04d}", []).append(row)
    return dict(sorted(shards.items()))
