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
    return tmp_path


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
    ({"universe": "missing.bed"}, "config universe: missing.bed: no such file; edit config/config.yaml"),
    ({"inputs": {"bed": ["nothing/*.bed"]}}, "the pattern 'nothing/*.bed' matches no file"),
    ({"inputs": {"bed": []}}, "select no input at all"),
    ({"inputs": {"h5ad": ["a/c.h5ad", "b/c.h5ad"]}}, "have the same file name 'c'"),
    ({"train": {"enabled": True, "model": "encoder", "data": {"batch_size": "x"}}}, "config train section 'data': batch_size must be an integer"),
    ({"train": {"enabled": True, "model": "encoder", "trainer": {"precision": "banana"}}},
     "config train section 'trainer': precision must be one of auto, 32-true"),
    ({"train": {"enabled": True, "model": "encoder", "trainer": {"strategy": "foo"}}},
     "config train section 'trainer': strategy must be one of auto, ddp"),
    ({"results": "res_{x}"}, "config results: res_{x}: Snakemake cannot use file names with braces { }; choose a results "
                             "folder without them."),
])
def test_config_errors_are_one_line(folder, change, words):
    with pytest.raises(GtokError, match=re.escape(words)):
        Plan.from_config(config(**change), n_obs=lambda path: 10)


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
    (folder / "cells.h5ad").write_bytes(b"")
    plan = Plan.from_config(config(inputs={"bed": [], "h5ad": ["cells.h5ad"]}), n_obs=lambda path: 25)
    assert plan.h5ad_parts == {("cells", "0000"): (0, 10), ("cells", "0001"): (10, 20), ("cells", "0002"): (20, 25)}
    argv = plan.tokenize_h5ad_argv("cells", "0002", threads=2)
    assert argv[argv.index("--rows") + 1] == "20:25" and argv[argv.index("--threads") + 1] == "2"
    assert argv[argv.index("--universe") + 1] == "out/universe/universe.gtokidx" == plan.index


def test_fragment_files_fan_out_into_barcode_parts(folder):
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
