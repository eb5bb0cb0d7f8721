"""The workflow's plan (gtok.workflow), in milliseconds and without Snakemake: inputs, shards by
linear hashing, splits, the jobs' command lines, and the one-line errors of a bad config."""

from __future__ import annotations

import os
import re
import sys

import pytest

from gtok.errors import GtokError
from gtok.workflow.jobs import train_job_command
from gtok.workflow.plan import Plan
from gtok.workflow.sharding import group_shards, shard_buckets


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A run folder with a universe and BED files, as the current directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "u.bed").write_text("chr1\t1\t2\n")
    (tmp_path / "beds").mkdir()
    for i in range(12):
        (tmp_path / "beds" / f"b{i:02d}.bed").write_text("chr1\t1\t2\n")
    (tmp_path / "s.tsv").write_text("path\tlabel\nbeds/b00.bed\tA\n")
    for name in INPUTS:  # the plan checks that its inputs exist, and reads no more of them here
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    return tmp_path


INPUTS = ["a/c.h5ad", "b/c.h5ad", "a/cells.h5ad", "b/cells.h5ad", "a/pbmc.h5ad", "cells.h5ad", "a/frags.tsv.gz",
          "b/frags2.tsv.bgz", "b/cells.txt", "c/frags.tsv", "s1/outs/fragments.tsv.gz", "s2/outs/fragments.tsv.gz",
          "c/Third.TSV.GZ", "p/pbmc.tsv.gz", "f/pbmc.tsv.gz", "f.tsv", "a/x.tsv.gz", "b/y.tsv.gz"]


def config(**changes) -> dict:
    base = {"universe": "u.bed", "inputs": {"bed": ["beds/*.bed"], "h5ad": [], "label_key": None},
            "shards": {"files_per_shard": 4, "cells_per_shard": 10}, "results": "out",
            "train": {"enabled": False, "model": "encoder"}}
    for key, value in changes.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return base


# -- linear hashing -----------------------------------------------------------------------------------


def test_adding_files_moves_only_the_split_shards_files():
    keys = [f"f{i:04d}" for i in range(200)]
    before = dict(zip(keys, shard_buckets(keys, 10)))
    more = keys + [f"g{i}" for i in range(5)]
    after = dict(zip(more, shard_buckets(more, 10)))
    assert (len(set(before.values())), len(set(after.values()))) == (20, 21)
    moved = {k for k in keys if before[k] != after[k]}
    assert moved and len({before[k] for k in moved}) == 1  # every moved file came from the one split shard
    assert {after[k] for k in moved} <= {before[next(iter(moved))], 20}


def test_buckets_are_balanced_and_deterministic():
    keys = [f"path/{i}.bed" for i in range(10_000)]
    buckets = shard_buckets(keys, 100)
    assert buckets == shard_buckets(keys, 100) and set(buckets) == set(range(100))
    sizes = [buckets.count(b) for b in range(100)]
    assert 30 < min(sizes) and max(sizes) < 300


def test_splits_never_share_a_shard():
    rows = [{"path": f"{s}/{i}.bed", "split": s} for s in ("train", "val") for i in range(9)] + [{"path": "x.bed"}]
    shards = group_shards(rows, 4)
    for shard, members in shards.items():
        assert len({m.get("split") or "" for m in members}) == 1
        split = members[0].get("split")
        assert shard.startswith(f"{split}-") if split else "-" not in shard


# -- inputs and errors -----------------------------------------------------------------------------------


def test_globs_become_sorted_shards(folder):
    plan = Plan.from_config(config())
    files = sorted(f for shard in plan.bed_shards for f in plan.bed_files(shard))
    assert files == [f"beds/b{i:02d}.bed" for i in range(12)] and 2 <= len(plan.bed_shards) <= 4
    assert plan.bed_shard_paths()[0].startswith("out/shards/bed/")


