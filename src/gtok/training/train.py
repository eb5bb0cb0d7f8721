"""`gtok train`: fit a model on the shards of a manifest, resumable, with metrics and a loss plot.

Writes into OUT:
  model.ckpt              the final checkpoint, once training has finished (atomically; a hard link
                          to checkpoints/last.ckpt where the file system allows)
  checkpoints/last.ckpt   every `checkpoint_every_n_steps` steps and at the end (atomically)
  logs/version_N/         Lightning's CSV logs, one version per (re)start
  metrics.csv             those logs flattened: one row per step, later runs replacing the
                          steps they re-did after a resume
  loss.png                training and validation loss against the step
  universe.bed.gz,        what makes the folder a self-contained model (gtok.pretrained): the
  config.yaml             universe the data was tokenized with, and the model's config
  previous/               the run this folder held before, when a changed option started a new one

Run again on the same OUT and training continues from last.ckpt, mid-epoch, with the exact batches
an uninterrupted run would have seen next (gtok.data.datamodule), provided it is the same run
(gtok.training.run). The config's sections and options are gtok.options' (docs/training.md).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gtok.atomic import atomic_path
from gtok.errors import FingerprintMismatchError, GtokError, describe
from gtok.formats.manifest import Manifest, load_manifest
from gtok.options import MODEL_CONFIGS, SECTIONS, DataOptions, TrainerOptions, check_train_config, make_config
from gtok.paths import input_file, output_folder
from gtok.plots import plot_loss
from gtok.pretrained import data_universe, write_model_folder
from gtok.training.processes import await_decision, devices_and_environment, launch_id, share_decision
from gtok.training.run import flatten_metrics, publish, resume_point, run_options


def read_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """The YAML config as a dict, every section and option checked (`gtok.options`), with one-line
    errors for a missing, malformed or misspelt file."""
    if path is None:
        return {}
    import yaml

    name = describe(path)
    try:
        with open(input_file(path, "config file")) as fh:
            cfg = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise GtokError(f"{name}: not a readable YAML config ({str(exc).splitlines()[0]}).") from None
    if not isinstance(cfg, dict):
        raise GtokError(f"{name}: the config must be a mapping of sections ({', '.join(SECTIONS)}).")
    check_train_config(cfg, name)
    return cfg


def train(
    manifest: str | os.PathLike,
    model: str,
    out: str | os.PathLike,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    max_epochs: int | None = None,
    max_steps: int | None = None,
    seed: int | None = None,
    devices: Any = None,
    accelerator: str | None = None,
    universe: str | os.PathLike | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> Path:
    """Train `model` on `manifest` into `out`; return out/model.ckpt, the final checkpoint.

    Continues the run of out/checkpoints/last.ckpt when it is this run (`resume_point`), else
    starts a new one. Arguments other than `config` override the config's values. `callbacks` are
    extra Lightning callbacks (for instance to watch the batches).
    """
    cfg = dict(config) if isinstance(config, Mapping) else read_config(config)
    check_train_config(cfg)  # everything a user can get wrong is checked before torch is imported
    if model not in MODEL_CONFIGS:
        raise GtokError(f"unknown model {model!r}; choose one of {', '.join(MODEL_CONFIGS)}.")
    output_folder(out, "training folder (--out)", create=False)
    listed = load_manifest(manifest)
    data = make_config(DataOptions, cfg.get("data"), "config section 'data'")
    opts = make_config(TrainerOptions, cfg.get("trainer"), "config section 'trainer'")
    _override(opts, max_epochs=max_epochs, max_steps=max_steps, devices=devices, accelerator=accelerator)
    seed = int(seed if seed is not None else cfg.get("seed", 0))
    options = {**(cfg.get(model) or {}), "seed": seed}
    model_config = make_config(MODEL_CONFIGS[model], options, f"{model} model")
    universe_file = _universe(listed, universe or data.universe)  # a model that could never be used is not trained
    out = output_folder(out, "training folder (--out)")

    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from gtok.data.datamodule import GTokDataModule
    from gtok.models import model_class
    from gtok.training.callbacks import BatchLog, RunSummary

    if not progress:
        _quiet_lightning()
    opts.devices, environment = devices_and_environment(opts.devices, opts.num_nodes)
    cls = model_class(model)
    hardware = _hardware(opts)
    run = run_options(model, model_config, data, opts, hardware, listed)
    # Every process of the launch runs this function: only the first checks the shards and
    # decides whether the run resumes (rearranging `out`); the others wait for its decision.
    leader = rank_zero_only.rank == 0

    dm_options = {k: v for k, v in dataclasses.asdict(data).items() if k not in ("universe", "verify")}
    dm = GTokDataModule(manifest, seed=seed, verify=data.verify and leader, progress=progress, **dm_options)
    source = dm.vocab_source  # opens (and checks) the data before anything in `out` changes
    vocab = _vocab(source, universe_file)
    resume = _agreed_resume_point(out, run, opts, leader)
    L.seed_everything(seed, workers=True, verbose=False)
    net = _build_model(cls, vocab, options, source, str(manifest), resume)
    last = out / "checkpoints" / "last.ckpt"
    extra = [RunSummary(out / "summary.json"), *([BatchLog(out / "batches", launch_id())] if opts.log_batches else [])]
    trainer = _trainer(opts, hardware, run, out, last, progress, [*callbacks, *extra], environment)
    with warnings.catch_warnings():
        # GTokDataset's len() counts this rank's batches exactly, whatever the number of workers
        warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
        # gtok chose how the processes start (gtok.training.processes); and Lightning's own deprecation
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system")
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        warnings.filterwarnings("ignore", message=r"torch.distributed.nn.functional.all_gather is deprecated")
        warnings.filterwarnings("ignore", message="Total length of `list` across ranks is zero")  # no validation set
        try:
            trainer.fit(net, datamodule=dm, ckpt_path=last if resume is not None else None)
        except SIGTERMException:  # a SystemExit of status 0, which would pass for success
            raise GtokError(f"{describe(out)}: training stopped by SIGTERM at step {trainer.global_step}; "
                            "rerun the same command to continue from its last checkpoint.") from None
    final = out / "model.ckpt"
    if trainer.is_global_zero:
        metrics = flatten_metrics(out / "logs")
        with atomic_path(out / "metrics.csv") as tmp:
            metrics.to_csv(tmp, index=False)
        plot_loss(metrics, out / "loss.png")
        publish(last, final)
        write_model_folder(out, vocab.universe, {
            "model": model, "options": dataclasses.asdict(model_config),
            "data": {"max_length": data.max_length, "val_fraction": data.val_fraction},
            "vocabulary": {"vocab_size": vocab.vocab_size, "fingerprint": vocab.fingerprint},
        })
    return final


def _agreed_resume_point(out: Path, run: dict[str, Any], opts: TrainerOptions, leader: bool):
    """The checkpoint this launch continues from, or None, the same in every process."""
    if leader:
        resume = resume_point(out, run, opts, leader=True)
        share_decision(out, resume is not None)
        return resume
    if not await_decision(out):
        return None
    from gtok.models import read_checkpoint

    return read_checkpoint(out / "checkpoints" / "last.ckpt")


def _quiet_lightning() -> None:
    """No informational lines from Lightning (devices found, tips): `--quiet` means quiet."""
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _override(opts: TrainerOptions, **values: Any) -> None:
    """Command-line values over the config's; --max-steps alone lifts the epoch limit."""
    for key, value in values.items():
        if value is not None:
            setattr(opts, key, value)
    if values["max_steps"] is not None and values["max_epochs"] is None:
        opts.max_epochs = None


