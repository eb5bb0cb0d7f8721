"""Training and embedding end to end on the CPU: BED files -> `gtok tokenize` -> manifest -> `gtok train`
-> checkpoint, metrics.csv, loss.png -> `gtok embed`; exact resumes; a changed run starts afresh;
vocabulary mismatches refused."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import BEDS, GENIML, GTARS, gtok, one_line_error, snapshot, write_bed, write_h5mu

from gtok.build import tokenize_to_shard
from gtok.cli import main
from gtok.errors import FingerprintMismatchError, GtokError
from gtok.formats.manifest import write_manifest
from gtok.formats.shard import write_shard
from gtok.training.callbacks import BatchLog
from gtok.training.run import RUN_KEY, flatten_metrics
from gtok.training.train import train

pytestmark = pytest.mark.slow  # real training runs, workflow runs or drills: `make test` runs them

UNIVERSE = GENIML / "universe.uniq.bed"
CLASSES = ("A", "B", "C")
TINY = {
    "encoder": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32},
    "classifier": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32},
    "region2vec": {"embedding_dim": 8},
}
DATA = {"batch_size": 4, "num_workers": 1, "max_length": 32, "val_fraction": 0.25}
TRAINER = {"checkpoint_every_n_steps": 5, "log_every_n_steps": 1, "num_sanity_val_steps": 0, "val_check_interval": 4}
GTOK = [sys.executable, "-m", "gtok.cli"]


def config(**changes) -> dict:
    cfg = {"data": dict(DATA), "trainer": dict(TRAINER), **{k: dict(v) for k, v in TINY.items()}}
    for section, values in changes.items():
        cfg[section].update(values)
    return cfg


@pytest.fixture(autouse=True)
def _restore_determinism():
    """Trainer(deterministic=True) switches torch's global flag on; leave it as other tests found it."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def universe_rows(path: Path) -> list[tuple[str, int, int]]:
    return [(c, int(s), int(e)) for c, s, e, *_ in (line.split("\t") for line in path.read_text().splitlines())]


def write_data(folder: Path, universe: Path, per_class: int = 16, shards: int = 2, index: Path | None = None) -> Path:
    """BED files whose regions come from one third of the universe per class (so the label is
    learnable), tokenized with labels by `gtok tokenize` into shards (against `index` when given),
    and their manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = universe_rows(universe)
    blocks = np.array_split(np.arange(len(rows)), len(CLASSES))
    rng = np.random.default_rng(0)
    paths = []
    for s in range(shards):
        beds, sheet = [], ["name\tlabel"]
        for c, label in enumerate(CLASSES):
            for i in range(per_class):
                pick = np.sort(rng.choice(blocks[c], size=int(rng.integers(8, 40)), replace=False))
                name = f"{label}_{s}_{i}"
                beds.append(str(write_bed(folder / f"{name}.bed", [(rows[j][0], rows[j][1] + 10, rows[j][2] - 10) for j in pick])))
                sheet.append(f"{name}\t{label}")
        (folder / f"labels{s}.tsv").write_text("\n".join(sheet) + "\n")
        paths.append(tokenize_to_shard(beds, str(index or universe), str(folder / f"shard{s}.gtok"),
                                       labels_sheet=str(folder / f"labels{s}.tsv"), progress=False))
    write_manifest(folder / "manifest.json", paths)
    return folder / "manifest.json"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("data"), UNIVERSE)


@pytest.fixture(scope="module")
def other_universe(tmp_path_factory) -> Path:
    """Most of the same regions, but another vocabulary (fingerprint)."""
    path = tmp_path_factory.mktemp("u2") / "universe.bed"
    path.write_text("".join(UNIVERSE.read_text().splitlines(keepends=True)[:2000]))
    return path


@pytest.fixture(scope="module")
def other_data(tmp_path_factory, other_universe) -> Path:
    return write_data(tmp_path_factory.mktemp("data2"), other_universe, per_class=2, shards=1)


@pytest.fixture(scope="module")
def encoder_ckpt(tmp_path_factory, data) -> Path:
    out = tmp_path_factory.mktemp("encoder")
    return train(data, "encoder", out, config(), max_steps=4, universe=UNIVERSE, progress=False)


def epoch_batches(manifest: Path, **changes) -> int:
    from gtok.data.datamodule import GTokDataModule

    return len(GTokDataModule(manifest, **{**DATA, **changes}).vocab_source)


# -- outputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["region2vec", "encoder", "classifier"])
def test_each_model_trains_and_writes_its_outputs(tmp_path, data, name):
    final = train(data, name, tmp_path, config(), max_steps=6, universe=UNIVERSE, progress=False)
    assert final == tmp_path / "model.ckpt"
    assert final.read_bytes() == (tmp_path / "checkpoints" / "last.ckpt").read_bytes()
    ckpt = torch.load(final, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6 and ckpt["gtok"]["model"] == name
    run = ckpt[RUN_KEY]["options"]
    assert run["model"] == name and run[f"{name}.lr"] > 0 and "trainer.max_steps" not in run
    manifest = pd.read_json(data, typ="series")
    vocab = ckpt["hyper_parameters"]["vocab"]
    assert vocab["fingerprint"] == manifest["fingerprint"] and vocab["vocab_size"] == manifest["vocab_size"]
    assert vocab["pad_token_id"] == manifest["vocab_size"] - 6 and vocab["universe"] == str(UNIVERSE.resolve())
    assert ckpt["datamodule_hyper_parameters"]["max_length"] == 32

    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert metrics["step"].tolist() == list(range(6))  # one row per step, validation merged in
    assert np.isfinite(metrics["train_loss"]).all()
    assert metrics["val_loss"].notna().sum() == 1  # validated once, after step 4
    png = (tmp_path / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    if name == "classifier":
        assert {"train_acc", "val_acc", "val_f1"} <= set(metrics.columns)
        assert ckpt["hyper_parameters"]["classes"] == list(CLASSES)


def test_classifier_learns_the_labels(tmp_path, data, encoder_ckpt):
    cfg = config(classifier={"init_from": str(encoder_ckpt), "lr": 0.01, "head_dropout": 0.0},
                 trainer={"val_check_interval": 1.0})
    train(data, "classifier", tmp_path, cfg, max_epochs=2, progress=False)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    val = metrics.dropna(subset=["val_acc"])
    assert len(val) == 2 and val["val_acc"].iloc[-1] >= 0.8 and val["val_f1"].iloc[-1] >= 0.8
    ckpt = torch.load(tmp_path / "model.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["vocab"]["universe"] == str(UNIVERSE.resolve())  # taken from the encoder


def test_flatten_metrics_lets_a_resumed_run_replace_the_steps_it_redid(tmp_path):
    for version, rows in enumerate([
        "step,epoch,train_loss,val_loss\n0,0,5,\n1,0,4,\n2,0,3,\n2,0,,3.5\n3,0,2.9,\n",
        "step,epoch,train_loss\n2,0,3.1\n3,0,2.8\n4,0,2.7\n",
    ]):
        (tmp_path / f"version_{version}").mkdir()
        (tmp_path / f"version_{version}" / "metrics.csv").write_text(rows)
    flat = flatten_metrics(tmp_path)
    assert flat["step"].tolist() == [0, 1, 2, 3, 4]
    assert flat["train_loss"].tolist() == [5, 4, 3.1, 2.8, 2.7]
    assert flat["val_loss"].isna().all()  # the validation of the abandoned step 2 is gone with it



def test_flatten_metrics_passes_over_a_log_cut_off_before_its_first_row(tmp_path):
    """A launch that a full disk (or a kill) stopped as its logger opened metrics.csv leaves it
    empty, or with half a header: every later run of the folder still publishes its model."""
    for version, rows in enumerate(["step,epoch,train_loss\n0,0,5\n1,0,4\n", "", "ste"]):
        (tmp_path / f"version_{version}").mkdir()
        (tmp_path / f"version_{version}" / "metrics.csv").write_text(rows)
    flat = flatten_metrics(tmp_path)
    assert flat["step"].tolist() == [0, 1] and flat["train_loss"].tolist() == [5, 4]

# -- exact resume ----------------------------------------------------------------------------------

class Watch(BatchLog):
    """The package's batch log, with digests, in the folder `log` (rank-0.jsonl); at global step
    `kill_at` it SIGKILLs its own process."""

    def __init__(self, log: Path, kill_at: int = -1):
        super().__init__(Path(log), "test", digests=True)
        self.kill_at = kill_at

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, module, outputs, batch, batch_idx)
        if trainer.global_step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


RESUME_CONFIGS = {
    "plain": config(data={"batch_size": 8}, encoder={"dropout": 0.1}, trainer={"val_check_interval": 1.0}),
    # shard0 drawn three times as often as shard1 (the datasets `gtok tokenize` named after the shards)
    "mixture": config(data={"batch_size": 8, "mixture": {"shard0": 3, "shard1": 1}, "samples_per_epoch": 72},
                      encoder={"dropout": 0.1}, trainer={"val_check_interval": 1.0}),
}

KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from test_train import RESUME_CONFIGS, Watch
from gtok.training.train import train
train({data!r}, "encoder", {out!r}, RESUME_CONFIGS[{kind!r}], max_steps={steps}, progress=False,
      callbacks=[Watch({out!r} + ".batches", kill_at={kill_at})])
"""


