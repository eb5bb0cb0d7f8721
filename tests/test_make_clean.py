"""`make clean`: what the workflow makes again goes, trained models stay (nothing lost)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_make_clean_keeps_trained_models_and_removes_the_rest(tmp_path):
    """The examples' results folder is also the default `results:` of a user's own config, so `make
    clean` deleted their trained models, the earlier ones in train/previous/ too."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for path in ("results/train/model.ckpt", "results/train/previous/20261207-101010/model.ckpt",
                 "results/shards/bed/s0.gtok", "results/manifest.json", "results-corces/eval/metrics.tsv",
                 ".snakemake/log/x.log"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    run = subprocess.run(["make", "-s", "clean"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "make clean: kept results/train (trained models; rm -rf results/train deletes them)"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["train"]
    assert (tmp_path / "results/train/previous/20261207-101010/model.ckpt").read_text() == "x"
    assert not (tmp_path / "results-corces").exists() and not (tmp_path / ".snakemake").exists()
    subprocess.run(["make", "-s", "clean"], cwd=tmp_path, capture_output=True, check=True)  # again: nothing to do