def _hardware(opts: TrainerOptions) -> dict[str, Any]:
    """The precision and determinism that `auto` stands for on this machine."""
    import torch

    gpu = opts.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    precision = opts.precision
    if precision == "auto":
        precision = "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"
    deterministic = (not gpu) if opts.deterministic == "auto" else opts.deterministic
    return {"precision": precision, "deterministic": deterministic}


def _universe(listed: Manifest, given: str | os.PathLike | None) -> tuple[str, str]:
    """(absolute path, fingerprint) of the universe the model folder will carry, found before
    anything is written: the one given, which must be the data's own vocabulary, else the one the
    data's shards recorded (`gtok.pretrained.data_universe`, which refuses when it is not found)."""
    if given is None:
        return data_universe(listed), listed.universe.fingerprint
    from gtok.tokenizer import Tokenizer

    tok = Tokenizer.from_bed(given)
    if (listed.fingerprint not in (None, tok.fingerprint)) or (listed.vocab_size not in (None, tok.vocab_size)):
        raise FingerprintMismatchError(
            f"{describe(given)}: vocabulary {tok.fingerprint[:12]} ({tok.vocab_size} tokens) is not the one the "
            f"training data {describe(listed.path)} was tokenized with ({(listed.fingerprint or 'unknown')[:12]}, "
            f"{listed.vocab_size} tokens); pass that universe"
            + (" (or none: its shards record where it is)." if listed.universe else ".")
        )
    return os.path.abspath(given), tok.fingerprint