@pytest.mark.parametrize("change, words", [
    ({"universe": "missing.bed"}, "config universe: missing.bed: no such file; fix it in the config file"),
    ({"inputs": {"bed": ["nothing/*.bed"]}}, "the pattern 'nothing/*.bed' matches no file"),
    ({"inputs": {"bed": []}}, "select no input at all"),
    ({"inputs": {"h5ad": ["a/c.h5ad", "b/c.h5ad"]}}, "a/c.h5ad and b/c.h5ad have the same sample name 'c'; give one of"),
    ({"train": {"enabled": True, "model": "encoder", "data": {"batch_size": "x"}}}, "config train section 'data': batch_size must be an integer"),
    ({"train": {"enabled": True, "model": "encoder", "trainer": {"precision": "banana"}}},
     "config train section 'trainer': precision must be one of auto, 32-true"),
    ({"train": {"enabled": True, "model": "encoder", "trainer": {"strategy": "foo"}}},
     "config train section 'trainer': strategy must be one of auto, ddp"),
    ({"results": "res_{x}"}, "config results: res_{x}: Snakemake cannot use file names with braces { }; choose a results "
                             "folder without them."),
    # a missing input: Snakemake would take the shards made from it for up to date, or leave it out
    ({"inputs": {"h5ad": ["gone.h5ad"]}}, "config inputs.h5ad: gone.h5ad: no such file; fix the path, or take it out"),
    ({"inputs": {"bed": [], "fragments": ["gone.tsv.gz"]}}, "config inputs.fragments: gone.tsv.gz: no such file"),
    ({"inputs": {"bed": [], "fragments": [{"path": "f.tsv", "barcodes": "gone.txt"}]}},
     "config inputs.fragments: f.tsv: barcodes gone.txt: no such file"),
    ({"inputs": {"bed": [], "fragments": ["f.tsv"], "fragment_labels": "gone.tsv"}},
     "config inputs.fragment_labels: gone.tsv: no such file"),
    ({"inputs": {"bed": "gone.tsv"}}, "config inputs.bed: the sample sheet gone.tsv: no such file"),
    # a results folder that is a file: Snakemake's traceback (NotADirectoryError) when it looked inside
    ({"results": "u.bed"}, "config results: u.bed: is a file, not a folder; choose another results folder."),
    # a sample sheet in a list is a glob pattern, matching the sheet as a BED file that every job would fail on
    ({"inputs": {"bed": ["s.tsv"]}}, "config inputs.bed: the pattern 's.tsv' matches s.tsv, a sample sheet, not a BED "
                                     "file; give a sample sheet alone, not in a list (inputs.bed: s.tsv)."),
    # labels that training or evaluation need, refused before the hours of tokenization, not after
    ({"train": {"enabled": True, "model": "classifier"}},
     "config train.model: classifier learns to tell label classes apart, and no input brings labels"),
    ({"evaluate": {"enabled": True}, "train": {"enabled": True, "model": "encoder"}},
     "config evaluate.enabled: true scores the model by the labels of held-out records, and no input brings labels"),
    ({"evaluate": {"enabled": True}}, "config evaluate.enabled: true, but train.enabled is false, and the evaluation "
                                      "scores the model this run trains"),
    # a folder is not missing: said as what it is
    ({"universe": "beds"}, "config universe: beds: is a folder; give the universe BED file itself"),
    ({"inputs": {"h5ad": ["beds"]}}, "config inputs.h5ad: beds: is a folder; give the file itself"),
])
def test_config_errors_are_one_line(folder, change, words):
    with pytest.raises(GtokError, match=re.escape(words)):
        Plan.from_config(config(**change), n_obs=lambda path: 10)


def test_a_sample_sheet_row_of_a_missing_file_is_named_by_its_line(folder):
    (folder / "s.tsv").write_text("path\tlabel\nbeds/b00.bed\tA\nbeds/Typo1.bed\tB\n")
    with pytest.raises(GtokError, match=r"^config inputs.bed: s.tsv, line 3: beds/Typo1.bed: no such file"):
        Plan.from_config(config(inputs={"bed": "s.tsv"}))


