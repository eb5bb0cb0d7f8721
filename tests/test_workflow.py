"""The Snakemake workflow, run for real on the bundled example in temporary copies.

What is checked: a full local run and a run on the local SLURM cluster; which jobs a change
reruns (none, everything for a new universe, only training for a training option, only the
receiving shards for new BED files); that a rerun of training continues its run when only the
stopping point changed or the job was killed, and starts afresh when an option changed; that a
malformed BED file fails its own shard and nothing else; and that the config schema rejects
unknown keys and wrong types, naming the key.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import BEDS, UNIVERSE, snapshot
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from workflow_copy import write_workflow

from gtok.formats.manifest import load_manifest
from gtok.formats.shard import ShardReader
from gtok.options import DataOptions
from gtok.workflow.plan import Plan

pytestmark = pytest.mark.slow  # real training runs, workflow runs or drills: `make test` runs them

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SHEET = "resources/example/samples.tsv"
BED_DIR = "resources/example/bed"

# The example, made quicker: two training steps of a tiny model, and 12 BED files in 3 shards
# (files_per_shard 5), so that two added files cannot land in every shard.
FAST = {
    "inputs": {"h5ad": ["resources/example/h5ad/pbmc_hg38.h5ad"]},  # 20 real cells
    "evaluate": {"enabled": False},  # tested on the example's simulated cells in test_example_run_evaluates
    "shards": {"files_per_shard": 5, "cells_per_shard": 8},
    "train": {"model": "encoder", "data": {"batch_size": 8},
              "trainer": {"max_steps": 2, "log_every_n_steps": 1, "checkpoint_every_n_steps": 1}},
}


# -- helpers --------------------------------------------------------------------------------------


def copy_workflow(dest: Path, **changes) -> Path:
    """A runnable copy of the workflow and its example data, with `changes` merged into its config."""
    config = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    merge(config, FAST)
    merge(config, changes)
    return write_workflow(dest, config, extra=("resources",))


def update_config(folder: Path, changes: dict) -> None:
    path = folder / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    merge(config, changes)
    path.write_text(yaml.safe_dump(config))


def merge(base: dict, changes: dict) -> None:
    """Merge `changes` into `base`, copying them: `base` must never share a dict with FAST, or a
    test's own changes would leak into every later test's config."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


EXAMPLES = ROOT / "docs" / "examples"  # docs/models.md's brought LightningModule: train.model bag_of_regions:BagOfRegions
BROUGHT = {"model": "bag_of_regions:BagOfRegions", "model_args": {"dim": 8}}


def snakemake_env() -> dict[str, str]:
    """This interpreter's tools first on PATH; the examples importable by every job (SLURM's too)."""
    python_path = os.pathsep.join([str(EXAMPLES), *filter(None, [os.environ.get("PYTHONPATH")])])
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=python_path)


