"""Report items that are tables rather than plots: the run summary of training, the evaluation.

Written as small self-contained HTML pages, which the Snakemake report shows as they are.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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


def verdict(table: Any, folds: Any, model: str, supervised: bool = False) -> str:
    """One sentence, the first of the report: which method did better on kNN accuracy (the headline
    metric), with each one's mean ± sd over the folds of every draw, as metrics.tsv has them.

    Both methods are scored on the same folds, so the comparison is paired: a winner is named only
    when paired_difference finds the per-fold differences' mean different from zero at 5 %; otherwise
    the two are "within the noise". Comparing the difference of means with each method's own spread
    would ignore the pairing: it can name a winner the folds disagree on, and call noise a lead held
    in every fold. The sentence says which test it was, in words. `supervised`: the model learned from
    the training records' labels, which LSI uses only to choose which components it keeps; said in
    the same sentence."""
    scores = {m: (v, sd) for m, metric, v, sd in table.itertuples(index=False) if metric == "knn_accuracy"}
    if model not in scores or "lsi" not in scores:
        return "No comparison: the evaluation was skipped."
    (a, sa), (b, sb) = scores[model], scores["lsi"]
    mean, se, n, significant = paired_difference(folds, model, "lsi")
    labels = (f" ({model} learned from the training records' labels; LSI used them only to choose which "
              "components it keeps)" if supervised else "")
    if n < 2:
        return (f"{model} and LSI cannot be told apart{labels}: kNN accuracy {a:.2f} and {b:.2f}, but fewer than two "
                "folds scored both, too few to compare.")
    repeats, k = folds["repeat"].nunique(), folds["fold"].nunique()
    shown = f"(mean ± sd over {repeats} seeded draws of {k} folds)" if repeats > 1 else f"(mean ± sd over {k} folds)"
    paired = (f"the paired difference is {mean:+.3f} ± {se:.3f} (mean ± standard error of {n} folds, corrected for the "
              "training records the folds share)")
    if not significant:
        return (f"{model} and LSI are within the noise of each other{labels}: kNN accuracy {a:.2f} ± {sa:.2f} and "
                f"{b:.2f} ± {sb:.2f} {shown}; {paired}, not different from zero at 5 % (t-test).")
    (better, x, sx), (worse, y, sy) = ((model, a, sa), ("LSI", b, sb))[:: 1 if mean > 0 else -1]
    return (f"{better} did better than {worse}{labels}: kNN accuracy {x:.2f} ± {sx:.2f} against {y:.2f} ± {sy:.2f} "
            f"{shown}; {paired}, different from zero at 5 % (t-test).")


def paired_difference(folds: Any, method: str, other: str, metric: str = "knn_accuracy") -> tuple[float, float, int, bool]:
    """(mean, standard error, folds) of `method` minus `other` over the folds both scored (of every
    repeat, folds.tsv's `repeat` column), and whether the mean differs from zero at 5 % (two-sided).
    Every fold the same nonzero difference is a difference; fewer than two folds never is.

    The test is Nadeau & Bengio's (2003) corrected resampled t-test, not the plain paired t-test. The
    kNN of one fold is fitted on the other folds, so any two folds' training records overlap (3/5 of
    the records with 5 folds) and their differences are positively correlated; s^2 / J (J differences)
    then understates the mean's variance and the plain test names winners too often (Dietterich 1998;
    tests/test_evaluate.py measures it). The corrected variance is (1/J + n_test/n_train) s^2, with
    n_test/n_train = 1/(k - 1) for k folds (stratified folds differ by at most a record per label),
    and J - 1 degrees of freedom. Pooling several seeded fold assignments (Bouckaert & Frank 2004)
    shrinks the 1/J term and adds degrees of freedom, so a real lead is still found; the n_test/n_train
    term stays, as more assignments of the same records cannot remove their overlap."""
    from scipy.stats import t

    rows = folds[folds["metric"] == metric].pivot(index=["repeat", "fold"], columns="method", values="value")
    if method not in rows or other not in rows:
        return float("nan"), float("nan"), 0, False
    k = rows.index.get_level_values("fold").nunique()  # the design's folds, also those a method could not score
    d = (rows[method] - rows[other]).dropna()
    if d.size < 2 or k < 2:
        return (float(d.mean()) if d.size else float("nan")), float("nan"), int(d.size), False
    mean, se = float(d.mean()), corrected_standard_error(d.to_numpy(dtype=float), 1 / (k - 1))
    if se == 0:
        return mean, se, int(d.size), mean != 0
    return mean, se, int(d.size), abs(mean) / se > float(t.ppf(0.975, d.size - 1))


def corrected_standard_error(differences: np.ndarray, test_to_train: float) -> float:
    """sqrt((1/J + n_test/n_train) s^2) of J cross-validated differences: their mean's standard error
    corrected for the training records the folds share (Nadeau & Bengio 2003); see paired_difference."""
    return float(np.sqrt((1 / differences.size + test_to_train) * differences.var(ddof=1)))


def write_evaluation_caption(table: Any, folds: Any, model: str, records: int, notes: Sequence[str], details: str,
                             design: Mapping[str, int], path: str | os.PathLike, unseen: bool = True,
                             supervised: bool = False) -> str:
    """The report caption of the evaluation (reStructuredText): its headline first (returned, for
    `gtok evaluate` to print the very sentence written), then what was measured and how. `design`:
    the evaluation's `folds`, `repeats` (seeded draws of them for kNN accuracy) and `neighbours`,
    as gtok.evaluation.evaluate sets them. `unseen`: whether the model is known never to have
    trained on the held-out records (it records its training data). `supervised`: see verdict."""
    head = evaluation_headline(table, folds, model, notes, supervised)
    lines = [f"**{head}**", *(f"- {n}" for n in notes if n != head)]
    K, R, neighbours = design["folds"], design["repeats"], design["neighbours"]
    held_out = "which it never trained on" if unseen else "which it may have trained on (see above)"
    text = ("\n\n".join(lines) + "\n\n"
            f"The model's embeddings of the {records:,} held-out (validation) records, {held_out}, "
            "scored against LSI (TF-IDF and truncated SVD, the Signac and ArchR recipe) fitted on the training "
            f"records and projecting the same held-out records. Both are scored on the same {K} seeded stratified "
            "folds; each record-level value is the mean ± the sample sd over the folds, and kNN accuracy's is over those folds "
            f"and {R - 1} more seeded draws of the {K} folds ({R * K} folds). A winner is named only when the "
            f"paired per-fold differences of kNN accuracy over those {R * K} folds "
            "pass a two-sided t-test at 5 % whose standard error is corrected for the "
            "training records the folds share (Nadeau and Bengio's corrected resampled t-test: each fold's kNN "
            f"is fitted on the other {K - 1}, so any two folds train on {K - 2}/{K} of the same records and their "
            "differences rise and fall together, which a plain t-test takes for agreement). The spread is that of "
            "the folds of this one split: another split of the records into training and held-out ones moves "
            "both methods' scores too, as does another seed of the model's training or of LSI's randomized SVD, "
            "which it does not include. kNN accuracy: up to "
            f"{neighbours} neighbours (no more than the rarest label has in the training folds) fitted on {K - 1} folds "
            "predict the one left out (chance is about the largest label's share); ARI and NMI compare a k-means clustering "
            "of each fold with its labels; silhouette (cosine) says how tightly records of one label group; "
            "``coaccessible_pair_auc`` asks whether regions often accessible together lie closer than random "
            f"pairs (0.5: no signal).{_region_spread(table, design)} {details} Every value is in metrics.tsv, each fold's in "
            "folds.tsv.\n")
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return head


def _region_spread(table: Any, design: Mapping[str, int]) -> str:
    """The caption's sentence on the region-level metric's spread: over bootstrap resamples of the
    held-out records, not over folds (gtok.evaluation.evaluate.resampled_pair_aucs), or none (too
    few regions), when a difference in it is not told from noise."""
    region = table[table["metric"] == "coaccessible_pair_auc"]
    if region.empty:
        return ""
    if region["sd"].isna().any():
        return (" ``coaccessible_pair_auc`` is one value over all held-out records, without a spread: "
                "a difference in it is not told from noise.")
    return (" ``coaccessible_pair_auc``'s value is over all held-out records, and its sd over "
            f"{design.get('resamples')} bootstrap resamples of them (drawn with replacement in "
            f"{design.get('resample_groups')} seeded random groups of records, the co-accessible pairs chosen anew "
            "in each): its standard error, not a spread over folds (on simulated cells 0.7 to 2.1 times the sd of the value "
            "over independent sets of as many records).")


def evaluation_headline(table: Any, folds: Any, model: str, notes: Sequence[str], supervised: bool = False) -> str:
    """The evaluation's first sentence, which its caption and summary open with: the verdict, or
    the note saying why the evaluation was skipped."""
    skipped = [n for n in notes if "evaluation skipped" in n]
    return skipped[0] if skipped else verdict(table, folds, model, supervised)


def write_evaluation_html(table: Any, folds: Any, model: str, records: int, notes: Sequence[str],
                          path: str | os.PathLike, supervised: bool = False) -> None:
    """metrics.tsv as a table (methods as columns, mean ± sd), headed by the verdict, or why it was skipped."""
    head = evaluation_headline(table, folds, model, notes, supervised)
    title = head if head in notes else " ".join([head, f"({records:,} held-out records.)", *notes])  # skipped: the why alone
    rows: list[tuple] = []
    header = None
    if len(table):
        cell = [f"{v:.3f}" + ("" if sd != sd else f" ± {sd:.3f}") for v, sd in zip(table["value"], table["sd"])]
        wide = table.assign(cell=cell).pivot(index="metric", columns="method", values="cell")
        methods = [model, *(m for m in wide.columns if m != model)]
        rows = [(metric, *wide.loc[metric, methods]) for metric in wide.index]
        header = ["metric", *methods]
    with atomic_path(path) as tmp:
        Path(tmp).write_text(html_table(title, rows, header))