@pytest.mark.parametrize("column, meant", [("lable", "label"), ("Split", "split"), ("labels", "label")])
def test_a_misspelt_sample_sheet_column_is_named_and_notes_are_kept(folder, column, meant):
    """A misspelt column would drop its labels or splits without a word; other columns are notes."""
    (folder / "s.tsv").write_text(f"path\t{column}\tdonor\nbeds/b00.bed\tA\td1\n")
    with pytest.raises(GtokError, match=rf"^s.tsv: column '{column}' is not one the workflow reads; did you mean '{meant}'"):
        Plan.from_config(config(inputs={"bed": "s.tsv"}))
    (folder / "s.tsv").write_text("path\tlabel\tdonor\tlab\nbeds/b00.bed\tA\td1\tx\n")
    assert Plan.from_config(config(inputs={"bed": "s.tsv"})).label_sheet == "s.tsv"


def test_sample_sheet_rows_labels_and_repeats(folder):
    sheet = folder / "s.tsv"
    sheet.write_text("path\tlabel\tsplit\nbeds/b00.bed\tA\ttrain\nbeds/b01.bed\tB\tval\n./beds/b00.bed\tA\ttrain\n")
    with pytest.raises(GtokError, match=r"s.tsv, lines 2 and 4: BED input beds/b00.bed is listed twice"):
        Plan.from_config(config(inputs={"bed": "s.tsv"}))
    sheet.write_text("path\tlabel\tsplit\nbeds/b00.bed\tA\ttrain\nbeds/b01.bed\t\tval\n")
    plan = Plan.from_config(config(inputs={"bed": "s.tsv"}))
    assert plan.label_sheet == "s.tsv"
    assert {s: plan.bed_labels(s) for s in plan.bed_shards} == {"train-0000": ["A"], "val-0000": [""]}


def test_braces_are_named(folder):
    (folder / "beds" / "x{y}.bed").write_text("chr1\t1\t2\n")
    with pytest.raises(GtokError, match=r"BED input beds/x\{y\}.bed: Snakemake cannot use file names with braces"):
        Plan.from_config(config())


def test_h5ad_row_ranges(folder):
    plan = Plan.from_config(config(inputs={"bed": [], "h5ad": ["cells.h5ad"]}), n_obs=lambda path: 25)
    assert plan.h5ad_parts == {("cells", "0000"): (0, 10), ("cells", "0001"): (10, 20), ("cells", "0002"): (20, 25)}
    argv = plan.tokenize_h5ad_argv("cells", "0002", threads=2)
    assert argv[argv.index("--rows") + 1] == "20:25" and argv[argv.index("--threads") + 1] == "2"
    assert argv[argv.index("--universe") + 1] == "out/universe/universe.gtokidx" == plan.index


def test_fragment_files_fan_out_into_barcode_parts(folder):
    (folder / "types.tsv").write_text("sample\tbarcode\tlabel\nfrags\tAAAC-1\tB\n")
    entries = ["a/frags.tsv.gz", {"path": "b/frags2.tsv.bgz", "barcodes": "b/cells.txt"}]
    plan = Plan.from_config(config(inputs={"bed": [], "fragments": entries, "min_fragments": 500,
                                           "fragment_labels": "types.tsv"}, shards={"fragment_parts": 2}))
    assert plan.fragment_shard_paths() == [f"out/shards/fragments/{s}/{k}.gtok" for s in ("frags", "frags2") for k in ("0000", "0001")]
    assert plan.fragment_inputs("frags2") == ["b/frags2.tsv.bgz", "b/cells.txt", "types.tsv"]
    argv = plan.tokenize_fragments_argv("frags2", "0001", threads=2)
    assert argv[-1] == "b/frags2.tsv.bgz" and argv[argv.index("--part") + 1] == "1/2"
    assert argv[argv.index("--min-fragments") + 1] == "500" and argv[argv.index("--barcodes") + 1] == "b/cells.txt"
    assert plan.fragment_selection("frags", "0000") == ["--part", "0/2", "--min-fragments", "500", "--labels", "types.tsv"]
    assert plan.has_labels() and set(plan.fragment_shard_paths()) <= set(plan.manifest_argv())
    with pytest.raises(GtokError, match="same sample name 'frags'"):
        Plan.from_config(config(inputs={"bed": [], "fragments": ["a/frags.tsv.gz", "c/frags.tsv"]}))


