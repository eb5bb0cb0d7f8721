"""Did the model learn? Its embeddings of held-out records against an LSI baseline, by the metrics
scATAC users judge embeddings with.

The records are the validation split of the training manifest (the split the model never trained
on: a sample sheet's `split` column, else the same stable name hash and `val_fraction` as
training), read straight from the shards, with their labels. Each method's embedding of them is
scored by

- `knn_accuracy`: a 15-nearest-neighbour classifier's label accuracy (fewer neighbours for a label
  with fewer records), 5-fold stratified cross-validated (chance is about the largest class's share);
- `ari`, `nmi`: agreement of a k-means clustering (k = the number of labels) with the labels;
- `silhouette`: how much closer records of one label are to each other than to others (cosine).

The baseline is LSI, the default of Signac and ArchR: TF-IDF of the records' token counts, then a
truncated SVD, its first component dropped (it follows sequencing depth). For models that learn a
vector per region (region2vec, and the encoder's input embeddings) one region-level metric is
added, `coaccessible_pair_auc`: how often a pair of regions that are often accessible together
(high Jaccard co-occurrence over the records) lies closer (cosine) than a random pair; 0.5 is no
signal. LSI's region loadings get the same score.

scikit-learn (and umap-learn, for the plots) are imported here only.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gtok.errors import GtokError, describe
from gtok.extras import require

METRICS = ("knn_accuracy", "ari", "nmi", "silhouette")
LSI_DIMS = 30
TOP_REGIONS = 2_000


@dataclass
class EvalRecords:
    """Held-out records: token ids (CSR-like) and labels (strings)."""

    ids: np.ndarray  # all records' token ids, concatenated
    lengths: np.ndarray  # int64 per record
    labels: np.ndarray | None  # str per record; None when the data has no labels
    vocab_size: int

    def docs(self) -> list[np.ndarray]:
        return np.split(self.ids, np.cumsum(self.lengths)[:-1]) if self.lengths.size else []

    def counts(self) -> Any:
        """Records x vocabulary, 1 where a record holds a token (scipy CSR)."""
        import scipy.sparse as sp

        indptr = np.concatenate(([0], np.cumsum(self.lengths)))
        m = sp.csr_matrix((np.ones(self.ids.size, np.float32), self.ids, indptr), shape=(self.lengths.size, self.vocab_size))
        m.sum_duplicates()
        m.data[:] = 1.0
        return m


def held_out_records(manifest: str | os.PathLike, val_fraction: float, split: str = "val",
                     fingerprint: str | None = None) -> EvalRecords:
    """The records of `split` (their labels, when the data has any), from the shards; with a
    `fingerprint`, shards of another vocabulary are refused."""
    from gtok.data.records import IGNORE_LABEL, Records
    from gtok.universe import expand_ranges

    rec = Records.open(manifest, verify=False, split=split, val_fraction=val_fraction, expected_fingerprint=fingerprint,
                       allow_empty=True)
    parts = [np.zeros(0, np.int64)]  # records come grouped by shard, in shard order: one gather per shard
    for shard in np.unique(rec.shard):
        pick = rec.shard == shard
        _, positions = expand_ranges(rec.start[pick], rec.start[pick] + rec.length[pick])
        parts.append(np.asarray(rec.tokens(int(shard)))[positions])
    ids = np.concatenate(parts)
    labels = None
    if rec.label is not None and rec.label_classes:
        keep = rec.label != IGNORE_LABEL
        if keep.any():
            classes = np.asarray(rec.label_classes, dtype=object)
            labels = np.where(keep, classes[np.where(keep, rec.label, 0)], None)
    return EvalRecords(ids.astype(np.int64), rec.length.astype(np.int64), labels, rec.vocab_size)


def lsi(counts: Any, dims: int = LSI_DIMS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(record embedding [n, d], region loadings [vocab, d]) of TF-IDF + truncated SVD, the first
    component dropped; rows L2-normalised."""
    from sklearn.decomposition import TruncatedSVD

    tf = counts.multiply(1.0 / np.maximum(counts.sum(axis=1), 1)).tocsr()
    idf = counts.shape[0] / np.maximum(np.asarray(counts.sum(axis=0)).ravel(), 1)
    tfidf = tf.multiply(idf).tocsr()
    tfidf.data = np.log1p(tfidf.data * 1e4)
    k = max(2, min(dims + 1, min(counts.shape) - 1))
    svd = TruncatedSVD(n_components=k, random_state=seed)
    cells = svd.fit_transform(tfidf)[:, 1:]
    return _unit(cells), svd.components_[1:].T


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cell_metrics(x: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float]:
    """knn_accuracy, ari, nmi and silhouette of an embedding against labels (see the module docstring)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.asarray(labels).astype(str)
    classes, y, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    keep = sizes[y] >= 2  # cross-validation needs two records of a label
    x, y = _unit(np.asarray(x, dtype=np.float64))[keep], y[keep]
    if np.unique(y).size < 2:
        raise GtokError("evaluation needs held-out records of at least two labels, two records each.")
    smallest = int(np.bincount(y)[np.bincount(y) > 0].min())
    folds = min(5, smallest)
    # at most 15 neighbours, and fewer than the smallest label has in a training fold
    knn = KNeighborsClassifier(n_neighbors=max(1, min(15, smallest * (folds - 1) // folds - 1)))
    accuracy = cross_val_score(knn, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed)).mean()
    clusters = KMeans(n_clusters=np.unique(y).size, n_init=10, random_state=seed).fit_predict(x)
    return {
        "knn_accuracy": float(accuracy),
        "ari": float(adjusted_rand_score(y, clusters)),
        "nmi": float(normalized_mutual_info_score(y, clusters)),
        "silhouette": float(silhouette_score(x, y, metric="cosine")),
    }


def coaccessible_pair_auc(counts: Any, vectors: np.ndarray, seed: int = 0, top: int = TOP_REGIONS) -> float:
    """P(cosine of a co-accessible region pair > cosine of a random pair) over the `top` most
    often accessible regions; co-accessible = the top 1% of pairs by Jaccard co-occurrence."""
    from sklearn.metrics import roc_auc_score

    seen = np.asarray(counts.sum(axis=0)).ravel()
    regions = np.argsort(-seen, kind="stable")[:top]
    regions = regions[seen[regions] > 0]
    if regions.size < 10:
        return float("nan")
    sub = counts[:, regions]
    both = (sub.T @ sub).toarray()
    n = seen[regions]
    jaccard = both / np.maximum(n[:, None] + n[None, :] - both, 1)
    i, j = np.triu_indices(regions.size, k=1)
    score = jaccard[i, j]
    positive = score >= np.quantile(score, 0.99)
    v = _unit(np.asarray(vectors, dtype=np.float64)[regions])
    cosine = np.einsum("ij,ij->i", v[i], v[j])
    rng = np.random.default_rng(seed)
    negative = rng.choice(np.flatnonzero(~positive), size=min(int(positive.sum()) * 10, int((~positive).sum())), replace=False)
    pick = np.concatenate([np.flatnonzero(positive), negative])
    return float(roc_auc_score(positive[pick], cosine[pick]))


def umap_coordinates(x: np.ndarray, seed: int = 0) -> np.ndarray:
    import umap

    neighbours = int(min(15, max(2, len(x) - 1)))
    return umap.UMAP(n_neighbors=neighbours, random_state=seed, metric="cosine").fit_transform(x)


def region_vectors(model: Any) -> np.ndarray | None:
    """A model's per-token input vectors (region2vec's centre embedding, the encoder's token embedding)."""
    for name in ("center", "embedding", "backbone"):
        part = getattr(model, name, None)
        if part is not None and hasattr(part, "weight"):
            return part.weight.detach().float().cpu().numpy()
        if part is not None and hasattr(part, "embedding"):
            return part.embedding.weight.detach().float().cpu().numpy()
    return None