def snakemake(folder: Path, *args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run snakemake in `folder` (its profiles/default applies) with the test's Python on PATH."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=folder, env=snakemake_env(), capture_output=True, text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def gtok(*args) -> subprocess.CompletedProcess:
    result = subprocess.run([Path(sys.executable).parent / "gtok", *map(str, args)], capture_output=True, text=True,
                            env=snakemake_env())
    print(result.stdout, result.stderr)
    return result


def dry_run_jobs(folder: Path, *args: str) -> list[dict]:
    """The jobs `snakemake -n` would run: rule, input and output files of each."""
    result = snakemake(folder, "-n", *args)
    jobs: list[dict] = []
    for line in (result.stdout + result.stderr).splitlines():
        if m := re.match(r"^\s*(?:local)?rule (\w+):$", line):  # indented: a member of a group job
            jobs.append({"rule": m.group(1), "input": [], "output": []})
        elif jobs and (m := re.match(r"^\s+(input|output): (.*)$", line)):
            jobs[-1][m.group(1)] = m.group(2).split(", ")
    return jobs


def planned(folder: Path, *args: str) -> dict[str, set[str]]:
    """Rule -> the outputs of the jobs a dry run would run (empty set for `all`)."""
    out: dict[str, set[str]] = {}
    for job in dry_run_jobs(folder, *args):
        out.setdefault(job["rule"], set()).update(job["output"])
    return out


def shard_members(folder: Path, bed_dir: str = BED_DIR) -> dict[str, list[str]]:
    """Each BED shard's output -> its BED files, as the workflow's plan assigns them now."""
    config = yaml.safe_load((folder / "config" / "config.yaml").read_text())
    validate(config, str(SCHEMA))  # fills in the defaults, as the Snakefile does
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        plan = Plan.from_config(config)
    finally:
        os.chdir(cwd)
    return {plan.bed_shard(s): [f for f in plan.bed_files(s) if f.startswith(bed_dir)] for s in plan.bed_shards}


def add_bed_rows(folder: Path, rows: list[tuple[str, str]]) -> None:
    """Write BED files (name, content) into the example and list them in the sample sheet."""
    with open(folder / SHEET, "a") as sheet:
        for name, content in rows:
            (folder / BED_DIR / name).write_text(content)
            sheet.write(f"{BED_DIR}/{name}\thg38_sample\n")


def shard_outputs(folder: Path, kind: str) -> set[str]:
    return {str(p.relative_to(folder)) for p in (folder / "results" / "shards" / kind).rglob("*.gtok")}


# -- a finished run, and what changes rerun ---------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The example workflow run to the end, locally."""
    folder = copy_workflow(tmp_path_factory.mktemp("finished"))
    snakemake(folder)
    return folder


@pytest.fixture
def clone(finished, tmp_path) -> Path:
    """A copy of the finished run (files, modification times and .snakemake metadata)."""
    return Path(shutil.copytree(finished, tmp_path / "wf", symlinks=True))


def test_local_run_produces_everything(finished):
    results = finished / "results"
    for path in ("manifest.json", "stats/shards.tsv", "stats/coverage.png", "train/model.ckpt",
                 "train/checkpoints/last.ckpt", "train/metrics.csv", "train/loss.png", "train_config.yaml"):
        assert (results / path).is_file(), path
    assert len(shard_outputs(finished, "bed")) == 3
    assert len(shard_outputs(finished, "h5ad")) == 3  # 20 cells, 8 per shard
    table = (results / "stats" / "shards.tsv").read_text().splitlines()
    assert table[-1].startswith("all\tall\t32\t")  # 12 BED files + 20 cells
    assert yaml.safe_load((results / "train_config.yaml").read_text())["trainer"]["max_steps"] == 2
    assert gtok("verify", "-q", results / "manifest.json").returncode == 0
    manifest = json.loads((results / "manifest.json").read_text())
    assert {e["dataset"] for e in manifest["shards"]} == {"samples", "pbmc_hg38"}  # the sheet's and the .h5ad's names
    assert manifest["universe"]["path"] == "universe/universe.gtokidx"  # relative to the manifest: the folder can move
    assert manifest["universe"]["source"]["path"] == "../resources/example/universe.bed"


def test_report_holds_the_plots(finished):
    import zipfile

    snakemake(finished, "--report", "report.zip")
    with zipfile.ZipFile(finished / "report.zip") as report:
        images = {Path(n).name: report.read(n) for n in report.namelist() if n.endswith(".png")}
    assert set(images) >= {"tokens_per_record.png", "unk_only.png", "coverage.png", "loss.png"}
    assert all(data.startswith(b"\x89PNG\r\n") and len(data) > 5000 for data in images.values())


def test_example_run_evaluates_the_model_against_lsi(tmp_path):
    """The example as `make run` runs it (its 1,000 simulated cells, evaluation on by default since
    they have labels), training shortened: metrics.tsv scores the model and LSI on the held-out
    cells, and the report's Evaluation section holds the verdict and both UMAPs."""
    import zipfile

    config = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    config["train"]["trainer"]["max_steps"] = 600  # of the example's 2,000
    folder = write_workflow(tmp_path, config, extra=("resources",))
    snakemake(folder, timeout=600)
    eval_dir = folder / "results" / "eval"
    metrics = pd.read_csv(eval_dir / "metrics.tsv", sep="\t").pivot(index="metric", columns="method", values="value")
    assert set(metrics.columns) == {"region2vec", "lsi"}
    assert {"knn_accuracy", "ari", "nmi", "silhouette", "coaccessible_pair_auc"} <= set(metrics.index)
    chance = 0.25  # 5 cell types of about 40 held-out cells each (and a few labelled BED files)
    assert metrics.loc["knn_accuracy", "lsi"] > 2 * chance and metrics.loc["knn_accuracy", "region2vec"] > 1.6 * chance
    for method in ("region2vec", "lsi"):
        assert (eval_dir / f"umap_{method}.png").stat().st_size > 5000
    summary = (eval_dir / "summary.html").read_text()
    assert "did better than" in summary or "within the noise" in summary
    snakemake(folder, "--report", "report.zip")
    with zipfile.ZipFile(folder / "report.zip") as report:
        names = {Path(n).name for n in report.namelist()}
        text = "".join(report.read(n).decode(errors="ignore") for n in report.namelist() if n.endswith((".html", ".js")))
    assert {"umap_region2vec.png", "umap_lsi.png", "summary.html"} <= names and "Evaluation" in text
    # the caption's verdict
    assert re.search(r"(region2vec|LSI) did better than (LSI|region2vec)|region2vec and LSI are within the noise", text)
    assert (eval_dir / "folds.tsv").read_text().startswith("method\tmetric\trepeat\tfold\tvalue\n")


def test_a_brought_lightning_module_trains_and_is_evaluated_by_the_workflow(tmp_path):
    """docs/models.md's worked example: train.model names a class of the user's, imported by the jobs.
    Retrained with other options, the model set aside keeps its evaluation."""
    # the simulated cells: 5 labels of about 100 held-out cells each, enough for the evaluation's 5 folds
    folder = copy_workflow(tmp_path, evaluate={"enabled": True},
                           inputs={"h5ad": ["resources/example/h5ad/simulated.h5ad"]}, shards={"cells_per_shard": 250},
                           train={**BROUGHT, "data": {"val_fraction": 0.5}, "trainer": {"max_steps": 4}})
    snakemake(folder)
    train = folder / "results" / "train"
    card = yaml.safe_load((train / "config.yaml").read_text())
    assert card["model"] == BROUGHT["model"] and card["model_args"] == {"dim": 8}
    assert (folder / "results" / "eval" / "umap_bagofregions.png").stat().st_size > 1000
    metrics = pd.read_csv(folder / "results" / "eval" / "metrics.tsv", sep="\t")
    assert set(metrics["method"]) == {"bagofregions", "lsi"}
    bed = sorted((folder / BED_DIR).glob("*.bed"))[0]
    assert gtok("embed", "-q", "--model", train, "-o", tmp_path / "e.npy", bed).returncode == 0
    assert np.load(tmp_path / "e.npy").shape == (1, 8)

    # retrained with another seed: the evaluate job deletes its outputs to score the new model, and
    # the train job has kept the old model's evaluation with the model, in previous/TIME/eval/
    scored = contents(folder / "results" / "eval")
    update_config(folder, {"train": {"seed": 1}})
    snakemake(folder)
    (kept,) = (train / "previous").iterdir()
    assert yaml.safe_load((kept / "config.yaml").read_text())["run"] == card["run"]
    assert contents(kept / "eval") == scored and json.loads((kept / "eval" / "evaluated.json").read_text())["run"] == card["run"]
    assert f"copied to {kept.relative_to(folder) / 'eval'}." in (folder / "results" / "logs" / "train.log").read_text()
    now = json.loads((folder / "results" / "eval" / "evaluated.json").read_text())["run"]
    assert now == yaml.safe_load((train / "config.yaml").read_text())["run"] != card["run"]


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


def test_nothing_changed_nothing_to_do(finished):
    assert planned(finished) == {}


def test_reordering_the_config_reruns_nothing(clone):
    update_config(clone, {})  # written back with its keys sorted, values unchanged
    assert planned(clone) == {}


def test_new_universe_reruns_every_shard_and_training(clone):
    with open(clone / "resources" / "example" / "universe.bed", "a") as fh:
        fh.write("chr22\t100\t200\n")
    jobs = planned(clone)
    assert set(jobs) == {"universe_index", "tokenize_bed", "tokenize_h5ad", "manifest", "stats", "train", "train_summary", "all"}
    assert jobs["tokenize_bed"] == shard_outputs(clone, "bed")
    assert jobs["tokenize_h5ad"] == shard_outputs(clone, "h5ad")


@pytest.mark.parametrize(
    "change, rules",
    [
        ({"train": {"trainer": {"max_steps": 3}}}, {"train_config", "train", "train_summary", "all"}),
        ({"train": {"model": "region2vec"}}, {"train", "train_summary", "all"}),
    ],
)
def test_training_change_reruns_only_training(clone, change, rules):
    update_config(clone, change)
    assert set(planned(clone)) == rules


def global_step(checkpoint: Path) -> int:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]


