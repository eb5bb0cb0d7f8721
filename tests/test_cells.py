"""AnnData / h5ad tokenization: vectorized, and equal to gtars run one cell at a time."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import GTARS, gtars_regions, write_bed

from gtok import Tokenizer
from gtok.cells import iter_cell_tokens
from gtok.errors import GtokError

PBMC = GTARS / "pbmc_hg38.h5ad"


@pytest.fixture(scope="module")
def pbmc():
    return ad.read_h5ad(PBMC)


@pytest.fixture(scope="module")
def universe(pbmc, tmp_path_factory):
    """A universe that overlaps the PBMC peaks in many ways: shifted, nested, long, missing."""
    rng = np.random.default_rng(0)
    v = pbmc.var
    rows = []
    for c, s, e in zip(v["chr"].astype(str), v["start"], v["end"]):
        r = rng.random()
        if r < 0.5:
            rows.append((c, int(s) + int(rng.integers(-300, 300)), int(e) + int(rng.integers(-300, 300))))
        if r < 0.2:
            rows.append((c, int(s) + 10, int(s) + 20))
    rows += [("chr1", 0, 200_000_000), ("chr19", 30_000_000, 50_000_000)]
    rows = list(dict.fromkeys((c, max(0, s), max(max(0, s), e)) for c, s, e in rows))
    return write_bed(tmp_path_factory.mktemp("u") / "universe.bed", rows)


def per_cell_oracle(universe, adata) -> list[list[int]]:
    """geniml's tokenize_anndata, with the regions of each cell in column order."""
    X = sp.csr_matrix(adata.X)
    X.sort_indices()
    regions = list(zip(adata.var["chr"].astype(str), adata.var["start"], adata.var["end"]))
    return [gtars_regions(universe, [regions[j] for j in X[i].indices[X[i].data != 0]]) for i in range(adata.n_obs)]


def as_lists(tensors) -> list[list[int]]:
    return [t.tolist() for t in tensors]


def test_matches_gtars_cell_by_cell(universe, pbmc):
    tok = Tokenizer.from_bed(universe)
    expected = per_cell_oracle(universe, pbmc)
    assert sum(len(e) > 1 for e in expected) > 10  # the comparison is not all <unk>
    assert as_lists(tok.encode_anndata(pbmc)) == expected
    assert as_lists(tok.encode_anndata(PBMC, chunk_rows=3)) == expected  # backed, in small chunks


@pytest.mark.parametrize("layout", ["dense", "csc", "csr_array", "explicit_zeros"])
def test_matrix_layouts_agree(universe, pbmc, layout):
    tok = Tokenizer.from_bed(universe)
    X = sp.csr_matrix(pbmc.X)
    if layout == "dense":
        X = X.toarray()
    elif layout == "csc":
        X = X.tocsc()
    elif layout == "csr_array":
        X = sp.csr_array(X)
    else:
        X = X.copy()
        X.data[::3] = 0  # stored zeros are not peaks
    other = ad.AnnData(X=X, obs=pbmc.obs, var=pbmc.var)
    expected = as_lists(tok.encode_anndata(ad.AnnData(X=sp.csr_matrix(other.X), obs=pbmc.obs, var=pbmc.var)))
    if layout == "explicit_zeros":
        sub = sp.csr_matrix(X)
        sub.eliminate_zeros()
        expected = as_lists(tok.encode_anndata(ad.AnnData(X=sub, obs=pbmc.obs, var=pbmc.var)))
    assert as_lists(tok.encode_anndata(other)) == expected


@pytest.mark.parametrize("fmt", ["{c}:{s}-{e}", "{c}-{s}-{e}", "{c}_{s}_{e}"])
def test_regions_from_var_names(universe, pbmc, fmt):
    tok = Tokenizer.from_bed(universe)
    var = pd.DataFrame(index=[fmt.format(c=c, s=s, e=e) for c, s, e in zip(pbmc.var["chr"], pbmc.var["start"], pbmc.var["end"])])
    named = ad.AnnData(X=pbmc.X, obs=pbmc.obs, var=var)
    assert as_lists(tok.encode_anndata(named)) == as_lists(tok.encode_anndata(pbmc))