def _vocab(source, universe: tuple[str, str]):
    """The data's vocabulary record, with the universe file the model folder carries."""
    from gtok.models import Vocab

    path, fingerprint = universe
    return Vocab.of(source, universe=path, fingerprint=source.fingerprint or fingerprint)


def _build_model(cls, vocab, options: dict[str, Any], source, manifest: str, resume: dict[str, Any] | None):
    """A fresh model, or the resumed checkpoint's (same options, so its weights fit)."""
    from gtok.models import Classifier
    from gtok.models.region2vec import Region2Vec, region_counts

    if resume is not None:
        return cls(**resume["hyper_parameters"])
    vocab_dict = dataclasses.asdict(vocab)
    init_from = options.get("init_from") if cls is Classifier else None
    if init_from:
        return Classifier.from_encoder(init_from, vocab_dict, source.label_classes, options, data=manifest)
    extra = {"classes": source.label_classes} if cls is Classifier else {}
    net = cls(vocab_dict, config=options, **extra)
    if isinstance(net, Region2Vec):
        net.set_noise_counts(region_counts(load_manifest(manifest).paths, vocab.vocab_size))
    return net


def _trainer(opts: TrainerOptions, hardware: dict[str, Any], run: dict[str, Any], out: Path, last: Path,
             progress: bool, callbacks: list, environment):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from gtok.training.callbacks import (
        AtomicCheckpointIO,
        FinalCheckpoint,
        RunRecord,
        StepCheckpoint,
    )

    return L.Trainer(
        default_root_dir=out,
        accelerator=opts.accelerator,
        devices=opts.devices,
        num_nodes=opts.num_nodes,
        strategy=opts.strategy,
        plugins=[AtomicCheckpointIO(), *([environment] if environment is not None else [])],
        precision=hardware["precision"],
        deterministic=hardware["deterministic"],
        max_epochs=opts.max_epochs,
        max_steps=opts.max_steps,
        # every row on disk at once: a killed run keeps the metrics of the steps its checkpoint holds
        logger=CSVLogger(out, name="logs", flush_logs_every_n_steps=1),
        callbacks=[StepCheckpoint(out / "checkpoints", opts.checkpoint_every_n_steps), FinalCheckpoint(last),
                   RunRecord(run), *callbacks],
        reload_dataloaders_every_n_epochs=1,  # GTokDataModule sets each epoch's order when it builds the loader
        log_every_n_steps=opts.log_every_n_steps,
        val_check_interval=opts.val_check_interval,
        num_sanity_val_steps=opts.num_sanity_val_steps,
        gradient_clip_val=opts.gradient_clip_val,
        accumulate_grad_batches=opts.accumulate_grad_batches,
        enable_progress_bar=progress,
        enable_model_summary=progress,
    )
