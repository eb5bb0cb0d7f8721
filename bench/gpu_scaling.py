#!/usr/bin/env python
"""Multi-GPU scaling on one node: tokens/s at N GPUs divided by N x tokens/s at 1 GPU (target >= 0.90).

    python bench/gpu_scaling.py [--gpus N] [--steps 300] [--batch-size 32] [--max-length 1024]
                                [--workers 4] [--json OUT] [--cpu]

Writes the synthetic shards of bench/gpu_feed.py (enough records that no rank wraps into a second
epoch), then runs `gtok train --model encoder` (bf16-mixed, gpu_feed's encoder) as a user would,
at 1 GPU and at N GPUs (default: all visible), each twice: for `--steps` and for twice as many.
Throughput is the difference of the two runs' `summary.json` (`tokens_seen`, `wall_seconds`), so
process start-up, DDP set-up and the first CUDA kernels cancel out. The per-GPU batch stays the
same (weak scaling: the effective batch grows with N, as in a real multi-GPU run). Exits with a
message (status 0) without CUDA; `--cpu` smoke-tests the script with 2 CPU processes (its ratio
means nothing).

About 4-6 minutes on one 8-GPU node (8 launches of Lightning).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from gpu_feed import ENCODER, write_shards

BIN = Path(sys.executable).parent


def train(manifest: Path, out: Path, config: Path, devices: int, steps: int, accelerator: str) -> dict:
    """One `gtok train` launch; its summary.json."""
    cmd = [str(BIN / "gtok"), "train", "-q", "--manifest", str(manifest), "--model", "encoder", "--out", str(out),
           "--config", str(config), "--devices", str(devices), "--accelerator", accelerator,
           "--max-steps", str(steps)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"gtok train --devices {devices} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return json.loads((out / "summary.json").read_text())


def rate(folder: Path, manifest: Path, config: Path, devices: int, steps: int, accelerator: str) -> dict:
    """Tokens/s of the steps between a short and a long run (start-up cancels out)."""
    short = train(manifest, folder / f"d{devices}-short", config, devices, steps, accelerator)
    long = train(manifest, folder / f"d{devices}-long", config, devices, 2 * steps, accelerator)
    tokens = long["tokens_seen"] - short["tokens_seen"]
    seconds = long["wall_seconds"] - short["wall_seconds"]
    return {"devices": devices, "tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds),
            "world_size": long["world_size"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, help="GPUs of the scaled run (default: all visible)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--cpu", action="store_true", help="smoke test on 2 CPU processes (timings mean nothing)")
    args = ap.parse_args(argv)

    import torch

    if args.cpu:
        n, accelerator, precision, name = 2, "cpu", "32-true", "cpu"
    elif not torch.cuda.is_available():
        print("gpu_scaling: no CUDA device on this machine; nothing measured (run it on a GPU machine).")
        return 0
    else:
        n, accelerator, precision = args.gpus or torch.cuda.device_count(), "gpu", "bf16-mixed"
        name = torch.cuda.get_device_name(0)
    if n < 2:
        print(f"gpu_scaling: {n} GPU visible; scaling needs at least 2.")
        return 0
    with tempfile.TemporaryDirectory(prefix="gtok-scaling-") as tmp:
        folder = Path(tmp)
        records = int(2 * args.steps * args.batch_size * n * 1.1) + 100
        manifest = write_shards(folder, records)
        config = folder / "train.yaml"
        config.write_text(yaml.safe_dump({
            "data": {"batch_size": args.batch_size, "max_length": args.max_length, "num_workers": args.workers,
                     "val_fraction": 0.0},
            "trainer": {"precision": precision, "log_every_n_steps": 50, "checkpoint_every_n_steps": 10**9,
                        "num_sanity_val_steps": 0, "max_epochs": 1},
            "encoder": ENCODER}))
        one = rate(folder, manifest, config, 1, args.steps, accelerator)
        many = rate(folder, manifest, config, n, args.steps, accelerator)
    efficiency = many["tokens_per_s"] / (n * one["tokens_per_s"])
    result = {"device": name, "gpus": n, "one": one, "many": many, "efficiency": round(efficiency, 3),
              "target": 0.90, "steps": args.steps, "batch_size": args.batch_size, "max_length": args.max_length}
    print(f"| GPUs | tokens/s | per GPU |\n| ---: | ---: | ---: |\n| 1 | {one['tokens_per_s']:,} | {one['tokens_per_s']:,} |\n"
          f"| {n} | {many['tokens_per_s']:,} | {many['tokens_per_s'] // n:,} |\n\n"
          f"Scaling efficiency on {name}: {efficiency:.1%} (target 90%).")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
