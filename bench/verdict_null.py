"""How often does the evaluation's verdict name a winner between two equally good embeddings?

Runs tests/test_evaluate.py's `null_and_better` simulation (two embeddings of the same 200 records,
each with its own independent noise of the same size, kNN accuracy scored on the evaluation's 10
seeded draws of 5 stratified folds) for SIMULATIONS seeds, and saves each seed's 50 paired
differences, so that any test of them can be judged afterwards without rerunning the kNN fits.
Prints the false-winner rate of gtok's verdict (gtok.report.paired_difference) with its 95 %
Wilson interval, and those of the plain paired t-test of the 50 differences and of one draw's 5.

    OMP_NUM_THREADS=1 python bench/verdict_null.py --simulations 1000 --out null.npz

About 1 s a simulation on one core (1,000: 16 minutes). bench/README.md ("The verdict's false-winner rate") holds
the measured numbers. Not run by `make test`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def wilson(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion hits / n."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def plain_rejects(d: np.ndarray) -> bool:
    """The plain paired t-test of differences `d` at 5 %, two-sided."""
    from scipy.stats import t

    return bool(abs(d.mean()) > t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))


def main() -> None:
    from test_evaluate import null_and_better

    from gtok.report import paired_difference

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--simulations", type=int, default=1000)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("verdict_null.npz"))
    args = parser.parse_args()
    seeds = np.arange(args.first_seed, args.first_seed + args.simulations)
    diffs, verdicts = [], []
    for i, seed in enumerate(seeds):
        folds = null_and_better(int(seed), 0.0)
        d = folds.pivot(index=["repeat", "fold"], columns="method", values="value").eval("region2vec - lsi")
        diffs.append(d.to_numpy(dtype=float))
        verdicts.append(paired_difference(folds, "region2vec", "lsi")[3])
        if (i + 1) % 100 == 0 or i + 1 == seeds.size:
            np.savez(args.out, seeds=seeds[:i + 1], differences=np.array(diffs), verdict=np.array(verdicts))
            print(f"{i + 1} simulations: {sum(verdicts)} winners", flush=True)
    differences = np.array(diffs)
    rates = {"gtok's verdict (corrected, 50 folds)": np.array(verdicts),
             "plain t-test, 50 folds": np.array([plain_rejects(d) for d in differences]),
             "plain t-test, one draw's 5 folds": np.array([plain_rejects(d[:5]) for d in differences])}
    for name, hits in rates.items():
        low, high = wilson(int(hits.sum()), hits.size)
        print(f"{name}: {hits.mean():.4f} ({int(hits.sum())}/{hits.size}; 95 % CI {low:.4f}-{high:.4f})")


if __name__ == "__main__":
    main()
