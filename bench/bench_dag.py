"""How long Snakemake takes to build the workflow's DAG for many BED files, and to start one job.

Writes N tiny BED files (default 100,000) and a config pointing at them into a temporary folder,
then times `snakemake -n --quiet rules` there with the real Snakefile, twice: the first run includes
writing the `.snakemake` folder's first metadata, the second is the steady state. Reports the
seconds, the number of jobs and the peak RSS of the dry runs (the largest child process, i.e.
Snakemake). Then it times what every shard job pays before its shard starts: Snakemake parsing the
workflow for that one job (`--target-jobs ... --mode remote`, as the SLURM plugin runs it, twice
per job), with the plan the main process handed over (gtok.workflow.handoff) and without it.
Run:  .venv/bin/python bench/bench_dag.py [--files N] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from harness import dry_run, snakemake, write_workflow

from gtok.workflow import handoff


def write_inputs(folder: Path, n_files: int) -> None:
    """N one-line BED files in 100 subfolders (as large collections are usually laid out)."""
    (folder / "universe.bed").write_text("chr1\t100\t200\nchr1\t300\t400\n")
    for i in range(n_files):
        sub = folder / "bed" / f"{i % 100:02d}"
        if i < 100:
            sub.mkdir(parents=True)
        (sub / f"sample{i:06d}.bed").write_text(f"chr1\t{i % 500}\t{i % 500 + 50}\n")


def measure(n_files: int, files_per_shard: int, runs: int = 2) -> dict:
    """Write the inputs and the workflow into a temporary folder and time two dry runs there."""
    results = {"files": n_files, "files_per_shard": files_per_shard}
    with tempfile.TemporaryDirectory(prefix="gtok-dag-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        write_inputs(folder, n_files)
        print(f"wrote {n_files:,} BED files in {time.perf_counter() - start:.1f} s")
        write_workflow(folder, {
            "universe": "universe.bed",
            "inputs": {"bed": ["bed/*/*.bed"]},
            "shards": {"files_per_shard": files_per_shard},
            "train": {"enabled": True},
        })
        for attempt in ("first", "second")[:runs]:
            seconds, jobs = dry_run(folder)
            print(f"snakemake -n ({attempt} run): {seconds:.1f} s, {jobs:,} jobs", flush=True)
            results[f"{attempt}_seconds"], results["jobs"] = round(seconds, 2), jobs
        results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
        print(f"peak RSS of the dry runs: {results['peak_rss_mib']:,} MiB")
        results |= job_start(folder)
    return results


def job_start(folder: Path) -> dict[str, float]:
    """Seconds of one shard job's Snakemake start, with the plan of the last dry run and without."""
    (plan,) = (folder / ".snakemake" / "gtok").glob("plan-*.json")
    args = ("--target-jobs", "tokenize_bed:shard=0000", "--allowed-rules", "tokenize_bed", "--mode", "remote",
            "--cores", "1", "-n", "--quiet", "rules")
    results = {}
    for label, handed in (("handed_plan", str(plan)), ("planning_again", None)):
        os.environ.pop(handoff.ENV, None)
        if handed:
            os.environ[handoff.ENV] = handed
        run = snakemake(folder, *args).check(f"a job's snakemake ({label})")
        results[f"job_start_{label}_seconds"] = round(run.seconds, 2)
        print(f"one job's snakemake start, {label.replace('_', ' ')}: {run.seconds:.1f} s", flush=True)
    os.environ.pop(handoff.ENV, None)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--files-per-shard", type=int, default=200)
    parser.add_argument("--runs", type=int, choices=(1, 2), default=2, help="dry runs (the second: steady state)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    results = measure(args.files, args.files_per_shard, args.runs)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