def run_training(tmp_path: Path, data: Path, out: str, max_steps: int, kind: str) -> None:
    path = tmp_path / out
    train(data, "encoder", path, RESUME_CONFIGS[kind], max_steps=max_steps, progress=False,
          callbacks=[Watch(Path(f"{path}.batches"))])


def batches(tmp_path: Path, out: str) -> list[tuple[int, int, str]]:
    """(global step, batch index in the epoch, digest) of every batch a Watch logged, in order."""
    rows = [json.loads(line) for line in (tmp_path / f"{out}.batches" / "rank-0.jsonl").read_text().splitlines()]
    return [(row["step"], row["batch"], row["digest"]) for row in rows]


def weights(tmp_path: Path, out: str) -> dict[str, torch.Tensor]:
    return torch.load(tmp_path / out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.parametrize("kind", list(RESUME_CONFIGS))
def test_resume_continues_mid_epoch_with_the_batches_of_an_uninterrupted_run(tmp_path, data, kind):
    epoch = epoch_batches(data, **RESUME_CONFIGS[kind]["data"])
    total = epoch + 3
    run_training(tmp_path, data, "whole", total, kind)
    reference = batches(tmp_path, "whole")
    assert len(reference) == total and len({d for _, _, d in reference[:epoch]}) == epoch > 5
    if kind == "mixture":
        assert epoch == 72 // 8

    # SIGKILLed two steps after the checkpoint of step 5, then rerun: it resumes at step 5
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), data=str(data), out=str(tmp_path / "killed"),
                               steps=total, kill_at=7, kind=kind)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_training(tmp_path, data, "killed", total, kind)
    seen = batches(tmp_path, "killed")
    assert seen[:7] == reference[:7]
    resumed = seen[7:]
    assert resumed[0][:2] == (5, 5)  # global step 5, batch 5 of the epoch: mid-epoch
    assert resumed == reference[5:]  # exactly the rest of the epoch, then the next epoch's batches

    # stopped by max_steps exactly at the end of an epoch, then extended to the same total
    run_training(tmp_path, data, "extended", epoch, kind)
    run_training(tmp_path, data, "extended", total, kind)
    assert batches(tmp_path, "extended") == reference

    whole = weights(tmp_path, "whole")
    for out in ("killed", "extended"):
        other = weights(tmp_path, out)
        assert all(torch.equal(whole[k], other[k]) for k in whole), out
    metrics = pd.read_csv(tmp_path / "killed" / "metrics.csv")
    assert metrics["step"].tolist() == list(range(total))
    assert np.allclose(metrics["train_loss"], pd.read_csv(tmp_path / "whole" / "metrics.csv")["train_loss"])


# -- refusals --------------------------------------------------------------------------------------


class Unembeddable(L.LightningModule):
    """A brought LightningModule that trains but defines no embed."""

    def __init__(self, vocab):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.weight - batch["attention_mask"].float().mean()).pow(2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_embedding_a_model_that_cannot_embed_is_one_line(tmp_path, data, capsys):
    out = tmp_path / "run"
    train(data, "test_train:Unembeddable", out, {"data": DATA, "trainer": TRAINER}, max_steps=2, universe=UNIVERSE,
          progress=False)
    bed = sorted(data.parent.glob("A_0_*.bed"))[0]
    assert main(["embed", "-q", "--model", str(out), "-o", str(tmp_path / "e.npy"), str(bed)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gtok embed: error: {out}: its model (Unembeddable) cannot embed: it defines no embed(batch) -> "
                   "Tensor[B, D] (docs/models.md)."]


def trained_steps(log: Path) -> list[int]:
    """The global step of every batch a run trained on, from a Watch log."""
    return [step for step, _, _ in batches(log.parent, log.name.removesuffix(".batches"))]


def test_rerun_with_only_the_stopping_point_raised_resumes(tmp_path, data, capsys):
    out = tmp_path / "run"
    train(data, "encoder", out, config(), max_steps=3, progress=False, callbacks=[Watch(tmp_path / "first.batches")])
    # options that only say when to save or validate, or whether to check the shards, may change too
    same_run = config(trainer={"checkpoint_every_n_steps": 2, "val_check_interval": 3}, data={"verify": False})
    final = train(data, "encoder", out, same_run, max_steps=5, progress=False,
                  callbacks=[Watch(tmp_path / "second.batches")])
    assert trained_steps(tmp_path / "second.batches") == [3, 4]
    assert torch.load(final, map_location="cpu", weights_only=False)["global_step"] == 5
    (kept,) = (out / "previous").iterdir()  # the step-3 model, kept: no run was set aside
    assert sorted(p.name for p in kept.iterdir()) == ["config.yaml", "loss.png", "metrics.csv", "model.ckpt",
                                                     "summary.json", "universe.bed.gz"]
    assert capsys.readouterr().err == (f"gtok train: continuing the run in {out} from step 3 (checkpoints/last.ckpt).\n"
                                       f"gtok train: the folder's model of step 3 is kept in {kept}; this run extends "
                                       "it to step 5.\n")
    assert pd.read_csv(out / "metrics.csv")["step"].tolist() == [0, 1, 2, 3, 4]

    # once more: nothing left to train, and the checkpoint is not rewritten (from past the epoch
    # loop's end, which a later extension would resume wrongly)
    last = out / "checkpoints" / "last.ckpt"
    inode = last.stat().st_ino
    final = train(data, "encoder", out, same_run, max_steps=5, progress=False, callbacks=[Watch(tmp_path / "third.batches")])
    assert not (tmp_path / "third.batches").exists() and last.stat().st_ino == inode
    assert final.samefile(last) and len(list((out / "previous").iterdir())) == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ("option", "is of a run with other options: encoder.d_model 16 -> 8"),
        ("model", "holds a encoder model, not a region2vec"),
        ("data", "is of a run with other options: data.shards '"),
        ("fewer steps", "is at step 3, past max_steps 2"),
        ("older gtok", "records no run options (an older gtok wrote it)"),
    ],
)
def test_rerun_of_another_run_starts_afresh_and_sets_the_old_one_aside(tmp_path, data, other_data, change, message,
                                                                         capsys):
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    train(data, "encoder", out, config(), max_steps=3, progress=False)
    old_weights = weights(tmp_path, "run")
    manifest, model, cfg = data, "encoder", config()
    if change == "option":
        cfg = config(encoder={"d_model": 8})
    elif change == "model":
        model = "region2vec"
    elif change == "data":  # another vocabulary, too (which a resume used to refuse); 2 batches an epoch
        manifest, cfg = other_data, config(trainer={"val_check_interval": 1.0})
    elif change == "older gtok":
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        del ckpt[RUN_KEY]
        torch.save(ckpt, last)
    capsys.readouterr()
    final = train(manifest, model, out, cfg, max_steps=2, progress=False, callbacks=[Watch(tmp_path / "new.batches")])

    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gtok train:")]
    (previous,) = (out / "previous").iterdir()
    assert len(notes) == 1 and notes[0].startswith(f"gtok train: {last} {message}")
    assert notes[0].endswith(f"starting a new run (the old one is now in {previous}).")
    assert trained_steps(tmp_path / "new.batches") == [0, 1]
    ckpt = torch.load(final, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2 and ckpt["gtok"]["model"] == model
    assert pd.read_csv(out / "metrics.csv")["step"].tolist() == [0, 1]
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["summary.json", "version_0"]  # the new run's only
    assert sorted(p.name for p in previous.iterdir()) == ["checkpoints", "config.yaml", "logs", "loss.png", "metrics.csv",
                                                          "model.ckpt", "summary.json", "universe.bed.gz"]
    kept = torch.load(previous / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert kept["global_step"] == 3 and all(torch.equal(kept["state_dict"][k], v) for k, v in old_weights.items())
    assert (previous / "model.ckpt").samefile(previous / "checkpoints" / "last.ckpt")  # the old finished model


@pytest.mark.parametrize("stop, words", [(signal.SIGTERM, "stopped by SIGTERM"), (signal.SIGINT, "interrupted by Ctrl-C")])
def test_a_stopped_run_fails_the_command_in_one_line_and_leaves_no_final_model(tmp_path, data, stop, words):
    """SLURM preempts with SIGTERM, after which Lightning stops by an exit of status 0; Ctrl-C makes
    Lightning exit 1 with a message that --quiet hides. Both say so in one line."""
    import yaml

    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(config(trainer={"checkpoint_every_n_steps": 2})))
    out = tmp_path / "run"
    run = subprocess.Popen([*GTOK, "train", "-q", "--manifest", str(data), "--model", "encoder", "--out", str(out),
                            "--config", str(cfg), "--max-steps", "100000"], stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "last.ckpt").exists():
        if time.monotonic() > deadline:
            run.kill()
            pytest.fail("no checkpoint within 120 s")
        assert run.poll() is None, run.stderr.read()
        time.sleep(0.01)
    run.send_signal(stop)
    assert run.wait(timeout=60) == 1
    said = run.stderr.read()
    assert said.splitlines()[-1].startswith(f"gtok train: error: {out}: training {words} at step "), said
    assert not (out / "model.ckpt").exists()



def test_a_loader_worker_says_nothing_of_a_batch_handoff_the_stopped_trainer_abandoned(capsys, monkeypatch):
    """Ctrl-C in the middle of taking a batch from a loader worker left the worker's resource_sharer
    thread an EOFError or BrokenPipeError, whose traceback followed gtok train's one line (the test
    above, under load). The worker's hook drops exactly those; any other error still prints."""
    import multiprocessing

    from gtok.data.datamodule import quiet_abandoned_handoffs

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # put back after the test
    quiet_abandoned_handoffs(0)
    sharer = os.path.join(os.path.dirname(multiprocessing.__file__), "resource_sharer.py")

    def raised(error: BaseException, filename: str) -> tuple:
        try:
            exec(compile("raise error", filename, "exec"), {"error": error})
        except BaseException:
            return sys.exc_info()

    for error in (EOFError(), BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")):
        sys.excepthook(*raised(error, sharer))
    assert capsys.readouterr().err == ""
    sys.excepthook(*raised(EOFError(), "elsewhere.py"))
    sys.excepthook(*raised(ValueError("a real error"), sharer))
    assert capsys.readouterr().err.count("Traceback") == 2


def test_sigterm_between_checkpoints_saves_the_step_it_stopped_at(tmp_path, data):
    """A preemption between periodic checkpoints (here before the first) saves the step it stopped
    at, so the rerun continues from there instead of starting over."""
    import yaml

    cfg = config(trainer={"checkpoint_every_n_steps": 100000, "log_every_n_steps": 1})
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg))
    out, metrics = tmp_path / "run", tmp_path / "run" / "logs" / "version_0" / "metrics.csv"
    run = subprocess.Popen([*GTOK, "train", "-q", "--manifest", str(data), "--model", "encoder", "--out", str(out),
                            "--config", str(tmp_path / "train.yaml"), "--max-steps", "100000"],
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) > 3):
        assert time.monotonic() < deadline and run.poll() is None, run.stderr.read() if run.poll() is not None else "slow"
        time.sleep(0.01)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 1
    step = int(re.search(r"stopped by SIGTERM at step (\d+);", run.stderr.read()).group(1))
    assert step >= 3 and not (out / "model.ckpt").exists()
    saved = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == step
    train(data, "encoder", out, cfg, max_steps=step + 2, progress=False, callbacks=[Watch(tmp_path / "again.batches")])
    assert trained_steps(tmp_path / "again.batches") == [step, step + 1]


