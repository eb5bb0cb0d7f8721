#!/usr/bin/env python
"""Killed-writer drill: `kill -9` of a tokenization job mid-write leaves nothing at its output path.

    python bench/drill_killed_writer.py [--files 120] [--regions 60000] [--universe 1000000]
        [--files-per-shard 60] [--profile PROFILE] [--json OUT]

Runs the workflow (training off) on generated BED files big enough that writing one shard takes
seconds. As soon as a shard's temporary file (`results/shards/bed/.NNNN.gtok.*.tmp`) holds token
data, the process that has it open (the job's gtok process) gets SIGKILL. Checks: that Snakemake
reports the job failed, that no file exists at that shard's path, that the manifest was not
written; then that `snakemake --rerun-incomplete` completes and `gtok verify` passes with every
file's record present once. --profile profiles/slurm-local runs the jobs on the local SLURM
cluster instead of locally (the default). Data lives in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

import psutil
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

MIN_BYTES = 1 << 20  # token data in the temporary file: the writer is past its header, mid-write


def holder(path: Path) -> psutil.Process | None:
    """The process that has `path` open for writing, whoever started it (locally Snakemake's
    child, on SLURM a child of slurmstepd)."""
    target = str(path)
    for proc in psutil.process_iter():
        try:
            if any(f.path == target for f in proc.open_files()):
                return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def strike(shards: Path, run, timeout: float = 600) -> dict:
    """Wait for a shard's temporary file to hold token data, then SIGKILL the process writing it."""
    deadline = time.monotonic() + timeout
    seen: dict[Path, float] = {}
    while time.monotonic() < deadline and run.poll() is None:
        for tmp in shards.glob(".*.gtok.*.tmp") if shards.is_dir() else ():
            seen.setdefault(tmp, time.monotonic())
            size = tmp.stat().st_size if tmp.exists() else 0
            proc = holder(tmp) if size >= MIN_BYTES else None
            if proc is not None:
                cmdline = " ".join(proc.cmdline())
                os.kill(proc.pid, signal.SIGKILL)
                return {"tmp": tmp.name, "tmp_bytes_at_kill": size, "tmp_age_at_kill_s": round(time.monotonic() - seen[tmp], 2),
                        "killed_pid": proc.pid, "killed_cmdline": cmdline[-120:],
                        "target": tmp.name.split(".gtok.")[0].lstrip(".") + ".gtok"}
        time.sleep(0.05)
    raise SystemExit("no shard's temporary file filled up before the run ended: use bigger inputs (--regions).")


def run(folder: Path, args: argparse.Namespace) -> dict:
    regions = write_bed_collection(folder / "data", args.files, (args.regions, args.regions), args.universe)
    wf = write_workflow(folder / "wf", {
        "universe": str(folder / "data" / "universe.bed"),
        "inputs": {"bed": [str(folder / "data" / "bed" / "*" / "*.bed")], "h5ad": []},
        "shards": {"files_per_shard": args.files_per_shard},
        "train": {"enabled": False},
    })
    profile = ("--profile", args.profile) if args.profile else ()
    shards = wf / "results" / "shards" / "bed"
    load = load_average()
    first = start_snakemake(wf, folder / "first.log", *profile)
    hit = strike(shards, first)
    first.wait()
    target = shards / hit["target"]
    after_kill = {
        "first_run_exit": first.returncode,
        "output_exists_after_kill": target.exists(),
        "tmp_left_after_kill": (shards / hit["tmp"]).exists(),
        "manifest_exists_after_kill": (wf / "results" / "manifest.json").exists(),
        "shards_done_after_kill": sorted(p.name for p in shards.glob("*.gtok")),
        "failure_reported": "Error in rule tokenize_bed" in (folder / "first.log").read_text(),
        "first_run_slurm_jobs": slurm_jobs((folder / "first.log").read_text()),
    }
    rerun = snakemake(wf, *profile, "--rerun-incomplete").check("the rerun")
    counts = check_manifest(wf / "results" / "manifest.json", args.files)
    return {"files": args.files, "regions": regions, "files_per_shard": args.files_per_shard,
            "profile": args.profile or "default (local)", **hit, **after_kill,
            "rerun_seconds": round(rerun.seconds, 1), "tmp_left_after_rerun": (shards / hit["tmp"]).exists(),
            **counts, "load": load}


def report(res: dict) -> str:
    return "\n".join([
        f"- {res['files']} BED files x {res['regions'] // res['files']:,} regions, files_per_shard "
        f"{res['files_per_shard']}, profile {res['profile']}",
        f"- SIGKILL of pid {res['killed_pid']} (`...{res['killed_cmdline'][-60:]}`) writing `{res['tmp']}`, "
        f"{res['tmp_age_at_kill_s']} s after it appeared, at {res['tmp_bytes_at_kill'] / 2**20:.1f} MiB",
        f"- Snakemake exit {res['first_run_exit']} (failure reported: {res['failure_reported']}); file at "
        f"`{res['target']}`: {res['output_exists_after_kill']}; manifest written: {res['manifest_exists_after_kill']}; "
        f"shards finished: {', '.join(res['shards_done_after_kill']) or 'none'}"
        + (f"; SLURM jobs of that run: {', '.join(f'{r} {j}' for r, j in res['first_run_slurm_jobs'])}"
           if res["first_run_slurm_jobs"] else ""),
        f"- rerun with `--rerun-incomplete`: completed in {res['rerun_seconds']:.0f} s; `gtok verify` OK; "
        f"{res['records']:,} records == files, every name once",
        f"- the killed writer's temporary file is still there after the rerun: {res['tmp_left_after_rerun']}",
        f"- load average: {res['load']}",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=120)
    ap.add_argument("--regions", type=int, default=60_000)
    ap.add_argument("--universe", type=int, default=1_000_000)
    ap.add_argument("--files-per-shard", type=int, default=60)
    ap.add_argument("--profile", help="e.g. profiles/slurm-local; default: local jobs")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    run_drill(args, "gtok-killed-", lambda folder: run(folder, args), report)


if __name__ == "__main__":
    main()
