#!/usr/bin/env python
"""Tokenization speed: `gtok tokenize` against gtars, as whole processes, alternately.

    python bench/bench_tokenize.py [--data bench/data] [--repeats 5] [--cells-oracle 300]

Generates realistic inputs with bench/make_data.py on first use (a 1,000,000-region universe,
8 BED files of 100,000 regions, an h5ad of 5,000 cells x 100,000 peaks). Reports, as a markdown
table:
- BED: wall time of the whole `gtok tokenize` process (interpreter start, imports and universe
  loading included) vs a gtars script doing `Tokenizer(universe)(path)` + `write_tokens_to_gtok`
  for the same files; both measured alternately, medians of --repeats runs; tokens compared.
- h5ad: cells/s of `gtok tokenize` on the whole matrix (one process, row chunks) vs the per-cell
  approach of geniml's `tokenize_anndata` with gtars (timed on its loop only, on the first cells),
  and the peak RSS of the gtok process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GTOK = [sys.executable, "-m", "gtok.cli"]

GTARS_BED = """
import sys, os
from gtars.tokenizers import Tokenizer
from gtars.utils import write_tokens_to_gtok
universe, out, *beds = sys.argv[1:]
tok = Tokenizer(universe)
for i, bed in enumerate(beds):
    write_tokens_to_gtok(os.path.join(out, f"{i}.gtok"), tok(bed)["input_ids"])
"""

GTARS_CELLS = """
import sys, time, json
import numpy as np, anndata as ad
from gtars.tokenizers import Tokenizer
from gtars.models import Region
universe, h5ad, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
tok = Tokenizer(universe)
adata = ad.read_h5ad(h5ad)
features = np.empty(adata.n_vars, dtype=object)
for i, (c, s, e) in enumerate(zip(adata.var["chr"], adata.var["start"], adata.var["end"])):
    features[i] = Region(str(c), int(s), int(e), None)
x = adata.X
t = time.perf_counter()
out = []
for row in range(n):  # geniml's tokenize_anndata, one cell at a time
    _, cols = x[row].nonzero()
    out.append(tok(list(features[np.sort(cols)]))["input_ids"])
dt = time.perf_counter() - t
print(json.dumps({"cells": n, "seconds": dt, "tokens": [list(map(int, o)) for o in out[:20]]}))
"""


GTOK_CELLS = """
import sys, time, json
from gtok import Tokenizer
from gtok.formats.shard import ShardWriter
from gtok.build import write_source
from gtok.sources.cells import H5adSource
universe, h5ad, out = sys.argv[1:]
tok = Tokenizer.from_bed(universe)
t = time.perf_counter()
with ShardWriter(out, tok.vocab_size, tok.fingerprint) as w:
    write_source(w, tok, H5adSource(h5ad), set())  # what `gtok tokenize` runs per .h5ad
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def ensure_data(data: Path) -> None:
    if (data / "cells.h5ad").exists():
        return
    subprocess.run(
        [sys.executable, str(HERE / "make_data.py"), str(data), "--universe", "1000000", "--files", "8",
         "--regions", "100000", "--cells", "5000", "--peaks", "100000", "--seed", "0"],
        check=True,
    )


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    return wall, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def peak_rss_kib(cmd: list[str], env: dict) -> int:
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], check=True, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return int(out.stderr.strip().splitlines()[-1])


def bench_bed(data: Path, work: Path, repeats: int, env: dict) -> dict:
    universe = str(data / "universe.bed")
    beds = sorted(str(p) for p in (data / "bed").glob("*.bed"))
    shard = str(work / "bed.gtok")
    gtars_out = work / "gtars"
    gtars_out.mkdir(exist_ok=True)
    cold, _ = timed([*GTOK, "tokenize", "-q", "-u", universe, "-o", shard, *beds], env)  # builds the cache
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(timed([*GTOK, "tokenize", "-q", "-u", universe, "-o", shard, *beds], env)[0])
        theirs.append(timed([sys.executable, "-c", GTARS_BED, universe, str(gtars_out), *beds], env)[0])
    from gtars.utils import read_tokens_from_gtok

    from gtok import ShardReader

    reader = ShardReader(shard)
    same = all(reader[i].tolist() == list(read_tokens_from_gtok(str(gtars_out / f"{i}.gtok"))) for i in range(len(beds)))
    return {"files": len(beds), "tokens": reader.n_tokens, "gtok_cold": cold, "gtok": statistics.median(ours),
            "gtars": statistics.median(theirs), "identical": same, "gtok_runs": ours, "gtars_runs": theirs}


