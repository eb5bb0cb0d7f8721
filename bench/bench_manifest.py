"""How long `gtok manifest` and `gtok verify` take for a million records in 1,000 shards, and how
much of it the check that every record name is unique costs.

Writes S shards of R records (default 1,000 x 1,000; names like `sample0042-cell000123`, one to
three tokens each, so the shards are small and the time is the per-record work, not hashing
bytes) into a temporary folder, then times `write_manifest`, `verify_manifest`, and the name
check alone (`UniqueNames` over the opened shards). Run:
    .venv/bin/python bench/bench_manifest.py [--shards S] [--records R] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from gtok.formats.manifest import verify_manifest, write_manifest
from gtok.formats.names import UniqueNames
from gtok.formats.shard import ShardReader, write_shard


def write_shards(folder: Path, n_shards: int, n_records: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for s in range(n_shards):
        lengths = rng.integers(1, 4, n_records)
        records = [(f"sample{s:04d}-cell{r:06d}", rng.integers(0, 1000, n)) for r, n in enumerate(lengths)]
        paths.append(write_shard(folder / f"s{s:04d}.gtok", records, 1007, "ab" * 32))
    return paths


def timed(fn) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def names_only(paths: list[Path]) -> None:
    names = UniqueNames()
    for path in paths:
        names.add(ShardReader(path))
    assert names.problem() is None


def measure(n_shards: int, n_records: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="gtok-manifest-") as tmp:
        folder = Path(tmp)
        paths, written_s = timed(lambda: write_shards(folder, n_shards, n_records))
        _, names_s = timed(lambda: names_only(paths))
        _, manifest_s = timed(lambda: write_manifest(folder / "m.json", paths))
        problems, verify_s = timed(lambda: verify_manifest(folder / "m.json"))
        assert problems == [], problems[:3]
    return {"shards": n_shards, "records": n_shards * n_records, "write_shards_s": round(written_s, 2),
            "names_check_s": round(names_s, 2), "manifest_s": round(manifest_s, 2), "verify_s": round(verify_s, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--json")
    args = parser.parse_args()
    res = measure(args.shards, args.records)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res))


if __name__ == "__main__":
    main()
