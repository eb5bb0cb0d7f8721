"""AnnData / h5ad tokenization: vectorized, and equal to gtars run one cell at a time."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import GTARS, gtars_regions, gtok, one_line_error, snapshot, write_bed, write_h5mu

from gtok import Tokenizer
from gtok.errors import GtokError
from gtok.sources.cells import iter_cell_tokens

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
    bare = ad.AnnData(X=full.X, var=full.var)  # obs of no column at all: "(columns: )" said nothing
    with pytest.raises(GtokError, match=r"obs has no column 'cell_type' \(it has no columns at all\)\.$"):
        next(iter_cell_tokens(tok, bare, label_key="cell_type"))


@pytest.mark.parametrize("options, words", [
    (["--label-key", "nope"], "obs has no column 'nope'"),
    (["--layer", "nope"], "has no layer 'nope'"),
    (["--rows", "30:40"], "row range 30:40 is outside the file's 20 cells"),
    (["--rows", "5:5"], "pbmc_hg38.h5ad: row range 5:5 is empty (the file holds 20 cells); give START < STOP"),
])
def test_h5ad_options_are_checked_before_the_progress_bar(universe, tmp_path, options, words):
    """The error is the only line: no progress bar was drawn before it."""
    one_line_error(gtok("tokenize", "-u", universe, "-o", tmp_path / "x.gtok", *options, PBMC), words)
    assert not (tmp_path / "x.gtok").exists()


def test_an_h5ad_whose_cells_share_a_name_is_refused(universe, tmp_path):
    cells = ad.read_h5ad(PBMC)
    cells.obs_names = ["same"] * 2 + list(cells.obs_names[2:])
    cells.write_h5ad(tmp_path / "twice.h5ad")
    one_line_error(gtok("tokenize", "-q", "-u", universe, "-o", tmp_path / "x.gtok", tmp_path / "twice.h5ad"),
                   "two records would both be named 'same'")
    assert not (tmp_path / "x.gtok").exists()


def test_an_h5ad_without_cells_is_refused(universe, tmp_path):
    ad.read_h5ad(PBMC)[:0].copy().write_h5ad(tmp_path / "none.h5ad")
    one_line_error(gtok("tokenize", "-q", "-u", universe, "-o", tmp_path / "x.gtok", tmp_path / "none.h5ad"),
                   "none.h5ad: holds no cells (its matrix has no rows); nothing to tokenize.")
    assert not (tmp_path / "x.gtok").exists()


@pytest.mark.parametrize("layout", ["csr", "csc", "dense"])
def test_a_column_stored_twice_in_a_row_is_one_token(universe, pbmc, layout):
    """A sparse matrix not in canonical form may store one entry in parts (scipy adds them): the
    cell's document is the set of its nonzero columns, as its dense form says."""
    tok = Tokenizer.from_bed(universe)
    x = sp.csr_matrix((np.ones(5, np.float32), np.array([3, 0, 3, 7, 7]), np.array([0, 3, 3, 5])), shape=(3, pbmc.n_vars))
    x.has_canonical_format = False
    matrix = {"csr": x, "csc": x.tocsc(), "dense": x.toarray()}[layout]  # tocsc sums the parts: stored once there
    cells = ad.AnnData(matrix, var=pbmc.var.copy(), obs=pd.DataFrame(index=["a", "b", "c"]))
    once = ad.AnnData(sp.csr_matrix(x.toarray()), var=pbmc.var.copy(), obs=pd.DataFrame(index=["a", "b", "c"]))
    assert [t.tolist() for t in tok.encode_anndata(cells)] == [t.tolist() for t in tok.encode_anndata(once)]


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


@pytest.mark.parametrize("values", [
    pd.array(["B", None, "T"], dtype="string"), pd.array([1, None, 2], dtype="Int64"),
    pd.array([True, None, False], dtype="boolean"), np.array([1, np.nan, 2], dtype=np.float32),
], ids=["string", "Int64", "boolean", "float32"])
def test_a_missing_label_is_no_label_in_memory_and_on_disk(universe, pbmc, tmp_path, values):
    """pandas' nullable columns hold pd.NA, and a float32 column read from a file np.float32 NaN:
    each is a cell without a label, not one labelled '<NA>' or 'nan'."""
    tok = Tokenizer.from_bed(universe)
    obs = pd.DataFrame({"kind": values}, index=["a", "b", "c"])
    adata = ad.AnnData(X=sp.csr_matrix(pbmc.X[:3]), obs=obs, var=pbmc.var)
    adata.write_h5ad(tmp_path / "c.h5ad")
    for source in (adata, tmp_path / "c.h5ad"):
        labels = [x for c in iter_cell_tokens(tok, source, label_key="kind") for x in c.labels]
        assert labels[1] is None and None not in (labels[0], labels[2]), (source, labels)


# -- CSC on disk and in memory, read in row chunks --------------------------------------------------


def tokens_of(chunks) -> list[list[int]]:
    return [t.tolist() for c in chunks for t in np.split(c.tokens, np.cumsum(c.lengths)[:-1]) if c.lengths.size]


