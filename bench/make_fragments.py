#!/usr/bin/env python3
"""A synthetic 10x-style fragments file for the fragment benchmarks: `chrom start end barcode
count`, sorted by position, with `#` header lines, gzipped (or bgzipped with --bgzip).

Fragments fall near the regions of a universe BED (70 %) or anywhere on the chromosome (30 %), so
about a third overlap nothing, as in real data; barcodes follow a lognormal library size. The
file is written one chromosome at a time, so 100 M fragments need no more memory than one.

Usage: make_fragments.py UNIVERSE.bed OUT.tsv.gz [--fragments N] [--barcodes B] [--seed S] [--bgzip]
"""

from __future__ import annotations

import argparse
import gzip
import subprocess

import numpy as np
import pandas as pd


def chromosomes(universe: str, n: int, barcodes: int, seed: int):
    """(chrom, frame of its sorted fragments) for each chromosome of the universe, in file order."""
    rng = np.random.default_rng(seed)
    uni = pd.read_csv(universe, sep="\t", header=None, usecols=[0, 1, 2], names=["chrom", "start", "end"], comment="#")
    sizes = rng.lognormal(0, 1, size=barcodes)
    names = np.array([f"{b:06d}-1" for b in range(barcodes)], dtype=object)
    by_chrom = dict(tuple(uni.groupby("chrom", sort=False)))
    per_chrom = rng.multinomial(n, np.array([len(g) for g in by_chrom.values()]) / len(uni))
    for (chrom, regions), k in zip(by_chrom.items(), per_chrom):
        starts = regions["start"].to_numpy()[rng.integers(0, len(regions), size=k)] + rng.integers(-400, 400, size=k)
        anywhere = rng.random(k) < 0.3
        starts[anywhere] = rng.integers(0, int(regions["end"].max()), size=int(anywhere.sum()))
        starts = np.sort(np.maximum(starts, 0))
        yield pd.DataFrame({
            "chrom": chrom,
            "start": starts,
            "end": starts + rng.integers(50, 700, size=k),
            "barcode": names[rng.choice(barcodes, size=k, p=sizes / sizes.sum())],
            "count": rng.integers(1, 4, size=k),
        })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("universe")
    ap.add_argument("out")
    ap.add_argument("--fragments", type=int, default=1_000_000)
    ap.add_argument("--barcodes", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bgzip", action="store_true", help="compress with bgzip (needs htslib's bgzip on PATH)")
    args = ap.parse_args()
    text = args.out.removesuffix(".gz").removesuffix(".bgz") if args.bgzip else None
    with (open(text, "w") if text else gzip.open(args.out, "wt", compresslevel=3)) as f:
        f.write("# id=synthetic\n# reference_path=none\n")
        for frame in chromosomes(args.universe, args.fragments, args.barcodes, args.seed):
            frame.to_csv(f, sep="\t", header=False, index=False, chunksize=1_000_000)
    if text:
        subprocess.run(["bgzip", "-f", "-@2", text], check=True)


if __name__ == "__main__":
    main()
