"""How much memory `gtok evaluate` holds as the held-out records grow: their tokens are read from
the shards a chunk at a time (embedded by the model, projected by LSI, counted for the
co-accessibility metric, dropped), so its peak memory should follow the chunk, not the records;
only their vectors and labels stay.

Writes a universe (bench/make_data.py), shards of R records of T tokens each over it (as
bench/bench_lsi.py does: 8 types as labels, a third of each record from its type's program),
trains a small region2vec on the 10 % of them outside the validation split (`val_fraction` 0.9:
the evaluation's held-out records are 90 % of R, its LSI fit the other 10 %), then in a fresh
process per size runs `evaluate` as `gtok evaluate` does and reports its peak RSS, and the peak
before the first fold's scores (the model, LSI's fit and the held-out records' vectors; the
scores' kNN and silhouette then take up to scikit-learn's working_memory, 1 GiB, more). UMAP is left
out (a stand-in gives the plots two columns of the vectors): its memory follows the vectors,
which stay in memory either way, and its time would be most of the run. `coaccessible_seconds`:
the part of `seconds` that coaccessible_pair_auc's grouped pass and bootstrap resamples took.
Run:
    .venv/bin/python bench/bench_eval_held_out.py [--records 20000 60000] [--tokens 600] [--regions 50000] [--json OUT]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import time
from pathlib import Path

from bench_lsi import run_sizes, write_data
from harness import BIN, write_universe

VAL_FRACTION = 0.9


def call(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")


def prepare(folder: Path, records: int, tokens: int, regions: int) -> None:
    """The universe, the shards and their manifest, and a region2vec trained on the training split."""
    from gtok.tokenizer import Tokenizer

    write_universe(folder, regions)
    tokenizer = Tokenizer.from_bed(folder / "universe.bed", cache_dir="off")
    write_data(folder, records, tokens, len(tokenizer.universe), fingerprint=tokenizer.fingerprint)
    (folder / "train.yaml").write_text(f"data: {{batch_size: 64, num_workers: 0, val_fraction: {VAL_FRACTION}}}\n"
                                       "trainer: {max_steps: 20, num_sanity_val_steps: 0}\nregion2vec: {embedding_dim: 32}\n")
    call([str(BIN / "gtok"), "train", "-q", "--manifest", str(folder / "manifest.json"), "--model", "region2vec",
          "--out", str(folder / "run"), "--config", str(folder / "train.yaml"), "--universe", str(folder / "universe.bed")])


def measure(folder: str) -> dict:
    """Evaluate the trained model on the held-out split (run in its own process)."""
    import pandas as pd

    import gtok.evaluation.evaluate as ev

    ev.umap_coordinates = lambda x, seed=0: x[:, :2]  # see the module's docstring
    scoring, fold_metrics = [], ev.fold_metrics

    def first_scores(*args, **kwargs):  # the peak so far: the model, LSI's fit and the held-out records' vectors
        scoring.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return fold_metrics(*args, **kwargs)

    ev.fold_metrics = first_scores
    region_level = {"seconds": 0.0}
    grouped, resampled = ev.GroupedCoOccurrence.of.__func__, ev.resampled_pair_aucs

    def timed(f):  # coaccessible_pair_auc's pass over the records and its bootstrap resamples
        def run(*args, **kwargs):
            begun = time.perf_counter()
            out = f(*args, **kwargs)
            region_level["seconds"] += time.perf_counter() - begun
            return out
        return run

    ev.GroupedCoOccurrence.of, ev.resampled_pair_aucs = classmethod(timed(grouped)), timed(resampled)
    start = time.perf_counter()
    metrics = ev.evaluate(Path(folder) / "run", Path(folder) / "manifest.json", Path(folder) / "eval").metrics
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = pd.read_csv(metrics, sep="\t").set_index(["method", "metric"])
    table, sd = table["value"], table["sd"]
    return {"seconds": round(seconds, 1), "coaccessible_seconds": round(region_level["seconds"], 1), "peak_rss_mib": round(peak), "peak_before_scoring_mib": round(scoring[0]),
            "knn_accuracy": {m: round(float(table[m, "knn_accuracy"]), 3) for m in ("region2vec", "lsi")},
            "coaccessible_pair_auc": {m: [round(float(table[m, "coaccessible_pair_auc"]), 3),
                                          round(float(sd[m, "coaccessible_pair_auc"]), 3)] for m in ("region2vec", "lsi")}}


def _prepare(folder: Path, args: argparse.Namespace, records: int) -> tuple[str, dict]:
    """The data and model of one size, and how many records and tokens are held out."""
    from gtok.evaluation.evaluate import held_out_records

    prepare(folder, records, args.tokens, args.regions)
    held = held_out_records(folder / "manifest.json", VAL_FRACTION)
    return str(folder), {"held_out": len(held.lengths), "held_out_tokens": int(held.lengths.sum())}


if __name__ == "__main__":
    run_sizes(__file__, __doc__, [20_000, 60_000], 600, measure, _prepare)
