"""The universe a model folder carries: found where the data's shards recorded it, before training starts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import GENIML, gtars_tokens

from gtok.build import build_index, tokenize_to_shard
from gtok.errors import FingerprintMismatchError, GtokError
from gtok.formats.manifest import load_manifest, write_manifest
from gtok.formats.shard import write_shard
from gtok.pretrained import data_universe, universe_bed_bytes
from gtok.tokenizer import Tokenizer
from gtok.training.train import train

UNIVERSE = GENIML / "universe.uniq.bed"
BED = GENIML / "to_tokenize.bed"


def data(folder: Path, universe: Path) -> Path:
    """One shard of one BED file tokenized against `universe` (a BED or an index), and its manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    shard = tokenize_to_shard([str(BED)], str(universe), str(folder / "s.gtok"), progress=False)
    write_manifest(folder / "m.json", [shard])
    return folder / "m.json"


@pytest.fixture
def universe(tmp_path) -> Path:
    path = tmp_path / "u" / "universe.bed"
    path.parent.mkdir()
    shutil.copy(UNIVERSE, path)
    return path


def test_the_recorded_universe_is_found_while_it_holds_the_same_vocabulary(tmp_path, universe):
    manifest = data(tmp_path / "d", universe)
    assert data_universe(load_manifest(manifest)) == str(universe)
    universe.write_text("# the same regions, reformatted\n" + UNIVERSE.read_text())  # other bytes, same vocabulary
    assert data_universe(load_manifest(manifest)) == str(universe)


@pytest.mark.parametrize("change, words", [
    (lambda u: u.unlink(), "universe.bed is missing"),
    (lambda u: u.write_text(UNIVERSE.read_text().split("\n", 1)[1]), r"universe.bed has changed \(it is vocabulary"),
])
def test_training_refuses_to_start_when_the_recorded_universe_is_gone(tmp_path, universe, change, words):
    manifest = data(tmp_path / "d", universe)
    change(universe)
    with pytest.raises(GtokError, match=f"m.json: the universe its shards were tokenized with .*{words}.* pass --universe"):
        train(manifest, "region2vec", tmp_path / "run", max_steps=1, progress=False)
    assert not (tmp_path / "run").exists()  # refused before the output folder was touched (or created)


def test_shards_that_record_no_universe_need_one_given(tmp_path):
    shard = write_shard(tmp_path / "old.gtok", [("a", np.array([1, 2]))], 2385, Tokenizer.from_bed(UNIVERSE).fingerprint)
    write_manifest(tmp_path / "m.json", [shard])
    with pytest.raises(GtokError, match="its shards record no universe .* pass --universe"):
        train(tmp_path / "m.json", "region2vec", tmp_path / "run", max_steps=1, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_given_universe_of_another_vocabulary_names_the_data(tmp_path, universe):
    manifest = data(tmp_path / "d", universe)
    other = tmp_path / "other.bed"
    other.write_text("".join(UNIVERSE.read_text().splitlines(keepends=True)[:100]))
    with pytest.raises(FingerprintMismatchError, match="other.bed: vocabulary .* is not the one the training data "
                                                       ".*m.json was tokenized with .*\\(or none: its shards record"):
        train(manifest, "region2vec", tmp_path / "run", max_steps=1, progress=False, universe=other)
    assert not (tmp_path / "run").exists()


def test_an_index_is_bundled_as_its_regions_which_gtok_and_gtars_read_as_the_same_vocabulary(tmp_path, universe):
    index = tmp_path / "u.gtokidx"
    build_index(str(universe), str(index))
    manifest = data(tmp_path / "d", index)
    assert data_universe(load_manifest(manifest)) == str(universe)  # the BED the index was built from, while it is there
    universe.unlink()
    assert data_universe(load_manifest(manifest)) == str(index)
    bed = tmp_path / "regions.bed"
    bed.write_bytes(universe_bed_bytes(index))
    assert Tokenizer.from_bed(bed).fingerprint == Tokenizer.from_bed(UNIVERSE).fingerprint
    assert gtars_tokens(bed, BED) == gtars_tokens(UNIVERSE, BED)


def test_a_given_universe_must_have_the_vocabulary_size_of_data_without_a_fingerprint(tmp_path):
    shard = write_shard(tmp_path / "s.gtok", [("a", np.array([1, 2]))], 100, None)
    write_manifest(tmp_path / "m.json", [shard])
    with pytest.raises(FingerprintMismatchError, match=r"\(2385 tokens\) is not the one .* \(unknown, 100 tokens\)"):
        train(tmp_path / "m.json", "region2vec", tmp_path / "run", max_steps=1, progress=False, universe=UNIVERSE)
    assert not (tmp_path / "run").exists()
