"""Commands on models: train, embed, evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path

from gtok.cli.common import (
    add_cell_options,
    add_command,
    add_quiet,
    devices,
    fraction,
    inform,
    non_negative_int,
    positive_int,
    steps,
)
from gtok.errors import GtokError, describe
from gtok.modelspec import BUILTIN_MODELS


def _add_train(sub) -> None:
    help_ = ("Train a model on the shards of a manifest; rerun to resume an interrupted run (a changed option "
             "starts a new one, keeping the old in OUT/previous/TIME/).")
    p = add_command(sub, "train", help_, _run_train)
    p.add_argument("--manifest", "-m", required=True, help="manifest written by 'gtok manifest'")
    p.add_argument("--model", required=True, metavar="MODEL",
                   help=f"{', '.join(BUILTIN_MODELS)}, or package.module:ClassName of a LightningModule or a Hugging "
                        "Face PreTrainedModel, with its model_args in --config (docs/models.md)")
    p.add_argument("--out", "-o", required=True,
                   help="a new or empty folder, or one 'gtok train' wrote: for model.ckpt, checkpoints/, logs/, metrics.csv ...")
    p.add_argument("--config", "-c", help="YAML with seed, data, trainer and per-model sections, model_args and hf "
                                           "(docs/training.md, docs/models.md)")
    p.add_argument("--max-epochs", type=positive_int)
    p.add_argument("--max-steps", type=steps, help="a positive number of steps, or -1 for no limit")
    p.add_argument("--seed", type=non_negative_int)
    p.add_argument("--devices", type=devices, help="auto, a count, or indices like 0,1 (several: DDP)")
    p.add_argument("--accelerator", choices=("auto", "cpu", "gpu", "cuda", "mps"), help="auto (default), cpu or gpu")
    p.add_argument("--universe", "-u", help="universe BED of the data, carried by the model folder for 'gtok embed' "
                                          "(default: the one the manifest's shards were tokenized with)")
    add_quiet(p)


def _run_train(args: argparse.Namespace) -> int:
    from gtok.training.train import train

    final = train(
        args.manifest, args.model, args.out, args.config,
        max_epochs=args.max_epochs, max_steps=args.max_steps, seed=args.seed,
        devices=args.devices, accelerator=args.accelerator, universe=args.universe, progress=not args.quiet,
    )
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # every process of a multi-device run returns here
        print(f"trained {args.model}: {final}")
    return 0


def _add_embed(sub) -> None:
    help_ = "Embed BED files (to .npy + .names.txt) or the cells of one .h5ad or .h5mu (to a copy with obsm['X_gtok'])."
    p = add_command(sub, "embed", help_, _run_embed)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="BED / BED.gz files, or one .h5ad or .h5mu")
    p.add_argument("--model", "--checkpoint", "-m", "-c", dest="model", required=True,
                   help="a 'gtok train' output folder (it carries its universe), a checkpoint, or a geniml Region2Vec folder")
    p.add_argument("--output", "-o", required=True, help="OUT.npy for BED files, OUT.h5ad for an .h5ad (OUT.h5mu for an .h5mu): a copy with obsm['X_gtok']")
    p.add_argument("--universe", "-u", help="the universe BED, for a model without its universe.bed.gz (older runs)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    add_cell_options(p, "embed")
    add_quiet(p)


def _run_embed(args: argparse.Namespace) -> int:
    from gtok.inference.embed import embed_to_files
    from gtok.sources.cells import CellOptions
    from gtok.training.hardware import torch_device

    cells = CellOptions(modality=args.modality, tile_width=args.tile_width, layer=args.layer)
    out = embed_to_files(args.model, args.inputs, args.output, args.universe, torch_device(args.device),
                         args.batch_size, progress=not args.quiet, cells=cells)
    inform(args, f"wrote {out}")
    return 0


def _add_evaluate(sub) -> None:
    help_ = ("Score a model's embeddings of the held-out records against LSI fitted on the training records, on the "
             "same 5 folds: kNN accuracy, ARI, NMI, silhouette (metrics.tsv: mean and sd; folds.tsv), with UMAP plots.")
    p = add_command(sub, "evaluate", help_, _run_evaluate)
    p.add_argument("--model", "--checkpoint", "-c", dest="model", required=True, help="a 'gtok train' output folder, or a checkpoint")
    p.add_argument("--manifest", "-m", required=True, help="the manifest the model was trained on")
    p.add_argument("--out", "-o", required=True, help="folder for metrics.tsv, folds.tsv, umap_*.png and summary.html")
    p.add_argument("--val-fraction", type=fraction,
                   help="held-out share by name hash, for records without a split, for a model that does not record "
                        "its own (a geniml folder); a gtok model's own is used, and another value refused")
    p.add_argument("--seed", type=non_negative_int, default=0)
    add_quiet(p)


def _run_evaluate(args: argparse.Namespace) -> int:
    from gtok.evaluation.evaluate import evaluate

    done = evaluate(args.model, args.manifest, _evaluation_folder(args.out), args.val_fraction, args.seed,
                    progress=not args.quiet)
    inform(args, f"wrote {done.metrics}")
    if done.verdict:  # scored (else the log has said why not): the verdict, as the report opens
        inform(args, done.verdict)
    return 0


def _evaluation_folder(path: str) -> Path:
    """Evaluate's --out: new, empty, or an evaluation's (only files an evaluation writes: the
    workflow deletes its declared ones before a rerun, and an earlier model's UMAP may stay); never
    a model folder, nor a folder of other files, which its summary.html and plots would replace or
    mix with (the workflow writes a summary.html beside a model too)."""
    from gtok.inference.loading import geniml_folder, published_hf_folder
    from gtok.paths import output_folder
    from gtok.pretrained import is_evaluation_file, is_gtok_folder

    folder = Path(path)
    if folder.is_dir() and (is_gtok_folder(folder) or geniml_folder(folder) or published_hf_folder(folder)):
        raise GtokError(f"{describe(folder)}: is a model folder; give evaluate a folder of its own for its metrics, "
                        f"plots and summary.html, such as {describe(folder / 'eval')}.")
    other = next((p for p in folder.iterdir() if not p.name.startswith(".") and not is_evaluation_file(p.name)),
                 None) if folder.is_dir() else None
    if other is not None:
        raise GtokError(f"{describe(folder)}: holds {other.name}, which is not of an evaluation; give evaluate a new or "
                        "empty folder, or one of an earlier evaluation, so that nothing else in it is overwritten.")
    return output_folder(folder, "evaluation folder (--out)")


COMMANDS = [_add_train, _add_embed, _add_evaluate]
