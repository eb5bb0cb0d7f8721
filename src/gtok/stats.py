"""Readable summaries of shards, shared by `gtok info` and the manifest."""

from __future__ import annotations

import numpy as np

from gtok.shard import ShardReader


def length_stats(lengths: np.ndarray) -> dict[str, float]:
    if not lengths.size:
        return {"min": 0, "median": 0, "mean": 0.0, "max": 0}
    return {
        "min": int(lengths.min()),
        "median": float(np.median(lengths)),
        "mean": round(float(lengths.mean()), 2),
        "max": int(lengths.max()),
    }


def describe_shard(reader: ShardReader) -> str:
    stats = length_stats(reader.lengths)
    kind = "gtars single-record file" if reader.version == 0 else f"gtok shard, format version {reader.version}"
    lines = [
        f"{reader.path}",
        f"  format       {kind}",
        f"  records      {len(reader):,}",
        f"  tokens       {reader.n_tokens:,}",
        f"  dtype        {reader.dtype.name}",
        f"  vocab size   {reader.vocab_size if reader.vocab_size is not None else 'unknown'}",
        f"  fingerprint  {reader.fingerprint or 'none (gtars file)'}",
        "  length       min {min:,}  median {median:,.0f}  mean {mean:,.1f}  max {max:,}".format(**stats),
    ]
    labels = reader.labels
    if labels is not None:
        classes = sorted({x for x in labels if x is not None})
        shown = ", ".join(classes[:8]) + (" ..." if len(classes) > 8 else "")
        lines.append(f"  labels       {len(classes)} classes: {shown}")
    return "\n".join(lines)
