#!/usr/bin/env python
"""Corruption drill: one bit flipped in a shard's token data; who notices?

    python bench/drill_corruption.py [--json OUT]

Tokenizes the bundled example (resources/example: 12 BED files in two shards, 20 PBMC cells in a
third), writes their manifest, then flips the lowest bit of one token in the middle of a BED
shard: the token stays a valid id of the vocabulary, so nothing but a checksum can tell. Then:

- `gtok verify MANIFEST` must exit non-zero and name the damaged shard;
- `gtok train` must refuse to start on the manifest with its default options (`data.verify` true),
  with one line naming the shard; with `data.verify: false` (the documented opt-out) it trains.

tests/test_drills.py runs it as a user does and checks its --json results. Everything happens in
a temporary folder.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml
from harness import run_drill

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "resources" / "example"
GTOK = [str(Path(sys.executable).parent / "gtok")]
TINY_TRAINING = {
    "data": {"batch_size": 4, "num_workers": 0, "max_length": 32, "val_fraction": 0.0},
    "trainer": {"max_steps": 1, "num_sanity_val_steps": 0, "log_every_n_steps": 1},
    "encoder": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32},
}


def example_manifest(folder: Path) -> Path:
    """The example tokenized into three shards (two of BED files, one of cells), and their manifest."""
    from gtok.build import tokenize_to_shard
    from gtok.formats.manifest import write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    universe = str(EXAMPLE / "universe.bed")
    beds = sorted(str(p) for p in (EXAMPLE / "bed").glob("*.bed"))
    half = len(beds) // 2
    shards = [
        tokenize_to_shard(beds[:half], universe, str(folder / "bed-0.gtok"), progress=False),
        tokenize_to_shard(beds[half:], universe, str(folder / "bed-1.gtok"), progress=False),
        tokenize_to_shard([str(EXAMPLE / "h5ad" / "pbmc_hg38.h5ad")], universe, str(folder / "cells.gtok"),
                          progress=False),
    ]
    write_manifest(folder / "manifest.json", shards)
    return folder / "manifest.json"


def flip_token_bit(shard: Path) -> dict:
    """Flip the lowest bit of the middle token (its first byte: tokens are little-endian); the id
    changes by one and stays inside the vocabulary. Returns where, and the id before and after."""
    from gtok.formats.shard import HEADER_SIZE, ShardReader

    reader = ShardReader(shard)
    index, itemsize = reader.n_tokens // 2, reader.dtype.itemsize
    before = int(reader.tokens[index])
    del reader  # release the memory map before writing
    offset = HEADER_SIZE + index * itemsize
    with open(shard, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ 1]))
    return {"shard": shard.name, "offset": offset, "token_before": before, "token_after": before ^ 1}


def gtok(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*GTOK, *map(str, args)], capture_output=True, text=True)


def train_on(manifest: Path, out: Path, verify: bool | None = None) -> subprocess.CompletedProcess:
    """`gtok train` of a tiny encoder for one step; `data.verify` as given, or left at its default."""
    data = {**TINY_TRAINING["data"], **({} if verify is None else {"verify": verify})}
    config = {**TINY_TRAINING, "data": data}
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(config))
    return gtok("train", "--quiet", "--manifest", manifest, "--model", "encoder", "--out", out, "--config", path)


def drill(folder: Path) -> dict:
    from gtok.formats.shard import ShardReader

    manifest = example_manifest(folder)
    shard = folder / "bed-1.gtok"
    before = ShardReader(shard).tokens.copy()
    flipped = flip_token_bit(shard)
    reader = ShardReader(shard)  # opening checks only the header and index: it still opens
    changed = int((reader.tokens != before).sum())
    verify = gtok("verify", "--quiet", manifest)
    res = {**flipped, "path": str(shard), "tokens_changed": changed, "vocab_size": reader.vocab_size,
           "verify_exit": verify.returncode, "verify_output": (verify.stdout + verify.stderr).strip(),
           "verify_stdout": verify.stdout.strip(), "verify_stderr": verify.stderr.strip()}
    del reader
    for name, verify_option in (("default", None), ("no_verify", False)):
        run = train_on(manifest, folder / f"train-{name}", verify_option)
        res[f"train_{name}_exit"] = run.returncode
        res[f"train_{name}_stderr"] = run.stderr.strip()[-500:]
        res[f"train_{name}_checkpoints"] = (folder / f"train-{name}" / "checkpoints").exists()
    return res


def report(res: dict) -> str:
    return "\n".join([
        f"- flipped bit 0 of byte {res['offset']} of `{res['shard']}`: token {res['token_before']} became "
        f"{res['token_after']} (a valid id)",
        f"- `gtok verify`: exit {res['verify_exit']}: " + " / ".join(res["verify_output"].splitlines()),
        *(f"- `gtok train` ({what}): exit {res[f'train_{name}_exit']}"
          + (f": {res[f'train_{name}_stderr']}" if res[f"train_{name}_exit"] else " — it trained on the damaged shard")
          for name, what in (("default", "default options"), ("no_verify", "`data.verify: false`"))),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    run_drill(args, "gtok-corrupt-", drill, report)


if __name__ == "__main__":
    main()
