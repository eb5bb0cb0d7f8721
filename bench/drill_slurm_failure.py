#!/usr/bin/env python
"""SLURM failure drill: a tokenization job cancelled while running, with and without retries.

    python bench/drill_slurm_failure.py [--files 40] [--regions 20000] [--universe 200000]
        [--files-per-shard 10] [--json OUT]

Needs the local SLURM cluster (`bash tools/local-slurm.sh start`). Runs the workflow (training
off) on generated BED files through profiles/slurm-local, twice, each time `scancel`-ing the first
tokenize_bed job as soon as squeue shows it RUNNING:

1. with `--retries 1`: Snakemake resubmits that shard as a new SLURM job and the run completes;
2. with `--retries 0`: the run fails (the other shards still finish: keep-going), and a second
   `snakemake --rerun-incomplete` completes it.

Each time `gtok verify` must pass and the records add up. Reports the SLURM job ids (from
Snakemake's output, and the SLURM log files under .snakemake/slurm_logs) and the final states
squeue gives them. Data lives in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from drill_fanout import require_cluster
from harness import (
    check_manifest,
    load_average,
    run_drill,
    slurm_jobs,
    snakemake,
    start_snakemake,
    write_bed_collection,
    write_workflow,
)

PROFILE = ("--profile", "profiles/slurm-local")


def squeue_state(job: int) -> str:
    out = subprocess.run(["squeue", "-h", "--states=all", "-j", str(job), "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def cancel_first_running(log: Path, run, rule: str = "tokenize_bed", timeout: float = 600) -> int:
    """The first `rule` job Snakemake submits: wait until SLURM runs it, then scancel it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.poll() is None:
        jobs = [job for r, job in slurm_jobs(log.read_text()) if r == rule]
        if jobs and squeue_state(jobs[0]) == "RUNNING":
            subprocess.run(["scancel", str(jobs[0])], check=True)
            return jobs[0]
        time.sleep(0.2)
    raise SystemExit(f"no {rule} job was seen running before the run ended.")


def job_shard(wf: Path, job: int) -> str:
    """The shard of a job, from its SLURM log path (.snakemake/slurm_logs/rule_RULE/SHARD/JOBID.log)."""
    logs = list((wf / ".snakemake" / "slurm_logs").rglob(f"{job}.log"))
    return logs[0].parent.name if logs else "?"


def scenario(folder: Path, data: Path, args: argparse.Namespace, retries: int) -> dict:
    wf = write_workflow(folder, {
        "universe": str(data / "universe.bed"),
        "inputs": {"bed": [str(data / "bed" / "*" / "*.bed")], "h5ad": []},
        "shards": {"files_per_shard": args.files_per_shard},
        "train": {"enabled": False},
    })
    log = folder / "first.log"
    first = start_snakemake(wf, log, *PROFILE, "--retries", str(retries))
    cancelled = cancel_first_running(log, first)
    first.wait()
    output = log.read_text()
    shard = job_shard(wf, cancelled)
    res = {
        "retries": retries, "cancelled_job": cancelled, "cancelled_shard": shard,
        "first_run_exit": first.returncode,
        "first_run_jobs": slurm_jobs(output),
        "failure_reported": f"SLURM-job '{cancelled}' failed" in output,
        "restarted": "Trying to restart job" in output,
        "shard_jobs": [job for _, job in slurm_jobs(output) if job_shard(wf, job) == shard],
        "slurm_logs_of_shard": sorted(str(p.relative_to(wf)) for p in
                                      (wf / ".snakemake" / "slurm_logs" / "rule_tokenize_bed" / shard).glob("*.log")),
        "tmp_files_left": sorted(p.name for p in (wf / "results" / "shards" / "bed").glob(".*.tmp")),
    }
    if first.returncode != 0:
        res["manifest_after_failure"] = (wf / "results" / "manifest.json").exists()
        rerun = snakemake(wf, *PROFILE, "--rerun-incomplete").check("the rerun")
        res["rerun_seconds"] = round(rerun.seconds, 1)
        res["rerun_jobs"] = slurm_jobs(rerun.output)
    res["states"] = {job: squeue_state(job) for job in res["shard_jobs"]}
    res.update(check_manifest(wf / "results" / "manifest.json", args.files))
    return res


def report(runs: list[dict]) -> str:
    lines = []
    for r in runs:
        jobs = ", ".join(f"{job} {r['states'].get(job, '')}".strip() for job in r["shard_jobs"])
        lines.append(
            f"- `--retries {r['retries']}`: scancel of job {r['cancelled_job']} (shard {r['cancelled_shard']}) while "
            f"RUNNING; Snakemake exit {r['first_run_exit']}, failure reported {r['failure_reported']}, "
            f"restarted {r['restarted']}; that shard's SLURM jobs: {jobs}; logs: "
            + ", ".join(f"`{p}`" for p in r["slurm_logs_of_shard"])
        )
        if "rerun_seconds" in r:
            lines.append(f"  - manifest written after the failed run: {r['manifest_after_failure']}; rerun with "
                         f"`--rerun-incomplete`: {r['rerun_seconds']:.0f} s, SLURM jobs "
                         + ", ".join(f"{rule} {job}" for rule, job in r["rerun_jobs"]))
        lines.append(f"  - `gtok verify` OK, {r['records']:,} records == files; temporary files left by the "
                     f"cancelled job: {', '.join(r['tmp_files_left']) or 'none'}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--regions", type=int, default=20_000)
    ap.add_argument("--universe", type=int, default=200_000)
    ap.add_argument("--files-per-shard", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    require_cluster("slurm")
    load = load_average()

    def both(folder: Path) -> dict:
        write_bed_collection(folder / "data", args.files, (args.regions, args.regions), args.universe)
        return {"load": load, "runs": [scenario(folder / f"retries{n}", folder / "data", args, n) for n in (1, 0)]}

    run_drill(args, "gtok-slurmfail-", both,
              lambda res: f"{report(res['runs'])}\n- load average at the start: {res['load']}")


if __name__ == "__main__":
    main()
