"""The main process's plan handed to its jobs (gtok.workflow.handoff): a job gets back exactly
the plan the main process made, and anything short of that (no file, a changed file, another
config, another format) makes the job plan again, with the reason in its log. The SLURM workflow
test checks that real jobs take the handed plan (tests/test_workflow.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gtok.workflow import handoff
from gtok.workflow.plan import Plan


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A run folder, as the current directory, with a universe, BED files, cells and fragments."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(handoff.ENV, raising=False)
    (tmp_path / "u.bed").write_text("chr1\t1\t2\n")
    (tmp_path / "beds").mkdir()
    for i in range(9):
        (tmp_path / "beds" / f"b{i}.bed").write_text("chr1\t1\t2\n")
    (tmp_path / "f").mkdir()
    for name in ("cells.h5ad", "f/frags.tsv.gz"):  # the plan checks that they exist, and reads no more of them here
        (tmp_path / name).touch()
    return tmp_path


def config(**inputs) -> dict:
    return {"universe": "u.bed", "results": "out", "train": {"enabled": False, "model": "encoder"},
            "shards": {"files_per_shard": 4, "cells_per_shard": 10, "fragment_parts": 2},
            "inputs": {"bed": ["beds/*.bed"], "h5ad": ["cells.h5ad"], "label_key": None,
                       "fragments": [{"path": "f/frags.tsv.gz", "sample": "donor1"}], **inputs}}


def plan_of(cfg: dict) -> Plan:
    return Plan.from_config(cfg, n_obs=lambda path: 25)


def test_a_job_gets_the_main_process_plan_back(run, capsys):
    cfg = config()
    plan = plan_of(cfg)
    path = handoff.hand_to_jobs(plan, cfg)
    assert os.environ[handoff.ENV] == path and Path(path).parent == run / ".snakemake" / "gtok"
    (run / "beds" / "b9.bed").write_text("chr1\t1\t2\n")  # added after the main process planned
    back = handoff.plan_from_main(cfg)
    assert back == plan and back.h5ad_parts[("cells", "0002")] == (20, 25)
    assert back.bed_shard_paths() == plan.bed_shard_paths()  # the main process's files, not the new one
    assert f"the plan of the main process, from {path}" in capsys.readouterr().err


def test_an_unchanged_plan_is_kept_a_damaged_one_mended_and_an_earlier_one_removed(run):
    cfg = config()
    first = handoff.hand_to_jobs(plan_of(cfg), cfg)
    mtime = os.stat(first).st_mtime_ns
    assert handoff.hand_to_jobs(plan_of(cfg), cfg) == first and os.stat(first).st_mtime_ns == mtime
    cut_short(first)
    assert handoff.hand_to_jobs(plan_of(cfg), cfg) == first and handoff.plan_from_main(cfg) == plan_of(cfg)
    (run / "beds" / "b9.bed").write_text("chr1\t1\t2\n")
    second = handoff.hand_to_jobs(plan_of(cfg), cfg)
    assert second != first and sorted(Path(second).parent.iterdir()) == [Path(second)]


def test_without_a_handed_plan_a_job_plans_quietly(run, capsys):
    assert handoff.plan_from_main(config()) is None
    assert capsys.readouterr().err == ""


def rewrite(path: str, change) -> str:
    """The handed plan changed by `change`, under the name of its new digest (a valid file)."""
    doc = json.loads(Path(path).read_bytes())
    change(doc)
    body = json.dumps(doc).encode()
    new = Path(path).with_name(f"plan-{handoff.hashlib.sha256(body).hexdigest()}.json")
    new.write_bytes(body)
    return str(new)


def cut_short(path: str) -> str:
    Path(path).write_bytes(Path(path).read_bytes()[:-9])
    return path


def removed(path: str) -> str:
    os.unlink(path)
    return path


@pytest.mark.parametrize("spoil, reason", [
    (cut_short, "its checksum does not match its name"),
    (removed, "No such file"),
    (lambda path: rewrite(path, lambda doc: doc.update(version=2)), "version 2, not 'gtok-workflow-plan' version 1"),
    (lambda path: rewrite(path, lambda doc: doc["plan"].pop("universe")), "fields ['universe'] differ"),
])
def test_a_spoiled_plan_is_not_used(run, monkeypatch, capsys, spoil, reason):
    cfg = config()
    path = handoff.hand_to_jobs(plan_of(cfg), cfg)
    spoiled = spoil(path)
    monkeypatch.setenv(handoff.ENV, spoiled)
    assert handoff.plan_from_main(cfg) is None
    err = capsys.readouterr().err
    assert err.startswith(f"gtok: {spoiled}: not using the main process's plan (") and reason in err
    assert err.rstrip().endswith("planning again.")


def test_a_plan_of_another_config_is_not_used(run, capsys):
    handoff.hand_to_jobs(plan_of(config()), config())
    assert handoff.plan_from_main(config(label_key="cell_type")) is None
    assert "it was made from another config" in capsys.readouterr().err


def test_a_plan_that_cannot_be_written_is_a_warning(run, capsys, monkeypatch):
    monkeypatch.setenv(handoff.ENV, "stale")
    (run / "blocked").write_text("a file where the folder would go")
    assert handoff.hand_to_jobs(plan_of(config()), config(), folder="blocked/gtok") is None
    assert handoff.ENV not in os.environ
    assert "could not write the plan for the jobs" in capsys.readouterr().err
