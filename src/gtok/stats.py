"""What the data holds: summaries of shards (`gtok info`, the manifest) and the workflow's statistics.

Statistics are computed from the shards alone (memory-mapped, vectorized; one pass over each
shard's tokens), so they describe exactly what training will read:

- tokens per record: how long documents are, per source (BED files, cells);
- `<unk>`-only records: documents without a single universe region, i.e. wasted records;
- universe coverage: the fraction of universe regions that occur at least once, per shard and
  cumulated over shards; a universe region never seen is a token the model cannot learn.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from gtok.errors import GtokError, ShardFormatError, describe
from gtok.formats.manifest import Manifest, common_vocabulary, length_stats
from gtok.formats.metadata import DEFAULT_DATASET, UniverseRecord
from gtok.formats.shard import ShardReader
from gtok.vocabulary import Vocabulary

if TYPE_CHECKING:
    import pandas as pd


def shard_damage(reader: ShardReader) -> str | None:
    """What the shard's CRCs say is damaged (one pass over the file), or None when every byte is intact."""
    try:
        reader.verify()
    except ShardFormatError as exc:
        return str(exc)
    return None


def describe_shard(reader: ShardReader, damage: str | None = None) -> str:
    """`gtok info` of a shard; `damage` is what `shard_damage` found."""
    stats = length_stats(reader.lengths)
    gtars = reader.version == 0
    kind = "gtars single-record file" if gtars else f"gtok shard, format version {reader.version}"
    lines = [
        f"{reader.path}",
        f"  format       {kind}",
        f"  checksums    {'none (gtars file)' if gtars else f'FAILED: {damage}' if damage else 'OK'}",
        f"  records      {len(reader):,}",
        f"  tokens       {reader.n_tokens:,}",
        f"  dtype        {reader.dtype.name}",
        f"  vocab size   {reader.vocab_size if reader.vocab_size is not None else 'unknown'}",
        f"  fingerprint  {reader.fingerprint or 'none (gtars file)'}",
        f"  dataset      {reader.dataset or f'none recorded (counts as {DEFAULT_DATASET!r})'}",
        f"  universe     {_universe_line(reader.universe)}",
        "  length       min {min:,}  median {median:,.0f}  mean {mean:,.1f}  max {max:,}".format(**stats),
    ]
    labels = reader.labels
    if labels is not None:
        classes = sorted({x for x in labels if x is not None})
        shown = ", ".join(classes[:8]) + (" ..." if len(classes) > 8 else "")
        lines.append(f"  labels       {len(classes)} classes: {shown}")
    return "\n".join(lines)


def _universe_line(universe: UniverseRecord | None) -> str:
    if universe is None:
        return "not recorded"
    return universe.path + (f" (built from {universe.source})" if universe.source else "")


def describe_manifest(manifest: Manifest) -> str:
    """`gtok info` of a manifest: its totals, universe, label classes, and records and tokens per dataset."""
    lines = [
        f"{manifest.path}",
        "  format       gtok manifest",
        f"  shards       {len(manifest.entries):,}",
        f"  records      {manifest.records:,}",
        f"  tokens       {manifest.tokens:,}",
        f"  vocab size   {manifest.vocab_size if manifest.vocab_size is not None else 'unknown'}",
        f"  fingerprint  {manifest.fingerprint or 'none (gtars files)'}",
        f"  universe     {_universe_line(manifest.universe)}",
    ]
    if manifest.label_classes is not None:
        shown = ", ".join(manifest.label_classes[:8]) + (" ..." if len(manifest.label_classes) > 8 else "")
        lines.append(f"  labels       {len(manifest.label_classes)} classes: {shown}")
    datasets = manifest.datasets()
    width = max(map(display_width, ["dataset", *datasets]))
    lines += [f"  datasets     {len(datasets)}",
              f"    {padded('dataset', width)}  {'shards':>8}  {'records':>12}  {'tokens':>15}  {'share':>6}"]
    for name, row in datasets.items():
        share = row["records"] / manifest.records if manifest.records else 0.0
        lines.append(f"    {padded(name, width)}  {row['shards']:>8,}  {row['records']:>12,}  {row['tokens']:>15,}  {share:>6.1%}")
    return "\n".join(lines)


