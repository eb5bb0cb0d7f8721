"""Several processes: DDP on the CPU (gloo) with Lightning spawning the ranks, and elastic resume:
a run stopped mid-epoch at one world size continues at another with exactly the records not yet
seen (this file doubles as the script each launch runs). Each test runs with the built-in encoder
and with a brought LightningModule (docs/models.md's example, docs/examples/bag_of_regions.py), and with
the encoder once more on a weighted mixture of the two shards' datasets (repeats and subsamples)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

RECORDS = 26  # 13 batches of 2: an odd number of batches, so a world of 2 or 3 pads
BATCH = 2
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
MODELS = ["encoder", "bag_of_regions:BagOfRegions"]
MIXTURE = {"a": 3, "b": 1}  # 26 draws: 20 of a's 11 records (repeated), 6 of b's 15 (subsampled)
RUNS = [pytest.param("encoder", False, id="encoder"), pytest.param(MODELS[1], False, id="brought"),
        pytest.param("encoder", True, id="encoder-mixture")]


def make_data(folder: Path) -> Path:
    """Two shards, of datasets a and b, that record their (real) universe, as `gtok tokenize` writes them."""
    from gtok.formats.manifest import write_manifest
    from gtok.formats.metadata import ShardMeta, universe_record
    from gtok.formats.shard import write_shard
    from gtok.tokenizer import Tokenizer

    universe = folder / "universe.bed"
    universe.write_text("".join(f"chr1\t{i * 100}\t{i * 100 + 50}\n" for i in range(200)))
    tok = Tokenizer.from_bed(universe)
    record = universe_record(universe, tok.fingerprint)
    rng = np.random.default_rng(0)
    records = [(f"r{i}", rng.integers(0, 200, int(rng.integers(2, 12))), None) for i in range(RECORDS)]
    write_shard(folder / "a.gtok", records[:11], tok.vocab_size, tok.fingerprint, ShardMeta("a", record))
    write_shard(folder / "b.gtok", records[11:], tok.vocab_size, tok.fingerprint, ShardMeta("b", record))
    write_manifest(folder / "m.json", [folder / "a.gtok", folder / "b.gtok"])
    return folder / "m.json"


def launch(manifest: Path, out: Path, devices: int, max_steps: int, model: str, mixed: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(EXAMPLES), *filter(None, [os.environ.get("PYTHONPATH")])]))
    argv = [str(manifest), str(out), str(devices), str(max_steps), model, "mixture" if mixed else "plain"]
    return subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, timeout=600, env=env)


def data_options(mixed: bool) -> dict:
    return {"batch_size": BATCH, "val_fraction": 0, "num_workers": 0, "max_length": 16,
            **({"mixture": MIXTURE, "samples_per_epoch": RECORDS} if mixed else {})}


def epoch_order(manifest: Path, mixed: bool) -> list[int]:
    """The first epoch's records in order, as one process reads them: what the ranks split."""
    from gtok.data.dataset import GTokDataset

    options = {k: v for k, v in data_options(mixed).items() if k not in ("val_fraction", "num_workers")}
    order = [i for batch in GTokDataset(manifest, seed=0, rank=0, world_size=1, **options) for i in batch["index"].tolist()]
    if mixed:
        assert Counter("a" if i < 11 else "b" for i in order) == {"a": 20, "b": 6}
    else:
        assert sorted(order) == list(range(RECORDS))
    return order


def batches(out: Path) -> list[dict]:
    """Every batch any rank trained on, over every launch (`trainer.log_batches`)."""
    rows = []
    for path in sorted((out / "batches").glob("rank-*.jsonl")):
        rank = int(path.stem.split("-")[1])
        rows += [{**json.loads(line), "rank": rank} for line in path.read_text().splitlines()]
    return rows


def epoch_records(rows: list[dict], epoch: int) -> Counter:
    return Counter(i for r in rows if r["epoch"] == epoch for i in r["records"])


@pytest.fixture
def manifest(tmp_path) -> Path:
    return make_data(tmp_path)


