"""`gtok train` and `gtok embed` (argument definitions; the work happens in gtok.train / gtok.embed)."""

from __future__ import annotations

import argparse

#: The models `gtok train` knows (gtok.models.MODELS; listed here so `gtok --help` needs no torch).
MODEL_NAMES = ("region2vec", "encoder", "classifier")


def _devices(text: str) -> int | str | list[int]:
    """`auto`, a count (`2`, `-1` for all) or a list of indices (`0,1`)."""
    if "," in text:
        return [int(x) for x in text.split(",") if x]
    try:
        return int(text)
    except ValueError:
        return text


def _add_train(sub) -> None:
    help_ = ("Train a model on the shards of a manifest; rerun to resume an interrupted run (a changed option "
             "starts a new one, keeping the old in OUT/previous/).")
    p = sub.add_parser("train", help=help_, description=help_)
    p.add_argument("--manifest", "-m", required=True, help="manifest written by 'gtok manifest'")
    p.add_argument("--model", required=True, choices=MODEL_NAMES)
    p.add_argument("--out", "-o", required=True, help="folder for model.ckpt, checkpoints/, logs/, metrics.csv and loss.png")
    p.add_argument("--config", "-c", help="YAML with seed, data, trainer and per-model sections (docs/training.md)")
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--devices", type=_devices, help="auto, a count, or indices like 0,1 (several: DDP)")
    p.add_argument("--accelerator", help="auto (default), cpu or gpu")
    p.add_argument("--universe", "-u", help="universe BED of the data, recorded in the checkpoint for 'gtok embed'")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from gtok.train import train

    final = train(
        args.manifest, args.model, args.out, args.config,
        max_epochs=args.max_epochs, max_steps=args.max_steps, seed=args.seed,
        devices=args.devices, accelerator=args.accelerator, universe=args.universe, progress=not args.quiet,
    )
    print(f"trained {args.model}: {final}")
    return 0


def _add_embed(sub) -> None:
    help_ = "Embed BED files (to .npy + .names.txt) or the cells of one .h5ad (to a copy with obsm['X_gtok'])."
    p = sub.add_parser("embed", help=help_, description=help_)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="BED / BED.gz files, or one .h5ad")
    p.add_argument("--checkpoint", "-c", required=True, help="a 'gtok train' checkpoint")
    p.add_argument("--output", "-o", required=True, help="OUT.npy for BED files, OUT.h5ad for an .h5ad")
    p.add_argument("--universe", "-u", help="the universe BED, if the checkpoint's recorded path is missing or absent")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    from gtok.embed import embed_to_files

    out = embed_to_files(args.checkpoint, args.inputs, args.output, args.universe, args.device,
                         args.batch_size, progress=not args.quiet)
    print(f"wrote {out}")
    return 0


COMMANDS: list = [_add_train, _add_embed]