def display_width(text: str) -> int:
    """The terminal columns `text` takes: two for a wide or fullwidth (CJK) character, none for a
    combining mark; len() counts characters, and a table padded by it is misaligned."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def padded(text: str, width: int) -> str:
    """`text` padded with spaces to `width` terminal columns."""
    return text + " " * (width - display_width(text))


COLUMNS = (
    "shard", "source", "records", "tokens", "tokens_per_record_mean", "tokens_per_record_median",
    "unk_only_records", "unk_only_share", "regions_seen", "coverage", "cumulative_coverage",
)


def shard_stats(shards: Sequence[tuple[str, str]]) -> tuple["pd.DataFrame", dict[str, np.ndarray]]:
    """Statistics of (path, source) shards: one row per shard plus a last row `all`, and every
    record's length grouped by source (for the histogram)."""
    import pandas as pd

    _, vocab_size = common_vocabulary([_vocabulary(path) for path, _ in shards])
    if vocab_size is None:
        raise GtokError(f"{describe(shards[0][0])}: gtars token files carry no vocabulary size; use gtok shards.")
    layout = Vocabulary.of_size(vocab_size)
    n_regions, unk = layout.n_regions, layout.unk_token_id
    seen_all = np.zeros(vocab_size, dtype=bool)
    rows, lengths = [], {}
    for path, source in shards:
        # One shard mapped at a time: the pages of a mapped shard count in the job's RSS once read,
        # so holding every shard open would grow its memory with the whole data set's size.
        reader = ShardReader(path)
        seen = np.zeros(vocab_size, dtype=bool)
        seen[reader.tokens] = True
        seen_all |= seen
        n_unk = unk_only_records(reader, unk)
        rows.append(_row(describe(reader.path), source, reader.lengths, n_unk, seen[:n_regions], seen_all[:n_regions]))
        lengths.setdefault(source, []).append(reader.lengths)
    lengths = {source: np.concatenate(parts) for source, parts in lengths.items()}
    every = np.concatenate(list(lengths.values()))
    total_unk = sum(r["unk_only_records"] for r in rows)
    rows.append(_row("all", "all", every, total_unk, seen_all[:n_regions], seen_all[:n_regions]))
    return pd.DataFrame(rows, columns=COLUMNS), lengths


def _vocabulary(path: str) -> tuple[str, str | None, int | None]:
    """(name, fingerprint, vocab_size) of a shard, read from its header; the shard is closed again."""
    reader = ShardReader(path)
    return describe(reader.path), reader.fingerprint, reader.vocab_size


def unk_only_records(reader: ShardReader, unk: int) -> int:
    """Records whose whole document is the single `<unk>` token."""
    single = np.flatnonzero(reader.lengths == 1)
    return int(np.count_nonzero(reader.tokens[reader.offsets[single].astype(np.int64)] == unk))


def _row(name: str, source: str, lengths: np.ndarray, n_unk: int, seen: np.ndarray, seen_so_far: np.ndarray) -> dict:
    n = int(lengths.size)
    return {
        "shard": name,
        "source": source,
        "records": n,
        "tokens": int(lengths.sum()),
        "tokens_per_record_mean": round(float(lengths.mean()), 2) if n else 0.0,
        "tokens_per_record_median": float(np.median(lengths)) if n else 0.0,
        "unk_only_records": n_unk,
        "unk_only_share": round(n_unk / n, 4) if n else 0.0,
        "regions_seen": int(seen.sum()),
        "coverage": round(float(seen.mean()), 4),
        "cumulative_coverage": round(float(seen_so_far.mean()), 4),
    }
