"""`make bench`: runs the benchmark scripts and checks the targets the issues set.

Marked `bench`, so `make test` skips them; they take minutes and want a quiet machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
pytestmark = pytest.mark.bench


def test_tokenize_speed(tmp_path):
    out = tmp_path / "tokenize.json"
    subprocess.run([sys.executable, str(HERE / "bench_tokenize.py"), "--json", str(out)], check=True)
    res = json.loads(out.read_text())
    bed, cells = res["bed"], res["cells"]
    assert bed["identical"] and cells["identical"]
    assert bed["gtars"] / bed["gtok"] >= 4
    assert cells["gtok_cells_per_s"] / cells["gtars_cells_per_s"] >= 100


def test_fragment_file_speed_and_memory(tmp_path):
    """Issue 11: the whole `gtok tokenize` of a 50 M-fragment file at least 5x gtars'
    tokenize_fragment_file call, identical tokens, and peak memory that does not grow with the
    number of fragments (a 5 M-fragment file of the same barcodes as the yardstick)."""
    out = tmp_path / "fragments.json"
    subprocess.run([sys.executable, str(HERE / "bench_fragments.py"), "--work", str(tmp_path), "--json", str(out)], check=True)
    res = json.loads(out.read_text())
    assert res["small"]["gtars"]["identical"] and res["large"]["gtars"]["identical"]
    assert res["large"]["speedup"] >= 5
    assert res["large"]["gtok"]["rss_mib"] < 1.5 * res["small"]["gtok"]["rss_mib"]



def test_manifest_name_check_speed(tmp_path):
    """Issue 16: record names unique across a manifest, checked fast: a million records in 1,000
    shards (the per-record work, not hashing bytes), names checked in well under the time the rest
    of `gtok manifest` and `gtok verify` take on real shards."""
    out = tmp_path / "manifest.json"
    subprocess.run([sys.executable, str(HERE / "bench_manifest.py"), "--json", str(out)], check=True)
    res = json.loads(out.read_text())
    assert res["records"] == 1_000_000 and res["names_check_s"] < 3 and res["manifest_s"] < 10

def test_lsi_memory_does_not_follow_the_records(tmp_path):
    """LSI is fitted on every training record, streamed: fitting it on five times the records
    leaves peak memory within 25 % (bench/README.md, "LSI on every training record, at scale")."""
    out = tmp_path / "lsi.json"
    subprocess.run([sys.executable, str(HERE / "bench_lsi.py"), "--records", "20000", "100000", "--json", str(out)],
                   check=True)
    small, large = json.loads(out.read_text())
    assert large["training_records"] > 4 * small["training_records"]
    assert large["peak_rss_mib"] < 1.25 * small["peak_rss_mib"]


def test_evaluate_memory_does_not_follow_the_held_out_records(tmp_path):
    """gtok evaluate reads the held-out records' tokens a chunk at a time (only their vectors stay):
    three times the held-out records leave its peak memory up to the scores within 25 %; the
    scores' kNN and silhouette then take up to scikit-learn's working_memory (bench/README.md,
    "Evaluation at scale: the held-out records")."""
    out = tmp_path / "eval.json"
    subprocess.run([sys.executable, str(HERE / "bench_eval_held_out.py"), "--records", "20000", "60000",
                    "--json", str(out)], check=True)
    small, large = json.loads(out.read_text())
    assert large["held_out"] > 2.5 * small["held_out"]
    assert large["peak_before_scoring_mib"] < 1.25 * small["peak_before_scoring_mib"]


# -- scale and fault drills (bench/drill_*.py; results in bench/README.md, "Scale and fault drills") --

def slurm_running() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0
    except FileNotFoundError:  # SLURM not installed
        return False


needs_slurm = pytest.mark.skipif(not slurm_running(), reason="needs the local SLURM cluster: bash tools/local-slurm.sh start")


def drill(tmp_path, script: str, *args: str) -> dict:
    out = tmp_path / f"{script}.json"
    subprocess.run([sys.executable, str(HERE / f"{script}.py"), *args, "--json", str(out)], check=True)
    return json.loads(out.read_text())


@needs_slurm
def test_drill_fanout(tmp_path):
    res = drill(tmp_path, "drill_fanout")
    plan, run = res["plan"], res["run"]
    assert plan["jobs"] == 100_000 // 200 + 6 and plan["second_seconds"] < 60
    assert run["records"] == run["files"] == 10_000  # and gtok verify passed, names distinct (else exit 1)
    assert run["slurm_jobs_by_rule"]["tokenize_bed"] == run["shards"]


@needs_slurm
def test_drill_big_h5ad(tmp_path):
    res = drill(tmp_path, "drill_big_h5ad")  # exits non-zero when a job's peak RSS reaches 2 GB
    assert res["records"] == res["cells"] == 1_000_000 and res["max_peak_mb"] < 2000


def test_drill_killed_writer(tmp_path):
    res = drill(tmp_path, "drill_killed_writer")
    assert res["first_run_exit"] != 0 and res["failure_reported"]
    assert not res["output_exists_after_kill"] and not res["manifest_exists_after_kill"]
    assert res["records"] == res["files"]


@needs_slurm
def test_drill_slurm_failure(tmp_path):
    retried, failed = drill(tmp_path, "drill_slurm_failure")["runs"]
    assert retried["first_run_exit"] == 0 and retried["restarted"] and len(retried["shard_jobs"]) == 2
    assert failed["first_run_exit"] != 0 and not failed["manifest_after_failure"] and failed["rerun_jobs"]


def test_drill_preemption(tmp_path):
    res = drill(tmp_path, "drill_preemption")  # exits non-zero unless batches and weights match
    assert res["resumed_first"] == res["expected_first"] and res["resumed_in_epoch"] == res["remaining_in_epoch"]


def test_drill_corruption(tmp_path):
    res = drill(tmp_path, "drill_corruption")
    assert res["verify_exit"] == 1 and res["shard"] in res["verify_output"]
    assert res["train_default_exit"] == 1 and res["shard"] in res["train_default_stderr"]


def test_drill_throughput(tmp_path):
    res = drill(tmp_path, "drill_throughput")
    assert res["same_token_count"] and res["records"] == res["files"]