def evaluate(model_path: str | os.PathLike, manifest: str | os.PathLike, out: str | os.PathLike,
             val_fraction: float | None = None, seed: int = 0, progress: bool = False) -> Path:
    """Write OUT/metrics.tsv, OUT/umap_MODEL.png, OUT/umap_lsi.png, OUT/summary.html and OUT/caption.rst
    (the report's caption, which leads with the verdict)."""
    require("eval", "gtok evaluate")
    import pandas as pd

    from gtok.atomic import atomic_path
    from gtok.embed import Embedder
    from gtok.options import DataOptions
    from gtok.plots import plot_umap, plot_unavailable
    from gtok.report import write_evaluation_caption, write_evaluation_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    embedder = Embedder(model_path, None, None, 64)
    name = embedder.name
    if val_fraction is None:  # the records the model was held out from: its training's val_fraction
        val_fraction = embedder.data_options.get("val_fraction", DataOptions.val_fraction)
    records = held_out_records(manifest, val_fraction, fingerprint=embedder.vocab.fingerprint)
    rows: list[tuple[str, str, float]] = []
    plots = {name: out / f"umap_{name}.png", "lsi": out / "umap_lsi.png"}
    note = _why_not(records, manifest)
    if note is not None:
        print(f"gtok evaluate: {note}", file=sys.stderr)
        for path in plots.values():
            plot_unavailable(note, path)
    else:
        labelled = np.not_equal(records.labels, None)
        counts = records.counts()
        model_x = embedder.embed_docs(records.docs(), progress)[labelled]
        lsi_x, loadings = lsi(counts, seed=seed)
        labels = records.labels[labelled].astype(str)
        for method, x in ((name, model_x), ("lsi", lsi_x[labelled])):
            rows += [(method, metric, value) for metric, value in cell_metrics(x, labels, seed).items()]
            plot_umap(umap_coordinates(x, seed), labels, f"{method}: held-out records by label", plots[method])
        vectors = region_vectors(embedder.model)
        if vectors is not None:
            rows.append((name, "coaccessible_pair_auc", coaccessible_pair_auc(counts, vectors[: counts.shape[1]], seed)))
            rows.append(("lsi", "coaccessible_pair_auc", coaccessible_pair_auc(counts, loadings, seed)))
    table = pd.DataFrame(rows, columns=["method", "metric", "value"])
    with atomic_path(out / "metrics.tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    write_evaluation_html(table, name, len(records.lengths), note, out / "summary.html")
    write_evaluation_caption(table, name, len(records.lengths), note, out / "caption.rst")
    return out / "metrics.tsv"


def _why_not(records: EvalRecords, manifest: str | os.PathLike) -> str | None:
    """Why the held-out records cannot be scored (no labels, or too few), or None."""
    where = f"{describe(manifest)}: the {len(records.lengths):,} held-out records"
    if not len(records.lengths):
        return (f"{describe(manifest)}: no records are held out from training (val_fraction is 0 or too small for "
                "this data, and no sample sheet names a 'val' split); evaluation skipped.")
    if records.labels is None:
        return f"{where} have no labels; evaluation skipped."
    labels, counts = np.unique(records.labels[np.not_equal(records.labels, None)].astype(str), return_counts=True)
    if (counts >= 2).sum() < 2:
        return f"{where} hold fewer than two labels with two records each; evaluation skipped."
    return None
