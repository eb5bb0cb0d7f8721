"""Simulated single-cell ATAC data with a known answer, for the example and the evaluation tests.

Random cells with random labels (bench/make_data.py) measure speed, but no model can learn them.
Here every cell type has an accessibility program of its own, so a good embedding separates the
types, and the truth is known for every cell (`obs["cell_type"]`) and every peak
(`var["program"]`). The model of one cell c of type t in batch b, for peak p:

    P(p open in c) = 1 - exp(-rate[p] * boost[t, p] * library[c] * batch_effect[b, p])

- `rate[p]`: the peak's background accessibility, lognormal around `base_rate` (sigma
  `rate_sigma`): some peaks are open in many cells, most in few;
- `boost[t, p]` = `program_boost` on the `program_peaks` peaks of type t's program (disjoint
  between types), else 1; the peaks of no program are background (`var["program"] == "none"`);
- `library[c]`: sequencing depth, lognormal with median 1 (sigma `library_sigma`);
- `batch_effect[b, p]`: per batch and peak, lognormal with median 1 (sigma `batch_sigma`), times
  a depth shift per batch (`batch_depth`, alternating up and down): a technical effect that
  touches every type alike, which a good embedding should not follow.

Cells are drawn in row chunks (numpy over the whole chunk), so a million cells stay in bounded
memory; the output is a CSR matrix of 0/1 float32. Deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PEAK_WIDTH = 500
PEAK_SPACING = 5_000
CHROMOSOMES = 5


@dataclass(frozen=True)
class Simulation:
    """The simulator's parameters (see the module docstring for the model)."""

    cells: int = 1_000
    peaks: int = 3_000
    cell_types: int = 5
    program_peaks: int = 100
    base_rate: float = 0.03
    rate_sigma: float = 0.8
    program_boost: float = 4.0
    library_sigma: float = 0.5
    batches: int = 2
    batch_sigma: float = 0.3
    batch_depth: float = 1.3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.cell_types * self.program_peaks > self.peaks:
            raise ValueError(f"{self.cell_types} programs of {self.program_peaks} peaks need at least "
                             f"{self.cell_types * self.program_peaks} peaks, not {self.peaks}")
        if min(self.cells, self.peaks, self.cell_types, self.batches) < 1:
            raise ValueError("cells, peaks, cell_types and batches must be at least 1")


def peak_regions(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chrom, start, end) of n evenly spaced peaks over `CHROMOSOMES` chromosomes, sorted."""
    per_chrom = -(-n // CHROMOSOMES)
    i = np.arange(n)
    chrom = np.array([f"chr{c + 1}" for c in range(CHROMOSOMES)])[i // per_chrom]
    start = 100_000 + (i % per_chrom) * PEAK_SPACING
    return chrom, start.astype(np.int64), (start + PEAK_WIDTH).astype(np.int64)


def _peak_effects(sim: Simulation, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rate [peaks], program of each peak (-1: none) [peaks], batch effect [batches, peaks])."""
    rate = sim.base_rate * rng.lognormal(0.0, sim.rate_sigma, sim.peaks)
    program = np.full(sim.peaks, -1, dtype=np.int64)
    chosen = rng.permutation(sim.peaks)[: sim.cell_types * sim.program_peaks]
    program[chosen] = np.repeat(np.arange(sim.cell_types), sim.program_peaks)
    depth = np.where(np.arange(sim.batches) % 2 == 0, sim.batch_depth, 1 / sim.batch_depth)
    batch = rng.lognormal(0.0, sim.batch_sigma, (sim.batches, sim.peaks)) * depth[:, None]
    return rate, program, batch


def simulate(sim: Simulation = Simulation(), chunk: int = 10_000) -> Any:
    """An AnnData of `sim.cells` x `sim.peaks`: X (CSR, 0/1), obs cell_type and batch, var chr /
    start / end and program."""
    import anndata
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(sim.seed)
    rate, program, batch_effect = _peak_effects(sim, rng)
    cell_type = rng.integers(0, sim.cell_types, sim.cells)
    batch = rng.integers(0, sim.batches, sim.cells)
    library = rng.lognormal(0.0, sim.library_sigma, sim.cells)
    boost = np.where(program[None, :] == np.arange(sim.cell_types)[:, None], sim.program_boost, 1.0)
    blocks = []
    for lo in range(0, sim.cells, chunk):
        hi = min(lo + chunk, sim.cells)
        mean = rate * boost[cell_type[lo:hi]] * batch_effect[batch[lo:hi]] * library[lo:hi, None]
        blocks.append(sp.csr_matrix(rng.random(mean.shape) < -np.expm1(-mean), dtype=np.float32))
    chrom, start, end = peak_regions(sim.peaks)
    var = pd.DataFrame({"chr": chrom, "start": start, "end": end,
                        "program": np.where(program < 0, "none", np.char.add("type", program.astype(str)))},
                       index=[f"{c}:{s}-{e}" for c, s, e in zip(chrom, start, end)])
    obs = pd.DataFrame({"cell_type": pd.Categorical([f"type{t}" for t in cell_type]),
                        "batch": pd.Categorical([f"batch{b}" for b in batch])},
                       index=[f"sim{i:07d}" for i in range(sim.cells)])
    adata = anndata.AnnData(X=sp.vstack(blocks, format="csr"), obs=obs, var=var)
    adata.uns["simulation"] = {k: v for k, v in sim.__dict__.items()}
    return adata


def peaks_bed(var: Any) -> str:
    """The peaks of a simulation's `var` as BED text (chr, start, end), as `gtok simulate --universe-out` writes them."""
    return var[["chr", "start", "end"]].to_csv(sep="\t", header=False, index=False)


def wrote_peaks(bed: Path, h5ad: Path) -> bool:
    """Whether `bed` holds the peaks of the simulated `h5ad`, as `gtok simulate` wrote the two
    together: the only BED a rerun may replace. Any other may be a universe that shards record as
    their vocabulary."""
    import h5py
    from anndata.io import read_elem

    try:
        with h5py.File(h5ad, "r") as f:
            if "simulation" not in f.get("uns", {}):
                return False
            var = read_elem(f["var"])
        return Path(bed).read_text() == peaks_bed(var)
    except (OSError, KeyError, ValueError, UnicodeDecodeError):
        return False