def test_every_cell_is_named_by_its_sample_so_no_two_records_share_a_name(folder):
    """10x barcodes repeat across samples, and obs names across .h5ad files: each cell input has a
    sample name (settable per entry) and its records are SAMPLE#BARCODE; sample names must differ
    across .h5ad and fragment inputs, and BED files must not share a record name."""
    entries = [{"path": "s1/outs/fragments.tsv.gz", "sample": "donor1"}, {"path": "s2/outs/fragments.tsv.gz", "sample": "donor2"},
               "c/Third.TSV.GZ"]
    h5ad = [{"path": "a/cells.h5ad", "sample": "atlas"}, "b/cells.h5ad"]
    plan = Plan.from_config(config(inputs={"bed": [], "h5ad": h5ad, "fragments": entries}), n_obs=lambda path: 5)
    assert list(plan.fragments) == ["donor1", "donor2", "Third"] and list(plan.h5ad) == ["atlas", "cells"]
    argv = plan.tokenize_fragments_argv("donor2", "0000", threads=1)
    assert argv[-3:] == ["--name-format", "{sample}#{barcode}", "s2/outs/fragments.tsv.gz"]
    assert argv[argv.index("--sample") + 1] == "donor2" and plan.cell_naming("donor2") == ["--sample", "donor2", "--name-format", "{sample}#{barcode}"]
    argv = plan.tokenize_h5ad_argv("atlas", "0000", threads=1)
    assert argv[argv.index("--sample") + 1] == "atlas" and argv[-1] == "a/cells.h5ad"
    other = Plan.from_config(config(inputs={"bed": [], "h5ad": ["a/cells.h5ad"], "name_format": "{barcode}_{sample}"}),
                             n_obs=lambda path: 5)
    assert other.cell_naming("cells") == ["--sample", "cells", "--name-format", "{barcode}_{sample}"]
    with pytest.raises(GtokError, match=r"inputs.fragments: s1/outs/fragments.tsv.gz and s2/outs/fragments.tsv.gz have the "
                                        r"same sample name 'fragments'"):
        Plan.from_config(config(inputs={"bed": [], "fragments": ["s1/outs/fragments.tsv.gz", "s2/outs/fragments.tsv.gz"]}))
    with pytest.raises(GtokError, match=r"inputs.h5ad a/pbmc.h5ad and inputs.fragments p/pbmc.tsv.gz have the same sample "
                                        r"name 'pbmc'"):
        Plan.from_config(config(inputs={"bed": [], "h5ad": ["a/pbmc.h5ad"], "fragments": ["p/pbmc.tsv.gz"]}), n_obs=lambda p: 5)
    with pytest.raises(GtokError, match=r"config inputs.name_format '\{sample\}#\{barcode': a record name format holds"):
        Plan.from_config(config(inputs={"bed": [], "h5ad": ["a/c.h5ad"], "name_format": "{sample}#{barcode"}), n_obs=lambda p: 5)
    with pytest.raises(GtokError, match=r"sample 'a/b': a sample name must not"):
        Plan.from_config(config(inputs={"bed": [], "fragments": [{"path": "f.tsv", "sample": "a/b"}]}))
    (folder / "beds" / "more").mkdir()
    (folder / "beds" / "more" / "b03.bed.gz").write_bytes(b"")
    with pytest.raises(GtokError, match=r"BED inputs beds/b03.bed and beds/more/b03.bed.gz would both be records named 'b03'"):
        Plan.from_config(config(inputs={"bed": ["beds/*.bed", "beds/more/*.bed.gz"]}))


@pytest.mark.parametrize(("header", "refused"), [("barcode\tlabel", True), ("sample\tbarcode\tlabel", False),
                                                 ("name\tlabel", False)])
def test_a_label_sheet_of_barcodes_alone_cannot_label_several_samples(folder, header, refused):
    """One sheet keyed by barcode would label the cells of every sample that shares a barcode."""
    (folder / "types.tsv").write_text(f"{header}\n")
    inputs = {"bed": [], "fragments": ["a/x.tsv.gz", "b/y.tsv.gz"], "fragment_labels": "types.tsv"}
    if refused:
        with pytest.raises(GtokError, match="types.tsv matches cells by 'barcode' alone, but the fragment files are 2 samples"):
            Plan.from_config(config(inputs=inputs))
    else:
        assert Plan.from_config(config(inputs=inputs)).fragment_labels == "types.tsv"
    assert Plan.from_config(config(inputs={**inputs, "fragments": ["a/x.tsv.gz"]})).fragment_labels == "types.tsv"


