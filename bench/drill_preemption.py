#!/usr/bin/env python
"""Preemption drill: training SIGKILLed mid-epoch resumes from its last checkpoint, exactly.

    python bench/drill_preemption.py [--batch-size 2] [--every 4] [--kill-at 10] [--extra 6] [--json OUT]

On the bundled example's manifest (bench/drill_corruption.example_manifest: 32 records), a tiny
encoder is trained on the CPU with a fixed seed, one DataLoader worker, no validation, three times
in child processes, each recording every batch it trains on (global step, batch index in the
epoch, sha1 of the batch's token ids: the package's BatchLog with digests) through
`gtok.training.train.train(callbacks=...)`:

1. uninterrupted, for one epoch plus --extra steps;
2. the same, but at global step --kill-at (mid-epoch, past the checkpoint of the last multiple of
   --every) the child stops and this script SIGKILLs its process group (the trainer and its
   DataLoader worker), as a preempted node would;
3. the same command again on the same output folder: it resumes from checkpoints/last.ckpt.

Checks: the killed run trained the reference's first batches; the resumed run starts at the
checkpoint's step and batch index, consumes exactly the remaining batches of that epoch and then
the next epoch's, identical to the reference; the final weights are bit-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from drill_corruption import example_manifest
from harness import load_average, run_drill

ENCODER = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "dropout": 0.1}


def training_config(batch_size: int, every: int) -> dict:
    return {
        "seed": 0,
        "data": {"batch_size": batch_size, "num_workers": 1, "max_length": 32, "val_fraction": 0.0},
        "trainer": {"checkpoint_every_n_steps": every, "log_every_n_steps": 1, "num_sanity_val_steps": 0},
        "encoder": ENCODER,
    }


def child(spec: dict) -> None:
    """Train, appending each batch to spec['log']; at global step spec['stop_at'] announce it and
    wait to be killed (so the kill lands at a known step, not wherever a timer happens to fall)."""
    from gtok.training.callbacks import BatchLog
    from gtok.training.train import train

    stop_at = spec["stop_at"]

    class Stopping(BatchLog):
        """The package's batch log, with digests; at global step `stop_at` it announces it and waits."""

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            super().on_train_batch_end(trainer, module, outputs, batch, batch_idx)
            if trainer.global_step == stop_at:
                Path(f"{spec['log']}.stopped").touch()
                time.sleep(3600)

    train(spec["manifest"], "encoder", spec["out"], spec["config"], max_steps=spec["max_steps"], progress=False,
          callbacks=[Stopping(Path(spec["log"]), "drill", digests=True)])


def start_child(spec: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, what: str) -> None:
    output, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{output[-3000:]}")


def kill_when_stopped(proc: subprocess.Popen, log: Path, timeout: float = 600) -> float:
    """SIGKILL the child's process group once it reached its stop step; seconds it ran."""
    start = time.monotonic()
    while not Path(f"{log}.stopped").exists():
        if proc.poll() is not None or time.monotonic() - start > timeout:
            raise SystemExit(f"the run to be killed ended first (exit {proc.returncode}):\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    return time.monotonic() - start


def batches(log: Path) -> list[tuple[int, int, str]]:
    """(global step, batch index in the epoch, digest) of every batch in a run's batch log."""
    rows = [json.loads(line) for line in (log / "rank-0.jsonl").read_text().splitlines()]
    return [(row["step"], row["batch"], row["digest"]) for row in rows]


def weights(out: Path) -> dict:
    import torch

    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def run(folder: Path, args: argparse.Namespace) -> dict:
    from gtok.data.datamodule import GTokDataModule

    manifest = example_manifest(folder / "data")
    config = training_config(args.batch_size, args.every)
    epoch = len(GTokDataModule(manifest, seed=0, **config["data"]).vocab_source)
    if not args.every < args.kill_at < epoch or args.kill_at % args.every == 0:
        raise SystemExit(f"--kill-at must lie inside the first epoch ({epoch} batches), past a checkpoint step "
                         f"(a multiple of --every {args.every}) and not on one.")
    total = epoch + args.extra

    def spec(name: str, stop_at: int = -1) -> dict:
        return {"manifest": str(manifest), "out": str(folder / name), "config": config, "max_steps": total,
                "log": str(folder / f"{name}.batches"), "stop_at": stop_at}

    load = load_average()
    t = time.monotonic()
    finish(start_child(spec("whole")), "the uninterrupted run")
    whole_seconds = time.monotonic() - t
    killed = start_child(spec("killed", args.kill_at))
    ran = kill_when_stopped(killed, folder / "killed.batches")
    before_kill = batches(folder / "killed.batches")
    finish(start_child(spec("killed")), "the resumed run")

    reference = batches(folder / "whole.batches")
    seen = batches(folder / "killed.batches")
    resumed = seen[len(before_kill):]
    checkpoint = args.kill_at - args.kill_at % args.every
    ref_w, res_w = weights(folder / "whole"), weights(folder / "killed")
    return {
        "records": 32, "batches_per_epoch": epoch, "total_steps": total, "checkpoint_every": args.every,
        "killed_at_step": args.kill_at, "killed_after_s": round(ran, 1), "whole_run_s": round(whole_seconds, 1),
        "trained_before_kill_match": before_kill == reference[:args.kill_at],
        "resumed_first": list(resumed[0][:2]) if resumed else None, "expected_first": [checkpoint, checkpoint],
        "resumed_batches": len(resumed), "resumed_in_epoch": sum(1 for s, _, _ in resumed if s < epoch),
        "remaining_in_epoch": epoch - checkpoint,
        "resumed_match": resumed == reference[checkpoint:],
        "redone_batches": args.kill_at - checkpoint,
        "weights_identical": ref_w.keys() == res_w.keys() and all(bool((ref_w[k] == res_w[k]).all()) for k in ref_w),
        "load": load,
    }


def report(r: dict) -> str:
    return "\n".join([
        f"- {r['records']} records, {r['batches_per_epoch']} batches per epoch, {r['total_steps']} steps in all, "
        f"checkpoint every {r['checkpoint_every']} steps; uninterrupted run {r['whole_run_s']:.0f} s",
        f"- SIGKILL at global step {r['killed_at_step']} ({r['killed_after_s']:.0f} s in); the batches trained until "
        f"then match the uninterrupted run: {r['trained_before_kill_match']}",
        f"- the resumed run starts at (step, batch) {tuple(r['resumed_first'])} (checkpoint: "
        f"{tuple(r['expected_first'])}), redoes {r['redone_batches']} steps lost with the kill, trains "
        f"{r['resumed_in_epoch']} batches of the interrupted epoch (remaining after the checkpoint: "
        f"{r['remaining_in_epoch']}), {r['resumed_batches']} in all; identical to the uninterrupted run's: "
        f"{r['resumed_match']}",
        f"- final weights bit-identical to the uninterrupted run's: {r['weights_identical']}",
        f"- load average at the start: {r['load']}",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--every", type=int, default=4, help="checkpoint every N steps")
    ap.add_argument("--kill-at", type=int, default=10, help="global step of the SIGKILL")
    ap.add_argument("--extra", type=int, default=6, help="steps after the first epoch")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    run_drill(args, "gtok-preempt-", lambda folder: run(folder, args), report,
              failed=lambda res: None if res["trained_before_kill_match"] and res["resumed_match"]
              and res["weights_identical"] else "the resumed run's batches or weights differ from the uninterrupted run's")


if __name__ == "__main__":
    main()
