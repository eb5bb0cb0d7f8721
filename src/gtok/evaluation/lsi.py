"""LSI, the baseline a learned embedding must beat, fitted the way the model is trained.

The recipe is Signac's and ArchR's: binarise the records x regions matrix, TF = x / the record's
count, IDF = records / the region's count, log1p(TF * IDF * 1e4), a seeded truncated SVD, rows
L2-normalised. It is fitted on the *training* split's records, all of them, so the IDF and the SVD
never see the held-out records that both methods are scored on, and see every record the model
trained on; `transform` projects the held-out ones with the training IDF and SVD, as the model
embeds records it never saw.

An atlas's records do not fit in memory as one matrix, so the fit streams them (`LSI.fit_chunks`):
one pass for the IDF, then a randomized SVD (Halko, Martinsson and Tropp's range finder with power
iterations, the algorithm of scikit-learn's TruncatedSVD, with its iteration and oversampling
counts and its LU renormalization) that only ever multiplies a chunk of records by a regions x components block. Memory is
one chunk plus a few of those blocks, whatever the number of records.

The first SVD component usually follows sequencing depth rather than biology, and Signac and ArchR
drop it. Here it is dropped by default only when it does so on the training records (|Pearson
correlation with log record depth| > `DEPTH_CORRELATION`), and even then the fit keeps it
(`dropping_first`): on the Corces cells it follows depth (r = 0.95) yet carries cell identity, and
dropping it by habit cost LSI 0.027 ± 0.007 held-out kNN accuracy against choosing on the training
folds (bench/README.md, "LSI's depth component").

Which components it keeps is chosen as a model's recipe would be, on the training records alone:
`gtok.evaluation.evaluate.choose_dims` keeps the count of `CANDIDATE_DIMS`, with or without the
depth-following first component, whose embedding of the labelled training records scores the best
cross-validated kNN accuracy (`LSI_DIMS`, depth component dropped, when they hold fewer than two
labels). The held-out records never take part in that choice.

Signac's, ArchR's and muon's default of z-scoring each component before the neighbour graph is not
done: the components keep their singular values' weights. On the Corces cells z-scoring scored
lower (held-out kNN accuracy -0.052 ± 0.009 over 18 random splits and SVD seeds, bench/README.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

LSI_DIMS = 30  # when the training records cannot choose (fewer than two labels)
CANDIDATE_DIMS = (10, 20, 30, 50)
DEPTH_CORRELATION = 0.5
CHUNK_RECORDS = 10_000  # records per streamed chunk
POWER_ITERATIONS = 5  # TruncatedSVD's n_iter
OVERSAMPLES = 10  # TruncatedSVD's n_oversamples


def binarise(counts: Any) -> Any:
    """`counts` as float32 CSR with every stored nonzero set to 1: a copy, or `counts` itself when it
    is already so (the evaluation's chunks are binarised when read, and each pass of the fit and the
    projection would otherwise copy them again). Never written to by its callers."""
    import scipy.sparse as sp

    if is_binary(counts):
        return counts
    m = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.data[:] = 1.0
    return m


def is_binary(m: Any) -> bool:
    """Whether `m` is a float32 csr_matrix in canonical form (sorted indices, no duplicates) whose
    stored values are all 1, as `binarise` makes it. A matrix, not a csr_array: an array's
    sum(axis=1) is flat, which the TF-IDF would broadcast along the wrong axis."""
    import scipy.sparse as sp

    return (isinstance(m, sp.csr_matrix) and m.dtype == np.float32 and m.has_canonical_format
            and bool((m.data == 1).all()))


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class LSI:
    """A fitted LSI: the training records' IDF, the SVD axes, and which of them it keeps."""

    idf: np.ndarray  # per region, from the training records
    axes: np.ndarray  # [k, regions] every SVD axis fitted, by singular value: dims + 1, the spare for the depth axis
    singular_values: np.ndarray  # [k] each axis's singular value on the training records
    dropped_first: bool  # whether the first axis (which may follow depth) is left out
    depth_correlation: float  # Pearson r of the first axis with log depth, on the training records
    kept: int  # how many axes it keeps, after the first when that is dropped
    chosen_by: dict[tuple[bool, int], float] | None = None  # (first dropped, components) -> training kNN accuracy
    chosen_sd: dict[tuple[bool, int], float] | None = None  # the same keys -> its sd over the training folds
    records: int = 0  # how many records it was fitted on

    @classmethod
    def fit(cls, counts: Any, dims: int = LSI_DIMS, seed: int = 0) -> LSI:
        """Fit on the training records' counts in memory (records x regions; any nonzero counts as accessible)."""
        return cls.fit_chunks(lambda: row_chunks(counts), dims, seed)

    @classmethod
    def fit_chunks(cls, chunks: Callable[[], Iterable[Any]], dims: int = LSI_DIMS, seed: int = 0) -> LSI:
        """Fit on the training records streamed as chunks of counts (records x regions). Each call
        of `chunks` must yield the same records in the same order: the fit passes over them
        POWER_ITERATIONS + 4 times, holding one chunk at a time."""
        idf, records = _idf(chunks())

        def tfidf() -> Iterator[Any]:
            return (_tfidf(binarise(c), idf) for c in chunks())

        # no more axes than records or regions: past those, an axis is a direction the records do not span
        k = max(1, min(dims + 1, records, idf.size))
        axes, singular = _top_axes(tfidf, idf.size, k, seed)
        first, depth = [], []
        for c in chunks():  # does the first axis follow each record's depth?
            x = binarise(c)
            first.append(_tfidf(x, idf) @ axes[0])
            depth.append(np.log1p(np.asarray(x.sum(axis=1)).ravel()))
        first, depth = np.concatenate(first), np.concatenate(depth)
        r = float(np.corrcoef(first, depth)[0, 1]) if first.std() > 0 and depth.std() > 0 else 0.0
        return cls(idf, axes, singular, False, r, dims, records=records).dropping_first(abs(r) > DEPTH_CORRELATION)

    def transform(self, counts: Any) -> np.ndarray:
        """Records' embeddings [n, d], L2-normalised, with the training IDF and SVD axes."""
        return unit_rows(np.asarray(_tfidf(binarise(counts), self.idf) @ self.components.T))

    def truncated(self, dims: int, chosen_by: dict[tuple[bool, int], float] | None = None,
                  chosen_sd: dict[tuple[bool, int], float] | None = None) -> LSI:
        """The same fit keeping its first `dims` components (the SVD orders them by singular value)."""
        return replace(self, kept=dims, chosen_by=chosen_by, chosen_sd=chosen_sd)

    def dropping_first(self, drop: bool) -> LSI:
        """The same fit with its first axis left out or kept, as many components as before where the axes allow."""
        return replace(self, dropped_first=drop, kept=min(self.kept, self.axes.shape[0] - int(drop)))

    @property
    def components(self) -> np.ndarray:
        """The kept SVD axes [d, regions]."""
        start = int(self.dropped_first)
        return self.axes[start:start + self.kept]

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    @property
    def loadings(self) -> np.ndarray:
        """Region vectors [regions, d]: each region's weights on the kept SVD axes times the axes'
        singular values (V S, as a record's vector is U S; Deerwester et al. 1990 compare terms so), so
        that the cosine weighs the axes as the records' embedding does, not the noisy trailing ones alike."""
        start = int(self.dropped_first)
        return self.components.T * self.singular_values[start:start + self.kept]