# -- command lines ----------------------------------------------------------------------------------------


def test_manifest_argv_passes_the_splits(folder):
    sheet = folder / "s.tsv"
    sheet.write_text("path\tsplit\n" + "".join(f"beds/b{i:02d}.bed\t{'val' if i < 3 else 'train'}\n" for i in range(12)))
    plan = Plan.from_config(config(inputs={"bed": "s.tsv"}))
    argv = plan.manifest_argv()
    assert argv[:4] == ["manifest", "--quiet", "-o", "out/manifest.json"]
    groups = " ".join(argv[4:]).split("--split ")[1:]
    named = {g.split()[0]: g.split()[1:] for g in groups}
    assert set(named) == {"train", "val"}
    assert all(p.startswith(f"out/shards/bed/{name}-") for name, paths in named.items() for p in paths)


def test_each_tokenize_job_records_its_dataset_and_the_manifest_renames(folder):
    (folder / "cells.h5ad").write_bytes(b"")
    sheet = folder / "atlas.tsv"
    sheet.write_text("path\n" + "".join(f"beds/b{i:02d}.bed\n" for i in range(12)))
    inputs = {"bed": "atlas.tsv", "h5ad": ["cells.h5ad"], "fragments": ["f/pbmc.tsv.gz"]}
    plan = Plan.from_config(config(inputs=inputs), n_obs=lambda path: 25)

    def dataset(argv):
        return argv[argv.index("--dataset") + 1]

    assert {dataset(plan.tokenize_bed_argv(s, 1)) for s in plan.bed_shards} == {"atlas"}  # the sheet's name
    assert dataset(plan.tokenize_h5ad_argv("cells", "0001", 1)) == "cells"
    assert dataset(plan.tokenize_fragments_argv("pbmc", "0000", 1)) == "pbmc"
    assert plan.dataset_names() == ["atlas", "cells", "pbmc"] and "--dataset" not in plan.manifest_argv()
    assert dataset(Plan.from_config(config()).tokenize_bed_argv("0000", 1)) == "bed"  # glob patterns

    renamed = Plan.from_config(config(inputs={**inputs, "datasets": {"cells": "blood", "pbmc": "blood"}}), n_obs=lambda p: 25)
    assert renamed.dataset_names() == ["atlas", "blood"]
    assert renamed.tokenize_h5ad_argv("cells", "0000", 1) == plan.tokenize_h5ad_argv("cells", "0000", 1)  # no re-tokenizing
    argv = renamed.manifest_argv()
    assert argv[argv.index("--dataset"):] == ["--dataset", "blood", *renamed.h5ad_shard_paths(), *renamed.fragment_shard_paths()]


@pytest.mark.parametrize("datasets, words", [
    ({"nope": "x"}, "config inputs.datasets: 'nope' is not a dataset of the inputs (they are 'bed'); rename one of those"),
    ({"bed": "tab\there"}, "config inputs.datasets.bed: 'tab\\there': a dataset name has no control characters"),
    ({2023: "x"}, "config inputs.datasets: 2023: a dataset name is a text, not the number 2023 (in YAML, quote it: '2023')"),
])
def test_renaming_a_dataset_is_checked(folder, datasets, words):
    with pytest.raises(GtokError) as err:
        Plan.from_config(config(inputs={"datasets": datasets}))
    assert words in str(err.value)


def mixture_config(data: dict, trainer: dict | None = None) -> dict:
    return config(train={"enabled": True, "model": "encoder", "data": data, "trainer": trainer or {}})


