#!/usr/bin/env python
"""Embed a million-cell .h5ad with a trained model: peak memory and cells per second.

    python bench/drill_embed_million.py [--cells 1000000] [--peaks 20000] [--density 0.002 0.01]
                                        [--batch-size 512] [--json OUT]

Writes a universe (bench/make_data.py) and a `--cells` x `--peaks` .h5ad in bounded memory
(bench/make_big_h5ad.py), trains a small region2vec on its first 20,000 cells (`gtok tokenize
--rows`, `gtok manifest`, `gtok train`), then runs, as a user would and timed by the kernel,

    gtok embed --model RUN -o embedded.h5ad big.h5ad

and reads back `obsm["X_gtok"]`. Peak RSS is the embed process's own (GNU time's %M);
cells/s is over its whole wall time (start-up, tokenizing, embedding, copying the file). Data
lives in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from harness import BIN, run_drill, write_universe


def call(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")


def run(folder: Path, args: argparse.Namespace) -> dict:
    gtok = str(BIN / "gtok")
    write_universe(folder, 200_000)
    universe, big = folder / "universe.bed", folder / "big.h5ad"
    t = time.perf_counter()
    call([sys.executable, str(Path(__file__).with_name("make_big_h5ad.py")), str(big), "--universe", str(universe),
          "--cells", str(args.cells), "--peaks", str(args.peaks), "--density", *map(str, args.density)])
    write_s = time.perf_counter() - t
    call([gtok, "tokenize", "-q", "-u", str(universe), "-o", str(folder / "train.gtok"), "--rows", "0:20000",
          "--label-key", "cell_type", str(big)])
    call([gtok, "manifest", "-o", str(folder / "m.json"), str(folder / "train.gtok")])
    (folder / "train.yaml").write_text("data: {batch_size: 64, num_workers: 0}\n"
                                       "trainer: {max_steps: 50, num_sanity_val_steps: 0}\nregion2vec: {embedding_dim: 64}\n")
    call([gtok, "train", "-q", "--manifest", str(folder / "m.json"), "--model", "region2vec", "--out",
          str(folder / "run"), "--config", str(folder / "train.yaml"), "--universe", str(universe)])
    out = folder / "embedded.h5ad"
    t = time.perf_counter()
    peak = folder / "peak_kb"
    call(["/usr/bin/time", "-f", "%M", "-o", str(peak), gtok, "embed", "-q", "--model", str(folder / "run"),
          "--batch-size", str(args.batch_size), "-o", str(out), str(big)])
    embed_s = time.perf_counter() - t
    peak_mb = int(peak.read_text().split()[-1]) / 1024  # the kernel's high-water mark of the embed process
    import h5py

    with h5py.File(out) as f:
        shape = f["obsm"]["X_gtok"].shape
    return {"cells": args.cells, "peaks": args.peaks, "density": list(args.density),
            "h5ad_bytes": big.stat().st_size, "write_seconds": round(write_s, 1), "embed_seconds": round(embed_s, 1),
            "cells_per_s": round(args.cells / embed_s), "peak_rss_mb": round(peak_mb), "obsm_shape": list(shape)}


def report(result: dict) -> str:
    return (f"| cells | peaks | .h5ad | embed wall | cells/s | peak RSS | obsm['X_gtok'] |\n|---:|---:|---:|---:|---:|---:|---|\n"
            f"| {result['cells']:,} | {result['peaks']:,} | {result['h5ad_bytes'] / 2**20:,.0f} MiB | "
            f"{result['embed_seconds']} s | {result['cells_per_s']:,} | {result['peak_rss_mb']:,} MiB | "
            f"{tuple(result['obsm_shape'])} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--peaks", type=int, default=20_000)
    ap.add_argument("--density", type=float, nargs=2, default=(0.002, 0.01))
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    run_drill(args, "gtok-embed-", lambda folder: run(folder, args), report)


if __name__ == "__main__":
    main()