def stop_the_job(out: Path, cfg: Path, data: Path) -> subprocess.Popen:
    """`gtok train` (with trainer.log_batches) in a process group of its own, sent SIGTERM as a
    whole after its fourth step, as SLURM's preemption, scancel and time limit signal every process
    of the job (the loader workers too)."""
    run = subprocess.Popen([*GTOK, "train", "-q", "--manifest", str(data), "--model", "encoder", "--out", str(out),
                            "--config", str(cfg), "--max-steps", "100000"], stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    rows, deadline = out / "batches" / "rank-0.jsonl", time.monotonic() + 120
    while not (rows.exists() and len(rows.read_text().splitlines()) > 3):
        assert run.poll() is None, run.stderr.read()
        if time.monotonic() > deadline:
            os.killpg(run.pid, signal.SIGKILL)
            pytest.fail("not there within 120 s")
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGTERM)
    try:
        run.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        pytest.fail(f"still running 90 s after SIGTERM: {run.stderr.read()}")
    return run


def launches(out: Path, rank: int) -> list[list[int]]:
    """The steps each launch of a run trained on one rank, in order (its batches/ log)."""
    steps: dict[str, list[int]] = {}
    for line in (out / "batches" / f"rank-{rank}.jsonl").read_text().splitlines():
        row = json.loads(line)
        steps.setdefault(row["launch"], []).append(row["step"])
    return list(steps.values())


def test_each_launch_in_one_process_has_its_own_id(tmp_path, data):
    """Two launches of one run from one Python process (a notebook's cell run twice): the second
    kept the first's launch id, so its batches read as the first launch's, and a `gtok train` the
    process started later inherited that id (the whole-job SIGTERM test's rerun, in the full suite)."""
    out, cfg = tmp_path / "run", config(trainer={"log_batches": True})
    train(data, "encoder", out, cfg, max_steps=2, progress=False)
    train(data, "encoder", out, cfg, max_steps=4, progress=False)
    assert launches(out, 0) == [[0, 1], [2, 3]]


@pytest.mark.parametrize("devices", [1, 2])
def test_sigterm_to_the_whole_job_saves_the_step_and_resumes_after_it(tmp_path, data, devices):
    """SLURM's preemption signals every process of the job step, loader workers included: one killed
    by SIGTERM made the trainer fail with torch's traceback ("DataLoader worker (pid ...) is killed
    by signal: Terminated") before it saved the step, in most runs; with two processes, Lightning's
    SIGTERM handler ran a collective inside the handler on each rank, at different points, which
    failed or hung. Twice each, as these were races."""
    cfg = config(trainer={"checkpoint_every_n_steps": 100000, "devices": devices, "accelerator": "cpu",
                          "log_batches": True})
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg))
    for attempt in range(2):
        out = tmp_path / f"run{attempt}"
        run = stop_the_job(out, tmp_path / "train.yaml", data)
        said = run.stderr.read()
        assert run.returncode == 1 and "Traceback" not in said, said
        assert re.fullmatch(rf"gtok train: error: {out}: training stopped by SIGTERM at step \d+; [^\n]*\n", said), said
        step = int(re.search(r"at step (\d+);", said).group(1))
        assert torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == step
        rerun = subprocess.run([*GTOK, "train", "-q", "--manifest", str(data), "--model", "encoder", "--out", str(out),
                                "--config", str(tmp_path / "train.yaml"), "--max-steps", str(step + 2)],
                               stderr=subprocess.PIPE, text=True, timeout=180)
        assert rerun.returncode == 0, rerun.stderr
        for rank in range(devices):
            assert launches(out, rank) == [list(range(step)), [step, step + 1]]


class CtrlC(Watch):
    """Presses Ctrl-C (SIGINT to its own process) during the backward pass of step `at`."""

    def __init__(self, log: Path, at: int):
        super().__init__(log)
        self.at = at

    def on_before_backward(self, trainer, module, loss):
        if trainer.global_step == self.at:
            os.kill(os.getpid(), signal.SIGINT)


CTRL_C_RUN = """
import sys
sys.path.insert(0, {tests!r})
from test_train import RESUME_CONFIGS, CtrlC
from gtok.errors import GtokError
from gtok.training.train import train
try:
    train({data!r}, "encoder", {out!r}, RESUME_CONFIGS["plain"], max_steps={steps}, progress=False,
          callbacks=[CtrlC({out!r} + ".batches", at={at})])
except GtokError as exc:
    sys.exit(str(exc))
"""


def test_ctrl_c_saves_the_step_in_progress_and_the_rerun_ends_as_an_uninterrupted_run(tmp_path, data):
    """Ctrl-C in the middle of a step lets it finish, saves it in last.ckpt (as SIGTERM does) and
    stops before the next: the rerun continues there, with the batches and the weights of a run
    never stopped; the command fails in one line that names the checkpoint, and publishes nothing."""
    total = epoch_batches(data, **RESUME_CONFIGS["plain"]["data"]) + 3
    run_training(tmp_path, data, "whole", total, "plain")
    out = tmp_path / "stopped"
    script = CTRL_C_RUN.format(tests=str(Path(__file__).parent), data=str(data), out=str(out), steps=total, at=6)
    stopped = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    assert stopped.returncode == 1, stopped.stderr
    last = out / "checkpoints" / "last.ckpt"
    assert stopped.stderr.splitlines()[-1] == (f"{out}: training interrupted by Ctrl-C at step 7, saved in {last}; the "
                                               "folder's model is as it was; rerun the same command to continue from "
                                               "there."), stopped.stderr
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 7
    assert not (out / "model.ckpt").exists()
    run_training(tmp_path, data, "stopped", total, "plain")
    assert batches(tmp_path, "stopped") == batches(tmp_path, "whole")  # step 6 once: none redone, none lost
    whole, resumed = weights(tmp_path, "whole"), weights(tmp_path, "stopped")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert pd.read_csv(out / "metrics.csv")["step"].tolist() == list(range(total))


