"""gtok.options: every option's type and range checked in one line, and the docs' tables equal to
the dataclasses that define the defaults."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gtok.errors import GtokError
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


@pytest.mark.parametrize("doc, tables", [("training.md", 6), ("models.md", 1)])
def test_the_docs_tables_are_the_options(doc, tables):
    sys.path.insert(0, str(ROOT / "tools"))
    from sync_option_tables import BLOCK, synced

    text = (ROOT / "docs" / doc).read_text()
    assert len(BLOCK.findall(text)) == tables
    assert synced(text) == text, f"docs/{doc} is out of date: run python tools/sync_option_tables.py"
