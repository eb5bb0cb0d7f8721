#!/usr/bin/env python
"""Big-h5ad drill: a million-cell .h5ad of several GB tokenized in row-range shards on SLURM.

    python bench/drill_big_h5ad.py [--cells 1000000] [--peaks 50000] [--density 0.004 0.03]
        [--universe 1000000] [--cells-per-shard 100000] [--profile profiles/slurm-local]
        [--dir /tmp] [--json OUT]

Writes a universe (bench/make_data.py) and the .h5ad (bench/make_big_h5ad.py, in bounded memory)
into a temporary folder under --dir, after checking its free space, then runs the workflow
(training off) with `cells_per_shard` rows per tokenize_h5ad job through --profile. Reports the
generation time, the file size, the run's wall time, the SLURM jobs, and per job the peak RSS two
ways: Snakemake's `benchmark:` max_rss (job process tree, sampled) and the kernel's high-water
mark of the job's gtok process (bench/harness.JobPeaks). The peak must stay under
--max-rss-mb. Then `gtok verify`, and manifest records == cells, names distinct. Everything is
deleted at the end.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from drill_fanout import require_cluster
from harness import (
    JobPeaks,
    benchmarks,
    check_manifest,
    load_average,
    run_drill,
    slurm_jobs,
    snakemake,
    write_universe,
    write_workflow,
)

HERE = Path(__file__).resolve().parent


def needed_bytes(cells: int, peaks: int, density: tuple[float, float]) -> int:
    """Disk for the .h5ad (int32 index + uint8 count per nonzero) and its shards (uint32 tokens),
    with room to spare."""
    nonzeros = cells * peaks * sum(density) / 2
    return int(nonzeros * (5 + 4) * 1.5)


def run(folder: Path, args: argparse.Namespace) -> dict:
    t = time.perf_counter()
    write_universe(folder, args.universe)
    h5ad = folder / "cells.h5ad"
    subprocess.run([sys.executable, str(HERE / "make_big_h5ad.py"), str(h5ad), "--universe", str(folder / "universe.bed"),
                    "--cells", str(args.cells), "--peaks", str(args.peaks), "--density", *map(str, args.density)],
                   check=True)
    generated = time.perf_counter() - t
    size = h5ad.stat().st_size
    print(f"generated the universe and {h5ad.name} ({size / 1e9:.2f} GB) in {generated:.0f} s", flush=True)
    wf = write_workflow(folder / "wf", {
        "universe": str(folder / "universe.bed"),
        "inputs": {"bed": [], "h5ad": [str(h5ad)], "label_key": "cell_type"},
        "shards": {"cells_per_shard": args.cells_per_shard},
        "train": {"enabled": False},
    })
    load_before = load_average()
    with JobPeaks(wf) as peaks:
        result = snakemake(wf, "--profile", args.profile).check("the workflow")
    load_after = load_average()
    counts = check_manifest(wf / "results" / "manifest.json", args.cells)
    tok = benchmarks(wf / "results", "tokenize_h5ad")
    stats = benchmarks(wf / "results", "stats")
    jobs = slurm_jobs(result.output)
    shard_bytes = sum(p.stat().st_size for p in (wf / "results" / "shards").rglob("*.gtok"))
    res = {
        "cells": args.cells, "peaks": args.peaks, "density": args.density, "universe": args.universe,
        "cells_per_shard": args.cells_per_shard, "profile": args.profile, "h5ad_bytes": size,
        "shard_bytes": shard_bytes, "generate_seconds": round(generated, 1), "wall_seconds": round(result.seconds, 1),
        "slurm_jobs": len(jobs), "slurm_jobs_by_rule": dict(Counter(rule for rule, _ in jobs)), **counts,
        "cells_per_s": round(args.cells / result.seconds), "tokens_per_s": round(counts["tokens"] / result.seconds),
        "tokenize_jobs": len(tok), "tokenize_seconds": [r["s"] for r in tok],
        "benchmark_max_rss_mb": [r["max_rss"] for r in tok], "stats_max_rss_mb": [r["max_rss"] for r in stats],
        "stats_seconds": [r["s"] for r in stats],
        "gtok_process_peak_mb": peaks.of_rule("tokenize_h5ad"), "stats_process_peak_mb": peaks.of_rule("stats"),
        "load_before": load_before, "load_after": load_after,
    }
    res["max_peak_mb"] = max([*res["benchmark_max_rss_mb"], *res["gtok_process_peak_mb"], *res["stats_max_rss_mb"],
                              *res["stats_process_peak_mb"]])
    return res


def report(r: dict) -> str:
    mean = sum(r["tokenize_seconds"]) / len(r["tokenize_seconds"])
    return "\n".join([
        f"- {r['cells']:,} cells x {r['peaks']:,} peaks, density {r['density'][0]}–{r['density'][1]}: "
        f"{r['h5ad_bytes'] / 1e9:.2f} GB .h5ad, generated (with a {r['universe']:,}-region universe) in "
        f"{r['generate_seconds']:.0f} s",
        f"- workflow, cells_per_shard {r['cells_per_shard']:,}, `--profile {r['profile']}`: **{r['wall_seconds']:.0f} s** "
        f"wall, {r['slurm_jobs']} SLURM jobs ({', '.join(f'{k} {v}' for k, v in r['slurm_jobs_by_rule'].items())}); "
        f"{r['tokens']:,} tokens in {r['shards']} shards ({r['shard_bytes'] / 1e9:.2f} GB): "
        f"{r['cells_per_s']:,} cells/s, {r['tokens_per_s']:,} tokens/s end to end",
        f"- tokenize_h5ad jobs: {mean:.0f} s each on average; peak RSS per job, Snakemake benchmark max_rss (MB): "
        f"{', '.join(f'{x:.0f}' for x in r['benchmark_max_rss_mb'])}; kernel high-water mark of each job's gtok "
        f"process (MB): {', '.join(map(str, r['gtok_process_peak_mb']))}",
        f"- stats job: {', '.join(f'{x:.0f}' for x in r['stats_seconds'])} s, benchmark max_rss "
        f"{', '.join(f'{x:.0f}' for x in r['stats_max_rss_mb'])} MB, its process's high-water mark "
        f"{', '.join(map(str, r['stats_process_peak_mb']))} MB; highest peak of any job: **{r['max_peak_mb']:.0f} MB**",
        f"- `gtok verify`: OK in {r['verify_seconds']:.0f} s; manifest records {r['records']:,} == cells, names distinct",
        f"- load average before/after: {r['load_before']} / {r['load_after']}",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--peaks", type=int, default=50_000)
    ap.add_argument("--density", type=float, nargs=2, default=(0.004, 0.03), metavar=("LO", "HI"))
    ap.add_argument("--universe", type=int, default=1_000_000)
    ap.add_argument("--cells-per-shard", type=int, default=100_000)
    ap.add_argument("--profile", default="profiles/slurm-local")
    ap.add_argument("--max-rss-mb", type=float, default=2000)
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the temporary folder goes")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    require_cluster(args.profile)
    free, need = shutil.disk_usage(args.dir).free, needed_bytes(args.cells, args.peaks, tuple(args.density))
    if free < need:
        raise SystemExit(f"{args.dir}: {free / 1e9:.1f} GB free, this drill needs about {need / 1e9:.1f} GB.")
    run_drill(args, "gtok-bigh5ad-", lambda folder: run(folder, args), report, tmp_dir=args.dir,
              failed=lambda res: f"a job's peak RSS of {res['max_peak_mb']:.0f} MB is over {args.max_rss_mb:.0f} MB"
              if res["max_peak_mb"] >= args.max_rss_mb else None)


if __name__ == "__main__":
    main()
