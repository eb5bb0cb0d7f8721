"""How long Snakemake takes to build the workflow's DAG for many BED files.

Writes N tiny BED files (default 100,000) and a config pointing at them into a temporary folder,
then times `snakemake -n --quiet rules` there with the real Snakefile, twice: the first run includes
writing the `.snakemake` folder's first metadata, the second is the steady state. Reports the
seconds and the number of jobs. Run:  .venv/bin/python bench/bench_dag.py [--files N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ("Snakefile", "workflow", "scripts", "envs")


def write_inputs(folder: Path, n_files: int) -> None:
    """N one-line BED files in 100 subfolders (as large collections are usually laid out)."""
    (folder / "universe.bed").write_text("chr1\t100\t200\nchr1\t300\t400\n")
    for i in range(n_files):
        sub = folder / "bed" / f"{i % 100:02d}"
        if i < 100:
            sub.mkdir(parents=True)
        (sub / f"sample{i:06d}.bed").write_text(f"chr1\t{i % 500}\t{i % 500 + 50}\n")


def write_workflow(folder: Path, files_per_shard: int) -> None:
    for name in WORKFLOW:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, folder / name)
    (folder / "config").mkdir()
    (folder / "config" / "config.yaml").write_text(
        "universe: universe.bed\n"
        "inputs:\n  bed: ['bed/*/*.bed']\n"
        f"shards:\n  files_per_shard: {files_per_shard}\n"
        "train:\n  enabled: true\n"
    )


def dry_run(folder: Path) -> tuple[float, int]:
    """Seconds of one `snakemake -n --quiet rules`, and the number of jobs it would run."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1"],
        cwd=folder, env=env, capture_output=True, text=True, check=True,
    )
    seconds = time.perf_counter() - start
    total = re.search(r"^total\s+(\d+)", out.stdout + out.stderr, re.M)
    return seconds, int(total.group(1)) if total else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--files-per-shard", type=int, default=200)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    results = {"files": args.files, "files_per_shard": args.files_per_shard}
    with tempfile.TemporaryDirectory(prefix="gtok-dag-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        write_inputs(folder, args.files)
        print(f"wrote {args.files:,} BED files in {time.perf_counter() - start:.1f} s")
        write_workflow(folder, args.files_per_shard)
        for attempt in ("first", "second"):
            seconds, jobs = dry_run(folder)
            print(f"snakemake -n ({attempt} run): {seconds:.1f} s, {jobs:,} jobs")
            results[f"{attempt}_seconds"], results["jobs"] = round(seconds, 2), jobs
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
