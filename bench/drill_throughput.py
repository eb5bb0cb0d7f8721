#!/usr/bin/env python
"""End-to-end throughput: tokens per second from BED files to a verified manifest, next to gtars.

    python bench/drill_throughput.py [--files 2000] [--regions 5000] [--universe 1000000]
        [--files-per-shard 200] [--json OUT]

Generates --files BED files of --regions realistic regions each (bench/make_data.py) and a universe
of --universe regions, then measures, on this machine:

- the pipeline: `snakemake results/manifest.json` with the workflow's local profile (every core;
  universe check and cache, the tokenize_bed shards, the manifest), then `gtok verify` of the
  manifest; tokens/s over both;
- for reference, one `gtok tokenize` process over all the files into one shard (no workflow);
- gtars 0.10.0 in a simple loop, one process: `Tokenizer(universe)`, then per file
  `tokenize` + `write_tokens_to_gtok` (bench/bench_tokenize.py's GTARS_BED script).

Token totals must agree. Data lives in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_tokenize import GTARS_BED
from workflow_copy import (
    benchmarks,
    check_manifest,
    gtok,
    load_average,
    snakemake,
    write_bed_collection,
    write_workflow,
)


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def gtars_tokens(folder: Path) -> int:
    from gtars.utils import read_tokens_from_gtok

    return sum(len(read_tokens_from_gtok(str(p))) for p in folder.glob("*.gtok"))


def run(folder: Path, args: argparse.Namespace) -> dict:
    data = folder / "data"
    t = time.perf_counter()
    regions = write_bed_collection(data, args.files, (args.regions, args.regions), args.universe)
    print(f"wrote {args.files:,} BED files ({regions:,} regions) in {time.perf_counter() - t:.0f} s", flush=True)
    beds = sorted(str(p) for p in (data / "bed").glob("*/*.bed"))
    universe = str(data / "universe.bed")
    wf = write_workflow(folder / "wf", {
        "universe": universe,
        "inputs": {"bed": [str(data / "bed" / "*" / "*.bed")], "h5ad": []},
        "shards": {"files_per_shard": args.files_per_shard},
        "train": {"enabled": False},
    })
    load = {"start": load_average()}
    pipeline = snakemake(wf, "results/manifest.json").check("the workflow")
    t = time.perf_counter()
    counts = check_manifest(wf / "results" / "manifest.json", args.files)
    verify_s = time.perf_counter() - t
    load["after_pipeline"] = load_average()
    jobs = [row["s"] for row in benchmarks(wf / "results", "tokenize_bed")]

    env = {**os.environ, "GTOK_CACHE_DIR": str(folder / "cache")}
    single = [str(Path(sys.executable).parent / "gtok"), "tokenize", "-q", "-u", universe, "-o", str(folder / "all.gtok"), *beds]
    single_cold = timed(single, env)  # fills this cache
    single_warm = timed(single, env)
    out = folder / "gtars"
    out.mkdir()
    gtars_s = timed([sys.executable, "-c", GTARS_BED, universe, str(out), *beds])
    load["end"] = load_average()
    n_gtars = gtars_tokens(out)
    info = gtok("info", folder / "all.gtok").stdout
    total = pipeline.seconds + verify_s
    return {
        "files": args.files, "regions": regions, "universe": args.universe, "files_per_shard": args.files_per_shard,
        **counts, "pipeline_seconds": round(pipeline.seconds, 1), "verify_and_count_seconds": round(verify_s, 1),
        "total_seconds": round(total, 1), "tokenize_jobs": len(jobs), "tokenize_job_seconds_mean": round(sum(jobs) / len(jobs), 1), "pipeline_tokens_per_s": round(counts["tokens"] / total),
        "gtok_single_cold_s": round(single_cold, 1), "gtok_single_warm_s": round(single_warm, 1),
        "gtok_single_tokens_per_s": round(counts["tokens"] / single_warm),
        "gtars_seconds": round(gtars_s, 1), "gtars_tokens": n_gtars,
        "gtars_tokens_per_s": round(n_gtars / gtars_s), "same_token_count": n_gtars == counts["tokens"],
        "single_shard_info": info.strip().splitlines()[:3], "load": load,
    }


def report(r: dict) -> str:
    return "\n".join([
        f"- {r['files']:,} BED files x {r['regions'] // r['files']:,} regions = {r['regions']:,} regions, universe "
        f"{r['universe']:,} regions, files_per_shard {r['files_per_shard']} ({r['shards']} shards); "
        f"{r['tokens']:,} tokens; the pipeline's {r['tokenize_jobs']} tokenize_bed jobs took "
        f"{r['tokenize_job_seconds_mean']:.1f} s each on average (2 at a time)",
        "",
        "| what | seconds | tokens/s |",
        "| --- | ---: | ---: |",
        f"| pipeline: `snakemake results/manifest.json` (local profile, 2 cores) + `gtok verify` "
        f"| {r['pipeline_seconds']:.1f} + {r['verify_and_count_seconds']:.1f} = **{r['total_seconds']:.1f}** "
        f"| **{r['pipeline_tokens_per_s']:,}** |",
        f"| one `gtok tokenize` process, all files, warm universe cache (cold: {r['gtok_single_cold_s']:.1f} s) "
        f"| {r['gtok_single_warm_s']:.1f} | {r['gtok_single_tokens_per_s']:,} |",
        f"| gtars 0.10.0 loop, one process (Tokenizer, then tokenize + write_tokens_to_gtok per file) "
        f"| {r['gtars_seconds']:.1f} | {r['gtars_tokens_per_s']:,} |",
        "",
        f"Token totals equal (gtars {r['gtars_tokens']:,}): {r['same_token_count']}. Load average at the start / "
        f"after the pipeline / at the end: {r['load']['start']} / {r['load']['after_pipeline']} / {r['load']['end']}.",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--regions", type=int, default=5000)
    ap.add_argument("--universe", type=int, default=1_000_000)
    ap.add_argument("--files-per-shard", type=int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gtok-throughput-") as tmp:
        res = run(Path(tmp), args)
    print(report(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
