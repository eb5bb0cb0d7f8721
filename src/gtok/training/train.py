"""`gtok train`: fit a model on the shards of a manifest, resumable, with metrics and a loss plot.

OUT is a new or empty folder, or one gtok train wrote (anything else is refused). It writes there
only these names, and leaves anything else alone:

  The finished model, replaced only when a run finishes (config.yaml last):
  model.ckpt              the final checkpoint (a hard link to checkpoints/last.ckpt where the
                          file system allows)
  universe.bed.gz,        what makes the folder a self-contained model (gtok.pretrained): the
  config.yaml             universe the data was tokenized with, and the model's config, with the
                          run fingerprint and step of model.ckpt (checked on load)
  metrics.csv             the run's logs flattened: one row per step, later launches replacing the
                          steps they re-did after a resume
  loss.png, summary.json  training and validation loss against the step; world size, steps, tokens

  The run in progress (or the last one, finished or not):
  checkpoints/last.ckpt   every `checkpoint_every_n_steps` steps and at the end (atomically)
  logs/version_N/         Lightning's CSV logs, one version per (re)start
  batches/                with trainer.log_batches: every trained batch's records

  previous/TIME/          each run set aside when a rerun with other options started a new one,
                          with its finished model: kept until you delete it

Run again on the same OUT and training continues from last.ckpt, mid-epoch, with the exact batches
an uninterrupted run would have seen next (gtok.data.datamodule), provided it is the same run
(gtok.training.run). Every option, the data, the hardware and OUT are checked before OUT changes:
a rerun that fails on them leaves it as it was; one that fails while training leaves the finished
model in place. The config's sections and options are gtok.options' (docs/training.md).
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
from gtok.formats.manifest import load_manifest
from gtok.hardware import accelerator_kind, devices_per_node, resolved
from gtok.options import MODEL_CONFIGS, SECTIONS, DataOptions, TrainerOptions, check_train_config, make_config
from gtok.paths import input_file
from gtok.plots import plot_loss
from gtok.pretrained import CHECKPOINT_FILE, write_model_folder
from gtok.training.processes import await_decision, devices_and_environment, launch_id, share_decision
from gtok.training.run import (
    Start,
    begin,
    check_run_folder,
    flatten_metrics,
    publish,
    resume_point,
    run_fingerprint,
    run_options,
)


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
    starts a new one, setting the old aside in out/previous/TIME/. Every option, the data, the
    hardware and the folder itself are checked before anything in `out` changes, and the folder's
    finished model stays until this run finishes (gtok.training.run states the rules). Arguments
    other than `config` override the config's values. `callbacks` are extra Lightning callbacks
    (for instance to watch the batches).
    """
    cfg = dict(config) if isinstance(config, Mapping) else read_config(config)
    check_train_config(cfg)  # everything a user can get wrong is checked before torch is imported
    if model not in MODEL_CONFIGS:
        raise GtokError(f"unknown model {model!r}; choose one of {', '.join(MODEL_CONFIGS)}.")
    out = check_run_folder(out)
    listed = load_manifest(manifest)
    data = make_config(DataOptions, cfg.get("data"), "config section 'data'")
    opts = make_config(TrainerOptions, cfg.get("trainer"), "config section 'trainer'")
    _override(opts, max_epochs=max_epochs, max_steps=max_steps, devices=devices, accelerator=accelerator)
    seed = int(seed if seed is not None else cfg.get("seed", 0))
    options = {**(cfg.get(model) or {}), "seed": seed}
    model_config = make_config(MODEL_CONFIGS[model], options, f"{model} model")

    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from gtok.data.datamodule import GTokDataModule
    from gtok.models import model_class, read_checkpoint
    from gtok.training.callbacks import BatchLog, RunSummary

    # Every process of the launch runs this function: only the first checks the shards and
    # decides whether the run resumes (rearranging `out`); the others wait for its decision.
    leader = rank_zero_only.rank == 0
    if not progress:
        _quiet_lightning()
    opts.devices, environment = devices_and_environment(opts.devices, opts.num_nodes)
    kind = accelerator_kind(opts.accelerator)
    world = devices_per_node(opts.devices, kind) * opts.num_nodes
    hardware = resolved(opts.precision, opts.deterministic, kind)
    cls = model_class(model)
    run = run_options(model, model_config, data, opts, hardware, listed)

    dm_options = {k: v for k, v in dataclasses.asdict(data).items() if k not in ("universe", "verify")}
    dm = GTokDataModule(manifest, seed=seed, verify=data.verify and leader, progress=progress, **dm_options)
    source = dm.vocab_source  # opens (and checks) the data before anything in `out` changes
    vocab = _vocab(source, universe or data.universe, manifest)
    _check_fit(model, opts, source, world, manifest)
    last = out / "checkpoints" / "last.ckpt"
    start = resume_point(out, run, opts) if leader else Start(read_checkpoint(last) if await_decision(out) else None)
    L.seed_everything(seed, workers=True, verbose=False)
    net = _build_model(cls, vocab, options, source, str(manifest), start.checkpoint)
    extra = [RunSummary(out / "summary.json"), *([BatchLog(out / "batches", launch_id())] if opts.log_batches else [])]
    with warnings.catch_warnings():
        # GTokDataset's len() counts this rank's batches exactly, whatever the number of workers
        warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
        # gtok chose how the processes start (gtok.training.processes); and Lightning's own deprecation
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system")
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        warnings.filterwarnings("ignore", message=r"torch.distributed.nn.functional.all_gather is deprecated")
        warnings.filterwarnings("ignore", message="Total length of `list` across ranks is zero")  # no validation set
        trainer = _trainer(opts, hardware, run, out, last, progress, [*callbacks, *extra], environment)
        if leader:  # everything is checked: the first change to `out`
            begin(out, start)
            share_decision(out, start.checkpoint is not None)
        try:
            trainer.fit(net, datamodule=dm, ckpt_path=last if start.checkpoint is not None else None)
        except SIGTERMException:  # a SystemExit of status 0, which would pass for success
            raise GtokError(f"{describe(out)}: training stopped by SIGTERM at step {trainer.global_step}; "
                            "rerun the same command to continue from its last checkpoint.") from None
    final = out / CHECKPOINT_FILE
    if trainer.is_global_zero:
        _publish(out, last, trainer.global_step, run, vocab, model, model_config, data)
    return final


