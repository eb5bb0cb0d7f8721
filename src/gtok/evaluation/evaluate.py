"""Did the model learn? Its embeddings of held-out records against a fair LSI baseline, by the
metrics scATAC users judge embeddings with.

The records are the validation split of the training manifest (the split the model never trained
on: a sample sheet's `split` column, else the same stable name hash and `val_fraction` as
training), read straight from the shards, with their labels, a chunk of CHUNK_RECORDS at a time:
each chunk's tokens are embedded by the model, projected by LSI and counted for the region-level
metric, then dropped, so memory holds their vectors and labels, not their tokens. The baseline, LSI (gtok.evaluation.lsi), is
fitted as the model is trained: on all the training split's records, streamed from the shards,
then projects the held-out ones. Both embeddings of the same held-out records are scored
on the same 5 seeded stratified folds:

- `knn_accuracy`: a 15-nearest-neighbour classifier (fewer when a label has fewer records in the
  training folds) fitted on 4 folds predicts the 5th (chance is about the largest label's share);
- `ari`, `nmi`: agreement of a k-means clustering of the fold (k = its number of labels) with the labels;
- `silhouette`: cosine silhouette of the labels within the fold.

Each metric is reported as its mean and sample standard deviation over the folds (metrics.tsv), with the
per-fold values in folds.tsv, so that a difference can be told from noise. kNN accuracy, which the
verdict compares, is also scored on REPEATS - 1 more seeded draws of the folds (folds.tsv's
`repeat` column), and its mean and sd are over every draw's folds, so that the verdict's numbers are
the table's: gtok.report.paired_difference explains why. The other metrics use the first draw. Labels with fewer held-out
records than folds are left out (said in the log and the report). For models that learn a vector
per region (region2vec, and the encoder's input embeddings) one region-level metric is added,
`coaccessible_pair_auc`: how often a pair of regions that are often accessible together (high
Jaccard co-occurrence over the held-out records) lies closer (cosine) than any other pair; 0.5 is
no signal. LSI's region vectors (its SVD axes times their singular values) get the same score. It is
one value over all held-out records; its sd is over RESAMPLES bootstrap resamples of them
(GroupedCoOccurrence), the same for both methods, and the caption gives their paired difference.

scikit-learn (and umap-learn, for the plots) are imported here only.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gtok.errors import GtokError, describe
from gtok.evaluation.lsi import CANDIDATE_DIMS, CHUNK_RECORDS, LSI, LSI_DIMS, binarise, row_chunks, unit_rows
from gtok.extras import require
from gtok.pretrained import EVALUATED_FILE, is_evaluation_file, keep_evaluation, model_folder

METRICS = ("knn_accuracy", "ari", "nmi", "silhouette")
FOLDS = 5
NEIGHBOURS = 15
# seeded fold assignments whose kNN accuracy the verdict pools: 10 x 5-fold, as Bouckaert & Frank (2004)
# recommend with the corrected t-test for a verdict that another assignment would not overturn; kNN
# is the cheap metric (a 5-fold kNN of 20,000 held-out records of 100 dimensions: 1.4 s on 2 cores)
REPEATS = 10
TOP_REGIONS = 2_000
# coaccessible_pair_auc's spread: a bootstrap of the held-out records in RESAMPLE_GROUPS seeded random
# groups (docs/training.md, "Evaluation"; bench/README.md, "coaccessible_pair_auc's spread")
RESAMPLES = 50
RESAMPLE_GROUPS = 16
DESIGN = {"folds": FOLDS, "repeats": REPEATS, "neighbours": NEIGHBOURS,  # as the report's caption tells it
          "resamples": RESAMPLES, "resample_groups": RESAMPLE_GROUPS}
# the silhouette's blocks of distances: at scikit-learn's default (1 GiB) one fold of 10,800 records
# took 2.1 GiB more and 6.5 s; at 64 MiB, 154 MiB more and 2.8 s, the same score
SILHOUETTE_MEMORY_MB = 64
MAX_CHOICE_RECORDS = 20_000  # labelled training records that choose LSI's components (kNN is quadratic)


@dataclass
class EvalRecords:
    """Records of one split: token ids (CSR-like) and labels (strings)."""

    ids: np.ndarray  # all records' token ids, concatenated
    lengths: np.ndarray  # int64 per record
    labels: np.ndarray | None  # str per record; None when the data has no labels
    vocab_size: int

    def docs(self) -> list[np.ndarray]:
        return np.split(self.ids, np.cumsum(self.lengths)[:-1]) if self.lengths.size else []

    def counts(self) -> Any:
        """Records x vocabulary, 1 where a record holds a token (float32 CSR, binarised once here:
        LSI takes it as it is)."""
        import scipy.sparse as sp

        indptr = np.concatenate(([0], np.cumsum(self.lengths)))
        return binarise(sp.csr_matrix((np.ones(self.ids.size, np.float32), self.ids, indptr),
                                      shape=(self.lengths.size, self.vocab_size)))


class Split:
    """The records of one split and their labels, their tokens left in the shards until `take` or
    `chunks` reads them: an atlas's held-out records do not fit in memory as token ids."""

    def __init__(self, records: Any):
        self.records = records  # gtok.data.records.Records

    @functools.cached_property
    def labels(self) -> np.ndarray | None:
        """Each record's label (str, None where unlabelled); None when the data has no labels."""
        return _labels(self.records, np.arange(len(self)))

    def __len__(self) -> int:
        return len(self.records)

    def take(self, chosen: np.ndarray) -> EvalRecords:
        """The records `chosen` (ascending indices) with their tokens and labels."""
        return EvalRecords(self.records.gather(chosen).astype(np.int64), self.records.length[chosen].astype(np.int64),
                           _labels(self.records, chosen), self.records.vocab_size)

    def chunks(self) -> Iterator[EvalRecords]:
        """All the records in order, at most CHUNK_RECORDS at a time, each chunk read when reached."""
        parts = max(1, -(-len(self) // CHUNK_RECORDS))
        return (self.take(part) for part in np.array_split(np.arange(len(self)), parts))


def split_records(manifest: str | os.PathLike, val_fraction: float, split: str = "val", fingerprint: str | None = None) -> Split:
    """The records of `split` (their labels, when the data has any), none of their tokens read yet;
    with a `fingerprint`, shards of another vocabulary are refused."""
    from gtok.data.records import Records

    return Split(Records.open(manifest, verify=False, split=split, val_fraction=val_fraction,
                              expected_fingerprint=fingerprint, allow_empty=True))


def held_out_records(manifest: str | os.PathLike, val_fraction: float, split: str = "val",
                     fingerprint: str | None = None) -> EvalRecords:
    """The records of `split` with all their tokens in memory (`split_records`, taken whole): for small
    data, tests and benchmarks; `evaluate` reads them a chunk at a time."""
    records = split_records(manifest, val_fraction, split, fingerprint)
    return records.take(np.arange(len(records)))


def _labels(rec: Any, chosen: np.ndarray) -> np.ndarray | None:
    """The labels (str, None where unlabelled) of the records `chosen`; None when the data has none."""
    from gtok.data.records import IGNORE_LABEL

    if rec.label is None or not rec.label_classes:
        return None
    label = rec.label[chosen]
    keep = label != IGNORE_LABEL
    if not keep.any():
        return None
    classes = np.asarray(rec.label_classes, dtype=object)
    return np.where(keep, classes[np.where(keep, label, 0)], None)


def fold_ids(labels: np.ndarray, seed: int = 0, folds: int = FOLDS) -> np.ndarray:
    """The fold (0..folds-1) of each record: seeded and stratified by label, the same for every method."""
    from sklearn.model_selection import StratifiedKFold

    out = np.empty(len(labels), np.int64)
    for f, (_, test) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels)):
        out[test] = f
    return out


