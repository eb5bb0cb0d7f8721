"""Data loader throughput: real (non-pad) tokens per second into training tensors.

Compares, in one run and on the same records:
  - GTokDataset + DataLoader (num_workers=0, one process) into padded batches, three ways:
    samples + `ds.collate`, ready batches of a fixed size (`batch_size=`), ready batches under a
    token budget (`token_budget=`);
  - gtars: one `.gtok` file per record read with `gtars.utils.read_tokens_from_gtok` (a list of
    ints), to a tensor;
  - text: one record per line of comma-separated ids, `line.split(",")` per record, to a tensor;
  - each baseline twice: as commonly written (`torch.tensor(list)`), and through `np.array`, which
    is 2-3x faster (a stronger baseline, shown for honesty);
  - for context, the raw memory-map rate: summing every record's slice of the shards.
The baselines are slow, so they read the first `--baseline-records` records; rates are per token.
Each method runs three times (the first also warms the page cache) and the fastest run counts.
Both wall-clock and CPU time are reported: on a shared machine other processes inflate wall time.
Targets (checked on CPU time, against the baselines as commonly written): the ready-batch loaders
(`batch_size=`, `token_budget=`) >= 20x gtars and >= 40x text.

    python bench/bench_loader.py [--records 20000] [--baseline-records 2000] [--dir DIR] [--json OUT]
    make bench        # runs test_loader_throughput below (marked bench)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest

VOCAB = 1_000_007  # > 65,536: uint32 tokens, as for a large universe
BATCH = 32
BUDGET = 65_536  # e.g. 8 records of up to 8,192 tokens
TARGETS = {"gtars": 20.0, "text": 40.0}
READY_BATCHES = (f"GTokDataset token_budget={BUDGET}", f"GTokDataset batch_size={BATCH}")


@dataclass
class Row:
    method: str
    records: int
    tokens: int
    wall: float
    cpu: float


def make_data(folder: Path, n_records: int, n_baseline: int, n_shards: int = 8, seed: int = 0) -> dict[str, Path]:
    """Shards of `n_records` records of 500-5,000 tokens; gtars files and a text file of the first `n_baseline`."""
    from gtars.utils import write_tokens_to_gtok

    from gtok.formats.shard import write_shard
    from gtok.vocabulary import Vocabulary

    rng = np.random.default_rng(seed)
    lengths = rng.integers(500, 5001, n_records)
    tokens = np.split(rng.integers(0, Vocabulary.of_size(VOCAB).n_regions, int(lengths.sum()), dtype=np.uint32), np.cumsum(lengths)[:-1])
    shards = folder / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    for s, part in enumerate(np.array_split(np.arange(n_records), n_shards)):
        write_shard(shards / f"part{s:03d}.gtok", ((f"r{i}", tokens[i]) for i in part), VOCAB, "ab" * 32)
    gtars = folder / "gtars"
    gtars.mkdir(exist_ok=True)
    for i in range(n_baseline):
        write_tokens_to_gtok(str(gtars / f"r{i}.gtok"), tokens[i].tolist())
    text = folder / "records.txt"
    with open(text, "w") as fh:
        fh.writelines(",".join(map(str, tokens[i].tolist())) + "\n" for i in range(n_baseline))
    return {"shards": shards, "gtars": gtars, "text": text}


def timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    """(tokens, wall seconds, CPU seconds): the fastest of three runs."""
    walls, cpus = [], []
    for _ in range(3):
        w, c = time.perf_counter(), time.process_time()
        tokens = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return tokens, min(walls), min(cpus)


def dataset_loop(shards: Path, **mode) -> Callable[[], int]:
    """One epoch through a DataLoader; the data set is opened once, outside the timing."""
    from torch.utils.data import DataLoader

    from gtok.data.dataset import GTokDataset

    ds = GTokDataset(shards, seed=0, **mode)
    loader = DataLoader(ds, batch_size=None) if mode else DataLoader(ds, batch_size=BATCH, collate_fn=ds.collate)

    def run() -> int:
        records = sum(len(b["input_ids"]) for b in loader)  # no torch reduction here: its thread pool is noise
        assert records == ds.num_records
        return ds.num_tokens

    return run


def mmap_loop(shards: Path) -> int:
    from gtok.formats.shard import ShardReader

    total = 0
    for path in sorted(shards.glob("*.gtok")):
        reader = ShardReader(path)
        for arr in reader:
            arr.sum()
        total += reader.n_tokens
    return total


def gtars_loop(folder: Path, n: int, via_numpy: bool) -> int:
    import torch
    from gtars.utils import read_tokens_from_gtok

    total = 0
    for i in range(n):
        ids = read_tokens_from_gtok(str(folder / f"r{i}.gtok"))
        t = torch.from_numpy(np.array(ids, dtype=np.int64)) if via_numpy else torch.tensor(ids, dtype=torch.int64)
        total += t.numel()
    return total


def text_loop(path: Path, via_numpy: bool) -> int:
    import torch

    total = 0
    with open(path) as fh:
        for line in fh:
            fields = line.split(",")
            t = torch.from_numpy(np.array(fields, dtype=np.int64)) if via_numpy else torch.tensor(list(map(int, fields)))
            total += t.numel()
    return total


def measure(folder: Path, n_records: int, n_baseline: int) -> dict[str, Row]:
    # Generate in a child process: the hundreds of MB it allocates and frees would otherwise
    # leave this process's heap in a state that changes what the loaders measure.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        paths = pool.submit(make_data, folder, n_records, n_baseline).result()
    shards = paths["shards"]
    methods: Iterable[tuple[str, Callable[[], int], int]] = [
        (READY_BATCHES[0], dataset_loop(shards, token_budget=BUDGET), n_records),
        (READY_BATCHES[1], dataset_loop(shards, batch_size=BATCH), n_records),
        (f"GTokDataset samples + collate (B={BATCH})", dataset_loop(shards), n_records),
        ("raw memory map (sum of slices)", lambda: mmap_loop(shards), n_records),
        ("gtars", lambda: gtars_loop(paths["gtars"], n_baseline, via_numpy=False), n_baseline),
        ("gtars via np.array", lambda: gtars_loop(paths["gtars"], n_baseline, via_numpy=True), n_baseline),
        ("text", lambda: text_loop(paths["text"], via_numpy=False), n_baseline),
        ("text via np.array", lambda: text_loop(paths["text"], via_numpy=True), n_baseline),
    ]
    return {name: Row(name, n, *timed(fn)) for name, fn, n in methods}


def table(rows: dict[str, Row]) -> str:
    """Markdown; the ratios are of CPU-time rates."""
    baselines = ("gtars", "text", "gtars via np.array", "text via np.array")
    lines = [
        "| method | records | M tokens/s (wall) | M tokens/s (CPU) | " + " | ".join(f"vs {b}" for b in baselines) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(baselines),
    ]
    for r in rows.values():
        ratios = " | ".join(f"{cpu_ratio(rows, r.method, b):.1f}x" for b in baselines)
        lines.append(f"| {r.method} | {r.records:,} | {r.tokens / r.wall / 1e6:.1f} | {r.tokens / r.cpu / 1e6:.1f} | {ratios} |")
    return "\n".join(lines)


def cpu_ratio(rows: dict[str, Row], method: str, baseline: str) -> float:
    ours, base = rows[method], rows[baseline]
    return (ours.tokens / ours.cpu) / (base.tokens / base.cpu)


@pytest.mark.bench
def test_loader_throughput(tmp_path):
    rows = measure(tmp_path, n_records=20_000, n_baseline=2_000)
    print("\n" + table(rows))
    for method in READY_BATCHES:
        for baseline, target in TARGETS.items():
            assert cpu_ratio(rows, method, baseline) >= target, f"{method} is under {target}x {baseline}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--baseline-records", type=int, default=2_000)
    parser.add_argument("--dir", help="where to write the data (default: a temporary folder)")
    parser.add_argument("--json", help="also write the rows and CPU-time ratios here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        rows = measure(Path(tmp), args.records, args.baseline_records)
    print(table(rows))
    if args.json:
        ratios = {m: {b: cpu_ratio(rows, m, b) for b in rows if not b.startswith(("GTok", "raw"))}
                  for m in rows if m.startswith("GTokDataset")}
        Path(args.json).write_text(json.dumps({"rows": [asdict(r) for r in rows.values()], "cpu_ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
