"""Report items that are tables rather than plots: the run summary of training, the evaluation.

Written as small self-contained HTML pages, which the Snakemake report shows as they are.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gtok.atomic import atomic_path


def html_table(title: str, rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    """A titled HTML table of `rows` (escaped)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header) if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    style = "table{border-collapse:collapse;font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
            f"</head><body><h3>{html.escape(title)}</h3><table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"
            "</body></html>\n")


def write_summary_html(summary: Mapping[str, Any], path: str | os.PathLike) -> None:
    """The run summary of `gtok train` (summary.json) as an HTML page."""
    rows = [(key.replace("_", " "), f"{summary[key]:,}" if isinstance(summary[key], int) else summary[key])
            for key in ("world_size", "num_nodes", "devices_per_node", "global_step", "tokens_seen", "wall_seconds")]
    for e in summary["epochs"]:
        rows.append((f"epoch {e['epoch']}: records per rank", ", ".join(f"{n:,}" for n in e["records_per_rank"])))
        rows.append((f"epoch {e['epoch']}: records seen / in the data", f"{e['records_seen']:,} / {e['records']:,}"))
        rows.append((f"epoch {e['epoch']}: records seen by several ranks", f"{e['records_seen_by_several_ranks']:,}"))
    with atomic_path(path) as tmp:
        Path(tmp).write_text(html_table("Training run", rows))


def verdict(table: Any, model: str) -> str:
    """One sentence: which method did better on kNN accuracy (the headline metric), by how much."""
    scores = {m: v for m, metric, v in table.itertuples(index=False) if metric == "knn_accuracy"}
    if model not in scores or "lsi" not in scores:
        return "No comparison: the evaluation was skipped."
    a, b = scores[model], scores["lsi"]
    if abs(a - b) < 0.005:
        return f"{model} and LSI did equally well: kNN accuracy {a:.3f} and {b:.3f}."
    better, worse = (model, "LSI") if a > b else ("LSI", model)
    return f"{better} did better than {worse}: kNN accuracy {max(a, b):.3f} against {min(a, b):.3f}."


def write_evaluation_caption(table: Any, model: str, records: int, note: str | None, path: str | os.PathLike) -> None:
    """The report caption of the evaluation (reStructuredText): the verdict first, then what was measured."""
    text = (f"**{note or verdict(table, model)}**\n\n"
            f"The model's embeddings of the {records:,} held-out (validation) records, which it never trained on, "
            "scored against LSI (TF-IDF and truncated SVD, the default of Signac and ArchR) on the same records, "
            "read from the shards. kNN accuracy: 15 neighbours, 5-fold cross-validated (chance is about the largest "
            "label's share); ARI and NMI compare a k-means clustering with the labels; silhouette (cosine) says how "
            "tightly records of one label group; ``coaccessible_pair_auc`` asks whether regions often accessible "
            "together lie closer than random pairs (0.5: no signal). Every value is in metrics.tsv.\n")
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_evaluation_html(table: Any, model: str, records: int, note: str | None, path: str | os.PathLike) -> None:
    """metrics.tsv as a table (methods as columns), headed by the verdict, or why it was skipped."""
    title = note or f"Evaluation on {records:,} held-out records. {verdict(table, model)}"
    wide = table.pivot(index="metric", columns="method", values="value") if len(table) else None
    rows = [(metric, *(f"{v:.3f}" for v in wide.loc[metric])) for metric in wide.index] if wide is not None else []
    header = ["metric", *wide.columns] if wide is not None else None
    with atomic_path(path) as tmp:
        Path(tmp).write_text(html_table(title, rows, header))