def repeated_folds(labels: np.ndarray, seed: int = 0, repeats: int = REPEATS) -> list[np.ndarray]:
    """`repeats` seeded stratified fold assignments (fold_ids at seed, seed + 1, ...), the first the
    one every metric is scored on; the same for every method."""
    return [fold_ids(labels, seed + r) for r in range(repeats)]


def fold_metrics(x: np.ndarray, labels: np.ndarray, folds: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Per fold: kNN accuracy (fitted on the other folds), k-means ARI and NMI, and cosine silhouette
    of the fold's records. NaN where a fold cannot give a metric (a silhouette of one record per label)."""
    from sklearn import config_context
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    x, labels = unit_rows(np.asarray(x, dtype=np.float64)), np.asarray(labels).astype(str)
    out = {m: np.full(int(folds.max()) + 1, np.nan) for m in METRICS}
    out["knn_accuracy"] = knn_accuracy(x, labels, folds)
    for f in range(int(folds.max()) + 1):
        test = folds == f
        k = np.unique(labels[test]).size
        clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x[test])
        out["ari"][f] = adjusted_rand_score(labels[test], clusters)
        out["nmi"][f] = normalized_mutual_info_score(labels[test], clusters)
        if 2 <= k < test.sum():
            with config_context(working_memory=SILHOUETTE_MEMORY_MB):
                out["silhouette"][f] = silhouette_score(x[test], labels[test], metric="cosine")
    return out


