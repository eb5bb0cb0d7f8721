"""Which training recipe learns the bundled real cells (Corces 2016, 391 leukemia cells) as well
as the fair LSI baseline? Each recipe is trained with `gtok train` and scored with `gtok evaluate`
(the same held-out cells, folds and seed for every recipe), timed in CPU seconds of the training
process. Not run by `make test`: minutes per recipe.

    python bench/eval_recipes.py [--recipes NAME,...] [--seeds 0,1,2] [--out bench/out/recipes]

Prints a Markdown table (recipe, kNN, ARI, NMI as mean ± sd over the 5 folds, training CPU
seconds) with LSI's row, and writes it to OUT/table.md; bench/README.md holds the measured one.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "resources" / "example" / "corces2016"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
VAL_FRACTION = 0.4  # as config/example-corces.yaml: about 26 held-out cells a label, 5 per fold

BASE = {"data": {"batch_size": 16, "max_length": 4096, "num_workers": 0, "val_fraction": VAL_FRACTION},
        "trainer": {"max_epochs": 100000, "log_every_n_steps": 50, "checkpoint_every_n_steps": 100000,
                    "num_sanity_val_steps": 0, "accelerator": "cpu"}}

#: name -> (model, steps, model section, data overrides); see bench/README.md for why each.
RECIPES: dict[str, tuple[str, int, dict, dict]] = {
    # the simulated example's recipe, shorter and as long
    "r2v-w25-500": ("region2vec", 500, {"window_size": 25}, {}),
    "r2v-w25-2k": ("region2vec", 2000, {"window_size": 25}, {}),
    # wider context: a cell's tokens are shuffled every step, so a window of 100 sees more of its peaks
    "r2v-w100-500": ("region2vec", 500, {"window_size": 100}, {}),
    "r2v-w100-1k": ("region2vec", 1000, {"window_size": 100}, {}),
    "r2v-sg-w25-1k": ("region2vec", 1000, {"window_size": 25, "mode": "skipgram"}, {}),
    # the transformer, masked-token objective
    "encoder-mlm-500": ("encoder", 500, {"d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 128}, {"max_length": 512}),
    # a cell-level objective: supervised on the training cells' labels (as Atacformer's fine-tune is)
    "classifier-500": ("classifier", 500, {"d_model": 64, "n_layers": 1, "n_heads": 4, "d_ff": 128}, {"max_length": 512}),
}


def gtok(*args: str | Path) -> float:
    """Run a gtok command; the CPU seconds (user + system) it took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # one thread, as the workflow's jobs run: on a shared machine more threads only spin
    subprocess.run([sys.executable, "-m", "gtok.cli", *map(str, args)], check=True, env={**os.environ, **ONE_THREAD})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def prepare(out: Path) -> Path:
    """The Corces cells tokenized into one shard and listed in a manifest (once)."""
    manifest = out / "manifest.json"
    if not manifest.exists():
        gtok("tokenize", "-q", "-u", DATA / "universe.bed", "-o", out / "corces.gtok", "--label-key", "cell_type",
             DATA / "corces2016_leukemia.h5ad")
        gtok("manifest", "-o", manifest, out / "corces.gtok")
    return manifest


def run_recipe(name: str, seed: int, manifest: Path, out: Path) -> dict:
    """Train recipe `name` with `seed`, evaluate it; its scores and training CPU seconds."""
    model, steps, section, data = RECIPES[name]
    run = out / f"{name}-s{seed}"
    config = {**BASE, "seed": seed, "data": {**BASE["data"], **data},
              "trainer": {**BASE["trainer"], "max_steps": steps}, model: section}
    run.mkdir(parents=True, exist_ok=True)
    (run / "train.yaml").write_text(yaml.safe_dump(config))
    wall = time.perf_counter()
    cpu = gtok("train", "-q", "--manifest", manifest, "--model", model, "--out", run / "model", "--config",
               run / "train.yaml", "--universe", DATA / "universe.bed")
    wall = time.perf_counter() - wall
    gtok("evaluate", "-q", "--model", run / "model", "--manifest", manifest, "-o", run / "eval")
    table = pd.read_csv(run / "eval" / "metrics.tsv", sep="\t").set_index(["method", "metric"])
    return {"recipe": name, "seed": seed, "cpu_s": cpu, "wall_s": wall, "table": table, "model": model}


def cell(table: pd.DataFrame, method: str, metric: str) -> str:
    row = table.loc[(method, metric)]
    return f"{row['value']:.3f} ± {row['sd']:.3f}"


def lsi_cpu_seconds(manifest: Path) -> float:
    """CPU seconds of fitting the baseline on the training records and projecting the held-out ones."""
    from gtok.evaluation.evaluate import held_out_records, training_lsi

    start = time.process_time()
    fitted, _ = training_lsi(manifest, VAL_FRACTION)
    fitted.transform(held_out_records(manifest, VAL_FRACTION).counts())
    return time.process_time() - start


def markdown(results: list[dict], manifest: Path) -> str:
    lines = ["| recipe | seed | kNN accuracy | ARI | NMI | training CPU s (wall s) |", "|---|---|---|---|---|---|"]
    for r in results:
        t, m = r["table"], r["model"]
        lines.append(f"| {r['recipe']} | {r['seed']} | {cell(t, m, 'knn_accuracy')} | {cell(t, m, 'ari')} | "
                     f"{cell(t, m, 'nmi')} | {r['cpu_s']:.0f} ({r['wall_s']:.0f}) |")
    t = results[0]["table"]
    lines.append(f"| **LSI** (fitted on the training cells) | 0 | {cell(t, 'lsi', 'knn_accuracy')} | {cell(t, 'lsi', 'ari')} "
                 f"| {cell(t, 'lsi', 'nmi')} | {lsi_cpu_seconds(manifest):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated names of RECIPES")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "recipes")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = prepare(args.out)
    results = []
    for name in args.recipes.split(","):
        for seed in map(int, args.seeds.split(",")):
            results.append(run_recipe(name, seed, manifest, args.out))
            print(markdown(results[-1:], manifest), flush=True)
    text = markdown(results, manifest)
    (args.out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
