#!/usr/bin/env python3
"""Fragment files: `gtok tokenize` (whole process) against gtars' `tokenize_fragment_file` on the
same file, the tokens compared barcode for barcode, and peak memory at two file sizes to show it
does not grow with the number of fragments.

Usage: bench_fragments.py [--fragments 50000000] [--small 5000000] [--barcodes 20000]
                          [--universe 1000000] [--work DIR] [--json OUT]
       bench_fragments.py --sweep 10000,1000000,5000000 [--repeat 3] [--work DIR] [--json OUT]

--sweep times whole processes only, at each size: `gtok tokenize` with the ahead-of-time
kernels (gtok.kernels, built by `make setup`), the same with numba's JIT (GTOK_KERNELS=jit, its
on-disk cache warm), and a Python process that loads the gtars tokenizer and calls
tokenize_fragment_file (writing nothing); the best of --repeat runs each, tokens compared.
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


GTARS_PROCESS = """
import sys
from gtars.tokenizers import Tokenizer, tokenize_fragment_file
tokenize_fragment_file(sys.argv[2], Tokenizer(sys.argv[1]))
"""


def run_gtok(universe: Path, fragments: Path, out: Path, kernels: str = "auto") -> dict:
    """Wall time and peak RSS of one `gtok tokenize` process (its own, from wait4)."""
    out.unlink(missing_ok=True)
    return timed([str(GTOK), "tokenize", "-q", "-u", str(universe), "-o", str(out), str(fragments)],
                 dict(os.environ, GTOK_KERNELS=kernels))


def timed(argv: list, env: dict | None = None) -> dict:
    t = time.perf_counter()
    proc = subprocess.Popen(argv, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    if status:
        raise SystemExit(f"{' '.join(map(str, argv))} failed")
    return {"seconds": seconds, "rss_mib": usage.ru_maxrss / 1024}


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def fragments_file(work: Path, universe: Path, n: int, barcodes: int) -> Path:
    path = work / f"fragments_{n}.tsv.gz"
    if not path.exists():
        subprocess.run([sys.executable, HERE / "make_fragments.py", universe, path, "--fragments", str(n),
                        "--barcodes", str(barcodes)], check=True)
    return path


def sweep(work: Path, args) -> dict:
    """Whole processes at each size: gtok (compiled kernels), gtok (JIT) and gtars; a table row each."""
    universe, _ = make(work, args, sizes=())
    run_gtok(universe, fragments_file(work, universe, 10_000, args.barcodes), work / "warm.gtok", "jit")  # caches
    print("| fragments | gtok, compiled kernels | gtok, numba JIT | gtars process | gtars / gtok | tokens identical |")
    print("|---:|---:|---:|---:|---:|---|")
    result = {}
    for n in map(int, args.sweep.split(",")):
        path, out = fragments_file(work, universe, n, args.barcodes), work / f"sweep_{n}.gtok"
        aot = best([run_gtok(universe, path, out) for _ in range(args.repeat)])
        jit = best([run_gtok(universe, path, work / "jit.gtok", "jit") for _ in range(args.repeat)])
        ref = best([timed([sys.executable, "-c", GTARS_PROCESS, universe, path]) for _ in range(args.repeat)])
        same = json.loads(subprocess.run([sys.executable, "-c", GTARS, universe, path, out], check=True,
                                         capture_output=True, text=True).stdout)["identical"]
        result[n] = {"gtok": aot, "gtok_jit": jit, "gtars": ref, "identical": same}
        print(f"| {n:,} | {aot['seconds']:.2f} s | {jit['seconds']:.2f} s | {ref['seconds']:.2f} s | "
              f"{ref['seconds'] / aot['seconds']:.2f}x | {'yes' if same else 'NO'} |", flush=True)
    return result


def make(work: Path, args, sizes: tuple[str, ...] = ("small", "large")) -> tuple[Path, dict[str, Path]]:
    universe = work / "universe.bed"
    if not universe.exists():
        subprocess.run([sys.executable, HERE / "make_data.py", work, "--universe", str(args.universe),
                        "--files", "0", "--cells", "0"], check=True)
    counts = {"small": args.small, "large": args.fragments}
    return universe, {label: fragments_file(work, universe, counts[label], args.barcodes) for label in sizes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fragments", type=int, default=50_000_000)
    ap.add_argument("--small", type=int, default=5_000_000)
    ap.add_argument("--barcodes", type=int, default=20_000)
    ap.add_argument("--universe", type=int, default=1_000_000)
    ap.add_argument("--work", help="folder for the data (kept, so a second run skips making it)")
    ap.add_argument("--json")
    ap.add_argument("--sweep", help="comma-separated fragment counts: whole-process times only")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="gtok-fragments-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.sweep:
        result = sweep(work, args)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return
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