def _publish(out: Path, last: Path, step: int, run: dict[str, Any], vocab, model: str, model_config, data: DataOptions
             ) -> None:
    """The finished run becomes the folder's model: metrics.csv and loss.png, model.ckpt, its
    universe, and config.yaml last, which records model.ckpt's run and step (gtok.pretrained
    checks them on load, so a publication cut short is never mistaken for a model)."""
    metrics = flatten_metrics(out / "logs")
    with atomic_path(out / "metrics.csv") as tmp:
        metrics.to_csv(tmp, index=False)
    plot_loss(metrics, out / "loss.png")
    publish(last, out / CHECKPOINT_FILE)
    write_model_folder(out, vocab.universe, {
        "model": model, "options": dataclasses.asdict(model_config),
        "data": {"max_length": data.max_length, "val_fraction": data.val_fraction},
        "vocabulary": {"vocab_size": vocab.vocab_size, "fingerprint": vocab.fingerprint},
        "run": {"fingerprint": run_fingerprint(run), "step": step},
    })


def _check_fit(model: str, opts: TrainerOptions, source, world: int, manifest: str | os.PathLike) -> None:
    """What Lightning or the model would refuse only once training has started: options that do
    not fit this data."""
    from gtok.data.plan import per_rank

    classes = source.label_classes or []
    if model == "classifier" and len(classes) < 2:
        raise GtokError(f"{describe(manifest)}: the classifier learns to tell label classes apart, and this data has "
                        f"{len(classes)} ({', '.join(map(str, classes)) or 'no labels'}); tokenize records of two or more "
                        "classes with --labels or --label-key.")
    interval = opts.val_check_interval  # Lightning reads an int, or a float above 1, as a number of steps
    batches = per_rank(len(source), 0, world, False)
    if (isinstance(interval, int) or interval > 1) and interval > batches:
        raise GtokError(f"trainer.val_check_interval is {int(interval)} steps, but an epoch has "
                        f"{batches} batches{' per process' if world > 1 else ''}; give at most {batches}, or a share "
                        "of the epoch such as 0.5 (1.0: after each epoch).")


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


def _vocab(source, universe: str | os.PathLike | None, manifest: str | os.PathLike):
    """The data's vocabulary record; a universe given for `gtok embed` must be the data's own."""
    from gtok.models import Vocab

    if universe is None:
        return Vocab.of(source)
    from gtok.tokenizer import Tokenizer

    tok = Tokenizer.from_bed(universe)
    if source.fingerprint and tok.fingerprint != source.fingerprint:
        raise FingerprintMismatchError(
            f"{describe(universe)}: its vocabulary {tok.fingerprint[:12]} is not the one the training data "
            f"({describe(manifest)}) was tokenized with ({source.fingerprint[:12]}); give the universe BED the "
            "shards were tokenized with."
        )
    return Vocab.of(source, universe=os.path.abspath(universe), fingerprint=source.fingerprint or tok.fingerprint)


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
    """Lightning's Trainer; it checks its options as it is made (and writes nothing), so what gtok
    did not check itself is still refused before the run folder changes, in one line."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.loggers import CSVLogger

    from gtok.training.callbacks import AtomicCheckpointIO, FinalCheckpoint, RunRecord, StepCheckpoint

    arguments = dict(
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
    try:
        return L.Trainer(**arguments)
    except (MisconfigurationException, ValueError) as exc:
        raise GtokError(f"config section 'trainer': Lightning refuses the options: {str(exc).strip().splitlines()[0]}") from None