@pytest.fixture(scope="module")
def big_csr(pbmc):
    """300 cells over the PBMC peaks, with empty cells and stored zeros."""
    rng = np.random.default_rng(1)
    X = sp.random(300, pbmc.n_vars, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    X.data[::7] = 0  # stored zeros are not peaks
    X = X.tolil()
    X[[0, 150, 299]] = 0
    return X.tocsr()


@pytest.fixture()
def small_blocks(monkeypatch):
    """Tiny CSC blocks and a spill that goes to disk at once: every path of the regrouping runs."""
    import gtok.sources.h5ad as h5ad

    monkeypatch.setattr(h5ad, "CSC_BLOCK_ENTRIES", 1000)
    monkeypatch.setattr(h5ad, "CSC_SPILL_IN_MEMORY", 1)  # (0 would mean "never roll over")


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 300, 5000])
def test_csc_h5ad_equals_csr_in_chunks(universe, pbmc, big_csr, tmp_path, small_blocks, chunk_rows):
    tok = Tokenizer.from_bed(universe)
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(big_csr.shape[0])])
    csr_path, csc_path = tmp_path / "csr.h5ad", tmp_path / "csc.h5ad"
    ad.AnnData(X=big_csr, obs=obs, var=pbmc.var).write_h5ad(csr_path)
    ad.AnnData(X=big_csr.tocsc(), obs=obs, var=pbmc.var).write_h5ad(csc_path)
    expected = tokens_of(iter_cell_tokens(tok, csr_path, chunk_rows=chunk_rows))
    assert expected[0] == [tok.unk_token_id] and sum(len(e) > 1 for e in expected) > 100
    chunks = list(iter_cell_tokens(tok, csc_path, chunk_rows=chunk_rows))
    assert tokens_of(chunks) == expected
    assert [n for c in chunks for n in c.names] == list(obs.index)
    assert all(len(c.names) == c.lengths.size <= chunk_rows for c in chunks)
    part = tokens_of(iter_cell_tokens(tok, csc_path, rows=(13, 290), chunk_rows=chunk_rows))
    assert part == expected[13:290]