class TermInValidation(Watch):
    """Sends SIGTERM to its own process as the validation of step 8 starts."""

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
        if trainer.global_step == 8 and batch_idx == 0:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_during_validation_saves_the_step_and_the_rerun_ends_as_an_uninterrupted_run(tmp_path, data):
    """A preemption during validation lost the steps since the last periodic checkpoint (here 5 to
    8): the step it came after is saved, and the rerun continues from there with the batches and
    weights of a run never stopped; only the interrupted validation's row is missing."""
    for out, watch in (("whole", Watch), ("stopped", TermInValidation)):
        try:
            train(data, "encoder", tmp_path / out, config(), max_steps=12, progress=False,
                  callbacks=[watch(tmp_path / f"{out}.batches")])
        except GtokError as exc:
            assert out == "stopped" and "training stopped by SIGTERM at step 8;" in str(exc)
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 8
    train(data, "encoder", tmp_path / "stopped", config(), max_steps=12, progress=False,
          callbacks=[Watch(tmp_path / "stopped.batches")])
    assert batches(tmp_path, "stopped") == batches(tmp_path, "whole")
    whole, resumed = weights(tmp_path, "whole"), weights(tmp_path, "stopped")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    validated = pd.read_csv(tmp_path / "stopped" / "metrics.csv").dropna(subset=["val_loss"])["step"].tolist()
    assert validated == [3, 11]  # not 7: the validation SIGTERM cut short


@pytest.fixture
def ctrl_c_as_in_a_terminal():
    """SIGINT raising KeyboardInterrupt, as at a terminal: a suite started with nohup, or as a
    background job of a non-interactive shell, inherits it ignored, which gtok train leaves alone."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("ctrl_c_as_in_a_terminal")
@pytest.mark.parametrize("stop, words, step", [(lambda log: CtrlC(log, at=2), "interrupted by Ctrl-C", 3),
                                               (TermInValidation, "stopped by SIGTERM", 8)])
def test_a_run_stopped_in_this_process_can_be_rerun_at_once(tmp_path, data, stop, words, step):
    """Ctrl-C in a notebook, then the same cell again: the loader worker forked while the folder's
    lock was held shared it, and lived on in the stopped run's traceback until garbage collection,
    so the rerun was refused as "another gtok train is running in this folder" (and a `kill -9`
    left the lock held by the orphaned worker for seconds)."""
    out = tmp_path / "run"
    with pytest.raises(GtokError, match=f"training {words} at step {step}"):
        train(data, "encoder", out, config(), max_steps=10, progress=False, callbacks=[stop(tmp_path / "b")])
    train(data, "encoder", out, config(), max_steps=10, progress=False)
    assert torch.load(out / "model.ckpt", map_location="cpu", weights_only=False)["global_step"] == 10


class FullDisk(L.Callback):
    """Fails as Lightning's CSV logger does when the disk fills under it: an OSError without a file name."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_under_the_logs_fails_in_one_line_and_keeps_the_model(tmp_path, data):
    """A full disk while the logs are written (no atomic write of gtok's) is said in one line that
    names the folder, not as Lightning's traceback; the finished model stays, and a rerun continues."""
    final = train(data, "encoder", tmp_path, config(), max_steps=2, universe=UNIVERSE, progress=False)
    before = final.read_bytes()
    with pytest.raises(GtokError, match=rf"^{re.escape(str(tmp_path))}: cannot write it: no space left on device; "
                                        r"training stopped at step 3, the folder's model is as it was"):
        train(data, "encoder", tmp_path, config(), max_steps=4, progress=False, callbacks=[FullDisk()])
    assert final.read_bytes() == before

def test_an_unreadable_checkpoint_is_refused_and_left_alone(tmp_path, data):
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"not a checkpoint")
    (tmp_path / ".gtok-train.lock").touch()  # a folder gtok train wrote into
    with pytest.raises(GtokError, match="last.ckpt: not a checkpoint: it is a text file"):
        train(data, "encoder", tmp_path, config(), max_steps=1, progress=False)
    assert last.read_bytes() == b"not a checkpoint" and not (tmp_path / "previous").exists()


def test_init_from_that_is_no_checkpoint_is_named_by_its_option_before_the_shards_are_read(tmp_path, data):
    """A BED file as classifier.init_from was refused only after every shard was checked, as
    '{path}: not a checkpoint ...', naming no option."""
    bed = tmp_path / "u.bed"
    bed.write_text("chr1\t10\t20\n")
    with pytest.raises(GtokError, match=rf"^config section 'classifier': init_from {bed}: not a checkpoint: it is a "
                                        r"text file \(a BED file\?\)"):
        train(data, "classifier", tmp_path / "run", config(classifier={"init_from": str(bed)}), max_steps=1,
              progress=False)
    assert not (tmp_path / "run").exists()


def test_init_from_refuses_an_encoder_of_another_vocabulary(tmp_path, other_data, encoder_ckpt):
    cfg = config(classifier={"init_from": str(encoder_ckpt)}, trainer={"val_check_interval": 1.0})  # 2 batches an epoch
    with pytest.raises(FingerprintMismatchError, match=f"{other_data}: tokenized with vocabulary"):
        train(other_data, "classifier", tmp_path, cfg, max_steps=1, progress=False)


def test_universe_of_another_vocabulary_is_refused(tmp_path, data, other_universe):
    with pytest.raises(FingerprintMismatchError) as error:
        train(data, "encoder", tmp_path / "run", config(), max_steps=1, universe=other_universe, progress=False)
    assert str(error.value).startswith(f"{other_universe}: vocabulary ")
    assert f"is not the one the training data {data} was tokenized with (" in str(error.value)
    assert "checkpoint" not in str(error.value) and not (tmp_path / "run").exists()


def test_config_mistakes_are_named(tmp_path, data):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_step: 3\n")
    with pytest.raises(GtokError, match="bad.yaml section 'trainer': unknown option.*max_step"):
        train(data, "encoder", tmp_path / "o", bad)
    bad.write_text("optimizer: {}\n")
    with pytest.raises(GtokError, match="unknown section.*optimizer"):
        train(data, "encoder", tmp_path / "o", bad)
    bad.write_text("data:\n  mixture: {shard0: 1, brain: 2}\n")
    with pytest.raises(GtokError, match=r"bad.yaml section 'data': mixture names dataset 'brain', which the data lacks "
                                        r"\(its datasets: 'shard0', 'shard1'\)"):
        train(data, "encoder", tmp_path / "o", bad)
    bad.write_text("data:\n  mixture: {shard0: 1}\n  samples_per_epoch: 15\n  batch_size: 8\ntrainer:\n  devices: 2\n")
    with pytest.raises(GtokError, match="bad.yaml section 'data': samples_per_epoch is 15, below the 16 records"):
        train(data, "encoder", tmp_path / "o", bad, accelerator="cpu")
    bad.write_text("data:\n  mixture: {shard0: -1}\n")
    with pytest.raises(GtokError, match="bad.yaml section 'data': mixture weight of 'shard0' must be a non-negative"):
        train(data, "encoder", tmp_path / "o", bad)
    bad.write_bytes(b"data:\n  seed: \xd0\xff\n")  # not UTF-8 (or a binary file given as the config)
    with pytest.raises(GtokError, match=r"bad.yaml: not a readable YAML config \('utf-8' codec can't decode byte 0xd0"):
        train(data, "encoder", tmp_path / "o", bad)
    with pytest.raises(GtokError, match=r": is a folder; give the config file itself\.$"):
        train(data, "encoder", tmp_path / "o", tmp_path)
    assert not (tmp_path / "o").exists()  # refused before any work


# -- the run folder: a finished model is never lost --------------------------------------------------


def test_out_must_be_new_empty_or_a_folder_gtok_train_wrote(tmp_path, data):
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "snakemake.log").write_text("keep\n")
    with pytest.raises(GtokError, match=f"{out}: is not empty and holds no gtok training run"):
        train(data, "region2vec", out, config(), max_steps=1, progress=False)
    assert snapshot(out) == {"logs/snakemake.log": snapshot(out)["logs/snakemake.log"]}
    assert (out / "logs" / "snakemake.log").read_text() == "keep\n"


def test_a_lightning_folder_with_checkpoints_and_logs_is_not_taken_for_gtoks(tmp_path, data):
    """checkpoints/ and logs/ are names other tools use too: a folder of them that gtok train never
    wrote is refused, and nothing in it is deleted or overwritten."""
    out = tmp_path / "project"
    for name, text in (("checkpoints/epoch=3.ckpt", "mine"), ("logs/important/notes.txt", "precious"),
                       ("batches/b.txt", "data"), ("config.yaml", "cfg"), ("previous/x.txt", "old")):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = snapshot(out)
    with pytest.raises(GtokError, match=f"{out}: is not empty and holds no gtok training run"):
        train(data, "region2vec", out, config(), max_steps=1, progress=False)
    assert snapshot(out) == before


