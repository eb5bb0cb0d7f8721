"""What the workflow reports about a tokenized data set: per-shard statistics and their plots.

Statistics are computed from the shards alone (memory-mapped, vectorized; one pass over each
shard's tokens), so they describe exactly what training will read:

- tokens per record: how long documents are, per source (BED files, cells);
- `<unk>`-only records: documents without a single universe region, i.e. wasted records;
- universe coverage: the fraction of universe regions that occur at least once, per shard and
  cumulated over shards; a universe region never seen is a token the model cannot learn.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from gtok.errors import GtokError, describe
from gtok.shard import ShardReader
from gtok.tokenizer import SPECIAL_TOKENS, Tokenizer

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = (
    "shard", "source", "records", "tokens", "tokens_per_record_mean", "tokens_per_record_median",
    "unk_only_records", "unk_only_share", "regions_seen", "coverage", "cumulative_coverage",
)


@contextlib.contextmanager
def job_log(path: str | os.PathLike) -> Iterator[None]:
    """Send everything this process prints, from Python and from C libraries, to a workflow job's
    log; a `GtokError` ends the job with its one-line message there, not with a traceback.

    File descriptors 1 and 2 are pointed at the log for good, so output after the block (an
    unexpected exception's traceback, warnings at exit) lands there too.
    """
    log = open(path, "w", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    try:
        yield
    except GtokError as exc:
        print(f"error: {exc}", file=log)
        raise SystemExit(1) from None
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        log.close()


def universe_summary(path: str | os.PathLike) -> dict:
    """Load a universe (filling the binary cache) and describe it."""
    tok = Tokenizer.from_bed(path)
    return {
        "path": describe(path),
        "regions": len(tok.universe),
        "vocab_size": tok.vocab_size,
        "fingerprint": tok.fingerprint,
    }


def shard_stats(shards: Sequence[tuple[str, str]]) -> tuple["pd.DataFrame", dict[str, np.ndarray]]:
    """Statistics of (path, source) shards: one row per shard plus a last row `all`, and every
    record's length grouped by source (for the histogram)."""
    import pandas as pd

    from gtok.manifest import common_vocabulary

    _, vocab_size = common_vocabulary([_vocabulary(path) for path, _ in shards])
    if vocab_size is None:
        raise GtokError(f"{describe(shards[0][0])}: gtars token files carry no vocabulary size; use gtok shards.")
    n_regions = vocab_size - len(SPECIAL_TOKENS)
    unk = n_regions  # the first special token
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


# -- plots ----------------------------------------------------------------------------------------


def _figure(title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    ax.set_title(title)
    return fig, ax


def _save(fig, path: str | os.PathLike) -> None:
    import matplotlib.pyplot as plt

    from gtok.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def plot_tokens_per_record(lengths: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Histogram of tokens per record, one line per source, on log-spaced bins."""
    top = max(int(x.max()) for x in lengths.values())
    bins = np.unique(np.geomspace(1, top + 1, 40).astype(np.int64))
    bins = np.append(bins, bins[-1] + 1)
    fig, ax = _figure("Tokens per record")
    for source, x in sorted(lengths.items()):
        counts, _ = np.histogram(x, bins=bins)
        ax.stairs(counts, bins, label=f"{source} ({x.size:,} records, median {np.median(x):g})")
    ax.set_xscale("log")
    ax.set_xlabel("tokens in the record")
    ax.set_ylabel("records")
    ax.legend()
    _save(fig, path)


def plot_unk_only(table: "pd.DataFrame", path: str | os.PathLike) -> None:
    """Share of `<unk>`-only records in each shard, coloured by source."""
    shards, total = table.iloc[:-1], table.iloc[-1]
    fig, ax = _figure(f"Records that are only <unk>: {total.unk_only_share:.1%} overall")
    for source, part in shards.groupby("source"):
        ax.plot(part.index, part.unk_only_share, "o", label=source)
    ax.set_xlabel("shard")
    ax.set_ylabel("share of records that are only <unk>")
    ax.set_ylim(bottom=0)
    ax.legend()
    _save(fig, path)


def plot_coverage(table: "pd.DataFrame", path: str | os.PathLike) -> None:
    """Universe coverage of each shard, and cumulated over the shards in order."""
    shards, total = table.iloc[:-1], table.iloc[-1]
    fig, ax = _figure(f"Universe coverage: {total.regions_seen:,} regions seen, {total.coverage:.1%} of the universe")
    for source, part in shards.groupby("source"):
        ax.plot(part.index, part.coverage, "o", label=f"one shard ({source})")
    ax.plot(shards.index, shards.cumulative_coverage, "-", color="black", label="all shards so far")
    ax.set_xlabel("shard")
    ax.set_ylabel("fraction of universe regions seen")
    ax.set_ylim(0, 1)
    ax.legend()
    _save(fig, path)
