#!/usr/bin/env python3
"""Fragment files: `gtok tokenize` (whole process) against gtars' `tokenize_fragment_file` on the
same file, the tokens compared barcode for barcode, and peak memory at two file sizes to show it
does not grow with the number of fragments.

Usage: bench_fragments.py [--fragments 50000000] [--small 5000000] [--barcodes 20000]
                          [--universe 1000000] [--work DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
GTOK = Path(sys.executable).parent / "gtok"

GTARS = """
import json, resource, sys, time
from gtars.tokenizers import Tokenizer, tokenize_fragment_file
from gtok.formats.shard import ShardReader
tok = Tokenizer(sys.argv[1])
t = time.perf_counter()
docs = tokenize_fragment_file(sys.argv[2], tok)
seconds = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
reader = ShardReader(sys.argv[3])
ours = dict(zip(reader.names, reader))
same = len(ours) == len(docs) and all(k in ours and list(v) == ours[k].tolist() for k, v in docs.items())
print(json.dumps({"seconds": seconds, "rss_mib": rss, "barcodes": len(docs),
                  "tokens": sum(len(v) for v in docs.values()), "identical": same}))
"""


def run_gtok(universe: Path, fragments: Path, out: Path) -> dict:
    """Wall time and peak RSS of one `gtok tokenize` process (its own, from wait4)."""
    out.unlink(missing_ok=True)
    t = time.perf_counter()
    proc = subprocess.Popen([str(GTOK), "tokenize", "-q", "-u", str(universe), "-o", str(out), str(fragments)])
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    if status:
        raise SystemExit(f"gtok tokenize failed on {fragments}")
    return {"seconds": seconds, "rss_mib": usage.ru_maxrss / 1024}


def make(work: Path, args) -> tuple[Path, dict[str, Path]]:
    universe = work / "universe.bed"
    if not universe.exists():
        subprocess.run([sys.executable, HERE / "make_data.py", work, "--universe", str(args.universe),
                        "--files", "0", "--cells", "0"], check=True)
    files = {}
    for label, n in (("small", args.small), ("large", args.fragments)):
        path = work / f"fragments_{n}.tsv.gz"
        if not path.exists():
            subprocess.run([sys.executable, HERE / "make_fragments.py", universe, path, "--fragments", str(n),
                            "--barcodes", str(args.barcodes)], check=True)
        files[label] = path
    return universe, files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fragments", type=int, default=50_000_000)
    ap.add_argument("--small", type=int, default=5_000_000)
    ap.add_argument("--barcodes", type=int, default=20_000)
    ap.add_argument("--universe", type=int, default=1_000_000)
    ap.add_argument("--work", help="folder for the data (kept, so a second run skips making it)")
    ap.add_argument("--json")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="gtok-fragments-"))
    work.mkdir(parents=True, exist_ok=True)
    universe, files = make(work, args)
    run_gtok(universe, files["small"], work / "warm.gtok")  # builds the universe cache and numba's
    result = {}
    for label, path in files.items():
        ours = run_gtok(universe, path, work / f"{label}.gtok")
        ref = json.loads(subprocess.run([sys.executable, "-c", GTARS, universe, path, work / f"{label}.gtok"],
                                        check=True, capture_output=True, text=True).stdout)
        n = int(path.name.split("_")[1].split(".")[0])
        result[label] = {"fragments": n, "gtok": ours, "gtars": ref, "speedup": ref["seconds"] / ours["seconds"]}
        print(f"{label}: {n:,} fragments, {ref['barcodes']:,} barcodes, {ref['tokens']:,} tokens | "
              f"gtok {ours['seconds']:.1f} s, {ours['rss_mib']:.0f} MiB | gtars call {ref['seconds']:.1f} s, "
              f"{ref['rss_mib']:.0f} MiB | {result[label]['speedup']:.2f}x, identical {ref['identical']}")
    print(f"(resource: children {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB peak)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
