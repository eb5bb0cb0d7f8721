"""LSI, the baseline a learned embedding must beat, fitted the way the model is trained.

The recipe is Signac's and ArchR's: binarise the records x regions matrix, TF = x / the record's
count, IDF = records / the region's count, log1p(TF * IDF * 1e4), a seeded truncated SVD, rows
L2-normalised. It is fitted on the *training* split's records (as many as `max_records`, drawn with
the seed), so the IDF and the SVD never see the held-out records that both methods are scored on;
`transform` projects those with the training IDF and SVD, as the model embeds records it never saw.

The first SVD component usually follows sequencing depth rather than biology. It is dropped only
when it does so on the training records (|Pearson correlation with log record depth| >
`DEPTH_CORRELATION`), not by habit: on data where it carries cell identity, dropping it would tune
the baseline down.

How many components it keeps is chosen as a model's recipe would be, on the training records
alone: `gtok.evaluation.evaluate.choose_dims` keeps the count of `CANDIDATE_DIMS` whose embedding of the labelled training
records scores the best cross-validated kNN accuracy (`LSI_DIMS` when they hold fewer than two
labels). The held-out records never take part in that choice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

LSI_DIMS = 30  # when the training records cannot choose (fewer than two labels)
CANDIDATE_DIMS = (10, 20, 30, 50)
DEPTH_CORRELATION = 0.5
MAX_TRAINING_RECORDS = 20_000


def binarise(counts: Any) -> Any:
    """A float32 CSR copy of `counts` with every stored nonzero set to 1."""
    import scipy.sparse as sp

    m = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.data[:] = 1.0
    return m


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class LSI:
    """A fitted LSI: the training records' IDF, the SVD, and whether its first component was dropped."""

    idf: np.ndarray  # per region, from the training records
    components: np.ndarray  # [k, regions] SVD axes, the depth component already removed when dropped
    dropped_first: bool
    depth_correlation: float  # Pearson r of the first component with log depth, on the training records
    chosen_by: dict[int, float] | None = None  # components -> the training records' kNN accuracy, when chosen

    @classmethod
    def fit(cls, counts: Any, dims: int = LSI_DIMS, seed: int = 0) -> LSI:
        """Fit on the training records' counts (records x regions; any nonzero counts as accessible)."""
        from sklearn.decomposition import TruncatedSVD

        x = binarise(counts)
        idf = x.shape[0] / np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1.0)
        tfidf = _tfidf(x, idf)
        k = max(2, min(dims + 1, min(x.shape) - 1))
        svd = TruncatedSVD(n_components=k, random_state=seed).fit(tfidf)
        first = tfidf @ svd.components_[0]
        depth = np.log1p(np.asarray(x.sum(axis=1)).ravel())
        r = float(np.corrcoef(first, depth)[0, 1]) if first.std() > 0 and depth.std() > 0 else 0.0
        drop = abs(r) > DEPTH_CORRELATION
        components = svd.components_[1:] if drop else svd.components_[:dims]
        return cls(idf.astype(np.float64), components, drop, r)

    def transform(self, counts: Any) -> np.ndarray:
        """Records' embeddings [n, d], L2-normalised, with the training IDF and SVD axes."""
        return unit_rows(np.asarray(_tfidf(binarise(counts), self.idf) @ self.components.T))

    def truncated(self, dims: int, chosen_by: dict[int, float] | None = None) -> LSI:
        """The same fit keeping its first `dims` components (the SVD orders them by singular value)."""
        return replace(self, components=self.components[:dims], chosen_by=chosen_by)

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    @property
    def loadings(self) -> np.ndarray:
        """Region vectors [regions, d]: each region's weights on the kept SVD axes."""
        return self.components.T


def _tfidf(x: Any, idf: np.ndarray) -> Any:
    """log1p(TF * IDF * 1e4) of binarised records, TF = x / the record's count of regions."""
    tf = x.multiply(1.0 / np.maximum(np.asarray(x.sum(axis=1)), 1.0)).tocsr()
    out = tf.multiply(idf[None, :]).tocsr()
    out.data = np.log1p(out.data * 1e4)
    return out