def test_csc_spill_goes_to_the_given_folder_and_its_failure_names_it(universe, pbmc, big_csr, tmp_path, small_blocks, capsys):
    """gtok tokenize spills beside its output, not in $TMPDIR; a spill that cannot be written
    blames the spill's folder, not the input."""
    from gtok.cli import main

    tok = Tokenizer.from_bed(universe)
    path = tmp_path / "csc.h5ad"
    ad.AnnData(X=big_csr.tocsc(), var=pbmc.var).write_h5ad(path)
    missing = tmp_path / "no-such-folder"
    with pytest.raises(GtokError, match=f"cannot write the temporary copy of X's rows in {missing}"):
        list(iter_cell_tokens(tok, path, chunk_rows=7, spill_dir=str(missing)))
    out = tmp_path / "out" / "csc.gtok"
    out.parent.mkdir()
    assert main(["tokenize", "-q", "--chunk-rows", "7", "-u", str(universe), "-o", str(out), str(path)]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["csc.gtok"]  # nothing left beside it


def test_csc_h5ad_matches_gtars(universe, pbmc, tmp_path, small_blocks):
    path = tmp_path / "csc.h5ad"
    ad.AnnData(X=sp.csc_matrix(pbmc.X), obs=pbmc.obs, var=pbmc.var).write_h5ad(path)
    tok = Tokenizer.from_bed(universe)
    assert tokens_of(iter_cell_tokens(tok, path, chunk_rows=3)) == per_cell_oracle(universe, pbmc)


@pytest.mark.parametrize("kind", ["csc_matrix", "csc_array"])
def test_in_memory_csc_in_chunks(universe, pbmc, big_csr, small_blocks, kind):
    tok = Tokenizer.from_bed(universe)
    X = sp.csc_matrix(big_csr) if kind == "csc_matrix" else sp.csc_array(big_csr)
    expected = tokens_of(iter_cell_tokens(tok, ad.AnnData(X=big_csr, var=pbmc.var), chunk_rows=11))
    assert tokens_of(iter_cell_tokens(tok, ad.AnnData(X=X, var=pbmc.var), chunk_rows=11)) == expected
    assert as_lists(tok.encode_anndata(ad.AnnData(X=X, var=pbmc.var))) == expected


def test_legacy_h5sparse_csc_and_damaged_csc(universe, pbmc, big_csr, tmp_path):
    """anndata before 0.7 marked sparse X with h5sparse_format / h5sparse_shape; a CSC X whose
    pointers do not fit its entries is refused by name."""
    import h5py

    tok = Tokenizer.from_bed(universe)
    path = tmp_path / "legacy.h5ad"
    ad.AnnData(X=big_csr.tocsc(), var=pbmc.var).write_h5ad(path)
    expected = tokens_of(iter_cell_tokens(tok, ad.AnnData(X=big_csr, var=pbmc.var)))
    with h5py.File(path, "r+") as f:
        x = f["X"]
        shape = x.attrs["shape"]
        for key in ("encoding-type", "encoding-version", "shape"):
            del x.attrs[key]
        x.attrs["h5sparse_format"], x.attrs["h5sparse_shape"] = "csc", shape
    assert tokens_of(iter_cell_tokens(tok, path, chunk_rows=50)) == expected
    with h5py.File(path, "r+") as f:
        indptr = f["X/indptr"][...]
        del f["X/indptr"]
        f["X/indptr"] = indptr[:-5]
    with pytest.raises(GtokError, match=r"legacy.h5ad: X is a damaged CSC matrix"):
        next(iter_cell_tokens(tok, path))


def test_chunk_rows_must_be_positive(universe):
    with pytest.raises(GtokError, match="chunk_rows must be 1 or more"):
        next(iter_cell_tokens(Tokenizer.from_bed(universe), PBMC, chunk_rows=0))


# -- MuData (.h5mu): one modality ---------------------------------------------------------------------


@pytest.fixture()
def h5mu(pbmc, tmp_path):
    rna = ad.AnnData(X=sp.random(pbmc.n_obs, 30, density=0.3, format="csr", random_state=0, dtype=np.float32),
                     obs=pd.DataFrame(index=pbmc.obs_names), var=pd.DataFrame(index=[f"GENE{i}" for i in range(30)]))
    atac = ad.AnnData(X=sp.csc_matrix(pbmc.X), obs=pbmc.obs, var=pbmc.var)
    path = tmp_path / "multiome.h5mu"
    write_h5mu(path, {"rna": rna, "atac": atac})
    return path


def test_h5mu_atac_modality_tokenizes_like_its_h5ad(universe, pbmc, h5mu):
    from gtok.sources.h5ad import H5adFile

    tok = Tokenizer.from_bed(universe)
    expected = as_lists(tok.encode_anndata(pbmc))
    assert as_lists(tok.encode_anndata(h5mu)) == expected  # atac is the default modality
    chunks = list(iter_cell_tokens(tok, h5mu, chunk_rows=6, modality="atac", label_key="cell_type"))
    assert tokens_of(chunks) == expected
    assert [n for c in chunks for n in c.names] == list(pbmc.obs_names)
    assert [x for c in chunks for x in c.labels] == list(pbmc.obs["cell_type"].astype(str))
    h5 = H5adFile(h5mu, group="mod/atac")
    assert (h5.n_obs, h5.n_vars) == pbmc.shape
    h5.close()
    with pytest.raises(GtokError, match="no usable region coordinates.*'GENE0'"):
        next(iter_cell_tokens(tok, h5mu, modality="rna"))


def test_h5mu_missing_modality_lists_the_present_ones(universe, h5mu):
    tok = Tokenizer.from_bed(universe)
    with pytest.raises(GtokError) as err:
        next(iter_cell_tokens(tok, h5mu, modality="ATAC_peaks"))
    message = str(err.value)
    assert message.startswith(str(h5mu)) and "\n" not in message
    assert "no modality 'ATAC_peaks'" in message and "modalities present: atac, rna" in message
    assert "--modality NAME" in message


def test_h5mu_damaged_and_in_memory_mudata(universe, pbmc, tmp_path):
    from types import SimpleNamespace

    tok = Tokenizer.from_bed(universe)
    bad = tmp_path / "bad.h5mu"
    bad.write_bytes(b"not hdf5" * 100)
    with pytest.raises(GtokError, match="bad.h5mu: not a readable .h5mu file"):
        next(iter_cell_tokens(tok, bad))
    mdata = SimpleNamespace(mod={"atac": pbmc})  # what iter_cell_tokens uses of a mudata.MuData
    assert tokens_of(iter_cell_tokens(tok, mdata)) == as_lists(tok.encode_anndata(pbmc))
    with pytest.raises(GtokError, match=r"no modality 'peaks' \(modalities present: atac\)"):
        next(iter_cell_tokens(tok, mdata, modality="peaks"))


# -- ArchR tile matrices: starts without ends ---------------------------------------------------------


TILE = 500


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """An ArchR-like TileMatrix: 500 bp tiles on two chromosomes (start = (idx - 1) * 500), 40 cells,
    and a universe of some of those tiles plus peaks that cross tile edges."""
    rng = np.random.default_rng(2)
    chroms = np.repeat(["chr1", "chr2"], [120, 80])
    idx = np.concatenate([np.arange(1, 121), np.arange(1, 81)])
    starts = (idx - 1) * TILE
    X = sp.random(40, chroms.size, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    rows = [(c, int(s), int(s) + TILE) for c, s in zip(chroms, starts) if rng.random() < 0.5]
    rows += [(c, int(s) + 400, int(s) + 700) for c, s in zip(chroms, starts) if rng.random() < 0.2]
    universe = write_bed(tmp_path_factory.mktemp("tiles") / "tiles.bed", rows)
    var = pd.DataFrame({"seqnames": pd.Categorical(chroms), "idx": idx, "start": starts},
                       index=[f"{c}:{s}-{s + TILE - 1}" for c, s in zip(chroms, starts)])
    return SimpleTiles(X, var, universe)


class SimpleTiles:
    def __init__(self, X, var, universe):
        self.X, self.var, self.universe = X, var, universe

    def explicit(self, keep=slice(None)) -> ad.AnnData:
        var = self.var.iloc[keep]
        return ad.AnnData(X=self.X[:, keep], var=pd.DataFrame(
            {"chr": var["seqnames"].astype(str).to_numpy(), "start": var["start"].to_numpy(),
             "end": var["start"].to_numpy() + TILE}, index=var.index))

    def archr(self, keep=slice(None), columns=("seqnames", "idx", "start"), names=None) -> ad.AnnData:
        var = self.var.iloc[keep][list(columns)]
        var.index = names if names is not None else [str(i) for i in range(len(var))]  # zellkonverter's row numbers
        return ad.AnnData(X=self.X[:, keep], var=var)


def test_archr_tiles_match_explicit_ends_and_gtars(tiles, tmp_path):
    tok = Tokenizer.from_bed(tiles.universe)
    explicit = tiles.explicit()
    expected = as_lists(tok.encode_anndata(explicit))
    assert sum(len(e) > 1 for e in expected) > 10
    assert as_lists(tok.encode_anndata(tiles.archr())) == expected  # width from idx
    assert as_lists(tok.encode_anndata(tiles.archr(columns=("seqnames", "start")))) == expected  # from the starts
    tiles.archr().write_h5ad(tmp_path / "archr.h5ad")
    assert as_lists(tok.encode_anndata(str(tmp_path / "archr.h5ad"))) == expected
    regions = list(zip(explicit.var["chr"], explicit.var["start"], explicit.var["end"]))
    X = tiles.X.tocsr()
    X.sort_indices()
    assert expected == [gtars_regions(tiles.universe, [regions[j] for j in X[i].indices]) for i in range(X.shape[0])]


def test_archr_filtered_tiles_and_one_tile_per_chromosome(tiles):
    tok = Tokenizer.from_bed(tiles.universe)
    filtered = np.sort(np.random.default_rng(3).choice(200, 60, replace=False))  # gaps are multiples of 500
    assert as_lists(tok.encode_anndata(tiles.archr(filtered, ("seqnames", "start")))) == \
        as_lists(tok.encode_anndata(tiles.explicit(filtered)))
    one_each = np.array([7, 150])  # one tile per chromosome: only idx (or the caller) tells the width
    expected = as_lists(tok.encode_anndata(tiles.explicit(one_each)))
    assert as_lists(tok.encode_anndata(tiles.archr(one_each))) == expected
    no_idx = tiles.archr(one_each, ("seqnames", "start"))
    assert tokens_of(iter_cell_tokens(tok, no_idx, tile_width=TILE)) == expected
    with pytest.raises(GtokError, match="no chromosome has two tiles.*--tile-width N"):
        next(iter_cell_tokens(tok, no_idx))


def test_archr_var_names_with_inclusive_ends_give_the_same_tile_tokens(tiles):
    """Names like ArchR users write (chr1:0-499, 1-based inclusive ends) parse as [0, 499): against
    a universe of the same tiles the tokens are the tiles' own."""
    tok = Tokenizer.from_bed(tiles.universe)
    named = tiles.archr(columns=(), names=list(tiles.var.index))
    explicit = tiles.explicit()
    # Only a universe region starting on a tile's last base could tell the two apart; there is none.
    assert as_lists(tok.encode_anndata(named)) == as_lists(tok.encode_anndata(explicit))


@pytest.mark.parametrize(("change", "message"), [
    ("off_grid", r"not on one grid of fixed-width tiles \(consecutive starts differ by 500 and by 750\)"),
    ("duplicate", "two columns start at chr1:500"),
    ("bad_width", "tile width 0 is not a whole number"),
    ("negative", r"column 'start', row 0: -5 is not a coordinate"),
])
def test_archr_ambiguous_tiles_are_refused(tiles, change, message):
    tok = Tokenizer.from_bed(tiles.universe)
    adata = tiles.archr(slice(0, 6), ("seqnames", "start"))
    starts = adata.var["start"].to_numpy().copy()
    width = None
    if change == "off_grid":
        starts[2:] += 250
    elif change == "duplicate":
        starts[2] = starts[1]
    elif change == "negative":
        starts[0] = -5
    else:
        width = 0
    adata.var["start"] = starts
    with pytest.raises(GtokError, match=message) as err:
        next(iter_cell_tokens(tok, adata, tile_width=width))
    assert str(err.value).startswith("the AnnData: ") and "\n" not in str(err.value)


def test_gtok_tokenize_reads_an_h5mu_modality_and_tiles_of_a_given_width(universe, pbmc, h5mu, tiles, tmp_path):
    """The command line: `.h5mu` inputs with --modality, and --tile-width for tiles without idx."""
    from gtok.cli import main
    from gtok.formats.shard import ShardReader

    out = tmp_path / "cells.gtok"
    assert main(["tokenize", "-q", "-u", str(universe), "-o", str(out), "--label-key", "cell_type", str(h5mu)]) == 0
    reader = ShardReader(out)
    assert [t.tolist() for t in reader] == as_lists(Tokenizer.from_bed(universe).encode_anndata(pbmc))
    assert reader.names == list(pbmc.obs_names)
    assert main(["tokenize", "-q", "-u", str(universe), "-o", str(tmp_path / "x.gtok"), "--modality", "ATAC_peaks", str(h5mu)]) == 1
    bare = tmp_path / "tiles.h5ad"
    tiles.archr(columns=("seqnames", "start")).write_h5ad(bare)
    explicit = tmp_path / "explicit.h5ad"
    tiles.explicit().write_h5ad(explicit)
    for path, extra in ((bare, ["--tile-width", str(TILE)]), (explicit, [])):
        assert main(["tokenize", "-q", "-u", str(tiles.universe), "-o", str(path.with_suffix(".gtok")), *extra, str(path)]) == 0
    assert [t.tolist() for t in ShardReader(bare.with_suffix(".gtok"))] == [t.tolist() for t in ShardReader(explicit.with_suffix(".gtok"))]


def test_options_that_do_not_fit_the_file_are_refused_not_ignored(universe, pbmc, tiles, tmp_path):
    """--modality of a plain .h5ad, and --tile-width of a var that has ends, would be ignored: a
    user who gave them expects other cells or regions than they would get."""
    tok = Tokenizer.from_bed(universe)
    plain = tmp_path / "plain.h5ad"
    pbmc.write_h5ad(plain)
    with pytest.raises(GtokError, match="plain.h5ad: an AnnData file, not a MuData one, so it has no modality 'rna'"):
        next(iter_cell_tokens(tok, plain, modality="rna"))
    with pytest.raises(GtokError, match="--tile-width .* applies to tile matrices .*; this var has an end column"):
        next(iter_cell_tokens(Tokenizer.from_bed(tiles.universe), tiles.explicit(), tile_width=TILE))


def test_a_negative_coordinate_in_a_var_name_is_refused_not_read_as_another_chromosome(universe):
    """'chr1:-100-200' used to parse as chromosome 'chr1:', 100-200: its column became <unk> in
    every cell without a word."""
    tok = Tokenizer.from_bed(universe)
    adata = ad.AnnData(X=sp.csr_matrix(np.ones((1, 2), dtype=np.float32)),
                       var=pd.DataFrame(index=["chr1:100-200", "chr1:-100-200"]))
    with pytest.raises(GtokError, match="var name 'chr1:-100-200' is not a region like 'chr1:100-200'"):
        next(iter_cell_tokens(tok, adata))


def test_var_columns_other_than_coordinates_are_not_read(universe, pbmc, tmp_path, monkeypatch):
    """A var column in an encoding the small reader does not know (here a made-up one) neither
    stops tokenization nor sends the file to anndata: only chr/start/end-like columns are read."""
    import h5py

    from gtok.sources import cells

    monkeypatch.setattr(cells._Cells, "_read_backed", lambda self, why: pytest.fail(f"fell back to anndata: {why}"))

    path = tmp_path / "extra.h5ad"
    pbmc.write_h5ad(path)
    with h5py.File(path, "a") as f:
        f["var"].create_group("notes").attrs["encoding-type"] = "made-up-encoding"
    tok = Tokenizer.from_bed(universe)
    assert tokens_of(iter_cell_tokens(tok, path)) == as_lists(tok.encode_anndata(pbmc))


# -- matrices that are not counts, damaged matrices, missing coordinates: one line each ----------------


def float_pbmc(pbmc, value=None, at=(4, 7)) -> ad.AnnData:
    """The PBMC cells as float counts, with `value` stored at cell at[0], among its nonzero columns."""
    X = sp.csr_matrix(pbmc.X, dtype=np.float32)
    if value is not None:
        row = X[at[0]]
        X[at[0], row.indices[at[1]]] = value
    return ad.AnnData(X=X, obs=pbmc.obs, var=pbmc.var)


@pytest.mark.parametrize("value", [np.nan, -0.75])
@pytest.mark.parametrize("layout", ["csr", "csc", "dense"])
@pytest.mark.parametrize("where", ["memory", "file"])
def test_values_that_are_not_counts_are_refused_naming_the_cell(universe, pbmc, tmp_path, small_blocks, value, layout, where):
    """A scaled matrix (negative values) or NaN would count every stored entry as an open peak."""
    adata = float_pbmc(pbmc, value)
    column = int(sp.csr_matrix(adata.X)[4].indices[7])
    adata.X = {"csr": adata.X, "csc": sp.csc_matrix(adata.X), "dense": adata.X.toarray()}[layout]
    source = adata
    if where == "file":
        source = tmp_path / "scaled.h5ad"
        adata.write_h5ad(source)
    tok = Tokenizer.from_bed(universe)
    with pytest.raises(GtokError) as info:
        list(iter_cell_tokens(tok, source, chunk_rows=3))
    message = str(info.value)
    name = "scaled.h5ad" if where == "file" else "the AnnData"
    assert message.startswith(f"{source if where == 'file' else name}: X holds ") and "\n" not in message
    assert f"for cell {pbmc.obs_names[4]!r} (row 4)" in message and f"(column {column})" in message
    assert "not a matrix of counts" in message
    assert tokens_of(iter_cell_tokens(tok, float_pbmc(pbmc), chunk_rows=3)) == per_cell_oracle(universe, pbmc)


def test_a_value_outside_the_rows_read_does_not_stop_a_row_range(universe, pbmc, tmp_path):
    path = tmp_path / "scaled.h5ad"
    float_pbmc(pbmc, -1.0, at=(15, 0)).write_h5ad(path)
    tok = Tokenizer.from_bed(universe)
    assert tokens_of(iter_cell_tokens(tok, path, rows=(0, 10))) == per_cell_oracle(universe, pbmc)[:10]


def test_layers_are_named_when_x_is_empty_and_layer_reads_one(universe, pbmc, tmp_path):
    """An AnnData with X=None and its counts in layers is not 'not an AnnData file'."""
    from gtok.cli import main
    from gtok.formats.shard import ShardReader

    tok = Tokenizer.from_bed(universe)
    adata = ad.AnnData(obs=pbmc.obs, var=pbmc.var, layers={"counts": pbmc.X, "scaled": pbmc.X * -1.0})
    path = tmp_path / "layers.h5ad"
    adata.write_h5ad(path)
    for source in (path, adata):
        with pytest.raises(GtokError, match="X is empty \\(None\\), so there is no matrix of cells to tokenize; its layers: "
                                            "counts, scaled; pass --layer NAME"):
            next(iter_cell_tokens(tok, source))
        assert tokens_of(iter_cell_tokens(tok, source, layer="counts")) == per_cell_oracle(universe, pbmc)
        with pytest.raises(GtokError, match="has no layer 'raw' \\(its layers: counts, scaled\\)"):
            next(iter_cell_tokens(tok, source, layer="raw"))
        with pytest.raises(GtokError, match="layer 'scaled' holds -"):
            next(iter_cell_tokens(tok, source, layer="scaled"))
    out = tmp_path / "cells.gtok"
    assert main(["tokenize", "-q", "-u", str(universe), "-o", str(out), "--layer", "counts", str(path)]) == 0
    assert [t.tolist() for t in ShardReader(out)] == per_cell_oracle(universe, pbmc)


def damage(path, change) -> None:
    import h5py

    with h5py.File(path, "r+") as f:
        change(f)


def replace(f, key: str, values) -> None:
    del f[key]
    f[key] = values


@pytest.mark.parametrize(("layout", "change", "message"), [
    ("csr", lambda f: replace(f, "X/indices", np.where(f["X/indices"][...] == 3, 1000, f["X/indices"][...])),
     r"X is a damaged matrix: row \d+ has column index 1000, outside its 1000 columns"),
    ("csr", lambda f: replace(f, "X/indices", np.where(f["X/indices"][...] == 3, -2, f["X/indices"][...])),
     r"X is a damaged matrix: row \d+ has column index -2, outside its 1000 columns"),
    ("csr", lambda f: replace(f, "X/indptr", f["X/indptr"][...][::-1]), r"X is a damaged CSR matrix \(its indptr does not fit"),
    ("csr", lambda f: replace(f, "X/indptr", f["X/indptr"][:-3]), r"X is a damaged CSR matrix \(its indptr does not fit"),
    ("csc", lambda f: replace(f, "X/indices", np.where(f["X/indices"][...] == 19, 20, f["X/indices"][...])),
     r"X is a damaged CSC matrix: column \d+ has row index 20, outside its 20 rows"),
    ("dense", lambda f: replace(f, "X", np.ones((20, 1001), np.float32)), r"X has 1,001 columns but var has 1,000 rows"),
    ("csr", lambda f: replace(f, "obs/_index", np.array([b"a", b"b"])), r"X has 20 rows but obs has 2 names"),
])
def test_damaged_matrices_are_one_line(universe, pbmc, tmp_path, layout, change, message):
    """Indices beyond the matrix, broken pointers and a matrix wider than var used to raise
    tracebacks, or (a CSC row index beyond the cells) drop a peak silently."""
    X = {"csr": sp.csr_matrix(pbmc.X), "csc": sp.csc_matrix(pbmc.X), "dense": pbmc.X.toarray()}[layout]
    path = tmp_path / "damaged.h5ad"
    ad.AnnData(X=X, obs=pbmc.obs, var=pbmc.var).write_h5ad(path)
    damage(path, change)
    with pytest.raises(GtokError, match=f"damaged.h5ad: {message}"):
        list(iter_cell_tokens(Tokenizer.from_bed(universe), path, chunk_rows=6))


@pytest.mark.parametrize("where", ["memory", "file"])
def test_missing_chromosome_and_end_are_named_not_read_as_none(universe, pbmc, tmp_path, where):
    """A categorical's missing chromosome used to become the chromosome 'None'; a nullable end
    with NA crashed inside the error message."""
    tok = Tokenizer.from_bed(universe)
    var = pbmc.var.copy()
    var.loc[var.index[5], "chr"] = np.nan
    nullable = pbmc.var.copy()
    nullable["end"] = nullable["end"].astype("Int64")
    nullable.loc[nullable.index[8], "end"] = pd.NA
    for bad_var, message in ((var, r"var, row 5: the chromosome name is missing"),
                             (nullable, r"var, column 'end', row 8: the value is missing")):
        source = ad.AnnData(X=pbmc.X, obs=pbmc.obs, var=bad_var)
        if where == "file":
            source.write_h5ad(tmp_path / "na.h5ad")
            source = tmp_path / "na.h5ad"
        with pytest.raises(GtokError, match=message):
            next(iter_cell_tokens(tok, source))


def test_an_h5ad_from_before_anndata_0_7_is_read(universe, pbmc, tmp_path):
    """obs and var stored as compound datasets (tables), categories in uns: anndata reads it."""
    import h5py

    path = tmp_path / "legacy.h5ad"
    small = pbmc[:6]
    var = small.var
    with h5py.File(path, "w") as f:
        f["X"] = small.X.toarray().astype(np.float32)
        f["obs"] = np.array([(n.encode(),) for n in small.obs_names], dtype=[("index", "S40")])
        f["var"] = np.array([(n.encode(), c.encode(), s, e) for n, c, s, e in zip(var.index, var["chr"].astype(str), var["start"], var["end"])],
                            dtype=[("index", "S40"), ("chr", "S8"), ("start", "i8"), ("end", "i8")])
    tok = Tokenizer.from_bed(universe)
    chunks = list(iter_cell_tokens(tok, path, chunk_rows=4))
    assert tokens_of(chunks) == per_cell_oracle(universe, pbmc)[:6]
    assert [n for c in chunks for n in c.names] == list(small.obs_names)


def test_a_var_on_no_chromosome_of_the_universe_is_named(universe, pbmc, recwarn):
    tok = Tokenizer.from_bed(universe)
    var = pbmc.var.copy()
    var["chr"] = var["chr"].astype(str).str.removeprefix("chr")
    tokens = tokens_of(iter_cell_tokens(tok, ad.AnnData(X=pbmc.X, obs=pbmc.obs, var=var)))
    assert tokens == [[tok.unk_token_id]] * pbmc.n_obs
    assert "the AnnData (var): none of its chromosomes (1, 10, 11, ... (" in str(recwarn[-1].message)
    recwarn.clear()
    list(iter_cell_tokens(tok, pbmc))
    assert not [w for w in recwarn if "none of its chromosomes" in str(w.message)]


def test_a_var_whose_peaks_mostly_miss_the_universe_is_warned_of(pbmc, tmp_path):
    """Peaks of another assembly share the universe's chromosome names, so only their positions
    tell: most of them overlapping nothing left each cell a few chance tokens, in silence."""
    import warnings

    v = pbmc.var
    universe = write_bed(tmp_path / "u.bed", list(zip(v["chr"].astype(str), v["start"], v["end"])))
    tok = Tokenizer.from_bed(universe)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(iter_cell_tokens(tok, pbmc))
    moved = v.copy()
    moved["start"], moved["end"] = v["start"] + 1_000_003, v["end"] + 1_000_003  # another assembly's coordinates
    with pytest.warns(UserWarning, match=rf"^the AnnData: \d[\d,]* of its {v.shape[0]:,} peaks overlap no universe "
                                         r"region, so its cells keep only the others as tokens; is it on another genome"):
        list(iter_cell_tokens(tok, ad.AnnData(X=pbmc.X, obs=pbmc.obs, var=moved)))
    # a tile matrix's var (bins of one width on its grid) mostly misses a universe of peaks by design
    tiles = pd.DataFrame({"chr": "chr1", "start": 500 * np.arange(v.shape[0]) + 5_000_000})
    tiles.index = tiles.index.astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(iter_cell_tokens(tok, ad.AnnData(X=pbmc.X, obs=pbmc.obs, var=tiles)))


def test_var_is_warned_of_before_the_progress_bar_starts(pbmc, tmp_path):
    """iter_cell_tokens was a generator, so its checks of var ran at the first chunk: gtok embed and
    gtok tokenize had started their progress bars when the warnings came. They come when it is
    called, and tokenize's bar after them."""
    v = pbmc.var
    universe = write_bed(tmp_path / "u.bed", list(zip(v["chr"].astype(str), v["start"], v["end"])))
    moved = v.copy()
    moved["start"], moved["end"] = v["start"] + 1_000_003, v["end"] + 1_000_003  # another assembly's coordinates
    cells = ad.AnnData(X=pbmc.X, obs=pbmc.obs, var=moved)
    with pytest.warns(UserWarning, match="peaks overlap no universe region"):
        iter_cell_tokens(Tokenizer.from_bed(universe), cells)  # not a chunk asked for
    cells.write_h5ad(tmp_path / "moved.h5ad")
    proc = gtok("tokenize", "-u", universe, "-o", tmp_path / "o.gtok", tmp_path / "moved.h5ad", check=True)
    warning = proc.stderr.index("moved.h5ad: ")
    assert "overlap no universe region" in proc.stderr[warning:].splitlines()[0]
    assert "moved.h5ad:" not in proc.stderr[:warning] and "cell" not in proc.stderr[:warning], proc.stderr


def test_h5ad_files_whose_cells_share_names_are_named_by_their_samples(universe, pbmc, tmp_path):
    """Obs names repeat across .h5ad files as barcodes do across fragment files."""
    from gtok.cli import main
    from gtok.formats.shard import ShardReader

    a, b = tmp_path / "a" / "cells.h5ad", tmp_path / "b.h5ad"
    a.parent.mkdir()
    pbmc[:3].write_h5ad(a)
    pbmc[:2].write_h5ad(b)
    out = tmp_path / "o.gtok"
    assert main(["tokenize", "-q", "-u", str(universe), "-o", str(out), str(a), str(b)]) == 0
    names = list(pbmc.obs_names)
    assert ShardReader(out).names == [f"cells#{n}" for n in names[:3]] + [f"b#{n}" for n in names[:2]]
    assert main(["tokenize", "-q", "-u", str(universe), "-o", str(out), "--rows", "1:3", "--sample", "P", str(a)]) == 0
    assert ShardReader(out).names == [f"P#{n}" for n in names[1:3]]


# -- hostile input (once tests/test_edge_cases.py): one-line errors or correct tokens, nothing touched --


def test_huge_coordinates_in_h5ad_var_are_refused(tmp_path):
    import anndata as ad
    import pandas as pd

    var = pd.DataFrame({"chr": ["chr1", "chr1"], "start": [100, 2**34 + 150], "end": [200, 2**34 + 160]},
                       index=["a", "b"])
    path = tmp_path / "big.h5ad"
    ad.AnnData(X=np.ones((2, 2), np.float32), var=var).write_h5ad(path)
    one_line_error(gtok("tokenize", "-q", "-u", GTARS / "peaks.bed", "-o", tmp_path / "c.gtok", path),
                   "big.h5ad: var, column 'start', row 1", "is not a coordinate")


@pytest.fixture
def truncated_h5ad(tmp_path) -> Path:
    data = (GTARS / "pbmc_hg38.h5ad").read_bytes()
    path = tmp_path / "cut.h5ad"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.slow
def test_truncated_h5ad_is_one_line_in_tokenize_and_embed(tmp_path, truncated_h5ad, tiny_model):
    before = snapshot(tmp_path)
    one_line_error(gtok("tokenize", "-q", "-u", GTARS / "peaks.bed", "-o", tmp_path / "c.gtok", truncated_h5ad),
                   "cut.h5ad: not a readable .h5ad file")
    one_line_error(gtok("embed", "-q", "-c", tiny_model, "-o", tmp_path / "e.h5ad", truncated_h5ad),
                   "cut.h5ad: not a readable .h5ad file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("start, words", [
    ([100.0, np.nan], "column 'start', row 1: nan is not a coordinate"),
    ([100.0, 150.7], "column 'start', row 1: 150.7 is not a coordinate"),
])
def test_bad_h5ad_var_names_the_file_column_and_row(tmp_path, start, words):
    import anndata as ad
    import pandas as pd

    var = pd.DataFrame({"chr": ["chr1", "chr1"], "start": start, "end": [200.0, 300.0]}, index=["a", "b"])
    path = tmp_path / "v.h5ad"
    ad.AnnData(X=np.ones((2, 2), np.float32), var=var).write_h5ad(path)
    proc = gtok("tokenize", "-q", "-u", GTARS / "peaks.bed", "-o", tmp_path / "c.gtok", path)
    one_line_error(proc, "v.h5ad: var, ", words)
    assert "Warning" not in proc.stderr


def test_integral_float_coordinates_in_h5ad_var_are_whole_numbers(tmp_path):
    import anndata as ad

    src = ad.read_h5ad(GTARS / "pbmc_hg38.h5ad")
    as_float = src.copy()
    as_float.var["start"] = as_float.var["start"].astype(float)
    path = tmp_path / "f.h5ad"
    as_float.write_h5ad(path)
    tok = Tokenizer.from_bed(GTARS / "peaks.bed", cache_dir="off")
    assert [t.tolist() for t in tok.encode_anndata(path)] == [t.tolist() for t in tok.encode_anndata(src)]


def test_an_h5ad_another_process_is_writing_is_said_to_be_busy_not_damaged(tmp_path):
    """HDF5 locks a file open for writing; the reader's refusal names that, so that nobody deletes
    a good file for a damaged one."""
    import subprocess
    import sys

    path = tmp_path / "busy.h5ad"
    path.write_bytes(PBMC.read_bytes())
    holder = subprocess.Popen([sys.executable, "-c", "import h5py, sys; f = h5py.File(sys.argv[1], 'r+'); print(flush=True); "
                               "sys.stdin.read()", str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()  # the file is open, and locked
        one_line_error(gtok("tokenize", "-q", "-u", GTARS / "peaks.bed", "-o", tmp_path / "c.gtok", path),
                       "busy.h5ad: another process has it open for writing")
    finally:
        holder.communicate("", timeout=30)
    assert not (tmp_path / "c.gtok").exists()


def test_sort_var_puts_var_in_the_universes_order_or_a_bed_files(tmp_path):
    """gtok.sort_var gives the two orders gtok trains a cell's tokens in (docs/models.md): the
    universe's, a peak placed by the smallest id it overlaps and a peak of none last, and a BED
    file's, by chromosome name as text; anything else is one line saying what it takes."""
    import gtok

    universe = tmp_path / "u.bed"
    universe.write_text("chr1\t0\t10\nchr2\t0\t10\nchr2\t20\t30\nchr10\t0\t10\n")
    var = pd.DataFrame({"chrom": ["chr10", "chr2", "chr3", "chr1", "chr2"], "start": [0, 0, 0, 0, 25],
                        "end": [10, 25, 10, 10, 28]}, index=["a", "b", "none", "c", "d"])
    adata = ad.AnnData(sp.csr_matrix(np.eye(5, dtype=np.float32)), var=var)
    by_universe = gtok.sort_var(adata, Tokenizer.from_bed(universe))
    assert list(by_universe.var_names) == ["c", "b", "d", "a", "none"]  # b overlaps ids 1 and 2, d only 2
    assert (by_universe.X.toarray()[:, 0] == adata.X.toarray()[:, 3]).all()  # the columns move with var
    assert list(gtok.sort_var(adata, "bed").var_names) == ["c", "a", "b", "d", "none"]
    for order in ("natural", universe):
        with pytest.raises(GtokError, match=r'^sort_var: order must be "bed" or the model\'s tokenizer'):
            gtok.sort_var(adata, order)
    with pytest.raises(GtokError, match=r"^sort_var takes an AnnData, not a str: read an .h5ad with anndata.read_h5ad"):
        gtok.sort_var("cells.h5ad", "bed")


def test_var_order_is_judged_by_the_peaks_that_give_tokens(tmp_path):
    """A peak of no universe region gives no token wherever it is in var, so it cannot make a cell's
    tokens leave a BED file's order: a var whose only such peak (chr3, on no universe chromosome)
    came first was warned of as out of order, while its cells' tokens were its BED files' own."""
    from gtok.sources.bed import Intervals
    from gtok.sources.cells import ColumnTokens, var_order_warning

    universe = tmp_path / "u.bed"
    universe.write_text("chr1\t0\t10\nchr2\t0\t10\nchr10\t0\t10\n")
    tok = Tokenizer.from_bed(universe)
    var = Intervals.from_columns(["chr3", "chr1", "chr10", "chr2"], [0, 0, 0, 0], [10, 10, 10, 10])
    assert var_order_warning(var, ColumnTokens(tok, var), "v", "m", "p") is None
    shuffled = var.take(np.array([0, 2, 1, 3]))
    assert "var is not in its model's universe order nor in a BED file's" in var_order_warning(
        shuffled, ColumnTokens(tok, shuffled), "v", "m", "p")


def test_sort_var_of_a_backed_anndata_comes_back_in_memory(tmp_path):
    """A backed AnnData (read_h5ad(backed="r"), as a large file is read) raised anndata's ValueError
    that a backed object copies only to a file: it comes back sorted, in memory."""
    import gtok

    var = pd.DataFrame({"chrom": ["chr2", "chr1", "chr10"], "start": [0, 0, 0], "end": [10, 10, 10]}, index=list("abc"))
    adata = ad.AnnData(sp.csr_matrix(np.arange(9, dtype=np.float32).reshape(3, 3)), var=var)
    adata.write_h5ad(tmp_path / "x.h5ad")
    backed = ad.read_h5ad(tmp_path / "x.h5ad", backed="r")
    try:
        by_bed = gtok.sort_var(backed, "bed")
    finally:
        backed.file.close()
    assert not by_bed.isbacked and list(by_bed.var_names) == ["b", "c", "a"]
    assert (by_bed.X.toarray() == adata.X.toarray()[:, [1, 2, 0]]).all()


def test_a_shard_records_the_order_its_records_tokens_came_in(tmp_path):
    """A model with position embeddings must be given tokens in the order it was trained in, and gtok
    train can only record that order when the shards do: BED files are read sorted (a BED file's
    order), an .h5ad's cells come in var's order (the universe's, a BED file's, both where the two
    coincide, or neither), and fragment files keep their own order, which gtok does not name."""
    from gtok.build import tokenize_to_shard
    from gtok.formats.shard import ShardReader

    universe = tmp_path / "u.bed"
    universe.write_text("chr1\t0\t10\nchr2\t0\t10\nchr10\t0\t10\n")  # natural order: chr2 before chr10
    var = pd.DataFrame({"chrom": ["chr1", "chr2", "chr10"], "start": [0, 0, 0], "end": [10, 10, 10]},
                       index=["a", "b", "c"])
    cells = ad.AnnData(sp.csr_matrix(np.ones((2, 3), dtype=np.float32)), var=var,
                       obs=pd.DataFrame(index=["x", "y"]))
    bed = tmp_path / "s.bed"
    bed.write_text("chr10\t0\t10\nchr1\t0\t10\n")
    frags = tmp_path / "f.tsv"
    frags.write_text("chr1\t0\t10\tAAA\t1\nchr2\t0\t10\tAAA\t1\n")

    def orders(inputs, name):
        shard = tokenize_to_shard([str(p) for p in inputs], str(universe), str(tmp_path / f"{name}.gtok"), cache=False,
                                  progress=False)
        return ShardReader(shard).meta.token_orders

    for name, order in (("universe", [0, 1, 2]), ("bed", [0, 2, 1]), ("neither", [2, 1, 0])):
        cells[:, order].write_h5ad(tmp_path / f"{name}.h5ad")
    assert orders([tmp_path / "universe.h5ad"], "u") == ("universe",)
    assert orders([tmp_path / "bed.h5ad"], "b") == ("bed",)
    assert orders([tmp_path / "neither.h5ad"], "n") is None
    assert orders([bed], "beds") == ("bed",)
    assert orders([bed, tmp_path / "bed.h5ad"], "both") == ("bed",)
    assert orders([bed, tmp_path / "universe.h5ad"], "mixed") is None  # no one order: not recorded as one
    assert orders([frags], "frags") is None
    cells[:, [0, 2]].write_h5ad(tmp_path / "coincide.h5ad")  # chr1, chr10: the universe's order and a BED file's
    assert orders([tmp_path / "coincide.h5ad"], "c") == ("bed", "universe")