def row_chunks(counts: Any, size: int = CHUNK_RECORDS) -> Iterator[Any]:
    """`counts` (records x regions, sparse or dense) in chunks of `size` records, as CSR."""
    import scipy.sparse as sp

    m = sp.csr_matrix(counts)
    for start in range(0, max(m.shape[0], 1), size):
        yield m[start:start + size]


def _idf(chunks: Iterable[Any]) -> tuple[np.ndarray, int]:
    """(records / each region's count of records holding it, float64; the number of records)."""
    held, records = None, 0
    for c in chunks:
        per_region = np.asarray(binarise(c).sum(axis=0), dtype=np.float64).ravel()
        held = per_region if held is None else held + per_region
        records += c.shape[0]
    if held is None:
        raise ValueError("LSI needs at least one chunk of records")
    return records / np.maximum(held, 1.0), records


def _top_axes(matrices: Callable[[], Iterable[Any]], regions: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` leading right singular vectors [k, regions] and their singular values [k] of the matrix whose row blocks
    `matrices()` yields, by seeded randomized SVD: power iterations of A^T A on a Gaussian block,
    each renormalized by an LU factorization as TruncatedSVD does (cheaper than QR, and the span
    is all that matters), then the exact SVD of A within the block's orthonormalized span, from
    its small Gram matrix. Sorted by singular value, largest first; each axis's sign set as
    TruncatedSVD sets it (its largest loading positive), so it follows neither the random start
    nor the LAPACK build."""
    import scipy.linalg

    width = min(k + OVERSAMPLES, regions)
    basis = np.random.default_rng(seed).standard_normal((regions, width))
    for step in range(POWER_ITERATIONS + 1):
        product = np.zeros_like(basis)
        for a in matrices():
            product += a.T @ (a @ basis)
        last = step == POWER_ITERATIONS
        basis = np.linalg.qr(product)[0] if last else scipy.linalg.lu(product, permute_l=True)[0]
    gram = np.zeros((width, width))
    for a in matrices():
        projected = a @ basis
        gram += projected.T @ projected
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1][:k]
    axes = (basis @ vectors[:, order]).T
    largest = axes[np.arange(axes.shape[0]), np.argmax(np.abs(axes), axis=1)]
    return axes * np.where(largest < 0, -1.0, 1.0)[:, None], np.sqrt(np.maximum(values[order], 0.0))


def _tfidf(x: Any, idf: np.ndarray) -> Any:
    """log1p(TF * IDF * 1e4) of binarised records, TF = x / the record's count of regions."""
    tf = x.multiply(1.0 / np.maximum(np.asarray(x.sum(axis=1)), 1.0)).tocsr()
    out = tf.multiply(idf[None, :]).tocsr()
    out.data = np.log1p(out.data * 1e4)
    return out