@pytest.mark.parametrize("how", ["checkpoints deleted", "model folder copied in"])
def test_a_finished_model_without_its_run_is_kept_when_another_replaces_it(tmp_path, data, capsys, how):
    """A folder's model whose checkpoints/ are gone (deleted to save space, or a model folder
    copied here) has no run for a new one to set aside: it is kept in previous/ when the new
    run's model replaces it, as every finished model is."""
    out = tmp_path / "run"
    train(data, "region2vec", out, config(), max_steps=2, seed=0, universe=UNIVERSE, progress=False)
    first = (out / "model.ckpt").read_bytes()
    if how == "checkpoints deleted":
        shutil.rmtree(out / "checkpoints")
    else:
        copy = tmp_path / "copy"
        copy.mkdir()
        for name in ("model.ckpt", "config.yaml", "universe.bed.gz"):
            shutil.copyfile(out / name, copy / name)
        out = copy
    capsys.readouterr()
    train(data, "region2vec", out, config(), max_steps=2, seed=1, universe=UNIVERSE, progress=False)
    (kept,) = (out / "previous").iterdir()
    assert (kept / "model.ckpt").read_bytes() == first != (out / "model.ckpt").read_bytes()
    assert load_pretrained(kept)[2]["hyper_parameters"]["config"]["seed"] == 0
    assert f"the folder's model of step 2 is kept in {kept}; this run's model replaces it." in capsys.readouterr().err


def one_class_manifest(folder: Path, data: Path) -> Path:
    """Records of label A only."""
    folder.mkdir()
    beds = sorted(str(p) for p in data.parent.glob("A_0_*.bed"))
    (folder / "labels.tsv").write_text("name\tlabel\n" + "".join(f"{Path(b).stem}\tA\n" for b in beds))
    shard = tokenize_to_shard(beds, str(UNIVERSE), str(folder / "a.gtok"), labels_sheet=str(folder / "labels.tsv"),
                              progress=False)
    write_manifest(folder / "m.json", [shard])
    return folder / "m.json"