@pytest.mark.parametrize("data, trainer, words", [
    ({"mixture": {"bed": 1, "brain": 1}}, None,
     "config train section 'data': mixture names dataset 'brain', which the data lacks (its datasets: 'bed')"),
    ({"mixture": {"bed": -1}}, None, "config train section 'data': mixture weight of 'bed' must be a non-negative number"),
    ({"mixture": {"bed": 0}}, None, "config train section 'data': mixture weights are all zero"),
    ({"mixture": {2023: 1, "bed": 1}}, None,  # a YAML number among the names: one line, not a TypeError of sorting
     "config train section 'data': mixture has 2023, which is not a dataset name (a dataset name is a text, not the number "
     "2023 (in YAML, quote it: '2023'))"),
    ({"mixture": {"bed": 1}, "samples_per_epoch": 15, "batch_size": 4}, {"devices": 2, "num_nodes": 2},
     "config train section 'data': samples_per_epoch is 15, below the 16 records of one batch on each of 4 processes"),
    ({"samples_per_epoch": 100}, None, "config train section 'data': samples_per_epoch is the length of a mixture's epoch"),
])
def test_a_bad_mixture_is_one_line_at_the_dry_run(folder, data, trainer, words):
    with pytest.raises(GtokError) as err:
        Plan.from_config(mixture_config(data, trainer))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_mixture_names_the_datasets_after_renaming(folder):
    renamed = {**config()["inputs"], "datasets": {"bed": "atlas"}}
    Plan.from_config({**mixture_config({"mixture": {"atlas": 1}, "samples_per_epoch": 16, "batch_size": 4},
                                       {"devices": 4}), "inputs": renamed})
    with pytest.raises(GtokError, match="mixture names dataset 'bed', which the data lacks"):
        Plan.from_config({**mixture_config({"mixture": {"bed": 1}}), "inputs": renamed})


def test_train_options_are_sorted_and_exclude_workflow_keys(folder):
    plan = Plan.from_config(config(train={"enabled": True, "model": "region2vec", "trainer": {"max_steps": 3, "log_every_n_steps": 1},
                                          "data": {"batch_size": 2}, "seed": 1}))
    options = plan.train_options()
    assert list(options) == ["data", "seed", "trainer"] and list(options["trainer"]) == ["log_every_n_steps", "max_steps"]
    assert plan.train_argv()[plan.train_argv().index("--model") + 1] == "region2vec"


@pytest.mark.parametrize("trainer, srun, resources", [
    ({}, [], {"cpus_per_task": 2}),
    ({"accelerator": "gpu"}, [], {"cpus_per_task": 2, "gpu": 1}),
    ({"devices": 2}, ["--nodes=1", "--ntasks-per-node=2"],
     {"cpus_per_task": 2, "nodes": 1, "tasks": 2, "mpi": "srun", "slurm_extra": "--ntasks-per-node=2"}),
    ({"devices": 4, "num_nodes": 2, "accelerator": "gpu"}, ["--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4"],
     {"cpus_per_task": 2, "nodes": 2, "tasks": 8, "mpi": "srun", "slurm_extra": "--ntasks-per-node=4 --gpus-per-node=4"}),
])
def test_the_training_job_has_a_task_per_device(folder, trainer, srun, resources):
    plan = Plan.from_config(config(train={"enabled": True, "model": "encoder", "trainer": trainer}))
    assert plan.train_srun() == srun and plan.train_resources() == resources


