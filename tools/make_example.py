"""Write the simulated cells and the universe of the bundled example (resources/example/).

The example's BED files come from geniml's test suite and most overlap its `universe.uniq.bed`
(Example1, 3, 4 and 5 overlap only simulated peaks); the PBMC cells come from gtars and barely
overlap it; the simulated cells (gtok.simulate, default parameters, seed 0) have peaks of their
own. So the example universe is geniml's regions, every second PBMC peak, then the simulated
peaks: every kind of input produces real tokens (no example record is `<unk>` alone), and about
half of the PBMC peaks stay outside the vocabulary. Deterministic: rerunning it writes the same files.

    python tools/make_example.py GENIML_UNIVERSE.bed PBMC.h5ad SIMULATED.h5ad UNIVERSE.bed
"""

from __future__ import annotations

import argparse

import anndata

from gtok.atomic import atomic_path
from gtok.simulate import Simulation, simulate


def bed_lines(var, step: int = 1) -> list[str]:
    """Every `step`-th `var` region (chr/start/end columns) as BED lines."""
    var = var.iloc[::step]
    return [f"{c}\t{s}\t{e}\n" for c, s, e in zip(var["chr"].astype(str), var["start"], var["end"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("geniml_universe")
    parser.add_argument("pbmc_h5ad")
    parser.add_argument("simulated_h5ad", help="written")
    parser.add_argument("universe", help="written")
    args = parser.parse_args()
    cells = simulate(Simulation())
    with atomic_path(args.simulated_h5ad) as tmp:
        cells.write_h5ad(tmp, compression="gzip")
    with open(args.geniml_universe) as fh:
        lines = [line if line.endswith("\n") else line + "\n" for line in fh if line.strip()]
    lines += bed_lines(anndata.read_h5ad(args.pbmc_h5ad, backed="r").var, step=2) + bed_lines(cells.var)
    with atomic_path(args.universe) as tmp:
        tmp.write_text("".join(lines))
    print(f"wrote {args.simulated_h5ad} ({cells.n_obs:,} cells) and {len(lines):,} regions to {args.universe}")


if __name__ == "__main__":
    main()
