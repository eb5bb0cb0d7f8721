"""The model folder: the universe it carries (found where the data's shards recorded it, before
training starts), and the evaluation that follows a model set aside in previous/TIME/."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import GENIML, gtars_tokens

from gtok.build import build_index, tokenize_to_shard
from gtok.errors import FingerprintMismatchError, GtokError
from gtok.formats.manifest import load_manifest, write_manifest
from gtok.formats.shard import write_shard
from gtok.pretrained import data_universe, keep_evaluation, universe_bed_bytes
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


def model_of(folder: Path, fingerprint: str, step: int) -> Path:
    """A model folder as gtok train leaves it, for what keep_evaluation reads: model.ckpt and its run."""
    folder.mkdir(parents=True)
    (folder / "model.ckpt").write_bytes(b"weights")
    (folder / "config.yaml").write_text(f"run: {{fingerprint: {fingerprint}, step: {step}}}\n")
    return folder


def evaluation_of(folder: Path, run: dict | None, metrics: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "evaluated.json").write_text(json.dumps({"model": "run", "run": run}))
    (folder / "metrics.tsv").write_text(metrics)
    (folder / "umap_lsi.png").write_bytes(b"png")
    return folder


def test_an_evaluation_follows_only_the_model_it_scored_into_previous(tmp_path):
    """Told by the run and step evaluated.json records (as config.yaml does for model.ckpt), not by
    place or time: seed 0's evaluation goes to seed 0's folder, and neither to the same run's
    shorter model nor to one of another run; an evaluation kept there already is never replaced."""
    run = model_of(tmp_path / "run", "b" * 64, 2)  # the model now in the folder
    seed0 = model_of(run / "previous" / "20260105-143012", "a" * 64, 2)
    shorter = model_of(run / "previous" / "20260105-120000", "a" * 64, 1)
    evaluation = evaluation_of(tmp_path / "eval", {"fingerprint": "a" * 64, "step": 2}, "seed 0's scores")
    log = io.StringIO()
    assert keep_evaluation(evaluation, run, "gtok train", log) == [seed0 / "eval"]
    assert log.getvalue() == (f"gtok train: the evaluation in {evaluation} is of the model kept in {seed0}; copied to "
                              f"{seed0 / 'eval'}.\n")
    assert {p.name for p in (seed0 / "eval").iterdir()} == {"evaluated.json", "metrics.tsv", "umap_lsi.png"}
    assert (seed0 / "eval" / "metrics.tsv").read_text() == "seed 0's scores"
    assert not (shorter / "eval").exists() and not (run / "eval").exists()
    (evaluation / "metrics.tsv").write_text("a later evaluation of the same model")
    assert keep_evaluation(evaluation, run, "gtok train", log) == [] and (seed0 / "eval" / "metrics.tsv").read_text() == "seed 0's scores"


def test_an_evaluation_goes_neither_over_files_kept_there_nor_with_files_of_others(tmp_path):
    """previous/TIME/eval/ holding an evaluation an older gtok wrote there (no evaluated.json) was
    written over; and every file of the evaluation's folder was copied, a caller's own among them."""
    run = model_of(tmp_path / "run", "b" * 64, 2)
    seed0 = model_of(run / "previous" / "20260105-143012", "a" * 64, 2)
    evaluation = evaluation_of(tmp_path / "eval", {"fingerprint": "a" * 64, "step": 2}, "seed 0's scores")
    (evaluation / "notes.txt").write_text("the caller's own")
    (seed0 / "eval").mkdir()
    (seed0 / "eval" / "metrics.tsv").write_text("scores of another manifest")
    assert keep_evaluation(evaluation, run, "gtok train", io.StringIO()) == []
    assert [p.name for p in (seed0 / "eval").iterdir()] == ["metrics.tsv"]
    assert (seed0 / "eval" / "metrics.tsv").read_text() == "scores of another manifest"
    (seed0 / "eval" / "metrics.tsv").unlink()  # an empty eval/ (a copy that failed) is no evaluation
    assert keep_evaluation(evaluation, run, "gtok train", io.StringIO()) == [seed0 / "eval"]
    assert {p.name for p in (seed0 / "eval").iterdir()} == {"evaluated.json", "metrics.tsv", "umap_lsi.png"}


@pytest.mark.parametrize("run", [None, {"fingerprint": None, "step": 2}, {"fingerprint": "b" * 64, "step": 2}])
def test_an_evaluation_of_no_kept_model_stays_where_it_is(tmp_path, run):
    """One that records no run (an older gtok, a geniml model), or scores the folder's own model."""
    folder = model_of(tmp_path / "run", "b" * 64, 2)
    kept = model_of(folder / "previous" / "20260105-143012", "a" * 64, 2)
    assert keep_evaluation(evaluation_of(tmp_path / "eval", run, "scores"), folder, "gtok", io.StringIO()) == []
    assert not (kept / "eval").exists()
    (tmp_path / "eval" / "evaluated.json").unlink()
    assert keep_evaluation(tmp_path / "eval", folder, "gtok", io.StringIO()) == []
    assert keep_evaluation(tmp_path / "none", folder, "gtok", io.StringIO()) == []  # no evaluation yet