def test_episcanpy_layout_chr_start_stop(universe, pbmc, tmp_path):
    """epiScanpy's var: columns chr / start / stop and names chr_start_stop, in memory and on disk."""
    tok = Tokenizer.from_bed(universe)
    chrom, start, end = pbmc.var["chr"], pbmc.var["start"], pbmc.var["end"]
    var = pd.DataFrame({"chr": chrom.to_numpy(), "start": start.to_numpy(), "stop": end.to_numpy()},
                       index=[f"{c}_{s}_{e}" for c, s, e in zip(chrom, start, end)])
    episcanpy = ad.AnnData(X=pbmc.X, obs=pbmc.obs, var=var)
    assert as_lists(tok.encode_anndata(episcanpy)) == as_lists(tok.encode_anndata(pbmc))
    episcanpy.write_h5ad(tmp_path / "episcanpy.h5ad")
    assert as_lists(tok.encode_anndata(str(tmp_path / "episcanpy.h5ad"))) == as_lists(tok.encode_anndata(pbmc))


def test_unusable_coordinates_are_explained(universe, pbmc):
    tok = Tokenizer.from_bed(universe)
    genes = ad.AnnData(X=pbmc.X, obs=pbmc.obs, var=pd.DataFrame(index=[f"GENE{i}" for i in range(pbmc.n_vars)]))
    with pytest.raises(GtokError, match="no usable region coordinates.*'GENE0'"):
        tok.encode_anndata(genes)


def test_rows_labels_and_names(universe):
    tok = Tokenizer.from_bed(universe)
    chunks = list(iter_cell_tokens(tok, PBMC, rows=(5, 12), chunk_rows=4, label_key="cell_type"))
    full = ad.read_h5ad(PBMC)
    assert [n for c in chunks for n in c.names] == list(full.obs_names[5:12])
    assert [x for c in chunks for x in c.labels] == list(full.obs["cell_type"].astype(str)[5:12])
    with pytest.raises(GtokError, match="obs has no column 'nope'"):
        next(iter_cell_tokens(tok, PBMC, label_key="nope"))
    with pytest.raises(GtokError, match="row range 30:40 is outside"):
        next(iter_cell_tokens(tok, PBMC, rows=(30, 40)))


def test_missing_and_broken_h5ad(universe, tmp_path):
    tok = Tokenizer.from_bed(universe)
    with pytest.raises(GtokError, match="nope.h5ad: no such file"):
        tok.encode_anndata(tmp_path / "nope.h5ad")
    bad = tmp_path / "bad.h5ad"
    bad.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(GtokError, match="bad.h5ad: not a readable .h5ad file"):
        tok.encode_anndata(bad)


@pytest.mark.parametrize("layout", ["csr", "dense", "csc"])
def test_h5ad_files_of_every_layout_read_in_chunks(universe, pbmc, tmp_path, layout):
    tok = Tokenizer.from_bed(universe)
    X = sp.csr_matrix(pbmc.X).tolil()
    X[3] = 0  # a cell with no peaks at all gets [<unk>]
    X = X.tocsr()
    X = {"csr": X, "dense": X.toarray(), "csc": X.tocsc()}[layout]
    obs = pbmc.obs.copy()
    obs["cell_type"] = obs["cell_type"].astype("category")
    obs.loc[obs.index[2], "cell_type"] = np.nan
    path = tmp_path / f"{layout}.h5ad"
    ad.AnnData(X=X, obs=obs, var=pbmc.var).write_h5ad(path)
    expected = as_lists(tok.encode_anndata(ad.AnnData(X=sp.csr_matrix(X), obs=obs, var=pbmc.var)))
    assert expected[3] == [tok.unk_token_id]
    chunks = list(iter_cell_tokens(tok, path, chunk_rows=6, label_key="cell_type"))
    got = [t.tolist() for c in chunks for t in np.split(c.tokens, np.cumsum(c.lengths)[:-1])]
    assert got == expected
    labels = [x for c in chunks for x in c.labels]
    assert labels[2] is None and labels[0] == str(obs["cell_type"].iloc[0])
