"""Does LSI's handling of its depth-following first axis, or the z-scoring Signac and ArchR apply
to their components, tune the baseline up or down? Measured on labelled cells of an .h5ad.

The cells are split at random into 60 % training and 40 % held-out cells (seeded, SPLITS times);
LSI is fitted on the training cells at SVD seeds 0 to 2, chooses its components on their own
folds (gtok.evaluation.evaluate.choose_dims), and its held-out kNN accuracy is the mean over the
evaluation's 10 seeded draws of 5 folds. Each variant is paired with gtok's LSI on the same split,
seed and folds:

- `always drop`: the first axis dropped whenever it follows depth, only the count chosen (gtok before);
- `z-scored`: each component z-scored with the training cells' mean and sd (Signac's, ArchR's and
  muon's default), choosing its own components (first dropped or not, count) on the training folds.

    python bench/lsi_depth_axis.py CELLS.h5ad LABEL_KEY [--splits 6]

bench/README.md ("LSI's depth component") holds the measured numbers. Not run by `make test`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from gtok.evaluation.evaluate import choose_dims, fold_ids, knn_accuracy, repeated_folds, scorable
from gtok.evaluation.lsi import CANDIDATE_DIMS, LSI, _tfidf, binarise, unit_rows


def held_out_accuracy(embed: Callable[[object], np.ndarray], test, labels: np.ndarray) -> float:
    """Mean kNN accuracy of the held-out cells `test` over the evaluation's seeded fold draws."""
    x = embed(test)
    return float(np.mean(np.concatenate([knn_accuracy(x, labels, f) for f in repeated_folds(labels, 0)])))


def plain(lsi: LSI, train) -> Callable[[object], np.ndarray]:
    """gtok's embedding: the projection, rows made unit."""
    return lsi.transform


def z_scored(lsi: LSI, train) -> Callable[[object], np.ndarray]:
    """Embed with each component z-scored by the training cells' mean and sd (Signac's scale.embeddings)."""
    def project(m):  # transform's projection before its rows are made unit
        return np.asarray(_tfidf(binarise(m), lsi.idf) @ lsi.components.T)

    ref = project(train)
    mean, sd = ref.mean(axis=0), np.maximum(ref.std(axis=0, ddof=1), 1e-12)
    return lambda m: unit_rows((project(m) - mean) / sd)


def chosen(fitted: LSI, train, labels: np.ndarray, embedding: Callable, drops: tuple[bool, ...]) -> Callable:
    """The embedding of the (first dropped or not, count) that scores best on the training cells' own
    folds, as choose_dims chooses (a tie: dropped, then fewer), for an `embedding` of its own."""
    folds = fold_ids(labels, 0)
    options = {(drop, d): fitted.dropping_first(drop).truncated(d) for drop in drops for d in CANDIDATE_DIMS}
    scores = {c: float(np.mean(knn_accuracy(embedding(lsi, train)(train), labels, folds))) for c, lsi in options.items()}
    return embedding(options[max(scores, key=lambda c: (scores[c], c[0], -c[1]))], train)


def main() -> None:
    import anndata as ad

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cells")
    parser.add_argument("label_key")
    parser.add_argument("--splits", type=int, default=6)
    args = parser.parse_args()
    cells = ad.read_h5ad(args.cells)
    counts, labels = binarise(cells.X), np.asarray(cells.obs[args.label_key]).astype(str)
    diffs: dict[str, list[float]] = {"always drop": [], "z-scored": []}
    for split in range(args.splits):
        rng = np.random.default_rng(100 + split)
        test = np.sort(rng.choice(len(labels), int(0.4 * len(labels)), replace=False))
        train = np.setdiff1d(np.arange(len(labels)), test)
        test = test[scorable(labels[test])]
        for seed in range(3):
            fitted = LSI.fit(counts[train], dims=max(CANDIDATE_DIMS), seed=seed)
            gtok = choose_dims(fitted, counts[train], labels[train].astype(object))
            now = held_out_accuracy(gtok.transform, counts[test], labels[test])
            drops = (True, False) if fitted.dropped_first else (False,)
            old = held_out_accuracy(chosen(fitted, counts[train], labels[train], plain, drops[:1]), counts[test], labels[test])
            z = held_out_accuracy(chosen(fitted, counts[train], labels[train], z_scored, drops), counts[test], labels[test])
            diffs["always drop"].append(old - now)
            diffs["z-scored"].append(z - now)
            print(f"split {split} seed {seed}: depth r {fitted.depth_correlation:+.2f}; gtok {now:.4f} (first "
                  f"{'dropped' if gtok.dropped_first else 'kept'}, {gtok.dims}); always drop {old:.4f}; z-scored {z:.4f}",
                  flush=True)
    for name, d in diffs.items():
        d = np.asarray(d)
        print(f"{name} - gtok: {d.mean():+.4f} ± {d.std(ddof=1) / np.sqrt(d.size):.4f} (mean ± se of {d.size}; "
              f"higher in {(d > 0).sum()}, lower in {(d < 0).sum()})")


if __name__ == "__main__":
    main()
