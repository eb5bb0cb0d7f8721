"""The plots people look at: tokenized data in the report, and the loss curve of a training run.

Rendered with matplotlib's Agg backend (no display needed) and written atomically.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from gtok.atomic import atomic_path

if TYPE_CHECKING:
    import pandas as pd


def _figure(title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    ax.set_title(title)
    return fig, ax


def _save(fig, path: str | os.PathLike) -> None:
    import matplotlib.pyplot as plt

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


def plot_loss(metrics: "pd.DataFrame", path: str | os.PathLike) -> None:
    """Training and validation loss against the step."""
    fig, ax = _figure("Loss")
    for column, style, label in (("train_loss", "-", "training"), ("val_loss", "o-", "validation")):
        if column in metrics:
            points = metrics[["step", column]].dropna()
            ax.plot(points["step"], points[column], style, label=label, markersize=4)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    _save(fig, path)


def plot_umap(coordinates: np.ndarray, labels: np.ndarray, title: str, path: str | os.PathLike) -> None:
    """A 2-D UMAP of records, one colour per label."""
    fig, ax = _figure(title)
    for label in np.unique(labels):
        pick = labels == label
        ax.scatter(coordinates[pick, 0], coordinates[pick, 1], s=6, label=f"{label} ({pick.sum():,})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=2, fontsize="small", loc="center left", bbox_to_anchor=(1, 0.5))
    _save(fig, path)


def plot_unavailable(message: str, path: str | os.PathLike) -> None:
    """A placeholder figure that says why there is no plot (the report shows it in its place)."""
    fig, ax = _figure("not available")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    _save(fig, path)
