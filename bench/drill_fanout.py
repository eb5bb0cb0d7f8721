#!/usr/bin/env python
"""Fan-out drill: 100,000 BED files planned, 10,000 tokenized for real on the local SLURM cluster.

    python bench/drill_fanout.py [--dry-files 100000] [--files 10000] [--regions 200 3000]
        [--universe 1000000] [--files-per-shard 500] [--profile profiles/slurm-local] [--json OUT]

1. Planning: `snakemake -n` over --dry-files one-line BED files (bench_dag.measure): seconds and jobs.
   --dry-files 0 skips it.
2. Doing: --files BED files of --regions regions each (uniformly drawn; bench/make_data.py's
   realistic generator) against a universe of --universe regions, tokenized by the workflow with
   training off, through --profile (the local SLURM cluster by default). Reports the wall time of
   that Snakemake run, the SLURM jobs it submitted, tokens/s, the tokenize jobs' time and peak RSS,
   and then checks the result: `gtok verify` passes, manifest records == files, every name once.
All data lives in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench_dag import measure
from harness import (
    benchmarks,
    check_manifest,
    load_average,
    run_drill,
    slurm_jobs,
    snakemake,
    write_bed_collection,
    write_workflow,
)


def require_cluster(profile: str) -> None:
    """A SLURM profile needs a running cluster; without one Snakemake would wait in vain."""
    if "slurm" in profile and subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        raise SystemExit("SLURM is not running: start it with `bash tools/local-slurm.sh start`.")


def run(folder: Path, args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    regions = write_bed_collection(folder / "data", args.files, tuple(args.regions), args.universe)
    generated = time.perf_counter() - start
    print(f"wrote {args.files:,} BED files ({regions:,} regions) and the universe in {generated:.0f} s")
    wf = write_workflow(folder / "wf", {
        "universe": str(folder / "data" / "universe.bed"),
        "inputs": {"bed": [str(folder / "data" / "bed" / "*" / "*.bed")], "h5ad": []},
        "shards": {"files_per_shard": args.files_per_shard},
        "train": {"enabled": False},
    })
    load_before = load_average()
    result = snakemake(wf, "--profile", args.profile).check("the workflow")
    load_after = load_average()
    counts = check_manifest(wf / "results" / "manifest.json", args.files)
    jobs = slurm_jobs(result.output)
    tok = benchmarks(wf / "results", "tokenize_bed")
    return {
        "files": args.files, "regions": regions, "universe": args.universe, "files_per_shard": args.files_per_shard,
        "profile": args.profile, "generate_seconds": round(generated, 1), "wall_seconds": round(result.seconds, 1),
        "slurm_jobs": len(jobs), "slurm_jobs_by_rule": dict(Counter(rule for rule, _ in jobs)),
        "slurm_job_ids": [job for _, job in jobs], **counts,
        "tokens_per_s": round(counts["tokens"] / result.seconds),
        "tokenize_jobs": len(tok), "tokenize_job_seconds_mean": round(sum(r["s"] for r in tok) / len(tok), 1),
        "tokenize_job_max_rss_mb": max(r["max_rss"] for r in tok),
        "load_before": load_before, "load_after": load_after,
    }


def report(plan: dict | None, res: dict) -> str:
    lines = []
    if plan:
        lines.append(f"- `snakemake -n`, {plan['files']:,} BED files, files_per_shard {plan['files_per_shard']}: "
                     f"{plan['jobs']:,} jobs, {plan['first_seconds']:.1f} s (first run), {plan['second_seconds']:.1f} s (second)")
    lines += [
        f"- tokenized {res['files']:,} BED files ({res['regions']:,} regions) against {res['universe']:,} universe "
        f"regions, files_per_shard {res['files_per_shard']}, `--profile {res['profile']}`: "
        f"**{res['wall_seconds']:.0f} s** wall for the Snakemake run",
        f"- SLURM jobs: {res['slurm_jobs']} ({', '.join(f'{k} {v}' for k, v in res['slurm_jobs_by_rule'].items())}), "
        f"ids {min(res['slurm_job_ids'], default=0)}–{max(res['slurm_job_ids'], default=0)}",
        f"- {res['tokens']:,} tokens in {res['shards']} shards: **{res['tokens_per_s']:,} tokens/s** end to end; "
        f"a tokenize job took {res['tokenize_job_seconds_mean']:.1f} s on average, peak RSS "
        f"{res['tokenize_job_max_rss_mb']:.0f} MB",
        f"- `gtok verify`: OK in {res['verify_seconds']:.1f} s; manifest records {res['records']:,} == files, "
        "every name once",
        f"- load average before/after: {res['load_before']} / {res['load_after']}",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-files", type=int, default=100_000)
    ap.add_argument("--dry-files-per-shard", type=int, default=200)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--regions", type=int, nargs=2, default=(200, 3000), metavar=("LOW", "HIGH"))
    ap.add_argument("--universe", type=int, default=1_000_000)
    ap.add_argument("--files-per-shard", type=int, default=500)
    ap.add_argument("--profile", default="profiles/slurm-local")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    require_cluster(args.profile)
    plan = measure(args.dry_files, args.dry_files_per_shard) if args.dry_files else None
    run_drill(args, "gtok-fanout-", lambda folder: {"plan": plan, "run": run(folder, args)},
              lambda res: report(res["plan"], res["run"]))


if __name__ == "__main__":
    main()
