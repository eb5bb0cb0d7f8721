"""How often does the evaluation's verdict name a winner between two equally good embeddings, and
how often does it find a real lead?

Runs tests/test_evaluate.py's `null_and_better` simulation (two embeddings of the same 200 records,
each with its own independent noise, kNN accuracy scored on the evaluation's 10 seeded draws of 5
stratified folds) for SIMULATIONS seeds, and saves each seed's 50 paired differences, so that any
test of them can be judged afterwards without rerunning the kNN fits. With `--worse-by 0` (the
default) the two noises are of the same size, and it prints the false-winner rate of gtok's verdict
(gtok.report.paired_difference) with its 95 % Wilson interval, and those of the plain paired t-test
of the 50 differences and of one draw's 5. With `--worse-by W` the lsi embedding's noise is 1 + W
times the other's, a real lead, and the same rates are the power: how often each test names
region2vec the better (a winner named the other way does not count).

    OMP_NUM_THREADS=1 python bench/verdict_null.py --simulations 1000 --out null.npz
    OMP_NUM_THREADS=1 python bench/verdict_null.py --simulations 800 --worse-by 0.5 --out power.npz

About 1 s a simulation on one core (1,000: 16 minutes). bench/README.md ("The verdict's false-winner rate"
and "The verdict's power") holds the measured numbers. Not run by `make test`.
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


def plain_rejects(d: np.ndarray, lead: bool) -> bool:
    """The plain paired t-test of differences `d` at 5 %, two-sided; with `lead`, only a winner named
    in the simulated lead's direction (d > 0) counts."""
    from scipy.stats import t

    named = abs(d.mean()) > t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    return bool(named and (d.mean() > 0 or not lead))


def main() -> None:
    from test_evaluate import null_and_better

    from gtok.report import paired_difference

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--simulations", type=int, default=1000)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--worse-by", type=float, default=0.0,
                        help="the lsi embedding's noise is 1 + this times the other's (0: equally good)")
    parser.add_argument("--out", type=Path, default=Path("verdict_null.npz"))
    args = parser.parse_args()
    lead = args.worse_by > 0
    seeds = np.arange(args.first_seed, args.first_seed + args.simulations)
    diffs, verdicts = [], []
    for i, seed in enumerate(seeds):
        folds = null_and_better(int(seed), args.worse_by)
        d = folds.pivot(index=["repeat", "fold"], columns="method", values="value").eval("region2vec - lsi")
        diffs.append(d.to_numpy(dtype=float))
        mean, _, _, named = paired_difference(folds, "region2vec", "lsi")
        verdicts.append(named and (mean > 0 or not lead))
        if (i + 1) % 100 == 0 or i + 1 == seeds.size:
            np.savez(args.out, seeds=seeds[:i + 1], differences=np.array(diffs), verdict=np.array(verdicts),
                     worse_by=args.worse_by)
            print(f"{i + 1} simulations: {sum(verdicts)} winners", flush=True)
    differences = np.array(diffs)
    mean_lead = differences.mean(axis=1)
    print(f"worse_by {args.worse_by}: region2vec's kNN accuracy higher by {mean_lead.mean():.4f} on average "
          f"(sd {mean_lead.std(ddof=1) if mean_lead.size > 1 else float('nan'):.4f} over the simulations)")
    rates = {"gtok's verdict (corrected, 50 folds)": np.array(verdicts),
             "plain t-test, 50 folds": np.array([plain_rejects(d, lead) for d in differences]),
             "plain t-test, one draw's 5 folds": np.array([plain_rejects(d[:5], lead) for d in differences])}
    for name, hits in rates.items():
        low, high = wilson(int(hits.sum()), hits.size)
        print(f"{name}: {hits.mean():.4f} ({int(hits.sum())}/{hits.size}; 95 % CI {low:.4f}-{high:.4f})")


if __name__ == "__main__":
    main()