def restarts(train_dir: Path) -> list[int]:
    """The first step logged by each (re)start of training, oldest first."""
    versions = sorted((train_dir / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return [int(pd.read_csv(v / "metrics.csv")["step"].min()) for v in versions]


def test_changed_training_option_starts_a_new_run(clone):
    update_config(clone, {"train": {"seed": 1}})
    snakemake(clone)
    train = clone / "results" / "train"
    assert restarts(train) == [0] and global_step(train / "model.ckpt") == 2
    log = (clone / "results" / "logs" / "train.log").read_text()
    assert "is of a run with other options: seed 0 -> 1; starting a new run" in log
    (kept,) = (train / "previous").iterdir()  # the seed-0 model, whole: Snakemake never deletes a finished model
    assert global_step(kept / "checkpoints" / "last.ckpt") == 2 and global_step(kept / "model.ckpt") == 2
    assert {"config.yaml", "universe.bed.gz", "metrics.csv", "loss.png", "summary.json"} <= {p.name for p in kept.iterdir()}
    assert yaml.safe_load((kept / "config.yaml").read_text())["options"]["seed"] == 0
    finished = json.loads((train / "finished.json").read_text())
    assert finished["step"] == 2 and finished["fingerprint"] == yaml.safe_load((train / "config.yaml").read_text())["run"]["fingerprint"]


def test_killed_training_resumes_from_its_checkpoint_when_rerun(clone):
    """max_steps raised from 2 to 12 (the finished run continues), then Snakemake and its training
    job SIGKILLed after a checkpoint, as when the node dies. The rerun (--rerun-incomplete, from
    profiles/default) deletes only the declared outputs, so training continues from
    checkpoints/last.ckpt instead of starting over."""
    update_config(clone, {"train": {"trainer": {"max_steps": 12, "checkpoint_every_n_steps": 4}}})
    last = clone / "results" / "train" / "checkpoints" / "last.ckpt"
    finished_run = last.stat().st_ino
    run = subprocess.Popen([sys.executable, "-m", "snakemake"], cwd=clone, env=snakemake_env(), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while last.stat().st_ino == finished_run:  # checkpoints are renamed into place: a new one is a new inode
        assert run.poll() is None and time.monotonic() < deadline, "training ended before a new checkpoint"
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    killed_at = global_step(last)
    assert 2 < killed_at < 12

    snakemake(clone, "--unlock")  # the killed Snakemake left its lock
    assert set(planned(clone)) == {"train", "train_summary", "all"}
    snakemake(clone)
    train = clone / "results" / "train"
    assert restarts(train) == [0, 2, killed_at]  # the first run, its extension, and the rerun after the kill
    assert global_step(train / "model.ckpt") == 12
    steps = pd.read_csv(train / "metrics.csv")["step"].tolist()
    # (the kill may fall between the checkpoint and the logging of the step before it)
    assert steps[: killed_at - 1] == list(range(killed_at - 1)) and steps[-(12 - killed_at):] == list(range(killed_at, 12))
    (kept,) = (train / "previous").iterdir()  # the extended run's shorter model, not a run set aside
    assert yaml.safe_load((kept / "config.yaml").read_text())["run"]["step"] == 2 and not (kept / "checkpoints").exists()


def test_added_bed_files_rerun_only_their_shards(clone):
    before = {shard: sorted(ShardReader(clone / shard).names) for shard in shard_outputs(clone, "bed")}
    add_bed_rows(clone, [("added1.bed", "chr1\t69000\t70000\n"), ("added2.bed", "chr2\t1000\t2000\n")])
    after = {shard: sorted(Path(f).stem for f in files) for shard, files in shard_members(clone).items()}
    changed = {shard for shard, names in after.items() if names != before.get(shard)}
    assert 0 < len(changed) < len(after)
    jobs = planned(clone)
    assert jobs["tokenize_bed"] == changed
    assert set(jobs) == {"tokenize_bed", "manifest", "stats", "train", "train_summary", "all"}


def test_label_edit_reruns_only_its_shard(clone):
    sheet = clone / SHEET
    sheet.write_text(sheet.read_text().replace("tokens1.bed\tto_tokenize", "tokens1.bed\trelabelled"))
    holder = {s for s in shard_outputs(clone, "bed") if "tokens1" in ShardReader(clone / s).names}
    jobs = planned(clone)
    assert jobs["tokenize_bed"] == holder
    assert set(jobs) == {"tokenize_bed", "manifest", "stats", "train", "train_summary", "all"}


# -- bad input ------------------------------------------------------------------------------------


def write_example_fragments(folder: Path, n: int = 3000) -> str:
    """A fragments file over the example universe's chromosomes: 40 barcodes, sorted by position."""
    rng = np.random.default_rng(5)
    starts = np.sort(rng.integers(0, 150_000_000, n))
    chroms = rng.choice(["chr1", "chr2"], n)
    path = folder / "resources" / "example" / "cells.tsv.gz"
    rows = (f"{c}\t{s}\t{s + int(w)}\tCELL{int(b):02d}-1\t1\n"
            for c, s, w, b in zip(chroms, starts, rng.integers(50, 800, n), rng.integers(0, 40, n)))
    with gzip.open(path, "wt") as fh:
        fh.write("# id=example\n" + "".join(rows))
    return "resources/example/cells.tsv.gz"


def test_fragment_files_fan_out_by_barcode_into_the_manifest(tmp_path):
    """A fragments file in 3 barcode parts: 3 shard jobs whose records are every barcode once,
    token for token what `gtok tokenize` gives the whole file; a second sample with the same
    barcodes gets records of its own (SAMPLE#BARCODE); a new part count reruns only them."""
    folder = copy_workflow(tmp_path, train={"enabled": False}, shards={"fragment_parts": 3})
    fragments = write_example_fragments(folder)
    shutil.copy(folder / fragments, folder / "resources" / "example" / "fragments.tsv.gz")
    second = {"path": "resources/example/fragments.tsv.gz", "sample": "donor2"}
    update_config(folder, {"inputs": {"fragments": [fragments, second], "min_fragments": 2}})
    snakemake(folder)
    shards = sorted((folder / "results" / "shards" / "fragments" / "cells").glob("*.gtok"))
    assert [p.name for p in shards] == ["0000.gtok", "0001.gtok", "0002.gtok"]
    whole = folder / "whole.gtok"
    universe = yaml.safe_load((folder / "config" / "config.yaml").read_text())["universe"]
    assert gtok("tokenize", "-q", "-u", folder / universe, "-o", whole, "--min-fragments", "2", folder / fragments).returncode == 0
    expected = dict(zip(ShardReader(whole).names, (t.tolist() for t in ShardReader(whole))))
    got = {n: t.tolist() for p in shards for n, t in zip(ShardReader(p).names, ShardReader(p))}
    assert got == {f"cells#{n}": t for n, t in expected.items()} and len(got) == 40
    manifest = json.loads((folder / "results" / "manifest.json").read_text())
    assert sum(1 for e in manifest["shards"] if "/fragments/" in e["path"]) == 6
    names = [n for e in manifest["shards"] for n in ShardReader(folder / "results" / e["path"]).names]  # relative to it
    assert len(names) == len(set(names)) and sum(n.startswith("donor2#") for n in names) == 40
    update_config(folder, {"shards": {"fragment_parts": 2}})
    assert planned(folder).keys() == {"tokenize_fragments", "manifest", "stats", "all"}


def test_new_cells_per_shard_reruns_the_parts_whose_rows_changed(clone):
    """20 cells in parts of 8 (0:8, 8:16, 16:20) become parts of 10 (0:10, 10:20): the part
    names 0000 and 0001 stay, their row ranges do not, so both rerun and 0002 goes."""
    update_config(clone, {"shards": {"cells_per_shard": 10}})
    assert planned(clone)["tokenize_h5ad"] == {"results/shards/h5ad/pbmc_hg38/0000.gtok", "results/shards/h5ad/pbmc_hg38/0001.gtok"}


def test_what_a_shard_holds_reruns_it_when_changed(clone):
    """The label column of the cells, and the BED inputs' dataset (the sample sheet's name), are in
    the shards: each tokenize job's command is recorded, so a change reruns exactly those shards."""
    update_config(clone, {"inputs": {"label_key": "sample"}})  # another column of obs
    jobs = planned(clone)
    assert jobs["tokenize_h5ad"] == shard_outputs(clone, "h5ad") and "tokenize_bed" not in jobs
    update_config(clone, {"inputs": {"label_key": "cell_type"}})
    shutil.copyfile(clone / SHEET, clone / SHEET.replace("samples.tsv", "atlas.tsv"))
    update_config(clone, {"inputs": {"bed": SHEET.replace("samples.tsv", "atlas.tsv")}})
    jobs = planned(clone)
    assert jobs["tokenize_bed"] == shard_outputs(clone, "bed") and "tokenize_h5ad" not in jobs


def test_a_missing_input_with_results_in_place_is_named_at_the_dry_run(clone):
    """Snakemake would take the shard made from a file now gone for up to date: the plan names it."""
    with open(clone / SHEET, "a") as sheet:
        sheet.write(f"{BED_DIR}/Typo1.bed\tx\n")
    lines = len((clone / SHEET).read_text().splitlines())
    result = snakemake(clone, "-n", check=False)
    assert result.returncode != 0
    assert f"config inputs.bed: {SHEET}, line {lines}: {BED_DIR}/Typo1.bed: no such file" in result.stdout + result.stderr


def test_malformed_bed_fails_its_shard_only(tmp_path):
    folder = copy_workflow(tmp_path, inputs={"h5ad": []}, train={"enabled": False})
    add_bed_rows(folder, [("broken.bed", "chr1\t10\t20\nchr1\t30\t40\nchr1\tabc\t50\n")])
    shard = next(s for s, files in shard_members(folder).items() if f"{BED_DIR}/broken.bed" in files)

    result = snakemake(folder, check=False)
    assert result.returncode != 0
    log = (folder / "results" / "logs" / "tokenize_bed" / f"{Path(shard).stem}.log").read_text()
    assert "broken.bed, line 3" in log
    assert "Traceback" not in log
    assert not (folder / shard).exists()
    others = shard_outputs(folder, "bed")
    assert len(others) == 2  # keep-going: the other shards finished
    assert not (folder / "results" / "manifest.json").exists()

    (folder / BED_DIR / "broken.bed").write_text("chr1\t10\t20\nchr1\t30\t40\nchr1\t45\t50\n")
    jobs = planned(folder)
    assert set(jobs) == {"tokenize_bed", "manifest", "stats", "all"}
    assert jobs["tokenize_bed"] == {shard}


# -- configuration errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, line",
    [
        ({"colour": "blue"}, "config: Additional properties are not allowed ('colour' was unexpected)."),
        ({"shards": {"files_per_shard": "many"}}, "config shards.files_per_shard: 'many' is not of type 'integer'."),
        ({"shards": {"cells_per_shard": 0}}, "config shards.cells_per_shard: 0 is less than the minimum of 1."),
        ({"inputs": {"h5ad": "cells.h5ad"}}, "config inputs.h5ad: 'cells.h5ad' is not of type 'array'."),
        # one of several shapes: the alternative meant is named, and a pattern is said in words, not as a regex
        ({"inputs": {"bed": "samples.csv"}}, "config inputs.bed: 'samples.csv' is neither a list of BED files or glob "
                                            "patterns, like ['data/*.bed'], nor a sample sheet ending in .tsv or .txt."),
        ({"inputs": {"bed": 5}}, "config inputs.bed: 5 is neither a list of BED files or glob patterns, like "
                                 "['data/*.bed'], nor a sample sheet ending in .tsv or .txt."),
        ({"inputs": {"h5ad": [5]}}, "config inputs.h5ad.0: 5 is neither an .h5ad file nor an entry {path: FILE.h5ad, "
                                    "sample: NAME}."),
        ({"inputs": {"h5ad": [{"path": "a.h5ad", "smaple": "x"}]}},
         "config inputs.h5ad.0: Additional properties are not allowed ('smaple' was unexpected)."),
        ({"inputs": {"h5ad": [{"sample": "x"}]}}, "config inputs.h5ad.0: 'path' is a required property."),
        ({"inputs": {"h5ad": ["cells.h5"]}}, "config inputs.h5ad.0: 'cells.h5' is not an .h5ad file (its name ends in .h5ad)."),
        ({"inputs": {"fragments": [{"path": "f.bed"}]}},
         "config inputs.fragments.0.path: 'f.bed' is not a fragments file (its name ends in .tsv.gz, .tsv.bgz or .tsv)."),
        ({"inputs": {"name_format": "{barcode}"}},
         "config inputs.name_format: '{barcode}' does not hold both {sample} and {barcode}."),
        ({"train": {"model": 3}}, "config train.model: 3 is not of type 'string'."),  # a name or an import path
        ({"train": {"epochs": 3}}, "config train: Additional properties are not allowed ('epochs' was unexpected)."),
    ],
)
def test_schema_rejects_bad_config_in_one_line_naming_the_key(change, line):
    """Snakemake's own error prints the whole schema and config (hundreds of lines), the key last."""
    from gtok.workflow.schema import schema_problem

    config = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    validate(config, str(SCHEMA))  # the shipped config is valid
    merge(config, change)
    with pytest.raises(WorkflowError) as error:
        validate(config, str(SCHEMA))
    assert schema_problem(error.value, "config") == line


def test_a_sample_sheet_row_that_fails_its_schema_is_named_by_line_and_column(tmp_path):
    from gtok.workflow.schema import schema_problem

    sheet = tmp_path / "s.tsv"
    sheet.write_text("path\tsplit\nx.bed\ttrain\ny.bed\ta-b\n")
    with pytest.raises(WorkflowError) as error:
        validate(pd.read_csv(sheet, sep="\t", dtype=str), str(ROOT / "workflow" / "schemas" / "samples.schema.yaml"))
    assert schema_problem(error.value, str(sheet)) == (f"{sheet}, line 3, column split: 'a-b' is not a split name "
                                                       "(letters, digits or _, like train, val or test).")


@pytest.mark.parametrize("key, value, message", [
    ("devices", 0, "0 is less than the minimum of 1"),
    ("num_nodes", "two", "'two' is not of type 'integer'"),
    ("num_nodes", 1.5, "1.5 is not of type 'integer'"),
])
def test_schema_names_a_bad_device_or_node_count(key, value, message):
    config = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    merge(config, {"train": {"trainer": {key: value}}})
    with pytest.raises(WorkflowError, match=re.escape(message)) as error:
        validate(config, str(SCHEMA))
    assert f"['{key}']" in str(error.value)  # the schema path names the key


def test_several_nodes_on_a_local_run_stop_before_any_job(tmp_path):
    folder = copy_workflow(tmp_path, train={"trainer": {"num_nodes": 2}})
    result = snakemake(folder, check=False)
    assert result.returncode != 0
    assert "config train.trainer.num_nodes is 2, but this run executes jobs locally" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (folder / "results" / "shards").exists()  # no job ran


def test_schema_fills_defaults():
    config = {"universe": "u.bed", "inputs": {"bed": ["*.bed"]}}
    validate(config, str(SCHEMA))
    assert config["results"] == "results"
    assert config["shards"] == {"files_per_shard": 200, "cells_per_shard": 50000, "fragment_parts": 1}
    assert config["train"]["enabled"] is False
    assert config["inputs"]["h5ad"] == [] and config["inputs"]["fragments"] == []
    assert config["inputs"]["min_fragments"] == 1 and config["inputs"]["fragment_labels"] is None


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"colour": "blue"}, "Additional properties are not allowed ('colour' was unexpected)"),
        ({"evaluate": {"enabled": "yes"}}, "config evaluate.enabled: 'yes' is not one of"),  # a file's strings stay strings
        ({"train": {"trainer": {"max_step": 3}}}, "config train section 'trainer': unknown option(s) max_step; known:"),
        ({"train": {"data": {"batch_size": 0}}}, "config train section 'data': batch_size must be at least 1, not 0."),
        ({"train": {"trainer": {"max_steps": "abc"}}}, "section 'trainer': max_steps must be an integer, not 'abc'."),
        ({"train": {"model": "Encoder"}}, "config train model: 'Encoder' is neither a built-in model"),
        ({"train": {"model": "no_such_package:Net"}},
         "config train model: no_such_package:Net: cannot import no_such_package (ModuleNotFoundError"),
        ({"train": {**BROUGHT, "model_args": {"dimm": 8}}},
         "config train section 'model_args': bag_of_regions:BagOfRegions accepts no argument dimm; it accepts: dim, lr."),
        ({"train": {"model_args": {"d_model": 8}}}, "config train section 'model_args': applies to a brought class"),
        ({"train": {"trainer": {"strategy": "foo"}}}, "section 'trainer': strategy must be one of auto, ddp, "),
        ({"results": "res_{x}"}, "config results: res_{x}: Snakemake cannot use file names with braces"),
        ({"train": {"data": {"mixture": {"samples": 1, "brain": 1}}}},
         "config train section 'data': mixture names dataset 'brain', which the data lacks (its datasets: "
         "'pbmc_hg38', 'samples')"),
        ({"shards": {"files_per_shard": -1}}, "config shards.files_per_shard: -1 is less than the minimum of 1."),
        ({"inputs": {"fragments": ["nope/frag.tsv.gz"]}}, "config inputs.fragments: nope/frag.tsv.gz: no such file"),
        ({"inputs": {"label_key": "celltype"}},
         "config inputs.label_key: 'celltype' is not a column of obs in resources/example/h5ad/pbmc_hg38.h5ad (its "
         "columns: 'barcode', 'cell_type', 'sample')."),
    ],
)
def test_snakemake_reports_config_errors(tmp_path, extra, message):
    folder = copy_workflow(tmp_path)
    (folder / "extra.yaml").write_text(yaml.safe_dump(extra))
    result = snakemake(folder, "-n", "--configfile", "config/config.yaml", "extra.yaml", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert len((result.stdout + result.stderr).strip().splitlines()) < 8  # not the schema and config printed whole


def test_a_large_input_touched_but_unchanged_reruns_nothing(tmp_path):
    """Snakemake compares inputs by content only up to max-checksum-file-size (1 MB by default),
    by date above it: profiles/default raises that, so a re-copied BED file of a few MB does not
    rerun its shard and everything after it."""
    folder = copy_workflow(tmp_path, train={"enabled": False})
    sheet = folder / "resources" / "example" / "samples.tsv"
    bed = folder / sheet.read_text().splitlines()[1].split("\t")[0]
    with open(bed, "a") as fh:  # 2 MB of comment lines: the same regions, a large file
        fh.write("# padding\n" * 200_000)
    snakemake(folder)
    os.utime(bed)
    assert "Nothing to be done" in snakemake(folder, "-n").stdout


def test_nested_command_line_config_values_are_typed_as_a_config_files(tmp_path):
    """`--config shards='{files_per_shard: 2}'`: Snakemake leaves nested values strings, which the
    schema and the options would refuse; they are read as a config file's numbers and booleans."""
    folder = copy_workflow(tmp_path)
    result = snakemake(folder, "-n", "--config", "shards={files_per_shard: 2, cells_per_shard: 500}",
                       "train={enabled: true, trainer: {max_steps: 3}, encoder: {lr: 1e-3}}")
    assert "tokenize_bed" in result.stdout and "train" in result.stdout
    refused = snakemake(folder, "-n", "--config", "shards={files_per_shard: two}", check=False)
    assert "config shards.files_per_shard: 'two' is not of type 'integer'." in refused.stdout + refused.stderr


# -- SLURM ----------------------------------------------------------------------------------------


@pytest.mark.slurm
@pytest.mark.skipif(
    shutil.which("sinfo") is None and not os.environ.get("GTOK_REQUIRE_SLURM"),  # CI sets it: never skip there
    reason="SLURM is not installed (no sinfo); start it with `bash tools/local-slurm.sh start`",
)
@pytest.mark.parametrize(
    "model, data, profile_sets_cpus",
    [({"model": "encoder"}, {"num_workers": DataOptions.num_workers}, True),
     ({"model": "encoder"}, {"num_workers": 0}, False),
     (BROUGHT, {"num_workers": DataOptions.num_workers}, True)],
    ids=["the profile gives fewer CPUs than the plan asks", "the plan's CPUs", "a brought LightningModule"])
def test_slurm_end_to_end_with_two_training_tasks(tmp_path, model, data, profile_sets_cpus):
    """Tokenization, stats and training as SLURM jobs of the local cluster: the 5 shard jobs
    (3 BED shards, 2 h5ad row ranges) as 2 SLURM jobs (group "tokenize", group-components 4 in
    profiles/slurm-local); training as one job of 2 tasks started by srun, one process per (CPU)
    device, DDP over gloo; with the built-in encoder and with a brought LightningModule. The plan
    asks 1 + data.num_workers CPUs per task; profiles/slurm-local gives the train job 1 (the node
    has 2 cores), and the job step must take what the job got. (config/example.yaml sets
    num_workers 0; the first case trains with gtok's default, 1.)"""
    assert DataOptions.num_workers > 0
    folder = copy_workflow(tmp_path, shards={"files_per_shard": 4, "cells_per_shard": 10},
                           train={**model, "trainer": {"devices": 2, "accelerator": "cpu", "max_steps": 2},
                                  "data": {"val_fraction": 0, **data}})
    if not profile_sets_cpus:  # a profile that leaves the train job's CPUs to the plan
        profile = folder / "profiles" / "slurm-local" / "config.yaml"
        settings = yaml.safe_load(profile.read_text())
        del settings["set-resources"]["train"]["cpus_per_task"]
        profile.write_text(yaml.safe_dump(settings))
    result = snakemake(folder, "--profile", "profiles/slurm-local", timeout=600)
    output = result.stdout + result.stderr
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S+/slurm_logs/(\w+)/", output)
    tokenize = [kind for _, kind in submitted if kind.startswith("group_tokenize_")]
    assert len(tokenize) == 2, submitted  # 5 shard jobs, at most 4 to a SLURM job
    assert sorted(kind for _, kind in submitted if kind not in tokenize) == ["rule_stats", "rule_train"], submitted
    assert len(shard_outputs(folder, "bed")) == 3 and len(shard_outputs(folder, "h5ad")) == 2
    jobs = {kind: jobid for jobid, kind in submitted}
    assert list((folder / ".snakemake" / "slurm_logs" / "rule_train").rglob("*.log"))
    assert not (folder / ".snakemake" / "slurm_logs" / "rule_manifest").exists()  # local rules stay local
    job_logs = list((folder / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(job_logs) == len(submitted)
    for log in job_logs:  # every job took the main process's plan
        assert "the plan of the main process, from" in log.read_text() and "planning again" not in log.read_text(), log
    assert gtok("verify", "-q", folder / "results" / "manifest.json").returncode == 0
    train = folder / "results" / "train"
    assert (train / "model.ckpt").stat().st_size > 0 and (train / "summary.html").is_file()

    job = subprocess.run(["scontrol", "show", "job", jobs["rule_train"]], capture_output=True, text=True).stdout
    assert re.search(r"\bNumTasks=2\b", job), job  # the SLURM job itself had two tasks
    assert re.search(r"\bCPUs/Task=1\b", job), job  # the profile's 1 CPU, or the plan's 1 + 0 workers
    summary = json.loads((train / "summary.json").read_text())
    assert (summary["world_size"], summary["num_nodes"], summary["devices_per_node"]) == (2, 1, 2)
    (epoch,) = summary["epochs"]  # 32 records in batches of 8: one epoch is 2 steps of 2 ranks
    assert epoch["batches_per_rank"] == 2 and epoch["records_per_rank"] == [16, 16]
    assert epoch["records_seen_by_several_ranks"] == 0  # disjoint halves of the records
    assert epoch["records_seen"] == epoch["records"] == 32
    assert f"trained {model['model']}" in (folder / "results" / "logs" / "train.log").read_text()


@pytest.mark.slurm
@pytest.mark.skipif(
    shutil.which("sinfo") is None and not os.environ.get("GTOK_REQUIRE_SLURM"),
    reason="SLURM is not installed (no sinfo); start it with `bash tools/local-slurm.sh start`",
)
def test_training_cancelled_under_slurm_resumes_with_the_exact_remaining_batches(tmp_path):
    """The 2-task training job is cancelled (SIGTERM, as a preemption) after a checkpoint; the rerun
    continues from it, and every rank's batches, over both launches, are exactly the epoch plan."""
    from gtok.data.dataset import GTokDataset

    steps, every = 240, 16
    folder = copy_workflow(tmp_path, shards={"files_per_shard": 100, "cells_per_shard": 100}, train={
        "trainer": {"devices": 2, "accelerator": "cpu", "max_steps": steps, "max_epochs": 100,
                    "checkpoint_every_n_steps": every, "log_batches": True},
        "data": {"num_workers": 0, "val_fraction": 0, "batch_size": 1}})
    last = folder / "results" / "train" / "checkpoints" / "last.ckpt"
    run = subprocess.Popen([sys.executable, "-m", "snakemake", "--profile", "profiles/slurm-local"], cwd=folder,
                           env=snakemake_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (last.exists() and global_step(last) >= every):
        assert run.poll() is None and time.monotonic() < deadline, "training ended before its first checkpoint"
        time.sleep(0.05)
    jobs = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True).stdout.split("\n")
    train_job = next(line.split()[0] for line in jobs if line.endswith("rule_train"))
    subprocess.run(["scancel", train_job], check=True)
    assert run.wait(timeout=300) != 0
    train = folder / "results" / "train"
    assert not (train / "model.ckpt").exists()
    resumed_from = global_step(last)
    assert every <= resumed_from < steps

    snakemake(folder, "--profile", "profiles/slurm-local", timeout=600)
    assert global_step(train / "model.ckpt") == steps
    manifest = folder / "results" / "manifest.json"
    for rank in (0, 1):
        rows = [json.loads(line) for line in (train / "batches" / f"rank-{rank}.jsonl").read_text().splitlines()]
        launches = list(dict.fromkeys(r["launch"] for r in rows))
        assert len(launches) == 2
        first = [r for r in rows if r["launch"] == launches[0] and r["step"] < resumed_from]
        second = [r for r in rows if r["launch"] == launches[1]]
        assert second[0]["step"] == resumed_from  # the rerun starts right after its checkpoint
        trained = [r["records"] for r in first + second]
        ds = GTokDataset(manifest, seed=0, max_length=128, batch_size=1, rank=rank, world_size=2)
        plan = []
        for epoch in range(-(-steps // len(ds))):
            ds.set_epoch(epoch)
            plan += [b["index"].tolist() for b in ds]
        assert trained == plan[:steps], f"rank {rank}"


# -- hostile input (once tests/test_edge_cases.py): one-line errors or correct tokens, nothing touched --


@pytest.mark.slow
def test_a_user_config_inherits_nothing_from_the_example(tmp_path):
    folder = write_workflow(tmp_path / "wf", yaml.safe_load((ROOT / "config" / "config.yaml").read_text()),
                            extra=("resources", "config"))
    shutil.copy(UNIVERSE, folder / "mine.bed")
    (folder / "my.yaml").write_text(yaml.safe_dump(
        {"universe": "mine.bed", "inputs": {"bed": ["resources/example/bed/Example*.bed"]}, "results": "out"}))
    before = snapshot(folder / "resources")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "my.yaml"], cwd=folder,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    jobs = run.stdout + run.stderr
    assert "tokenize_bed" in jobs and "tokenize_h5ad" not in jobs and "rule train" not in jobs  # no example cells, no toy training
    assert "out/shards/bed/0000.gtok" in jobs  # schema defaults: 200 files per shard, one shard
    assert "inputs come from the bundled example" in jobs  # the BED files are the example's: it says so
    example = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/example.yaml"],
                             cwd=folder, capture_output=True, text=True)
    assert "tokenize_h5ad" in example.stdout and "come from the bundled example" in example.stderr
    corces = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/example-corces.yaml"],
                            cwd=folder, capture_output=True, text=True)  # make run's real cells: their own results
    assert corces.returncode == 0, corces.stderr
    assert "results-corces/eval/metrics.tsv" in corces.stdout and "tokenize_bed" not in corces.stdout
    plain = subprocess.run([sys.executable, "-m", "snakemake", "-n"], cwd=folder, capture_output=True, text=True)
    said = plain.stdout + plain.stderr
    assert plain.returncode != 0 and "path/to/universe.bed: no such file; fix it in the config file" in said
    assert "(This run read its config from config/config.yaml.)" in said
    assert snapshot(folder / "resources") == before


@pytest.mark.slow
def test_braces_in_a_bed_file_name_are_named_by_the_workflow(tmp_path):
    folder = write_workflow(tmp_path / "wf", {"universe": "u.bed", "inputs": {"bed": ["data/*.bed"]}})
    shutil.copy(UNIVERSE, folder / "u.bed")
    (folder / "data").mkdir()
    shutil.copy(BEDS[0], folder / "data" / "a{x}.bed")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n"], cwd=folder, capture_output=True, text=True)
    assert run.returncode != 0 and "Traceback" not in run.stdout + run.stderr
    assert "BED input data/a{x}.bed: Snakemake cannot use file names with braces" in run.stdout + run.stderr


@pytest.mark.slow
def test_workflow_passes_the_sheet_split_to_the_manifest(tmp_path):
    folder = write_workflow(tmp_path / "wf", {"universe": "u.bed", "inputs": {"bed": "sheet.tsv"},
                                              "shards": {"files_per_shard": 2}})
    shutil.copy(UNIVERSE, folder / "u.bed")
    splits = ["train", "train", "val", "train", "test", "val"]
    rows = "".join(f"{bed}\t{split}\n" for bed, split in zip(BEDS, splits))
    (folder / "sheet.tsv").write_text("path\tsplit\n" + rows)
    run = subprocess.run([sys.executable, "-m", "snakemake", "-c1", "results/manifest.json"], cwd=folder,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = load_manifest(folder / "results" / "manifest.json")
    by_split = {}
    for entry in manifest.entries:
        by_split.setdefault(entry.split, set()).update(ShardReader(entry.path).names)
    assert by_split == {s: {b.stem for b, x in zip(BEDS, splits) if x == s} for s in ("train", "val", "test")}