def knn_accuracy(x: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Per fold, the accuracy of a kNN classifier fitted on the other folds (cosine: rows made unit)."""
    from sklearn.neighbors import KNeighborsClassifier

    x, labels = unit_rows(np.asarray(x, dtype=np.float64)), np.asarray(labels).astype(str)
    out = np.full(int(folds.max()) + 1, np.nan)
    for f in range(out.size):
        test, train = folds == f, folds != f
        # 15 neighbours, or as many as the rarest label has records in the training folds (more would
        # outvote it whatever the embedding)
        rarest = int(np.unique(labels[train], return_counts=True)[1].min())
        knn = KNeighborsClassifier(n_neighbors=min(NEIGHBOURS, rarest)).fit(x[train], labels[train])
        out[f] = float((knn.predict(x[test]) == labels[test]).mean())
    return out


def spread(values: np.ndarray) -> float:
    """The sample standard deviation (n - 1) over the folds that gave a value; NaN for fewer than two."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.std(ddof=1)) if finite.size >= 2 else float("nan")


def cell_metrics(x: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float]:
    """The fold means of fold_metrics, on the seeded folds of `labels` (labels with fewer records than
    folds left out; fewer than two labels left is an error)."""
    labels = np.asarray(labels).astype(str)
    keep = scorable(labels)
    if np.unique(labels[keep]).size < 2:
        raise GtokError(f"evaluation needs held-out records of at least two labels, {FOLDS} records each.")
    per_fold = fold_metrics(np.asarray(x)[keep], labels[keep], fold_ids(labels[keep], seed), seed)
    return {m: float(np.nanmean(v)) for m, v in per_fold.items()}


def scorable(labels: np.ndarray) -> np.ndarray:
    """Which records have a label with at least one record per fold."""
    classes, y, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    return sizes[y] >= FOLDS


def labelled_and_scorable(labels: np.ndarray) -> np.ndarray:
    """Which records (labels: str or None) have a label with at least one record per fold."""
    keep = np.not_equal(labels, None)
    keep[keep] = scorable(labels[keep].astype(str))
    return keep


def coaccessible_pair_auc(counts: Any, vectors: np.ndarray, top: int = TOP_REGIONS) -> float:
    """P(cosine of a co-accessible region pair > cosine of another pair) over the `top` most
    often accessible regions; co-accessible = the top 1% of pairs by Jaccard co-occurrence.
    `counts`: records x regions in memory (`evaluate` streams them through the parts below)."""
    seen = np.asarray(counts.sum(axis=0), dtype=np.float64).ravel()
    regions = top_regions(seen, top)
    return pair_auc(co_occurrence(row_chunks(counts), regions), seen[regions], np.asarray(vectors)[regions])


def top_regions(seen: np.ndarray, top: int = TOP_REGIONS) -> np.ndarray:
    """The `top` regions held by the most records (`seen`: records per region), most first; none held by none."""
    regions = np.argsort(-seen, kind="stable")[:top]
    return regions[seen[regions] > 0]


def co_occurrence(chunks: Iterable[Any], regions: np.ndarray) -> np.ndarray:
    """[regions, regions]: how many records hold both of each pair, summed over chunks of counts
    (records x all regions), so that only these regions' columns of one chunk are held at a time."""
    import scipy.sparse as sp

    both = np.zeros((regions.size, regions.size))
    for counts in chunks:
        sub = sp.csr_matrix(counts)[:, regions]
        both += (sub.T @ sub).toarray()
    return both


@dataclass
class GroupedCoOccurrence:
    """The co-occurrence of `regions` summed within each of `groups` seeded random groups of the
    records (a record's group drawn as its chunk is read): a bootstrap over the records resamples
    the groups, re-deriving the co-accessible pairs from each resample, without a pass over the
    records per resample. Memory: groups x regions^2 / 2 float32 (RESAMPLE_GROUPS of 2,000
    regions: 128 MB); time: a pass over the records, each group's product added on its own."""

    both: np.ndarray  # [groups, pairs]: the upper triangle, row-major
    seen: np.ndarray  # [groups, regions]: records of the group holding each region

    @classmethod
    def of(cls, chunks: Iterable[Any], regions: np.ndarray, groups: int, seed: int = 0) -> GroupedCoOccurrence:
        import scipy.sparse as sp

        rng = np.random.default_rng(seed)
        upper = upper_pairs(regions.size)
        both, seen = np.zeros((groups, upper[0].size), np.float32), np.zeros((groups, regions.size))
        for counts in chunks:
            sub = sp.csr_matrix(counts, dtype=np.float32)[:, regions]
            group = rng.integers(groups, size=sub.shape[0])
            for g in np.unique(group):
                part = sub[group == g]
                both[g] += (part.T @ part).toarray()[upper]
                seen[g] += np.asarray(part.sum(axis=0)).ravel()
        return cls(both, seen)

    def whole(self) -> tuple[np.ndarray, np.ndarray]:
        """(co-occurrence as pairs, seen) of all the records."""
        return self.both.sum(axis=0, dtype=np.float64), self.seen.sum(axis=0)

    def resampled(self, resamples: int, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(co-occurrence as pairs, seen) of `resamples` seeded bootstrap draws of the groups."""
        rng = np.random.default_rng(seed)
        groups = self.seen.shape[0]
        for _ in range(resamples):
            weights = rng.multinomial(groups, np.full(groups, 1 / groups)).astype(np.float32)
            yield weights @ self.both, weights @ self.seen.astype(np.float32)


def pair_auc(both: np.ndarray, seen: np.ndarray, vectors: np.ndarray) -> float:
    """coaccessible_pair_auc of the regions whose co-occurrence is `both` (regions x regions), held
    by `seen` records each, with these `vectors` (one row per region); NaN for fewer than 10
    regions. Every other pair is a negative, so no random draw of them is made."""
    if seen.size < 10:
        return float("nan")
    return pair_auc_of_ranks(co_accessible(both[upper_pairs(seen.size)], seen), cosine_ranks(vectors))


def cosine_ranks(vectors: np.ndarray) -> np.ndarray:
    """The rank (1 = lowest, ties averaged) of each region pair's cosine (upper triangle, row-major):
    the same for every resample of the records, so computed once per method."""
    from scipy.stats import rankdata

    v = unit_rows(np.asarray(vectors, dtype=np.float64))
    # regions x regions; v[i] and v[j] would be pairs x width (2,000 regions x 768: 12 GB each)
    return rankdata((v @ v.T)[upper_pairs(len(v))])


def co_accessible(both: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Which region pairs (upper triangle, row-major; `both`: records holding both) are co-accessible:
    the top 1% by Jaccard co-occurrence (ties at the threshold included)."""
    i, j = upper_pairs(seen.size)
    jaccard = both / np.maximum(seen[i] + seen[j] - both, 1)
    return jaccard >= np.quantile(jaccard, 0.99)


@functools.lru_cache(maxsize=2)
def upper_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """np.triu_indices(n, k=1) as int32, made once: every resample needs them (2,000 regions: 50 ms
    and 32 MB each time). Read-only, as they are shared."""
    pairs = tuple(a.astype(np.int32) for a in np.triu_indices(n, k=1))
    for a in pairs:
        a.setflags(write=False)
    return pairs


def pair_auc_of_ranks(positive: np.ndarray, ranks: np.ndarray) -> float:
    """The AUC of the `positive` pairs against all the others, by the Mann-Whitney rank sum of their
    cosines' `ranks` (ties count a half, as in roc_auc_score)."""
    p, n = int(positive.sum()), int(positive.size - positive.sum())
    if not p or not n:
        return float("nan")
    return float((ranks[positive].sum() - p * (p + 1) / 2) / (p * n))


def resampled_pair_aucs(grouped: GroupedCoOccurrence, vectors: dict[str, np.ndarray], resamples: int = RESAMPLES,
                        seed: int = 0) -> dict[str, tuple[float, np.ndarray]]:
    """{method: (coaccessible_pair_auc over all the records, its value in each of `resamples` seeded
    bootstrap resamples of them)}: the same resamples, hence the same co-accessible pairs, for every
    method, so that their differences pair. `vectors`: each method's, one row per region. Only the
    resamples' sd is meant for use: their co-accessible pairs, chosen on a resample's noisier counts,
    hold more wrong ones than all the records' do, so their mean lies below the value (0.03 on
    simulated cells, 3 of their sds: tests/test_evaluate.py)."""
    ranks = {method: cosine_ranks(v) for method, v in vectors.items()}
    whole = co_accessible(*grouped.whole())
    draws = [co_accessible(both, seen) for both, seen in grouped.resampled(resamples, seed)]
    return {method: (pair_auc_of_ranks(whole, r), np.array([pair_auc_of_ranks(d, r) for d in draws]))
            for method, r in ranks.items()}


def umap_coordinates(x: np.ndarray, seed: int = 0) -> np.ndarray:
    import warnings

    import umap

    neighbours = int(min(15, max(2, len(x) - 1)))
    with warnings.catch_warnings():  # seeded, hence one thread: said on every call, and meant
        warnings.filterwarnings("ignore", message="n_jobs value .* overridden to 1 by setting random_state")
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


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` wrote: OUT/metrics.tsv, and the verdict its caption opens with (None when
    the records could not be scored: the log and the report say why)."""

    metrics: Path
    verdict: str | None


def evaluate(model_path: str | os.PathLike, manifest: str | os.PathLike, out: str | os.PathLike,
             val_fraction: float | None = None, seed: int = 0, progress: bool = False) -> Evaluation:
    """Write OUT/metrics.tsv (fold mean and sd), OUT/folds.tsv (per fold), OUT/umap_MODEL.png,
    OUT/umap_lsi.png, OUT/summary.html, OUT/caption.rst (the report's caption, verdict first) and
    OUT/evaluated.json (the model scored: its path, and its run and step, which keep_evaluation
    follows into previous/TIME/ when a retrain sets the model aside).
    Input that cannot be scored (no held-out records, no labels, too few of them) is said in one
    line in the log and the report, and the tables are left header-only."""
    require("eval", "gtok evaluate")
    from gtok.atomic import staged_files
    from gtok.inference.embed import Embedder
    from gtok.paths import make_folder

    out = Path(out)
    embedder = Embedder(model_path, None, None, 64)
    val_fraction, unknown = held_out_split(model_path, embedder.data_options, manifest, val_fraction)
    # a model that records no fingerprint (a geniml or published folder): its universe's
    fingerprint = embedder.vocab.fingerprint or embedder.tokenizer.fingerprint
    records = split_records(manifest, val_fraction, fingerprint=fingerprint)
    make_folder(out)
    # an earlier evaluation of a model since set aside (a retrain into --model) goes with that model first
    keep_evaluation(out, model_path if os.path.isdir(model_path) else model_folder(Path(model_path)), "gtok evaluate",
                    sys.stderr)
    with staged_files(out, owned=_earlier_evaluation(out)) as stage:  # every file replaced, or (on an error half-way) none
        said = _write_evaluation(stage, embedder, manifest, records, val_fraction, fingerprint, seed, progress, unknown)
    return Evaluation(out / "metrics.tsv", said)


def _earlier_evaluation(out: Path) -> list[str]:
    """The files of an earlier evaluation in `out`, which the new one replaces as a whole: an earlier
    model's umap_MODEL.png goes too (the workflow deletes only its declared outputs, those of this
    model, before a rerun), so the folder never shows two models' results. None of a folder that
    holds anything else (the API's caller's own files stay; `gtok evaluate` refuses such a folder)."""
    names = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    return names if all(map(is_evaluation_file, names)) else []


def held_out_split(model: str | os.PathLike, trained: dict[str, Any], manifest: str | os.PathLike,
                   val_fraction: float | None) -> tuple[float, str | None]:
    """The `val_fraction` whose validation split holds the records the model never trained on, and
    a note when the records scored as held-out may include some it trained on.

    A model records its `val_fraction` and a digest of its manifest's shards and splits
    (gtok.training.run). Another val_fraction would move records it trained on into the split,
    and is refused. A manifest of other shards may hold the same records (relabelled, say) or
    others (another split of them): that cannot be told, so the report says it first."""
    from gtok.formats.manifest import load_manifest
    from gtok.options import DataOptions

    own = trained.get("val_fraction")
    if val_fraction is not None and own is not None and val_fraction != own:
        raise GtokError(f"--val-fraction {val_fraction} is not the {own} {describe(model)} was trained with: the records "
                        "scored as held-out would not be those it never trained on; leave it out to use the model's own.")
    fraction = val_fraction if val_fraction is not None else own if own is not None else DataOptions.val_fraction
    digest = load_manifest(manifest).shards_digest()
    why = _trained_outside(trained, digest, fraction, manifest)
    for parent in trained.get("parents") or []:  # the models a fine-tuning started from trained on records too
        why = why or _trained_outside(parent, digest, fraction, manifest, "started from a model that ")
    if why is None:
        return fraction, None
    return fraction, (f"{describe(model)} {why}, so the records scored as held-out (the validation split of "
                      f"{describe(manifest)}, val_fraction {fraction}) may include records it trained on.")


def _trained_outside(data: dict[str, Any], digest: str, fraction: float, manifest: str | os.PathLike,
                     who: str = "") -> str | None:
    """Why a model that recorded `data` ({val_fraction, shards}) may have trained on records of
    this manifest's validation split at `fraction`, or None. Records go to validation by a hash
    of their name below the fraction, so a model held out at least this fraction held these out."""
    if not isinstance(data, dict) or data.get("shards") is None:
        return f"{who}does not record the data it was trained on"
    if data["shards"] != digest:
        return f"{who}was trained on other shards or splits than {describe(manifest)} lists"
    held = data.get("val_fraction")
    if held is None or held < fraction:
        return f"{who}held out {held} of them, not {fraction}"
    return None


def _write_evaluation(folder: Path, embedder: Any, manifest: str | os.PathLike, records: Split, val_fraction: float,
                      fingerprint: str | None, seed: int, progress: bool, unknown: str | None) -> str | None:
    """Score the model and LSI on the held-out records and write the tables, plots, summary and
    caption into `folder` (or say in one line why the records cannot be scored). `unknown`: why
    the records may not all be held out from the model, when that cannot be known. The verdict
    the caption opens with, None when nothing was scored."""
    import pandas as pd

    from gtok.atomic import atomic_path
    from gtok.plots import plot_unavailable
    from gtok.report import write_evaluation_caption, write_evaluation_html

    plots = {embedder.name: folder / f"umap_{embedder.name}.png", "lsi": folder / "umap_lsi.png"}  # names differ: ModelSpec.label
    rows: list[tuple] = []
    folds: list[tuple] = []
    details = ""
    notes = [_why_not(records, manifest)]
    if notes[0] is None:
        baseline, choice = training_lsi(manifest, val_fraction, fingerprint, seed)
        notes = [_left_out(records)]
        if baseline is None:
            notes.append(f"{describe(manifest)}: no training records to fit LSI on; evaluation skipped.")
        else:
            rows, folds, details = _score(embedder, records, baseline, choice, plots, seed, progress)
    notes = [n for n in [unknown, *notes] if n]
    for note in notes:
        print(f"gtok evaluate: {note}", file=sys.stderr)
    if not rows:
        for path in plots.values():
            plot_unavailable(notes[-1], path)
    table = pd.DataFrame(rows, columns=["method", "metric", "value", "sd"])
    per_fold = pd.DataFrame(folds, columns=["method", "metric", "repeat", "fold", "value"])
    for name, frame in (("metrics.tsv", table), ("folds.tsv", per_fold)):
        with atomic_path(folder / name) as tmp:
            frame.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    with atomic_path(folder / EVALUATED_FILE) as tmp:  # which model these scores are of (pretrained.keep_evaluation)
        tmp.write_text(json.dumps({"model": os.fspath(embedder.path), "run": embedder.run}, indent=1) + "\n")
    supervised = bool(getattr(embedder.model, "learns_from_labels", False))
    write_evaluation_html(table, per_fold, embedder.name, len(records), notes, folder / "summary.html",
                          supervised)
    head = write_evaluation_caption(table, per_fold, embedder.name, len(records), notes, details, DESIGN,
                                    folder / "caption.rst", unseen=unknown is None, supervised=supervised)
    return head if rows else None


def training_lsi(manifest: str | os.PathLike, val_fraction: float, fingerprint: str | None = None,
                 seed: int = 0) -> tuple[LSI | None, EvalRecords]:
    """(LSI fitted on all the training split's records, as the model was trained, streamed from the
    shards, or None when there are none; its components chosen (choose_dims) on a seeded draw of
    at most MAX_CHOICE_RECORDS of them, which are returned with it)."""
    rec = split_records(manifest, val_fraction, "train", fingerprint)
    drawn = np.arange(len(rec))
    if len(rec) > MAX_CHOICE_RECORDS:
        drawn = np.sort(np.random.default_rng(seed).choice(len(rec), MAX_CHOICE_RECORDS, replace=False))
    choice = rec.take(drawn)
    if not len(rec):
        return None, choice

    def chunks() -> Any:
        return (part.counts() for part in rec.chunks())

    fitted = LSI.fit_chunks(chunks, dims=max(CANDIDATE_DIMS), seed=seed)
    return choose_dims(fitted, choice.counts(), choice.labels, seed), choice


def choose_dims(fitted: LSI, counts: Any, labels: np.ndarray | None, seed: int = 0) -> LSI:
    """`fitted` keeping the number of components (of CANDIDATE_DIMS), and when its first axis follows
    depth, that axis or not, whose embedding of the training records scores the best mean kNN
    accuracy over their own seeded folds: the care a model's recipe gets, from the training records
    alone. A tie goes to the depth axis dropped (Signac's and ArchR's habit), then to fewer components.
    LSI_DIMS and `fitted`'s own drop when they hold fewer than two labels with a record per fold."""
    if labels is None:
        return fitted.truncated(LSI_DIMS)
    keep = labelled_and_scorable(labels)
    known = labels[keep].astype(str)
    if np.unique(known).size < 2:
        return fitted.truncated(LSI_DIMS)
    folds = fold_ids(known, seed)
    options = [fitted, fitted.dropping_first(False)] if fitted.dropped_first else [fitted]
    per_fold = {(option.dropped_first, d): knn_accuracy(option.truncated(d).transform(counts[keep]), known, folds)
                for option in options for d in CANDIDATE_DIMS if d <= option.dims}
    if not per_fold:  # fewer components than the smallest candidate: keep them all
        return fitted
    scores = {c: float(np.nanmean(v)) for c, v in per_fold.items()}
    drop, best = max(scores, key=lambda c: (scores[c], c[0], -c[1]))
    return fitted.dropping_first(drop).truncated(best, scores, {c: spread(v) for c, v in per_fold.items()})


def _score(embedder: Any, records: Split, fitted: LSI, choice: EvalRecords, plots: dict[str, Path], seed: int,
           progress: bool) -> tuple[list[tuple], list[tuple], str]:
    """(metrics rows: method, metric, mean, sd; per-fold rows; what LSI was fitted on) of the model's
    and the training-fitted LSI's embeddings of the same held-out records, on the same folds.
    `plots`: where each method's UMAP goes, the model's first, under its label."""
    from gtok.plots import plot_umap

    keep = labelled_and_scorable(records.labels)
    labels = records.labels[keep].astype(str)
    first, *more = repeated_folds(labels, seed)
    name = embedder.name
    embeddings, seen = held_out_vectors(embedder, records, fitted, progress)
    embeddings = {method: x[keep] for method, x in embeddings.items()}
    rows, fold_rows = [], []
    for method, x in embeddings.items():
        draws = {metric: [values] for metric, values in fold_metrics(x, labels, first, seed).items()}
        draws["knn_accuracy"] += [knn_accuracy(x, labels, folds) for folds in more]
        for metric, values in draws.items():  # kNN accuracy over every draw, as the verdict compares it
            pooled = np.concatenate(values)
            rows.append((method, metric, float(np.nanmean(pooled)), spread(pooled)))
            fold_rows += [(method, metric, r, f, float(v)) for r, draw in enumerate(values) for f, v in enumerate(draw)]
        plot_umap(umap_coordinates(x, seed), labels, f"{method}: held-out records by label", plots[method])
    vectors = region_vectors(embedder.model)
    paired = ""
    if vectors is not None:  # a second pass over the held-out records: which regions count was known only after the first
        regions = top_regions(seen)
        if regions.size >= 10:
            grouped = GroupedCoOccurrence.of((part.counts() for part in records.chunks()), regions, RESAMPLE_GROUPS, seed)
            aucs = resampled_pair_aucs(grouped, {name: vectors[regions], "lsi": fitted.loadings[regions]}, RESAMPLES, seed)
            rows += [(method, "coaccessible_pair_auc", value, spread(draws)) for method, (value, draws) in aucs.items()]
            paired = _paired_auc(name, aucs)
        else:  # too few regions to rank pairs by
            rows += [(method, "coaccessible_pair_auc", np.nan, np.nan) for method in (name, "lsi")]
    details = f"{_lsi_fit(fitted, choice)} Scored on {int(keep.sum()):,} of the {len(keep):,} held-out records " \
              f"(the labelled ones, of labels with {FOLDS} or more) in {FOLDS} folds; kNN accuracy also on " \
              f"{REPEATS - 1} more seeded draws of the {FOLDS} folds, for the verdict.{paired}{_cropped(embedder, records, keep)}"
    return rows, fold_rows, details


def _paired_auc(model: str, aucs: dict[str, tuple[float, np.ndarray]]) -> str:
    """The caption's sentence on coaccessible_pair_auc's difference model - LSI: over all held-out
    records, ± its sd over the same resamples (their mean is not used: see resampled_pair_aucs)."""
    d = aucs[model][0] - aucs["lsi"][0]
    return (f" coaccessible_pair_auc's difference {model} - LSI is {d:+.3f} ± {spread(aucs[model][1] - aucs['lsi'][1]):.3f} "
            f"(over all held-out records ± its sd over the same {aucs[model][1].size} resamples of them).")


def _cropped(embedder: Any, records: Split, keep: np.ndarray) -> str:
    """The caption's sentence on the scored records the model saw only part of (those longer than
    the max_length it embeds with), which LSI counts whole: a comparison of unequal inputs that the
    scores alone do not show. Empty when the model saw every token."""
    limit = embedder.max_length
    if limit is None:
        return ""
    longer = int(np.count_nonzero(records.records.length[keep] > limit))
    if not longer:
        return ""
    return (f" The model embedded at most {limit:,} tokens of each record (an evenly spaced subset), LSI all of them: "
            f"{longer:,} of the {int(keep.sum()):,} scored records were longer.")


def held_out_vectors(embedder: Any, records: Split, fitted: LSI, progress: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({the model's name: its vectors, "lsi": LSI's} of `records`, in their order; how many of them
    hold each region, float64 per vocabulary id). Their tokens are read, projected, counted and
    embedded CHUNK_RECORDS at a time, then dropped: only the vectors stay. One progress bar counts
    the embedding of all of them."""
    lsi, seen = [], np.zeros(records.records.vocab_size)

    def tokens() -> Iterator[list[np.ndarray]]:
        """Each chunk's token ids for the model, once LSI has projected the chunk and its regions are counted."""
        for part in records.chunks():
            counts = part.counts()
            lsi.append(fitted.transform(counts))
            seen[:] += np.asarray(counts.sum(axis=0)).ravel()
            yield part.docs()

    model = list(embedder.embed_chunks(tokens(), len(records), progress))
    return {embedder.name: np.concatenate(model), "lsi": np.concatenate(lsi)}, seen


def _lsi_fit(fitted: LSI, choice: EvalRecords) -> str:
    """What LSI was fitted on and how its components were chosen, for the report."""
    on = "them" if len(choice.lengths) == fitted.records else \
        f"a seeded draw of {len(choice.lengths):,} of them (the choice's kNN is quadratic in records)"
    if fitted.chosen_by:
        tried: dict[bool, list[str]] = {}
        sd = fitted.chosen_sd or {}
        for (drop, d), a in fitted.chosen_by.items():
            tried.setdefault(drop, []).append(f"{d}: {a:.3f} ± {sd.get((drop, d), np.nan):.3f}")
        told = "; ".join(f"first component {'dropped' if drop else 'kept'}: {', '.join(v)}" for drop, v in tried.items())
        which = "with its first one or not " if len(tried) > 1 else ""  # only a first axis that follows depth may go
        chosen = (f"it keeps {fitted.dims} components, chosen {which}by the {FOLDS}-fold kNN accuracy of the labelled "
                  f"records of {on} (mean ± sd over the folds; {told})")
    elif fitted.dims < min(CANDIDATE_DIMS):
        chosen = f"it keeps all {fitted.dims} components the training records allow (fewer than any count to choose from)"
    else:
        held = "the training records hold" if on == "them" else f"{on} holds"
        chosen = f"it keeps {fitted.dims} components ({held} too few labels to choose)"
    first = "dropped" if fitted.dropped_first else "kept"
    return (f"LSI was fitted on all {fitted.records:,} training records, IDF and SVD from them alone; {chosen}; its "
            f"first SVD component was {first} (correlation with log depth {fitted.depth_correlation:+.2f}).")


def _why_not(records: Split, manifest: str | os.PathLike) -> str | None:
    """Why the held-out records cannot be scored (none, no labels, or too few), or None."""
    where = f"{describe(manifest)}: the {len(records):,} held-out records"
    if not len(records):
        return (f"{describe(manifest)}: no records are held out from training (val_fraction is 0 or too small for "
                "this data, and no sample sheet names a 'val' split); evaluation skipped.")
    if records.labels is None:
        return f"{where} have no labels; evaluation skipped."
    labels = records.labels[np.not_equal(records.labels, None)].astype(str)
    if np.unique(labels[scorable(labels)]).size < 2:
        return f"{where} hold fewer than two labels with {FOLDS} records each (one per fold); evaluation skipped."
    return None


def _left_out(records: Split) -> str | None:
    """Which held-out records cannot be scored and are left out, or None: those without a label,
    and those of labels with too few of them."""
    labelled = np.not_equal(records.labels, None)
    classes, sizes = np.unique(records.labels[labelled].astype(str), return_counts=True)
    few = [f"{c} ({n})" for c, n in zip(classes, sizes) if n < FOLDS]
    said = []
    if few:
        said.append(f"{len(few)} label(s) with fewer than {FOLDS} held-out records were left out of the scores: "
                    f"{', '.join(few[:5])}{' ...' if len(few) > 5 else ''}")
    if not labelled.all():
        said.append(f"{int((~labelled).sum()):,} held-out record(s) without a label were left out of the scores")
    return "; ".join(said) + "." if said else None