def test_the_training_step_takes_the_cpus_its_job_was_given(monkeypatch):
    """Not the plan's cpus_per_task (1 + data.num_workers): a profile may have given the job fewer,
    and srun then refuses a step that asks for more ("More processors requested than permitted")."""
    gtok = [sys.executable, "-m", "gtok.cli", "train", "-q"]
    for name in ("SLURM_JOB_ID", "SLURM_CPUS_PER_TASK"):
        monkeypatch.delenv(name, raising=False)
    assert train_job_command(["train", "-q"], ["--nodes=1", "--ntasks-per-node=2"]) == gtok  # not in a SLURM job
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert train_job_command(["train", "-q"], []) == gtok  # one process: no srun
    assert train_job_command(["train", "-q"], ["--nodes=1", "--ntasks-per-node=2"]) == [
        "srun", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=3", "--kill-on-bad-exit=1", *gtok]


def test_example_inputs_are_recognised(folder):
    assert Plan.from_config(config()).example_inputs() == []
    example = folder / "resources" / "example"
    example.mkdir(parents=True)
    os.replace(folder / "u.bed", example / "u.bed")
    assert Plan.from_config(config(universe="resources/example/u.bed")).example_inputs() == ["resources/example/u.bed"]


def test_the_jobs_conda_environment_lists_every_runtime_dependency():
    """envs/gtok.yaml (jobs under --software-deployment-method conda) must not drift from pyproject."""
    import re
    import tomllib

    import yaml

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as fh:
        wanted = tomllib.load(fh)["project"]["dependencies"]
    conda_names = {"torch": "pytorch", "matplotlib": "matplotlib-base", "snakemake": "snakemake-minimal", "isal": "python-isal"}
    with open(os.path.join(root, "envs", "gtok.yaml")) as fh:
        env = yaml.safe_load(fh)["dependencies"]
    listed = {re.split(r"[<>=]", d)[0] for d in env if isinstance(d, str)}
    names = {conda_names.get(n, n) for n in (re.split(r"[<>=\[ ]", d)[0] for d in wanted)}
    assert names <= listed, sorted(names - listed)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_a_sample_sheet_saved_by_a_spreadsheet_is_read(folder, encoding):
    """Excel's 'CSV UTF-8' (a byte-order mark) and 'Unicode text' (UTF-16) sheets."""
    (folder / "sheet.tsv").write_bytes("path\tlabel\nbeds/b00.bed\tT\nbeds/b01.bed\tB\n".encode(encoding))
    plan = Plan.from_config(config(inputs={"bed": "sheet.tsv"}))
    assert plan.label_sheet == "sheet.tsv" and sorted(x for s in plan.bed_shards for x in plan.bed_labels(s)) == ["B", "T"]
    (folder / "sheet.tsv").write_text("path\tlabel\n")
    with pytest.raises(GtokError, match="sheet.tsv: the BED sample sheet has a header but no rows"):
        Plan.from_config(config(inputs={"bed": "sheet.tsv"}))


def test_nested_command_line_values_are_typed_where_the_schema_wants_no_string():
    from pathlib import Path

    from gtok.workflow.schema import typed_overrides

    schema = Path(__file__).parents[1] / "workflow" / "schemas" / "config.schema.yaml"
    given = {"universe": "u.bed", "shards": {"files_per_shard": "2"},
             "inputs": {"h5ad": [{"path": "x.h5ad", "sample": "2024"}, "y.h5ad"], "label_key": "1", "datasets": {"a": "7"}},
             "evaluate": {"enabled": "true"}, "results": "res",
             "train": {"enabled": "true", "model": "encoder", "data": {"batch_size": "8", "mixture": {"a": "0.5"}},
                       "encoder": {"lr": "1e-3"}, "x": "2020-01-01"}}
    assert typed_overrides(given, schema) == {
        "universe": "u.bed", "shards": {"files_per_shard": 2},
        "inputs": {"h5ad": [{"path": "x.h5ad", "sample": "2024"}, "y.h5ad"], "label_key": "1", "datasets": {"a": "7"}},
        "evaluate": {"enabled": True}, "results": "res",
        "train": {"enabled": True, "model": "encoder", "data": {"batch_size": 8, "mixture": {"a": 0.5}},
                  "encoder": {"lr": 0.001}, "x": "2020-01-01"}}


def test_a_job_stopped_by_sigterm_says_so_in_one_line_in_its_log(tmp_path):
    """scancel (or a preemption, or the time limit) sends SIGTERM: a job of run_gtok.py or stats.py
    must not end with an empty log, while Snakemake removes its outputs."""
    import signal
    import subprocess
    import time

    log = tmp_path / "job.log"
    code = ("import time\nfrom gtok.workflow.jobs import job_log\n"
            f"with job_log({str(log)!r}):\n    print('working', flush=True)\n    time.sleep(60)\n")
    job = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not (log.is_file() and "working" in log.read_text()):
        assert job.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    job.send_signal(signal.SIGTERM)  # as SLURM and the job's Snakemake both pass it on
    assert job.wait(30) == 128 + signal.SIGTERM
    lines = log.read_text().splitlines()
    assert lines[0] == "working" and len(lines) == 2 and lines[1].startswith("error: stopped by SIGTERM")
