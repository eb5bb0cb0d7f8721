"""gtok.options: every option's type and range checked in one line, and the docs' tables equal to
the dataclasses that define the defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import BEDS, GTARS, UNIVERSE, gtok, one_line_error, snapshot

from gtok.errors import GtokError
from gtok.formats.manifest import write_manifest
from gtok.options import DataOptions, EncoderConfig, TrainerOptions, check_train_config, make_config

ROOT = Path(__file__).resolve().parent.parent
DEVICES = "must be auto, a positive count, -1 (every GPU) or a list of distinct device indices like [0, 1]"


@pytest.mark.parametrize("cls, options, words", [
    (DataOptions, {"batch_size": 0}, "batch_size must be at least 1, not 0."),
    (DataOptions, {"batch_size": True}, "batch_size must be an integer, not True."),
    (DataOptions, {"batch_size": 2.5}, "batch_size must be an integer, not 2.5."),
    (DataOptions, {"max_length": "512"}, "max_length must be an integer or null, not '512'."),
    (DataOptions, {"val_fraction": float("nan")}, "val_fraction must be a number, not nan."),
    (DataOptions, {"shuffle_tokens": "yes"}, "shuffle_tokens must be true or false, not 'yes'."),
    (TrainerOptions, {"max_steps": -2}, "max_steps must be at least -1, not -2."),
    (TrainerOptions, {"accelerator": "tpu"}, "accelerator must be one of auto, cpu, gpu, cuda, mps, not 'tpu'."),
    (TrainerOptions, {"val_check_interval": 0}, "val_check_interval must be above 0.0, not 0."),
    (TrainerOptions, {"val_check_interval": 2.5},
     "val_check_interval must be a share of an epoch (at most 1.0) or a whole number of steps, not 2.5."),
    (TrainerOptions, {"precision": "banana"},
     "precision must be one of auto, 32-true, bf16-mixed, 16-mixed, bf16-true, 16-true, 64-true, not 'banana'."),
    (TrainerOptions, {"precision": 32},
     "precision must be one of auto, 32-true, bf16-mixed, 16-mixed, bf16-true, 16-true, 64-true, not 32."),
    (TrainerOptions, {"strategy": "foo"},
     "strategy must be one of auto, ddp, ddp_spawn, ddp_find_unused_parameters_true, not 'foo'."),
    (TrainerOptions, {"devices": -3}, f"devices {DEVICES}, not -3."),
    (TrainerOptions, {"devices": 0}, f"devices {DEVICES}, not 0."),
    (TrainerOptions, {"devices": "2"}, f"devices {DEVICES}, not '2'."),
    (TrainerOptions, {"devices": [0, 0]}, f"devices {DEVICES}, not [0, 0]."),
    (TrainerOptions, {"devices": []}, f"devices {DEVICES}, not []."),
    (TrainerOptions, {"deterministic": "banana"}, "deterministic must be auto, true, false or warn, not 'banana'."),
    (EncoderConfig, {"mask_prob": 0.0}, "mask_prob must be above 0.0, not 0.0."),
    (EncoderConfig, {"d_model": None}, "d_model must be given (not null), not None."),
])
def test_bad_values_are_named(cls, options, words):
    with pytest.raises(GtokError) as err:
        make_config(cls, options, "the section")
    assert str(err.value) == f"the section: {words}"


def test_good_values_pass_and_ints_are_numbers():
    data = make_config(DataOptions, {"batch_size": 8, "val_fraction": 0, "max_length": None}, "d")
    assert (data.batch_size, data.val_fraction, data.max_length, data.num_workers) == (8, 0, None, DataOptions.num_workers)
    assert make_config(TrainerOptions, {"devices": [0, 1], "val_check_interval": 50}, "t").devices == [0, 1]
    for good in ({"devices": -1}, {"devices": "auto"}, {"devices": 4}, {"val_check_interval": 2.0},
                 {"precision": "bf16-mixed"}, {"strategy": "ddp"}, {"deterministic": False}):
        make_config(TrainerOptions, good, "t")


def test_model_args_is_a_mapping_of_argument_names():
    assert check_train_config({"model_args": {"dim": 8, "layers": [1, 2]}}) is None
    for bad in ([1, 2], {"not a name": 1}, "dim=8"):
        with pytest.raises(GtokError, match="cfg section 'model_args': expected a mapping of argument names"):
            check_train_config({"model_args": bad}, "cfg")


def test_a_whole_config_is_checked_section_by_section():
    check_train_config({"seed": 3, "data": {}, "trainer": {"max_steps": 5}, "encoder": {"d_model": 32}})
    with pytest.raises(GtokError, match="cfg: unknown section.*optimizer"):
        check_train_config({"optimizer": {}}, "cfg")
    with pytest.raises(GtokError, match="cfg section 'region2vec': mode must be one of cbow, skipgram"):
        check_train_config({"region2vec": {"mode": "glove"}}, "cfg")
    with pytest.raises(GtokError, match="cfg section 'data': expected a mapping"):
        check_train_config({"data": [1, 2]}, "cfg")


@pytest.mark.parametrize("data, words", [
    ({"token_budget": 256, "batch_size": 8}, "batch_size and token_budget are two ways of forming batches; give one"),
    ({"token_budget": 100}, "token_budget 100 is below max_length 512, so a record of 512 tokens would make a batch"),
    ({"mixture": {"a": 1}, "samples_per_epoch": 10**13}, "samples_per_epoch must be at most 1000000000"),
])
def test_batching_that_cannot_hold_is_refused(data, words):
    """A budget below the longest record would be exceeded, a batch_size beside a budget ignored,
    and an epoch plan of 10^13 draws a memory error deep in training."""
    with pytest.raises(GtokError, match=re.escape(words)):
        check_train_config({"data": data}, "cfg")
    check_train_config({"data": {"token_budget": 512}})


def test_a_model_sections_seed_may_only_repeat_the_runs():
    from gtok.modelspec import resolve_model

    assert resolve_model("encoder", {"encoder": {"seed": 3}}, 3).config.seed == 3
    with pytest.raises(GtokError, match="cfg section 'encoder': seed 3 is not the run's seed 0 .*set it there"):
        resolve_model("encoder", {"encoder": {"seed": 3}}, 0, "cfg")


@pytest.mark.parametrize("doc, tables", [("training.md", 6), ("models.md", 1)])
def test_the_docs_tables_are_the_options(doc, tables):
    from sync_option_tables import BLOCK, synced  # tools/, on sys.path for the tests (pyproject.toml)

    text = (ROOT / "docs" / doc).read_text()
    assert len(BLOCK.findall(text)) == tables
    assert synced(text) == text, f"docs/{doc} is out of date: run python tools/sync_option_tables.py"


# -- hostile input (once tests/test_edge_cases.py): one-line errors or correct tokens, nothing touched --


@pytest.mark.parametrize("args, words", [
    (["tokenize", "--chunk-rows", "-5"], "--chunk-rows: '-5' is not a positive integer"),
    (["tokenize", "--chunk-rows", "0"], "--chunk-rows: '0' is not a positive integer"),
    (["train", "--max-steps", "0"], "--max-steps: '0' is not a positive integer (or -1 for no limit)"),
    (["train", "--max-epochs", "x"], "--max-epochs: 'x' is not an integer"),
    (["train", "--seed", "-1"], "--seed: '-1' is not a non-negative integer"),
    (["train", "--devices", "0"], "--devices: '0' is not 'auto'"),
    (["embed", "--batch-size", "0"], "--batch-size: '0' is not a positive integer"),
])
def test_numeric_options_refuse_invalid_values(tmp_path, args, words):
    required = {"tokenize": ["-u", UNIVERSE, "-o", tmp_path / "x.gtok", BEDS[0]],
                "train": ["-m", "m.json", "--model", "encoder", "--out", tmp_path / "r"],
                "embed": ["-c", "c.ckpt", "-o", tmp_path / "e.npy", BEDS[0]]}[args[0]]
    one_line_error(gtok(*args, *required), words, rc=2)
    assert list(tmp_path.iterdir()) == []


def test_rows_option_must_be_a_valid_range(tmp_path):
    for rows, words in (("5:2", "need 0 <= START <= STOP"), ("a:b", "expected START:STOP")):
        one_line_error(gtok("tokenize", "-q", "-u", GTARS / "peaks.bed", "-o", tmp_path / "x.gtok", "--rows", rows,
                            GTARS / "pbmc_hg38.h5ad"), words)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def manifest(tmp_path, shard) -> Path:
    path = tmp_path / "m.json"
    write_manifest(path, [shard])
    return path


@pytest.mark.slow
@pytest.mark.parametrize("config, words", [
    ({"trainer": {"max_steps": "abc"}}, "section 'trainer': max_steps must be an integer, not 'abc'"),
    ({"data": {"batch_size": 0}}, "section 'data': batch_size must be at least 1, not 0"),
    ({"encoder": {"objective": "gpt"}}, "section 'encoder': objective must be one of mlm, rtd, not 'gpt'"),
    ({"data": {"val_fraction": 1.5}}, "section 'data': val_fraction must be at most 0.99, not 1.5"),
    ({"seed": -3}, "seed must be at least 0, not -3"),
])
def test_wrong_types_in_the_train_config_are_one_line(tmp_path, manifest, config, words):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(config))
    before = snapshot(tmp_path)
    one_line_error(gtok("train", "-q", "-m", manifest, "--model", "encoder", "--out", tmp_path / "run", "-c", cfg),
                   "train.yaml", words)
    assert snapshot(tmp_path) == before
