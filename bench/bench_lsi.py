"""How long fitting the evaluation's LSI baseline on *all* training records takes, and how much
memory it holds, as the records grow: the fit streams them from the shards (gtok.evaluation.lsi),
so its peak memory should follow the chunk and the regions, not the number of records.

Writes shards of R records each (records of T tokens: a third from their type's program of 200
regions, the rest at random over V regions; 8 types as labels), a manifest, then in a fresh
process per size times `training_lsi` (the IDF pass, the randomized SVD's passes, the choice of
components on at most 20,000 labelled records) and scores the held-out records' kNN accuracy.
Run:
    .venv/bin/python bench/bench_lsi.py [--records 20000 100000] [--tokens 300] [--regions 50000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

PER_SHARD = 10_000
TYPES = 8
PROGRAM = 200


def write_data(folder: Path, records: int, tokens: int, regions: int, seed: int = 0, fingerprint: str = "ab" * 32) -> None:
    """Shards of labelled records with a known type structure, and their manifest (`fingerprint`:
    the universe's, for a model to be trained on them)."""
    from gtok.formats.manifest import write_manifest
    from gtok.formats.shard import write_shard

    rng = np.random.default_rng(seed)
    programs = rng.choice(regions, (TYPES, PROGRAM), replace=False) if TYPES * PROGRAM <= regions else None
    paths = []
    for s, start in enumerate(range(0, records, PER_SHARD)):
        rows = []
        for r in range(start, min(start + PER_SHARD, records)):
            kind = int(rng.integers(TYPES))
            own = rng.choice(programs[kind], tokens // 3, replace=False)
            ids = np.unique(np.concatenate([own, rng.integers(0, regions, tokens - own.size)]))
            rows.append((f"r{r:08d}", ids, f"type{kind}"))
        paths.append(write_shard(folder / f"s{s:04d}.gtok", rows, vocab_size=regions + 7, fingerprint=fingerprint))
    write_manifest(folder / "manifest.json", paths)


def measure(manifest: str) -> dict:
    """Fit LSI on the training split, score the held-out split (run in its own process)."""
    from gtok.evaluation.evaluate import cell_metrics, held_out_records, training_lsi

    start = time.perf_counter()
    fitted, choice = training_lsi(manifest, val_fraction=0.1)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    held = held_out_records(manifest, 0.1)
    accuracy = cell_metrics(fitted.transform(held.counts()), held.labels.astype(str))["knn_accuracy"]
    return {"training_records": fitted.records, "choice_records": len(choice.lengths), "dims": fitted.dims,
            "fit_seconds": round(seconds, 1), "peak_rss_mib": round(peak), "held_out": len(held.lengths),
            "held_out_knn_accuracy": round(float(accuracy), 3)}


def sizes_arguments(doc: str, records: list[int], tokens: int) -> argparse.Namespace:
    """The command line of this benchmark and bench_eval_held_out.py: the sizes to run, a record's
    tokens, the universe's regions, where the results go (and, hidden, the one size to measure in
    a fresh process)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=records)
    parser.add_argument("--tokens", type=int, default=tokens)
    parser.add_argument("--regions", type=int, default=50_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    return parser.parse_args()


def run_sizes(script: str, doc: str, records: list[int], tokens: int, measure: Callable[[str], dict],
              prepare: Callable[[Path, argparse.Namespace, int], tuple[str, dict]]) -> None:
    """The benchmark `script` at each size: its data written by `prepare` (which returns what to
    measure and what it knows of the data), then `measure`d in a fresh process, so that the peak
    memory is the measurement's own."""
    args = sizes_arguments(doc, records, tokens)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    results = []
    for n in args.records:
        with tempfile.TemporaryDirectory() as tmp:
            target, known = prepare(Path(tmp), args, n)
            out = subprocess.run([sys.executable, script, "--measure", target], check=True,
                                 capture_output=True, text=True).stdout
            results.append({"records": n, "tokens": args.tokens, "regions": args.regions, **known, **json.loads(out)})
            print(json.dumps(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _write(folder: Path, args: argparse.Namespace, records: int) -> tuple[str, dict]:
    write_data(folder, records, args.tokens, args.regions)
    return str(folder / "manifest.json"), {}


if __name__ == "__main__":
    run_sizes(__file__, __doc__, [20_000, 100_000], 300, measure, _write)
