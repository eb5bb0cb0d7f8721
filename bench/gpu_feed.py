"""GPU feed check: does training from `.gtok` shards keep one GPU as busy as data already in memory?

Writes synthetic shards (random regions of a 50,000-region vocabulary, lognormal record lengths
with a median of about 1,500 tokens, cropped to `--max-length` by the loader), then trains the
same encoder twice on one GPU with the same Lightning Trainer (bf16-mixed):

  1. from the shards: GTokDataModule (StatefulDataLoader, `--workers` worker processes);
  2. from memory: the very batches of run 1 (same shapes and contents), collected beforehand
     and handed over from a Python list, so loading costs nothing.

Each run does `--warmup` steps, then `--steps` timed steps; a step's time is the interval
between consecutive `on_train_batch_end` calls, with `torch.cuda.synchronize()` so the GPU's work
is counted. Reports the median step time of each run, their ratio (shards / memory; the target is
within 5%, i.e. <= 1.05) and the GPU's name. Exits with a message (status 0) without CUDA.

    python bench/gpu_feed.py [--steps 150] [--warmup 20] [--batch-size 32] [--max-length 1024]
                             [--workers 4] [--records 12000] [--dir DIR] [--json OUT] [--cpu]

About 2-3 minutes on one H100 (most of it writing shards and starting Lightning twice).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VOCAB_REGIONS = 50_000
ENCODER = {"d_model": 256, "n_layers": 4, "n_heads": 8, "d_ff": 1024, "dropout": 0.1}


def write_shards(folder: Path, records: int, shards: int = 4, seed: int = 0, median: int = 1500,
                 regions: int = VOCAB_REGIONS) -> Path:
    """Shards of random records and their manifest; lengths lognormal around `median` tokens."""
    from gtok.formats.manifest import write_manifest
    from gtok.formats.shard import ShardWriter
    from gtok.vocabulary import Vocabulary

    rng = np.random.default_rng(seed)
    vocab = Vocabulary(regions).size
    fingerprint = "ab" * 32
    paths = []
    for s in range(shards):
        n = records // shards
        lengths = np.clip(rng.lognormal(np.log(median), 0.6, n).astype(np.int64), 50, max(20_000, 4 * median))
        tokens = rng.integers(0, regions, int(lengths.sum()))
        path = folder / f"shard{s}.gtok"
        with ShardWriter(path, vocab, fingerprint) as writer:
            writer.add_batch([f"s{s}r{i}" for i in range(n)], tokens, lengths)
        paths.append(path)
    write_manifest(folder / "manifest.json", paths)
    return folder / "manifest.json"


def timed_fit(model, loader_or_dm, steps: int, warmup: int, gpu: bool) -> list[float]:
    """Step times (seconds) after `warmup` steps of one Trainer.fit on one device."""
    import lightning as L
    import torch

    times: list[float] = []

    class Clock(L.Callback):
        last = None

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if gpu:
                torch.cuda.synchronize()
            now = time.perf_counter()
            if self.last is not None and trainer.global_step > warmup:
                times.append(now - self.last)
            self.last = now

    trainer = L.Trainer(
        accelerator="gpu" if gpu else "cpu", devices=1, precision="bf16-mixed" if gpu else "32-true",
        max_steps=warmup + steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, reload_dataloaders_every_n_epochs=1, callbacks=[Clock()],
    )
    if isinstance(loader_or_dm, L.LightningDataModule):
        trainer.fit(model, datamodule=loader_or_dm)
    else:
        trainer.fit(model, train_dataloaders=loader_or_dm)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--records", type=int, default=12_000)
    ap.add_argument("--dir", help="where to write the shards (default: a temporary folder)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--cpu", action="store_true", help="smoke-test the script on the CPU (its timings mean nothing)")
    args = ap.parse_args(argv)

    import torch

    gpu = not args.cpu
    if gpu and not torch.cuda.is_available():
        print("gpu_feed: no CUDA device on this machine; nothing measured (run it on a GPU machine).")
        return 0
    import dataclasses

    import lightning as L
    from torch.utils.data import DataLoader

    from gtok.data.datamodule import GTokDataModule
    from gtok.models import Encoder, Vocab

    needed = (args.warmup + args.steps + 2) * args.batch_size
    if needed > args.records * 0.95:
        ap.error(f"--records must exceed the {needed} records that {args.warmup + args.steps} steps read in one epoch")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        manifest = write_shards(folder, args.records)
        write_s = time.perf_counter() - t0
        dm_options = dict(batch_size=args.batch_size, num_workers=args.workers, max_length=args.max_length, val_fraction=0.0)
        vocab = Vocab.of(GTokDataModule(manifest, **dm_options).vocab_source)

        def fresh_model():
            L.seed_everything(0, verbose=False)
            return Encoder(dataclasses.asdict(vocab), ENCODER)

        # the same batches, in memory: taken from an identical data module before any timing
        source = GTokDataModule(manifest, **dm_options)
        loader = source.train_dataloader()
        batches = [b for _, b in zip(range(args.warmup + args.steps + 2), loader)]
        del loader
        in_memory = DataLoader(batches, batch_size=None, pin_memory=gpu)  # items as they are, no workers
        shard_times = timed_fit(fresh_model(), GTokDataModule(manifest, **dm_options), args.steps, args.warmup, gpu)
        memory_times = timed_fit(fresh_model(), in_memory, args.steps, args.warmup, gpu)

    shards_ms = 1000 * statistics.median(shard_times)
    memory_ms = 1000 * statistics.median(memory_times)
    tokens = float(np.mean([int(b["attention_mask"].sum()) for b in batches]))
    result = {
        "gpu": torch.cuda.get_device_name() if gpu else "none (--cpu smoke test)",
        "torch": torch.__version__,
        "encoder": ENCODER,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "workers": args.workers,
        "steps_timed": len(shard_times),
        "real_tokens_per_batch": round(tokens),
        "median_step_ms_shards": round(shards_ms, 2),
        "median_step_ms_memory": round(memory_ms, 2),
        "ratio_shards_over_memory": round(shards_ms / memory_ms, 4),
        "target_ratio": 1.05,
        "tokens_per_s_shards": round(tokens / (shards_ms / 1000)),
        "shard_write_s": round(write_s, 1),
    }
    result["pass"] = result["ratio_shards_over_memory"] <= result["target_ratio"]
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