def bench_cells(data: Path, work: Path, n_oracle: int, env: dict) -> dict:
    universe, h5ad = str(data / "universe.bed"), str(data / "cells.h5ad")
    shard = str(work / "cells.gtok")
    cmd = [*GTOK, "tokenize", "-q", "-u", universe, "-o", shard, h5ad]  # the default 2,048-row chunks
    wall, _ = timed(cmd, env)
    rss = peak_rss_kib(cmd, env)
    inner = subprocess.run([sys.executable, "-c", GTOK_CELLS, universe, h5ad, str(work / "inner.gtok")],
                           check=True, env=env, capture_output=True, text=True)
    loop = json.loads(inner.stdout.strip().splitlines()[-1])["seconds"]
    res = subprocess.run([sys.executable, "-c", GTARS_CELLS, universe, h5ad, str(n_oracle)],
                         check=True, env=env, capture_output=True, text=True)
    oracle = json.loads(res.stdout.strip().splitlines()[-1])
    from gtok import ShardReader

    reader = ShardReader(shard)
    same = all(reader[i].tolist() == oracle["tokens"][i] for i in range(len(oracle["tokens"])))
    return {"cells": len(reader), "gtok_seconds": wall, "gtok_cells_per_s": len(reader) / loop,
            "gtok_process_cells_per_s": len(reader) / wall,
            "gtars_cells_per_s": oracle["cells"] / oracle["seconds"], "peak_rss_mib": rss / 1024, "identical": same}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE / "data")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cells-oracle", type=int, default=300)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    ensure_data(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GTOK_CACHE_DIR": str(Path(tmp) / "cache")}
        bed = bench_bed(args.data, Path(tmp), args.repeats, env)
        cells = bench_cells(args.data, Path(tmp), args.cells_oracle, env)
    print(report(bed, cells))
    if args.json:
        args.json.write_text(json.dumps({"bed": bed, "cells": cells}, indent=2))
    return 0


def report(bed: dict, cells: dict) -> str:
    return "\n".join([
        "| measure | gtok | gtars | ratio |",
        "|---|---|---|---|",
        f"| {bed['files']} BED files x 100k regions, whole process (median of {len(bed['gtok_runs'])}) "
        f"| {bed['gtok']:.2f} s | {bed['gtars']:.2f} s | **{bed['gtars'] / bed['gtok']:.1f}x** |",
        f"| same, first run (builds the universe cache) | {bed['gtok_cold']:.2f} s | {bed['gtars']:.2f} s "
        f"| {bed['gtars'] / bed['gtok_cold']:.1f}x |",
        f"| h5ad {cells['cells']:,} cells x 100k peaks, cells/s (tokenizing loop, file read and shard write "
        f"included; gtars: its per-cell loop) | {cells['gtok_cells_per_s']:,.0f} "
        f"| {cells['gtars_cells_per_s']:,.0f} | **{cells['gtok_cells_per_s'] / cells['gtars_cells_per_s']:.0f}x** |",
        f"| h5ad cells/s of the whole `gtok tokenize` process (start-up, imports, universe load included) "
        f"| {cells['gtok_process_cells_per_s']:,.0f} | {cells['gtars_cells_per_s']:,.0f} "
        f"| {cells['gtok_process_cells_per_s'] / cells['gtars_cells_per_s']:.0f}x |",
        f"| h5ad peak RSS of the gtok process (2,048-row chunks) | {cells['peak_rss_mib']:.0f} MiB | | |",
        "",
        f"Tokens identical to gtars: BED {bed['identical']}, cells {cells['identical']} "
        f"({bed['tokens']:,} BED tokens).",
    ])


if __name__ == "__main__":
    sys.exit(main())