@pytest.mark.parametrize("model, mixed", RUNS)
def test_two_processes_share_an_epoch_without_overlap(manifest, tmp_path, model, mixed):
    out = tmp_path / "run"
    order = epoch_order(manifest, mixed)
    done = launch(manifest, out, devices=2, max_steps=7, model=model, mixed=mixed)  # a whole epoch: 13 batches, 7 per rank
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["world_size"], summary["num_nodes"], summary["devices_per_node"]) == (2, 1, 2)
    assert summary["global_step"] == 7 and summary["tokens_seen"] > 0 and summary["wall_seconds"] > 0
    epoch = summary["epochs"][0]
    assert epoch["records_seen"] == len(set(order)) and epoch["batches_per_rank"] == 7
    if not mixed:  # (drawn records recur anyway)
        assert epoch["records_seen_by_several_ranks"] == BATCH  # the one padding batch, repeated on rank 1
    drawn = epoch_records(batches(out), 0)
    assert epoch["records_drawn_more_than_once"] == sum(n > 1 for n in drawn.values()) > 0  # padding, a mixture's repeats
    assert summary["launch_first_step"] == 0
    rows = batches(out)
    assert {r["rank"] for r in rows} == {0, 1} and len({r["launch"] for r in rows}) == 1
    assert epoch_records(rows, 0) == Counter(order) + Counter(order[:BATCH])  # the epoch, and the padding batch
    assert (out / "model.ckpt").is_file() and len(list((out / "logs").glob("version_*"))) == 1  # logged once


@pytest.mark.parametrize("model, mixed, before, after, steps", [  # the mixture once, growing (which pads)
    *[pytest.param(*run.values, *sizes, id=f"{run.id}-{sizes[0]}to{sizes[1]}") for run in RUNS[:2]
      for sizes in [(2, 1, 3), (1, 3, 3)]],
    pytest.param(*RUNS[2].values, 1, 3, 3, id=f"{RUNS[2].id}-1to3"),
])
def test_a_run_resumes_at_another_world_size_with_exactly_the_unseen_records(manifest, tmp_path, before, after, steps,
                                                                             model, mixed):
    out = tmp_path / "run"
    order = epoch_order(manifest, mixed)
    first = launch(manifest, out, devices=before, max_steps=steps, model=model, mixed=mixed)  # stops mid-epoch
    assert first.returncode == 0, first.stderr[-3000:]
    done = steps * before  # batches consumed: the epoch's first ones
    assert epoch_records(batches(out), 0) == Counter(order[:done * BATCH])
    second = launch(manifest, out, devices=after, max_steps=100, model=model, mixed=mixed)  # continues the same run
    assert second.returncode == 0, second.stderr[-3000:]
    assert "starting a new run" not in second.stderr and f"from step {steps} (checkpoints/last.ckpt)" in second.stderr
    seen = epoch_records(batches(out), 0)
    n_items = RECORDS // BATCH
    padding = -(-(n_items - done) // after) * after - (n_items - done)  # batches repeated to even out the ranks
    # every item of the epoch exactly once, and the padding repeats the epoch's first items
    assert seen == Counter(order) + Counter(order[:padding * BATCH])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == after and summary["epochs"][0]["epoch"] == 0


if __name__ == "__main__":
    from gtok.training.train import train

    manifest_path, out_dir, devices, max_steps, model = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    config = {
        "data": data_options(sys.argv[6] == "mixture"),
        "trainer": {"accelerator": "cpu", "checkpoint_every_n_steps": 100, "num_sanity_val_steps": 0,
                    "log_every_n_steps": 1, "max_epochs": 1, "log_batches": True},
        **({"encoder": {"d_model": 8, "n_layers": 1, "n_heads": 2, "d_ff": 16}} if model == "encoder" else
           {"model_args": {"dim": 8}}),
    }
    train(manifest_path, model, out_dir, config, max_steps=max_steps, max_epochs=1, devices=devices, progress=False)
