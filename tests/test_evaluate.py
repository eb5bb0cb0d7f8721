"""Evaluation metrics on cases with known answers, LSI and the co-accessibility score on simulated
cells whose truth is known, and `gtok evaluate` end to end on a trained model."""

from __future__ import annotations

import numpy as np
import pytest

from gtok.evaluate import METRICS as METRIC_NAMES
from gtok.evaluate import cell_metrics, coaccessible_pair_auc, lsi
from gtok.simulate import Simulation, simulate


def clusters(n_per: int, k: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k Gaussian blobs in 8 dimensions around orthogonal centres; labels 'c0'.."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:k] * 10
    labels = np.repeat(np.arange(k), n_per)
    return centres[labels] + rng.normal(0, spread, (labels.size, 8)), np.char.add("c", labels.astype(str))


def test_perfectly_separated_clusters_score_one():
    x, y = clusters(40, 4, spread=0.1)
    m = cell_metrics(x, y)
    assert m["knn_accuracy"] == 1.0 and m["ari"] == pytest.approx(1.0) and m["nmi"] == pytest.approx(1.0)
    assert m["silhouette"] > 0.9


def test_shuffled_labels_score_about_chance():
    x, y = clusters(100, 4, spread=0.1)
    m = cell_metrics(x, np.random.default_rng(1).permutation(y))
    assert abs(m["knn_accuracy"] - 0.25) < 0.08  # 4 equal labels: chance is 1/4
    assert abs(m["ari"]) < 0.05 and m["nmi"] < 0.05 and abs(m["silhouette"]) < 0.1


def test_labels_seen_once_are_left_out_and_one_label_is_refused():
    from gtok.errors import GtokError

    x, y = clusters(10, 2, spread=0.1)
    y = y.copy()
    y[0] = "alone"
    assert cell_metrics(x, y)["knn_accuracy"] == 1.0
    with pytest.raises(GtokError, match="at least two labels"):
        cell_metrics(x[:10], y[:10])


def test_simulated_cell_types_have_their_own_programs():
    sim = Simulation(cells=600, peaks=1500, cell_types=3, program_peaks=100, seed=3)
    adata = simulate(sim, chunk=250)  # several chunks
    assert adata.shape == (600, 1500) and set(np.unique(adata.X.data)) == {1.0}
    assert (adata.var["program"] != "none").sum() == 300
    # a type's program peaks are open more often in that type than in the others
    x = adata.X.toarray()
    for t in range(3):
        program = (adata.var["program"] == f"type{t}").to_numpy()
        own = (adata.obs["cell_type"] == f"type{t}").to_numpy()
        assert x[own][:, program].mean() > 2.5 * x[~own][:, program].mean()
    depth = x.sum(axis=1)
    assert depth.std() / depth.mean() > 0.3  # library sizes vary
    again = simulate(sim)
    assert (again.X != adata.X).nnz == 0  # deterministic for a seed, whatever the chunk size


def test_lsi_separates_simulated_types_and_its_regions_carry_co_accessibility():
    adata = simulate(Simulation(cells=600, peaks=1500, cell_types=3, program_peaks=100, seed=4))
    x, loadings = lsi(adata.X.tocsr())
    m = cell_metrics(x, adata.obs["cell_type"].to_numpy())
    assert m["knn_accuracy"] > 0.9 and m["ari"] > 0.7
    assert coaccessible_pair_auc(adata.X.tocsr(), loadings, top=600) > 0.7
    noise = np.random.default_rng(0).normal(size=loadings.shape)
    assert abs(coaccessible_pair_auc(adata.X.tocsr(), noise, top=600) - 0.5) < 0.1


def test_held_out_records_are_read_whole_from_every_shard(tmp_path):
    """The vectorized gather gives each held-out record's tokens and label, across shards."""
    from gtok.evaluate import held_out_records
    from gtok.formats.manifest import write_manifest
    from gtok.formats.shard import ShardReader, write_shard

    rng = np.random.default_rng(0)
    expected = {}
    for s in range(3):
        records = [(f"s{s}r{i}", rng.integers(0, 50, rng.integers(4, 9)), f"L{i % 2}") for i in range(40)]
        expected.update({name: (tokens, label) for name, tokens, label in records})
        write_shard(tmp_path / f"{s}.gtok", records, vocab_size=57, fingerprint="ab" * 32)
    write_manifest(tmp_path / "m.json", [tmp_path / f"{s}.gtok" for s in range(3)])
    held = held_out_records(tmp_path / "m.json", val_fraction=0.5)
    names = [n for s in range(3) for n in ShardReader(tmp_path / f"{s}.gtok").names]
    assert 20 < len(held.lengths) < 100
    docs = held.docs()
    # every held-out record is one of the shards' records, whole, with its label, in shard order
    found = [next(n for n in names if len(expected[n][0]) == len(d) and np.array_equal(expected[n][0], d)
                  and expected[n][1] == lab) for d, lab in zip(docs, held.labels)]
    assert found == sorted(found, key=names.index) and len(set(found)) == len(found)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """600 simulated cells tokenized, listed and used to train a tiny region2vec for 30 steps."""
    from gtok.cli import main

    folder = tmp_path_factory.mktemp("eval")
    cells, universe = folder / "cells.h5ad", folder / "peaks.bed"
    assert main(["simulate", "-o", str(cells), "--universe-out", str(universe), "--cells", "600", "--peaks", "1500",
                 "--cell-types", "3", "--seed", "5"]) == 0
    shard = folder / "cells.gtok"
    assert main(["tokenize", "-q", "-u", str(universe), "-o", str(shard), "--label-key", "cell_type", str(cells)]) == 0
    assert main(["manifest", "-o", str(folder / "manifest.json"), str(shard)]) == 0
    config = folder / "train.yaml"
    config.write_text("data: {batch_size: 16, num_workers: 0, val_fraction: 0.3}\n"
                      "trainer: {max_steps: 30, log_every_n_steps: 10, checkpoint_every_n_steps: 30, num_sanity_val_steps: 0}\n"
                      "region2vec: {embedding_dim: 16}\n")
    assert main(["train", "-q", "--manifest", str(folder / "manifest.json"), "--model", "region2vec",
                 "--out", str(folder / "run"), "--config", str(config), "--universe", str(universe)]) == 0
    return folder


@pytest.mark.slow  # trains a model
def test_evaluate_scores_the_model_and_lsi_on_the_held_out_cells(trained):
    import pandas as pd

    from gtok.cli import main

    out = trained / "eval"
    assert main(["evaluate", "-q", "--model", str(trained / "run"), "--manifest", str(trained / "manifest.json"),
                 "-o", str(out)]) == 0
    table = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert list(table.columns) == ["method", "metric", "value"]
    wide = table.pivot(index="metric", columns="method", values="value")
    assert set(wide.columns) == {"region2vec", "lsi"} and set(wide.index) == {*METRIC_NAMES, "coaccessible_pair_auc"}
    assert wide.loc["knn_accuracy", "lsi"] > 0.8  # 3 types: chance is about 1/3
    assert {p.name for p in out.glob("umap_*.png")} == {"umap_region2vec.png", "umap_lsi.png"}
    assert "did better than" in (out / "summary.html").read_text() or "equally" in (out / "summary.html").read_text()


@pytest.mark.slow  # trains a model
def test_evaluate_without_labels_says_it_skipped(trained, tmp_path):
    from gtok.cli import main

    shard = tmp_path / "unlabelled.gtok"
    assert main(["tokenize", "-q", "-u", str(trained / "peaks.bed"), "-o", str(shard), str(trained / "cells.h5ad")]) == 0
    assert main(["manifest", "-o", str(tmp_path / "m.json"), str(shard)]) == 0
    assert main(["evaluate", "-q", "--model", str(trained / "run"), "--manifest", str(tmp_path / "m.json"),
                 "-o", str(tmp_path / "eval")]) == 0
    assert (tmp_path / "eval" / "metrics.tsv").read_text().strip() == "method\tmetric\tvalue"
    assert "have no labels; evaluation skipped" in (tmp_path / "eval" / "summary.html").read_text()


@pytest.mark.slow  # trains a model
def test_evaluate_with_no_held_out_records_says_it_skipped(trained, tmp_path):
    """A model trained on every record (val_fraction 0, as the SLURM tests train) has nothing to be
    scored on: the report says so instead of the rule failing."""
    from gtok.evaluate import evaluate

    out = tmp_path / "eval"
    evaluate(trained / "run", trained / "manifest.json", out, val_fraction=0)
    assert (out / "metrics.tsv").read_text().strip() == "method\tmetric\tvalue"
    assert "no records are held out from training" in (out / "summary.html").read_text()
    assert "evaluation skipped" in (out / "caption.rst").read_text()


@pytest.mark.slow  # trains a model
def test_evaluate_refuses_data_of_another_vocabulary(trained, tmp_path):
    import subprocess
    import sys

    from gtok.cli import main

    other = tmp_path / "other.bed"
    other.write_text("".join((trained / "peaks.bed").read_text().splitlines(keepends=True)[:1000]))
    shard = tmp_path / "other.gtok"
    assert main(["tokenize", "-q", "-u", str(other), "-o", str(shard), "--label-key", "cell_type",
                 str(trained / "cells.h5ad")]) == 0
    assert main(["manifest", "-o", str(tmp_path / "m.json"), str(shard)]) == 0
    run = subprocess.run([sys.executable, "-m", "gtok.cli", "evaluate", "-q", "--model", str(trained / "run"),
                          "--manifest", str(tmp_path / "m.json"), "-o", str(tmp_path / "eval")],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "other.gtok: tokenized with universe" in run.stderr and "the model's universe" in run.stderr
    assert not (tmp_path / "eval" / "metrics.tsv").exists()


@pytest.mark.slow  # trains a model
def test_embedding_an_h5ad_with_the_model_folder_writes_obsm(trained, tmp_path):
    import anndata as ad

    from gtok.cli import main
    from gtok.embed import embed_anndata

    out = tmp_path / "embedded.h5ad"
    assert main(["embed", "-q", "--model", str(trained / "run"), "-o", str(out), str(trained / "cells.h5ad")]) == 0
    written, original = ad.read_h5ad(out), ad.read_h5ad(trained / "cells.h5ad")
    assert written.obsm["X_gtok"].shape == (600, 16) and (written.X != original.X).nnz == 0
    assert list(written.obs_names) == list(original.obs_names)
    np.testing.assert_allclose(written.obsm["X_gtok"], embed_anndata(trained / "run", original), rtol=1e-5)