def test_an_evaluation_that_cannot_be_copied_is_one_line_and_leaves_no_copy(tmp_path, monkeypatch):
    """A full disk: the error names the file, and no half copy is taken for the evaluation later."""
    import errno

    run = model_of(tmp_path / "run", "b" * 64, 2)
    seed0 = model_of(run / "previous" / "20260105-143012", "a" * 64, 2)
    evaluation = evaluation_of(tmp_path / "eval", {"fingerprint": "a" * 64, "step": 2}, "seed 0's scores")

    def full(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(GtokError, match=r"eval/\w+\.\w+: cannot write it: no space left on device") as err:
        keep_evaluation(evaluation, run, "gtok train", io.StringIO())
    # why a command that scores a model, or trains one, writes into previous/ (a colleague's read-only run, say)
    assert str(err.value).endswith(f"; the evaluation in {evaluation}, of the model kept in {seed0}, was to be copied "
                                   "beside it before it is replaced, and is where it was.")
    assert "\n" not in str(err.value)
    assert [p.name for p in (seed0 / "eval").iterdir() if not p.name.startswith(".")] == []
    monkeypatch.undo()
    assert keep_evaluation(evaluation, run, "gtok train", io.StringIO()) == [seed0 / "eval"]
    assert (seed0 / "eval" / "metrics.tsv").read_text() == "seed 0's scores"


def test_a_run_folder_without_its_model_says_whether_a_training_holds_it(tmp_path):
    """model.ckpt and config.yaml deleted by hand, checkpoints/ and the lock file left: no run is
    training there, which the lock tells, so the message says what may have happened and what to
    do; while a gtok train holds the folder, it says that one is running."""
    from gtok.pretrained import model_checkpoint
    from gtok.training.run import claim_folder

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (run / ".gtok-train.lock").touch()
    with pytest.raises(GtokError) as stopped:
        model_checkpoint(run)
    assert str(stopped.value) == (
        f"{run}: holds no finished model (no model.ckpt): its run has not finished (it was stopped, or failed) or its "
        f"model was deleted; rerun 'gtok train' with the same options to finish it or to publish its model again, or "
        f"give {run}/checkpoints/last.ckpt.")
    with claim_folder(run), pytest.raises(GtokError, match=rf"^{run}: holds no finished model yet \(no model.ckpt\): a "
                                                            rf"gtok train is running in it; wait for it to finish, or "
                                                            rf"give {run}/checkpoints/last.ckpt\.$"):
        model_checkpoint(run)
    with pytest.raises(GtokError, match="its run has not finished"):  # the lock, released, holds nothing
        model_checkpoint(run)


def test_the_lineage_of_a_model_given_through_a_link_is_its_folders(tmp_path):
    """init_from as a symbolic link to a fine-tuned model's model.ckpt: its lineage was read from the
    checkpoint's run options alone, as if the link's folder were no model folder, so the models that
    one started from (config.yaml's data.parents) were dropped, and the evaluation of the new model
    could count their training records as held out."""
    import torch

    from gtok.training.run import data_lineage

    folder = tmp_path / "run"
    folder.mkdir()
    torch.save({"gtok": {}, "gtok_run": {"options": {"data.val_fraction": 0.1, "data.shards": "its own"}}},
               folder / "model.ckpt")
    lineage = [{"val_fraction": 0.1, "shards": "its own"}, {"val_fraction": 0.2, "shards": "its parent's"}]
    (folder / "config.yaml").write_text(yaml.safe_dump({"data": {**lineage[0], "parents": lineage[1:]}}))
    link = tmp_path / "links" / "best.ckpt"
    link.parent.mkdir()
    link.symlink_to(folder / "model.ckpt")
    assert data_lineage(folder) == data_lineage(folder / "model.ckpt") == lineage
    assert data_lineage(link) == lineage
