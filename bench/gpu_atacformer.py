"""GPU feed check for an Atacformer-size brought model: do `.gtok` shards keep one GPU busy?

geniml's `AtacformerForReplacedTokenDetection` at its own size (hidden 384, 6 layers, 8 heads,
feed-forward 1,536, a vocabulary of 890,704 regions) trained by gtok's Hugging Face adapter
(gtok.models.hf, replaced-token detection) on one GPU in bf16-mixed, at a context of `--max-length`
tokens (8,192, geniml's own, where memory allows), twice with the same Lightning Trainer
(bench/gpu_feed.py's `timed_fit`):

  1. from the shards: synthetic records (random regions, lognormal lengths around `--median`
     tokens, so that most fill the context) through GTokDataModule with `--workers` workers;
  2. from memory: the very batches of run 1, collected beforehand into a Python list.

Reports real tokens per second of each run and their ratio (target: shards within 5% of memory,
i.e. the loader never starves the model), the peak GPU memory and the GPU's name. One command:

    python bench/gpu_atacformer.py [--steps 60] [--warmup 10] [--batch-size 4] [--max-length 8192]
                                   [--workers 4] [--records 1200] [--regions 890704] [--json OUT] [--cpu]

Needs the test extra (transformers 4.57, geniml 0.8.4, scanpy). Without CUDA it prints a message
and exits 0; `--cpu` smoke-tests the script with a tiny model (its timings mean nothing).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_feed import timed_fit, write_shards  # noqa: E402

RTD = "geniml.atacformer:AtacformerForReplacedTokenDetection"
ATACFORMER = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 8, "intermediate_size": 1536}
SMOKE = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=8192)
    ap.add_argument("--median", type=int, default=9000, help="median record length of the synthetic shards")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--records", type=int, default=1200)
    ap.add_argument("--regions", type=int, default=890_704, help="universe regions (Atacformer's: 890,704)")
    ap.add_argument("--dir", help="where to write the shards (default: a temporary folder)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--cpu", action="store_true", help="smoke-test the script on the CPU with a tiny model")
    args = ap.parse_args(argv)

    import torch

    gpu = not args.cpu
    if gpu and not torch.cuda.is_available():
        print("gpu_atacformer: no CUDA device on this machine; nothing measured (run it on a GPU machine).")
        return 0
    import lightning as L
    from torch.utils.data import DataLoader

    from gtok.data.datamodule import GTokDataModule
    from gtok.models import Vocab
    from gtok.models.hf import HFModel, hf_config
    from gtok.modelspec import ModelSpec, import_brought

    needed = (args.warmup + args.steps + 2) * args.batch_size
    if needed > args.records:
        ap.error(f"--records must be at least the {needed} records that {args.warmup + args.steps} steps read")
    shape = ATACFORMER if gpu else SMOKE
    brought = import_brought(ModelSpec(RTD))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        manifest = write_shards(folder, args.records, median=args.median, regions=args.regions)
        write_s = time.perf_counter() - t0
        dm_options = dict(batch_size=args.batch_size, num_workers=args.workers, max_length=args.max_length,
                          val_fraction=0.0)
        vocab = Vocab.of(GTokDataModule(manifest, **dm_options).vocab_source)
        config = hf_config(brought, {**shape, "max_position_embeddings": args.max_length}, vocab)

        def fresh_model():
            L.seed_everything(0, verbose=False)
            return HFModel(vocab, RTD, config, {"lr": 1e-4})

        loader = GTokDataModule(manifest, **dm_options).train_dataloader()
        batches = [b for _, b in zip(range(args.warmup + args.steps + 2), loader)]
        del loader
        in_memory = DataLoader(batches, batch_size=None, pin_memory=gpu)
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        shard_times = timed_fit(fresh_model(), GTokDataModule(manifest, **dm_options), args.steps, args.warmup, gpu)
        memory_times = timed_fit(fresh_model(), in_memory, args.steps, args.warmup, gpu)

    tokens = float(np.mean([int(b["attention_mask"].sum()) for b in batches]))
    shards_s, memory_s = statistics.median(shard_times), statistics.median(memory_times)
    result = {
        "gpu": torch.cuda.get_device_name() if gpu else "none (--cpu smoke test)",
        "torch": torch.__version__,
        "model": RTD,
        "model_args": shape,
        "vocab_size": vocab.vocab_size,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "workers": args.workers,
        "steps_timed": len(shard_times),
        "real_tokens_per_batch": round(tokens),
        "tokens_per_s_shards": round(tokens / shards_s),
        "tokens_per_s_memory": round(tokens / memory_s),
        "ratio_shards_over_memory_step_time": round(shards_s / memory_s, 4),
        "target_ratio": 1.05,
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if gpu else None,
        "shard_write_s": round(write_s, 1),
    }
    result["pass"] = result["ratio_shards_over_memory_step_time"] <= result["target_ratio"]
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