def test_a_rerun_that_fails_its_checks_changes_nothing(tmp_path, data):
    """Every option, the data and the hardware are checked before the folder changes: the finished
    model stays, and a new folder is not even created."""
    out = tmp_path / "run"
    train(data, "region2vec", out, config(), max_steps=2, universe=UNIVERSE, progress=False)
    before = snapshot(out)
    batches = epoch_batches(data)
    assert -(-batches // 2) < 12 <= batches  # 12 steps fit one process's epoch, not two processes' halves
    failing = [
        ({"devices": [0, 1]}, "trainer.devices is [0, 1], but training runs on the CPU", "region2vec", data),
        ({"config": config(trainer={"val_check_interval": 10**6})},
         f"trainer.val_check_interval is {10**6} steps, but an epoch has {batches} batches", "region2vec", data),
        ({"config": config(trainer={"devices": 2, "val_check_interval": 12})},
         f"an epoch has {-(-batches // 2)} batches per process", "region2vec", data),
        ({}, "the classifier learns to tell label classes apart, and this data has 1 (A)", "classifier",
         one_class_manifest(tmp_path / "one", data)),
    ]
    if not torch.cuda.is_available():
        failing.append(({"accelerator": "gpu"}, "trainer.accelerator is gpu, but this machine has no GPU", "region2vec", data))
    for arguments, words, model, manifest in failing:
        cfg = arguments.pop("config", config())
        for folder in (out, tmp_path / "new"):
            with pytest.raises(GtokError, match=re.escape(words)):
                train(manifest, model, folder, cfg, max_steps=3, progress=False, **arguments)
        assert snapshot(out) == before and not (tmp_path / "new").exists()
    assert load_pretrained(out)[2]["global_step"] == 2


def test_every_finished_run_is_kept(tmp_path, data):
    """Seeds 0, 1, 2 into one folder: the folder holds seed 2's model, and previous/ each earlier
    one, whole (a model folder of its own); files that are not gtok's stay where they are."""
    out = tmp_path / "run"
    finished = {}
    for seed in (0, 1, 2):
        train(data, "region2vec", out, config(), max_steps=1, seed=seed, universe=UNIVERSE, progress=False)
        finished[seed] = (out / "model.ckpt").read_bytes()
        if seed == 0:
            (out / "summary.html").write_text("the workflow's")
            (out / "eval").mkdir()
            (out / "eval" / "metrics.tsv").write_text("evaluate's")
    kept = sorted((out / "previous").iterdir())
    assert len(kept) == 2
    for seed, folder in zip((0, 1), kept):
        assert (folder / "model.ckpt").read_bytes() == finished[seed]
        model, tok, ckpt = load_pretrained(folder)
        assert ckpt["hyper_parameters"]["config"]["seed"] == seed and tok.fingerprint == model.vocab.fingerprint
        assert yaml.safe_load((folder / "config.yaml").read_text())["options"]["seed"] == seed
    assert load_pretrained(out)[2]["hyper_parameters"]["config"]["seed"] == 2
    assert (out / "summary.html").read_text() == "the workflow's" and (out / "eval" / "metrics.tsv").is_file()


KILLED_SETTING_ASIDE = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_train import config
import gtok.training.run as run
from gtok.training.train import train
link = run._link
def killed_at(source, target):  # kill -9 (a node lost) half-way through keeping the old model
    if Path(target).name == {at!r}:
        os.kill(os.getpid(), signal.SIGKILL)
    link(source, target)
run._link = killed_at
train({data!r}, "region2vec", {out!r}, config(), max_steps=1, seed=1, progress=False)
"""


@pytest.mark.parametrize("at", ["universe.bed.gz", "metrics.csv"])
def test_a_kill_while_the_old_model_is_set_aside_keeps_it_whole(tmp_path, data, at):
    """A new run links the folder's model into previous/TIME/ file by file. Killed half-way, the
    rerun took the model.ckpt already linked for the whole model kept, and then replaced the rest
    (its config.yaml, its universe), so previous/ held a checkpoint without its folder's files."""
    out = tmp_path / "run"
    train(data, "region2vec", out, config(), max_steps=1, universe=UNIVERSE, progress=False)
    script = KILLED_SETTING_ASIDE.format(tests=str(Path(__file__).parent), data=str(data), out=str(out), at=at)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    train(data, "region2vec", out, config(), max_steps=1, seed=1, progress=False)
    (kept,) = [p.parent for p in (out / "previous").glob("*/model.ckpt")]
    assert {"model.ckpt", "config.yaml", "universe.bed.gz", "metrics.csv", "loss.png"} <= {p.name for p in kept.iterdir()}
    assert yaml.safe_load((kept / "config.yaml").read_text())["options"]["seed"] == 0
    assert load_pretrained(kept)[2]["hyper_parameters"]["config"]["seed"] == 0


def load_pretrained(path):
    """(model, tokenizer, checkpoint) of what a model path stands for, as embed and evaluate load it."""
    from gtok.inference.loading import load_model
    from gtok.models import read_checkpoint
    from gtok.pretrained import model_checkpoint
    from gtok.tokenizer import Tokenizer

    loaded = load_model(path)
    return loaded.model, Tokenizer.for_model(loaded.expected), read_checkpoint(model_checkpoint(path))


INTERRUPTED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from test_train import Watch, config
from gtok.training.train import train
train({data!r}, "region2vec", {out!r}, config(trainer={{"checkpoint_every_n_steps": 2}}), max_steps=50, seed=1,
      progress=False, callbacks=[Watch({out!r} + ".batches", kill_at=3)])
"""


def test_only_the_finished_model_is_loaded_from_a_folder(tmp_path, data):
    """A new run killed after its first checkpoint leaves the folder's finished model (seed 0) as
    the model, consistent with its config.yaml; a folder whose files are of two runs is refused."""
    from gtok.inference.embed import embed_regions
    from gtok.pretrained import model_checkpoint
    from gtok.tokenizer import Tokenizer

    out = tmp_path / "run"
    train(data, "region2vec", out, config(), max_steps=2, seed=0, universe=UNIVERSE, progress=False)
    bed = sorted(data.parent.glob("A_0_*.bed"))[0]
    vector = embed_regions(out, [bed])
    script = INTERRUPTED_RUN.format(tests=str(Path(__file__).parent), data=str(data), out=str(out))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 2 and last["hyper_parameters"]["config"]["seed"] == 1  # the new run's checkpoint

    assert model_checkpoint(out) == out / "model.ckpt"
    _, tok, ckpt = load_pretrained(out)
    assert ckpt["global_step"] == 2 and ckpt["hyper_parameters"]["config"]["seed"] == 0
    assert Tokenizer.from_pretrained(out).fingerprint == tok.fingerprint
    np.testing.assert_array_equal(embed_regions(out, [bed]), vector)

    shutil.copyfile(out / "checkpoints" / "last.ckpt", out / "model.ckpt.tmp")  # a model of another run
    os.replace(out / "model.ckpt.tmp", out / "model.ckpt")
    with pytest.raises(GtokError, match=f"{out}: model.ckpt .* is not the model its config.yaml describes"):
        load_pretrained(out)
    (out / "model.ckpt").unlink()
    with pytest.raises(GtokError, match=f"{out}: holds no finished model .*or give {out}/checkpoints/last.ckpt; its "
                                        f"latest earlier model is {out}/previous/"):
        embed_regions(out, [bed])


def test_the_lock_of_a_failed_launch_leaves_a_folder_as_new_as_it_was(tmp_path):
    from gtok.pretrained import TRAIN_LOCK_FILE
    from gtok.training.run import check_run_folder, claim_folder

    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(RuntimeError), claim_folder(out):
        raise RuntimeError
    assert [p.name for p in out.iterdir()] == [TRAIN_LOCK_FILE] and check_run_folder(out) == out  # still a new folder
    new = tmp_path / "new"
    with pytest.raises(RuntimeError), claim_folder(new):
        raise RuntimeError
    assert not new.exists()  # created by the launch, and removed with it


class Pause(L.Callback):
    """At global step 1, creates `paused` and waits until `go` exists: a run caught mid-training."""

    def __init__(self, paused: str, go: str):
        self.paused, self.go = Path(paused), Path(go)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == 1:
            self.paused.touch()
            while not self.go.exists():
                time.sleep(0.05)


PAUSED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from test_train import Pause, config
from gtok.training.train import train
train({data!r}, "region2vec", {out!r}, config(), max_steps=4, seed=1, progress=False,
      callbacks=[Pause({out!r} + ".paused", {out!r} + ".go")])
"""


def test_a_second_run_into_a_busy_folder_is_refused_before_it_changes_anything(tmp_path, data):
    """Two `gtok train` into one folder would overwrite each other's checkpoints: the second is
    refused in one line while the first trains, and the first then finishes and publishes."""
    out = tmp_path / "run"
    train(data, "region2vec", out, config(), max_steps=2, seed=0, universe=UNIVERSE, progress=False)
    assert json.loads((out / "summary.json").read_text())["global_step"] == 2
    assert (out / "summary.json").read_bytes() == (out / "logs" / "summary.json").read_bytes()
    model = snapshot(out)["model.ckpt"]
    script = PAUSED_RUN.format(tests=str(Path(__file__).parent), data=str(data), out=str(out))
    first = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not Path(f"{out}.paused").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        second = subprocess.run([*GTOK, "train", "-q", "--manifest", str(data), "--model", "region2vec", "--out", str(out),
                                 "--max-steps", "3", "--universe", str(UNIVERSE)], capture_output=True, text=True)
        one_line_error(second, f"{out}: another gtok train is running in this folder")
        assert snapshot(out)["model.ckpt"] == model  # the finished model untouched
    finally:
        Path(f"{out}.go").touch()
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert json.loads((out / "summary.json").read_text())["global_step"] == 4  # the first run's, published
    assert torch.load(out / "model.ckpt", map_location="cpu", weights_only=False)["global_step"] == 4


# -- command line and embedding --------------------------------------------------------------------


def test_cli_train_then_embed(tmp_path, data, monkeypatch):
    import yaml

    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(config()))
    run = subprocess.run([*GTOK, "train", "--manifest", str(data), "--model", "region2vec", "--out", str(tmp_path / "r2v"),
                          "--config", str(cfg), "--max-steps", "3", "--universe", str(UNIVERSE)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "Epoch 0" in run.stdout  # the progress bar
    assert run.stdout.splitlines()[-1] == f"trained region2vec: {tmp_path / 'r2v' / 'model.ckpt'}"
    beds = sorted(str(p) for p in data.parent.glob("B_0_*.bed"))[:3]
    out = tmp_path / "emb" / "vectors.npy"
    out.parent.mkdir()
    cache = tmp_path / "cache"
    monkeypatch.setenv("GTOK_CACHE_DIR", str(cache))
    assert main(["embed", "-q", "--checkpoint", str(tmp_path / "r2v/model.ckpt"), "-o", str(out), *beds]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["vectors.names.txt", "vectors.npy"]
    assert not cache.exists()  # nothing else written, not even the universe cache
    assert np.load(out).shape == (3, 8)
    assert (out.parent / "vectors.names.txt").read_text().split() == [Path(b).stem for b in beds]


def test_the_batch_log_gives_each_batch_the_step_it_counts_towards(tmp_path, data):
    """With gradient accumulation two batches make one step: both carry its number."""
    out = tmp_path / "run"
    train(data, "region2vec", out, config(trainer={"accumulate_grad_batches": 2, "log_batches": True}, data={"val_fraction": 0}),
          max_steps=2, universe=UNIVERSE, progress=False)
    rows = [json.loads(line) for line in (out / "batches" / "rank-0.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 0, 1, 1]


def test_training_into_a_read_only_folder_is_one_line(tmp_path, data, encoder_ckpt):
    from test_paths import mount_tmpfs

    with mount_tmpfs(tmp_path / "ro", "size=20m") as ro:
        shutil.copytree(encoder_ckpt.parent, ro / "run")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        proc = gtok("train", "-q", "-m", data, "--model", "encoder", "--out", ro / "run", "--max-steps", "1",
                    "-u", UNIVERSE)
        one_line_error(proc, f"{ro / 'run'}: cannot train into it: read-only file system")


def test_a_rerun_that_writes_an_option_as_1_0_instead_of_1_keeps_the_model_usable(tmp_path, data):
    """`val_fraction: 0` then `0.0`: one option (the rerun continues the finished run and trains
    nothing), so the model it publishes again must still be the one its config.yaml describes."""
    from gtok.inference.loading import load_model

    out = tmp_path / "run"
    train(data, "region2vec", out, config(data={"val_fraction": 0}), max_steps=2, universe=UNIVERSE, progress=False)
    train(data, "region2vec", out, config(data={"val_fraction": 0.0}), max_steps=2, universe=UNIVERSE, progress=False)
    assert load_model(out).name == "region2vec" and not (out / "previous").exists()


def test_extending_a_finished_run_keeps_its_shorter_model(tmp_path, data, capsys):
    """max_steps 2, then 4: the same run, continued; the step-2 model survives in previous/ and
    embeds as it did, and a rerun that trains nothing keeps no second copy."""
    from gtok.inference.embed import embed_regions

    out = tmp_path / "run"
    bed = sorted(data.parent.glob("A_0_*.bed"))[0]
    train(data, "region2vec", out, config(), max_steps=2, universe=UNIVERSE, progress=False)
    short = embed_regions(out, [bed])
    train(data, "region2vec", out, config(), max_steps=4, universe=UNIVERSE, progress=False)
    (kept,) = (out / "previous").iterdir()
    assert "the folder's model of step 2 is kept in" in capsys.readouterr().err
    assert yaml.safe_load((kept / "config.yaml").read_text())["run"]["step"] == 2
    np.testing.assert_array_equal(embed_regions(kept, [bed]), short)
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["step"] == 4
    train(data, "region2vec", out, config(), max_steps=4, universe=UNIVERSE, progress=False)
    assert len(list((out / "previous").iterdir())) == 1


def test_a_model_folder_whose_publication_was_killed_half_way_embeds_as_its_old_model(tmp_path, data, encoder_ckpt):
    """A `kill -9` between the renames of a new model into the folder (here after model.ckpt's):
    loading the folder first undoes the half-publication, so the old model is served whole."""
    from test_paths import KILLED_PUBLICATION

    from gtok.inference.embed import embed_regions

    folder = tmp_path / "model"
    shutil.copytree(encoder_ckpt.parent, folder, ignore=shutil.ignore_patterns("checkpoints", "logs", "previous"))
    bed = sorted(data.parent.glob("A_0_*.bed"))[0]
    expected = embed_regions(folder, [bed])
    proc = subprocess.run([sys.executable, "-c", KILLED_PUBLICATION, str(folder), "2"])  # metrics.csv, model.ckpt
    assert proc.returncode == -9 and (folder / "model.ckpt").read_text() == "new model.ckpt"  # a mix, for now
    np.testing.assert_array_equal(embed_regions(folder, [bed]), expected)
    assert not [p for p in folder.iterdir() if "gtok-staged" in p.name]


def test_embed_regions_one_vector_per_input_in_order(data, encoder_ckpt):
    from gtok.inference.embed import embed_regions

    a, b = sorted(data.parent.glob("A_0_*.bed"))[0], sorted(data.parent.glob("C_1_*.bed"))[0]
    vectors = embed_regions(encoder_ckpt, [a, b, a], batch_size=2)
    assert vectors.shape == (3, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0], vectors[2], rtol=1e-5, atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])
    np.testing.assert_allclose(embed_regions(encoder_ckpt, [b])[0], vectors[1], rtol=1e-4, atol=1e-5)


def test_embedding_warns_of_a_bed_file_of_other_chromosome_names_and_refuses_fragments(tmp_path, data, encoder_ckpt):
    """As tokenize does: a BED file named `1`, not `chr1`, would embed as `<unk>` alone; a
    fragments file is many cells, not one region set."""
    from gtok.inference.embed import embed_regions

    bed = sorted(data.parent.glob("A_0_*.bed"))[0]
    renamed = tmp_path / "nochr.bed"
    renamed.write_text(bed.read_text().replace("chr", ""))
    with pytest.warns(UserWarning, match=f"{renamed}: none of its chromosomes .* is in the universe"):
        embed_regions(encoder_ckpt, [bed, renamed])
    fragments = tmp_path / "cells.tsv"
    fragments.write_text("chr1\t100\t200\tAAAC-1\t1\nchr1\t300\t400\tAAAC-1\t2\n")
    one_line_error(gtok("embed", "-q", "-c", encoder_ckpt, "-o", tmp_path / "e.npy", bed, fragments),
                   f"{fragments}: a fragments file holds many cells")
    assert not (tmp_path / "e.npy").exists()


@pytest.mark.parametrize("failing", ["vectors", "names"])
def test_embed_replaces_the_vectors_and_their_names_together(tmp_path, data, encoder_ckpt, monkeypatch, failing):
    """A full disk while writing either file leaves the earlier pair as it was: never new vectors
    beside the names of other records."""
    import errno

    from gtok.inference import embed

    beds = [str(p) for p in sorted(data.parent.glob("A_0_*.bed"))[:3]]
    out = str(tmp_path / "e.npy")
    embed.embed_to_files(str(encoder_ckpt), beds[:2], out, None, None, 8, False)
    before = snapshot(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if failing == "vectors":
        monkeypatch.setattr(embed.np, "save", full)
    else:
        monkeypatch.setattr(embed.Path, "write_text", full)
    named = tmp_path / ("e.npy" if failing == "vectors" else "e.names.txt")  # the file, not its folder
    with pytest.raises(GtokError, match=rf"^{named}: cannot write it: no space left on device; nothing was written "
                                        r"\(the existing file is unchanged\)\.$"):
        embed.embed_to_files(str(encoder_ckpt), beds, out, None, None, 8, False)
    assert snapshot(tmp_path) == before


def test_embed_leaves_a_names_file_it_did_not_write_alone(tmp_path, data, encoder_ckpt):
    """OUT.names.txt is replaced only beside an OUT.npy of an embedding: any other file of that
    name is the user's."""
    bed = sorted(data.parent.glob("A_0_*.bed"))[0]
    notes = tmp_path / "e.names.txt"
    notes.write_text("my notes\n")
    one_line_error(gtok("embed", "-q", "-c", encoder_ckpt, "-o", tmp_path / "e.npy", bed),
                   f"{notes}: exists and is not a names file of an embedding; refusing to overwrite it")
    assert notes.read_text() == "my notes\n" and not (tmp_path / "e.npy").exists()
    notes.unlink()
    assert gtok("embed", "-q", "-c", encoder_ckpt, "-o", tmp_path / "e.npy", bed).returncode == 0
    other = sorted(data.parent.glob("A_0_*.bed"))[1]  # another embedding replaces its own pair
    assert gtok("embed", "-q", "-c", encoder_ckpt, "-o", tmp_path / "e.npy", bed, other).returncode == 0
    assert (tmp_path / "e.names.txt").read_text().split() == [bed.name.removesuffix(".bed"), other.name.removesuffix(".bed")]


def test_embedding_crops_to_the_max_length_of_the_model_folders_config(tmp_path, encoder_ckpt):
    """config.yaml is the one copy of max_length inference reads (a checkpoint of an unfinished run
    falls back on its own record)."""
    import shutil

    import yaml

    from gtok.inference.embed import Embedder

    folder = tmp_path / "model"
    shutil.copytree(encoder_ckpt.parent, folder)
    assert Embedder(folder).max_length == 32
    card = yaml.safe_load((folder / "config.yaml").read_text())
    card["data"]["max_length"] = 8
    (folder / "config.yaml").write_text(yaml.safe_dump(card))
    assert Embedder(folder).max_length == 8
    assert Embedder(folder / "checkpoints" / "last.ckpt").max_length == 32


def test_embed_anndata_and_h5ad_output(tmp_path, encoder_ckpt):
    import anndata as ad

    from gtok.inference.embed import embed_anndata

    pbmc = GTARS / "pbmc_hg38.h5ad"
    out = tmp_path / "cells.h5ad"
    assert main(["embed", "-q", "-c", str(encoder_ckpt), "-o", str(out), str(pbmc)]) == 0
    written = ad.read_h5ad(out)
    original = ad.read_h5ad(pbmc)
    assert written.obsm["X_gtok"].shape == (original.n_obs, 16)
    assert list(written.obs_names) == list(original.obs_names)
    np.testing.assert_allclose(written.obsm["X_gtok"], embed_anndata(encoder_ckpt, original), rtol=1e-4, atol=1e-5)


def test_embed_anndata_reads_a_layer_or_a_modality_and_so_does_the_command_line(tmp_path, encoder_ckpt):
    """`layer=` and `modality=` in Python, --layer and --modality for `gtok embed`, which writes an
    .h5mu's vectors into the modality's obsm; the same vectors as the plain .h5ad's."""
    import anndata as ad
    import h5py

    from gtok.inference.embed import embed_anndata

    cells = ad.read_h5ad(GTARS / "pbmc_hg38.h5ad")
    expected = embed_anndata(encoder_ckpt, cells)
    layered = ad.AnnData(obs=cells.obs, var=cells.var, layers={"counts": cells.X})
    np.testing.assert_allclose(embed_anndata(encoder_ckpt, layered, layer="counts"), expected, rtol=1e-5, atol=1e-6)
    h5mu = tmp_path / "multiome.h5mu"
    write_h5mu(h5mu, {"peaks": cells})
    np.testing.assert_allclose(embed_anndata(encoder_ckpt, h5mu, modality="peaks"), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(GtokError, match="no modality 'atac' .*modalities present: peaks.*modality= in Python"):
        embed_anndata(encoder_ckpt, h5mu)
    out = tmp_path / "embedded.h5mu"
    assert main(["embed", "-q", "-c", str(encoder_ckpt), "--modality", "peaks", "-o", str(out), str(h5mu)]) == 0
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["mod/peaks/obsm/X_gtok"][:], expected, rtol=1e-5, atol=1e-6)
    one_line_error(gtok("embed", "-q", "-c", encoder_ckpt, "--layer", "counts", "-o", tmp_path / "e.npy",
                        BEDS[0]), "--layer, --modality and --tile-width apply to an .h5ad")


def test_the_python_embedding_api_refuses_what_it_cannot_use_in_one_line(data, encoder_ckpt):
    """What the command line checks, Python checks too: the batch size, the device, the kind of
    input; and nothing to embed is no vectors of the model's width."""
    import anndata as ad

    from gtok.inference.embed import embed_anndata, embed_regions

    bed = sorted(data.parent.glob("A_0_*.bed"))[0]
    for size in (0, -1, 2.5, True):
        with pytest.raises(GtokError, match=f"batch_size must be a whole number of at least 1, not {size!r}"):
            embed_regions(encoder_ckpt, [bed], batch_size=size)
    with pytest.raises(GtokError, match="device='gpu' is not a device; give cpu, cuda or cuda:N"):
        embed_regions(encoder_ckpt, [bed], device="gpu")
    with pytest.raises(GtokError, match="takes a list of region sets .* not one str; for one region set pass"):
        embed_regions(encoder_ckpt, str(bed))
    with pytest.raises(GtokError, match="takes a list of region sets .* not one DataFrame"):
        embed_regions(encoder_ckpt, pd.DataFrame({"chrom": ["chr1"], "start": [1], "end": [2]}))
    with pytest.raises(GtokError, match="cannot read cells from a list; give an AnnData, a MuData"):
        embed_anndata(encoder_ckpt, [1, 2])
    cells = ad.read_h5ad(GTARS / "pbmc_hg38.h5ad")
    with pytest.raises(GtokError, match="the AnnData has no modality 'rna': modality= applies to a MuData"):
        embed_anndata(encoder_ckpt, cells, modality="rna")
    assert embed_regions(encoder_ckpt, []).shape == (0, 16)
    assert embed_anndata(encoder_ckpt, cells[:0].copy()).shape == (0, 16)
    with pytest.warns(UserWarning, match="var is empty .*every cell's tokens are <unk> alone"):
        assert embed_anndata(encoder_ckpt, cells[:, :0].copy()).shape == (cells.n_obs, 16)


def test_embed_refuses_a_universe_of_another_vocabulary(data, encoder_ckpt, other_universe):
    from gtok.inference.embed import embed_regions

    bed = sorted(data.parent.glob("A_0_*.bed"))[0]
    with pytest.raises(FingerprintMismatchError, match="is not the one .* was trained on"):
        embed_regions(encoder_ckpt, [bed], universe=other_universe)


def test_embed_needs_a_universe_when_the_checkpoint_has_lost_it(tmp_path, data):
    import shutil

    from gtok.inference.embed import embed_regions

    universe = tmp_path / "universe.bed"
    shutil.copy(UNIVERSE, universe)
    last = train(data, "region2vec", tmp_path / "run", config(), max_steps=1, progress=False, universe=universe)
    (tmp_path / "run" / "universe.bed.gz").unlink()
    universe.unlink()
    bed = sorted(data.parent.glob("A_0_*.bed"))[0]
    with pytest.raises(GtokError, match="its universe .* is gone .* pass --universe"):
        embed_regions(last, [bed])
    assert embed_regions(last, [bed], universe=UNIVERSE).shape == (1, 8)


def test_a_model_trained_from_a_manifest_alone_carries_its_universe(tmp_path):
    """As users meet it: tokenize, manifest, train without --universe, move the model folder away and
    delete the universe file; the folder still embeds, in a fresh process."""
    import shutil

    import yaml

    universe = tmp_path / "universe.bed"
    shutil.copy(UNIVERSE, universe)
    manifest = write_data(tmp_path / "data", universe, per_class=2, shards=1)
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(config(trainer={"val_check_interval": 1})))
    run = subprocess.run([*GTOK, "train", "-q", "--manifest", str(manifest), "--model", "region2vec", "--out",
                          str(tmp_path / "run"), "--config", str(cfg), "--max-steps", "1"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    moved = tmp_path / "elsewhere" / "model"
    shutil.move(tmp_path / "run", moved)
    universe.unlink()
    bed = sorted((tmp_path / "data").glob("A_0_*.bed"))[0]
    out = tmp_path / "v.npy"
    run = subprocess.run([*GTOK, "embed", "-q", "--model", str(moved), "-o", str(out), str(bed)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    from gtok.inference.embed import embed_regions

    np.testing.assert_allclose(np.load(out), embed_regions(moved, [bed], universe=UNIVERSE), rtol=1e-6)


def test_data_tokenized_against_an_index_bundles_its_universe(tmp_path):
    """The workflow tokenizes against the universe index: the model folder carries the BED it was
    built from while it exists, and the index's own regions when only the index is left."""
    import gzip
    import shutil

    from gtok.build import build_index
    from gtok.tokenizer import Tokenizer

    universe, index = tmp_path / "universe.bed", tmp_path / "universe.gtokidx"
    shutil.copy(UNIVERSE, universe)
    build_index(str(universe), str(index))
    manifest = write_data(tmp_path / "data", universe, per_class=2, shards=1, index=index)
    small = config(trainer={"val_check_interval": 1})
    train(manifest, "region2vec", tmp_path / "a", small, max_steps=1, progress=False)
    assert gzip.decompress((tmp_path / "a" / "universe.bed.gz").read_bytes()) == UNIVERSE.read_bytes()
    universe.unlink()
    train(manifest, "region2vec", tmp_path / "b", small, max_steps=1, progress=False)
    assert Tokenizer.from_pretrained(tmp_path / "b").fingerprint == Tokenizer.from_bed(UNIVERSE).fingerprint


def test_a_trained_folder_is_a_self_contained_model(tmp_path, data):
    """Moved elsewhere, with the training universe gone, the folder still embeds, in a fresh process."""
    import shutil

    import yaml

    from gtok.tokenizer import Tokenizer

    universe = tmp_path / "universe.bed"
    shutil.copy(UNIVERSE, universe)
    train(data, "region2vec", tmp_path / "run", config(), max_steps=1, progress=False, universe=universe)
    moved = tmp_path / "elsewhere" / "model"
    shutil.move(tmp_path / "run", moved)
    universe.unlink()
    assert {"model.ckpt", "universe.bed.gz", "config.yaml"} <= {p.name for p in moved.iterdir()}
    card = yaml.safe_load((moved / "config.yaml").read_text())
    assert card["model"] == "region2vec" and card["vocabulary"]["fingerprint"] == Tokenizer.from_bed(UNIVERSE).fingerprint
    assert Tokenizer.from_pretrained(moved).fingerprint == card["vocabulary"]["fingerprint"]
    bed = sorted(data.parent.glob("A_0_*.bed"))[0]
    out = tmp_path / "v.npy"
    run = subprocess.run([sys.executable, "-m", "gtok.cli", "embed", "-q", "--model", str(moved), "-o", str(out), str(bed)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    from gtok.inference.embed import embed_regions

    np.testing.assert_allclose(np.load(out), embed_regions(moved / "checkpoints" / "last.ckpt", [bed]), rtol=1e-5)


@pytest.mark.parametrize("folder", [True, False], ids=["a folder without a model", "a BED file"])
def test_a_path_that_is_not_a_model_gets_one_line(tmp_path, data, folder):
    path = tmp_path / "empty" if folder else Path(UNIVERSE)
    if folder:
        path.mkdir()
    run = subprocess.run([sys.executable, "-m", "gtok.cli", "embed", "--model", str(path), "-o", str(tmp_path / "v.npy"),
                          str(sorted(data.parent.glob("A_0_*.bed"))[0])], capture_output=True, text=True)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and str(path) in run.stderr


def test_each_loader_is_the_next_data_epoch_unless_the_last_one_went_unused(data):
    from gtok.data.datamodule import GTokDataModule

    dm = GTokDataModule(data, **DATA)
    digests = []
    for _ in range(2):
        digests.append([hashlib.sha1(b["input_ids"].numpy().tobytes()).hexdigest() for b in dm.train_dataloader()])
    assert len(digests[0]) == len(digests[1]) == epoch_batches(data) and digests[0] != digests[1]
    assert dm.train_set.epoch == 1
    dm.train_dataloader()  # never iterated (as when Lightning ends an epoch without fetching)
    dm.train_dataloader()
    assert dm.train_set.epoch == 2


def test_shards_are_checked_once_per_process_and_against_the_manifest(tmp_path, data, monkeypatch):
    import json

    from gtok.data.datamodule import GTokDataModule, check_shards
    from gtok.errors import ShardFormatError
    from gtok.formats.shard import ShardReader

    checked = []
    crc_check = ShardReader.check_bytes
    monkeypatch.setattr(ShardReader, "check_bytes",
                        lambda self, sha256=False: checked.append(self.path.name) or crc_check(self, sha256))
    dm = GTokDataModule(data, **DATA)
    dm.setup("fit")
    assert dm.val_set is not None and sorted(checked) == ["shard0.gtok", "shard1.gtok"]  # not again for validation
    dm.train_set = None
    dm.setup("fit")  # data sets opened again (as for another rank): not the shards checked again
    assert len(checked) == 2

    listed = json.loads(data.read_text())
    for entry in listed["shards"]:
        entry["path"] = str(data.parent / entry["path"])
    listed["shards"][1]["tokens"] += 1
    listed["tokens"] += 1  # the totals agree with the edit: only the shard itself tells
    edited = tmp_path / "manifest.json"
    edited.write_text(json.dumps(listed))
    with pytest.raises(ShardFormatError, match=r"shard1.gtok: has tokens (\d+); .*manifest.json says tokens (?!\1)\d+ \(the file changed"):
        check_shards(edited)


# -- hostile input (once tests/test_edge_cases.py): one-line errors or correct tokens, nothing touched --


@pytest.mark.slow
@pytest.mark.parametrize("kind, words", [("bed", "it is a text file (a BED file?)"), ("shard", "it is a .gtok shard"),
                                         ("empty", "it is an empty file"), ("program", "it is not a file torch wrote")])
def test_a_checkpoint_that_is_a_bed_file_or_a_shard(tmp_path, shard, kind, words):
    path = {"bed": BEDS[0], "shard": shard, "empty": tmp_path / "empty.ckpt", "program": tmp_path / "ls.ckpt"}[kind]
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "ls.ckpt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(64))  # an executable's header
    one_line_error(gtok("embed", "-q", "-c", path, "-o", tmp_path / "e.npy", BEDS[1]), "not a checkpoint: " + words)
    assert not (tmp_path / "e.npy").exists()


@pytest.mark.slow
def test_an_id_beyond_the_vocabulary_is_refused_before_training_without_verify(tmp_path):
    from gtok.tokenizer import Tokenizer

    universe = tmp_path / "u.bed"  # 93 regions and 7 special tokens: 100 ids
    universe.write_text("".join(f"chr1\t{i * 100}\t{i * 100 + 50}\n" for i in range(93)))
    fingerprint = Tokenizer.from_bed(universe).fingerprint
    path = write_shard(tmp_path / "s.gtok", [("a", np.array([1, 2, 3])), ("b", np.array([4, 5]))], 100, fingerprint)
    manifest = tmp_path / "m.json"
    write_manifest(manifest, [path])
    data = bytearray(path.read_bytes())
    data[128:130] = (5000).to_bytes(2, "little")  # a damaged id; with verify: false no CRC is checked
    path.write_bytes(bytes(data))
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"verify": False, "val_fraction": 0}}))
    proc = gtok("train", "-q", "-m", manifest, "--model", "encoder", "--out", tmp_path / "run", "-c", cfg, "--max-steps", "1",
                "-u", universe)
    one_line_error(proc, "s.gtok: token id 5000 does not fit the vocabulary of size 100")
    assert not (tmp_path / "run" / "model.ckpt").exists()


@pytest.mark.slow
def test_train_quiet_prints_no_lightning_tips(tiny_model):
    assert tiny_model.is_file()  # the fixture ran `gtok train -q` and checked its output
