"""`gtok train`: fit a model on the shards of a manifest, resumable, with metrics and a loss plot.

Writes into OUT:
  model.ckpt              the final checkpoint, once training has finished (atomically; a hard link
                          to checkpoints/last.ckpt where the file system allows)
  checkpoints/last.ckpt   every `checkpoint_every_n_steps` steps and at the end (atomically)
  logs/version_N/         Lightning's CSV logs, one version per (re)start
  metrics.csv             those logs flattened: one row per step, later runs replacing the
                          steps they re-did after a resume
  loss.png                training and validation loss against the step
  previous/               the run this folder held before, when a changed option started a new one

Run again on the same OUT and training continues from last.ckpt, mid-epoch, with the exact batches
an uninterrupted run would have seen next (see gtok.datamodule), provided it is the same run:
every checkpoint records the options that decide the run's course (`run_options`). If one of them
changed, or the checkpoint is already past the new max_steps / max_epochs, a new run starts and
the old one is moved to OUT/previous/. The stopping criteria themselves are not part of a run, so
raising them extends a run.

The config YAML (every key optional):

    seed: 0                     # weights, data order, masking; --seed overrides
    data:
      batch_size: 32            # records per batch
      token_budget: null        # instead: pack batches up to this many padded tokens (B * T)
      num_workers: 1            # DataLoader worker processes
      max_length: 512           # longer records keep a random, ordered subset of this many tokens
      val_fraction: 0.1         # share of records (by name hash) held out for validation; 0: none
      shuffle_tokens: false     # shuffle each record's tokens (region order carries no meaning)
      verify: true              # check every shard against the manifest before training (CRCs)
      universe: null            # universe BED; recorded in the checkpoint for `gtok embed`
    trainer:
      max_epochs: 10            # --max-epochs overrides
      max_steps: -1             # --max-steps overrides; -1: no limit
      checkpoint_every_n_steps: 100
      log_every_n_steps: 10
      val_check_interval: 1.0   # 1.0: validate at each epoch's end; an integer: every N steps
      num_sanity_val_steps: 2
      accelerator: auto         # --accelerator overrides; cpu, gpu, auto
      devices: auto             # --devices overrides; several devices train with DDP
      strategy: auto
      precision: auto           # bf16-mixed on a GPU that supports it, else 32-true
      deterministic: auto       # true on CPU (bit-exact resumes), false on GPU (speed)
      gradient_clip_val: 1.0
      accumulate_grad_batches: 1
    region2vec: {...}           # options of each model: gtok.models.*Config (docs/training.md)
    encoder: {...}
    classifier: {...}           # init_from: an encoder checkpoint to start from
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gtok.atomic import atomic_path
from gtok.errors import GtokError, describe
from gtok.options import SECTIONS, DataOptions, TrainerOptions, check_train_config, make_config
from gtok.paths import input_file, output_folder

if TYPE_CHECKING:
    from gtok.manifest import Manifest

RUN_KEY = "gtok_run"
"""Checkpoint key of the run record: {"fingerprint": sha256 hex, "options": `run_options`}."""
#: Options that say when to stop, save, log or validate, or what to check: not where a run goes.
NOT_RUN_OPTIONS = {
    "data": {"verify", "universe"},
    "trainer": {"max_epochs", "max_steps", "checkpoint_every_n_steps", "log_every_n_steps",
                "val_check_interval", "num_sanity_val_steps"},
}


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
    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from gtok.datamodule import GTokDataModule
    from gtok.manifest import load_manifest
    from gtok.models import model_class

    cfg = dict(config) if isinstance(config, Mapping) else read_config(config)
    check_train_config(cfg)
    out = output_folder(out, "training folder (--out)")
    if not progress:
        _quiet_lightning()
    cls = model_class(model)
    data = make_config(DataOptions, cfg.get("data"), "config section 'data'")
    opts = make_config(TrainerOptions, cfg.get("trainer"), "config section 'trainer'")
    _override(opts, max_epochs=max_epochs, max_steps=max_steps, devices=devices, accelerator=accelerator)
    seed = int(seed if seed is not None else cfg.get("seed", 0))
    options = {**(cfg.get(model) or {}), "seed": seed}
    hardware = _hardware(opts)
    run = run_options(model, make_config(cls.Config, options, f"{model} model"), data, opts, hardware,
                      load_manifest(manifest))
    out = Path(out)
    # Ranks that Lightning starts later re-run this function: only the first process checks the
    # shards and rearranges `out`, and the others then find what it left.
    leader = rank_zero_only.rank == 0

    dm_options = {k: v for k, v in dataclasses.asdict(data).items() if k not in ("universe", "verify")}
    dm = GTokDataModule(manifest, seed=seed, verify=data.verify and leader, progress=progress, **dm_options)
    source = dm.vocab_source  # opens (and checks) the data before anything in `out` changes
    vocab = _vocab(source, universe or data.universe)
    resume = resume_point(out, run, opts, leader)
    L.seed_everything(seed, workers=True, verbose=False)
    net = _build_model(cls, vocab, options, source, str(manifest), resume)
    last = out / "checkpoints" / "last.ckpt"
    trainer = _trainer(opts, hardware, run, out, last, progress, list(callbacks))
    with warnings.catch_warnings():
        # GTokDataset's len() counts this rank's batches exactly, whatever the number of workers
        warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
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
        _publish(last, final)
    return final


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


# -- one run, resumed or started afresh -------------------------------------------------------------


def run_options(model: str, model_config: Any, data: DataOptions, opts: TrainerOptions, hardware: dict[str, Any],
                manifest: Manifest) -> dict[str, Any]:
    """What decides the course of a run, flat ("section.key": value).

    The model and its options, the seed, the data options, the trainer options that change the
    steps (with `auto` resolved), and the data: the vocabulary and every shard's sha256 and split,
    in manifest order. Left out (`NOT_RUN_OPTIONS`): when to stop, checkpoint, log or validate,
    whether to check the shards, and the universe's path; so raising max_steps extends a run.
    """
    shards = json.dumps([[e.sha256, e.split] for e in manifest.entries]).encode()
    model_options = dataclasses.asdict(model_config)
    record = {
        "model": model,
        "seed": model_options.pop("seed"),
        "data.vocabulary": manifest.fingerprint[:16] if manifest.fingerprint else None,
        "data.shards": hashlib.sha256(shards).hexdigest()[:16],
    }
    sections = (("data", dataclasses.asdict(data)), ("trainer", {**dataclasses.asdict(opts), **hardware}),
                (model, model_options))
    for section, values in sections:
        skip = NOT_RUN_OPTIONS.get(section, ())
        record.update({f"{section}.{key}": value for key, value in values.items() if key not in skip})
    return record


def resume_point(out: Path, run: dict[str, Any], opts: TrainerOptions, leader: bool = True) -> dict[str, Any] | None:
    """The checkpoint to continue from: out/checkpoints/last.ckpt when it is of `run` and not past
    the stopping criteria; else None, and (as `leader`) the folder's old run moves to out/previous/.

    out/model.ckpt goes in any case: it is written again when this run finishes.
    """
    from gtok.models import read_checkpoint

    last = out / "checkpoints" / "last.ckpt"
    if leader:
        (out / "model.ckpt").unlink(missing_ok=True)
    if not last.is_file():
        if leader:
            shutil.rmtree(out / "logs", ignore_errors=True)  # logs of a run that never checkpointed
        return None
    ckpt = read_checkpoint(last)
    why = _other_run(ckpt, run, opts)
    if why is None:
        return ckpt
    if leader:
        _move_aside(out)
        print(f"gtok train: {describe(last)} {why}; starting a new run (the old one is now in "
              f"{describe(out / 'previous')}).", file=sys.stderr, flush=True)
    return None


def _other_run(ckpt: dict[str, Any], run: dict[str, Any], opts: TrainerOptions) -> str | None:
    """Why this run cannot continue from `ckpt`, or None when it can."""
    saved = ckpt.get(RUN_KEY)
    if saved is None:
        return "records no run options (an older gtok wrote it)"
    old = saved["options"]
    if old["model"] != run["model"]:  # not also every option of the one model and the other
        return f"holds a {old['model']} model, not a {run['model']}"
    changed = [key for key in sorted(old.keys() | run.keys()) if old.get(key) != run.get(key)]
    if changed:
        return "is of a run with other options: " + ", ".join(f"{k} {old.get(k)!r} -> {run.get(k)!r}" for k in changed)
    step, epoch = ckpt["global_step"], ckpt["epoch"]
    if 0 <= opts.max_steps < step:
        return f"is at step {step}, past max_steps {opts.max_steps}"
    if opts.max_epochs is not None and 0 <= opts.max_epochs <= epoch:
        return f"is in epoch {epoch + 1}, past max_epochs {opts.max_epochs}"
    return None


def run_fingerprint(run: dict[str, Any]) -> str:
    """sha256 of a run's options, recorded beside them: one short name for a run, to tell runs apart."""
    return hashlib.sha256(json.dumps(run, sort_keys=True, default=str).encode()).hexdigest()


def _move_aside(out: Path) -> None:
    """Move the run in `out` (checkpoints first: they decide what a rerun does) to out/previous/."""
    previous = out / "previous"
    shutil.rmtree(previous, ignore_errors=True)
    previous.mkdir()
    for name in ("checkpoints", "logs", "metrics.csv", "loss.png"):
        if (out / name).exists():
            os.replace(out / name, previous / name)


def _publish(last: Path, final: Path) -> None:
    """`final`: the finished run's last.ckpt under a name that stays, atomically. A hard link where
    the file system has them (no copy of a large file); last.ckpt is only ever replaced by a rename,
    so the link keeps the final weights."""
    with atomic_path(final) as tmp:
        tmp.unlink()
        try:
            os.link(last, tmp)
        except OSError:
            shutil.copyfile(last, tmp)


def _vocab(source, universe: str | os.PathLike | None):
    """The data's vocabulary record; a universe given for `gtok embed` must be the data's own."""
    from gtok.models import Vocab, check_fingerprint

    if universe is None:
        return Vocab.of(source)
    from gtok.tokenizer import Tokenizer

    tok = Tokenizer.from_bed(universe)
    check_fingerprint(source.fingerprint, "the training data", tok.fingerprint, describe(universe))
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
        from gtok.manifest import load_manifest

        net.set_noise_counts(region_counts(load_manifest(manifest).paths, vocab.vocab_size))
    return net


def _trainer(opts: TrainerOptions, hardware: dict[str, Any], run: dict[str, Any], out: Path, last: Path,
             progress: bool, callbacks: list):
    import lightning as L
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Checkpoints written beside their target and renamed: a kill never leaves half a file."""

        def save_checkpoint(self, checkpoint, path, storage_options=None):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                super().save_checkpoint(checkpoint, tmp, storage_options)

    class FinalCheckpoint(Callback):
        """last.ckpt also holds the final step when training stops between checkpoint steps.

        Written at that step's end, like the periodic checkpoints: Lightning resumes those exactly,
        whereas from a checkpoint written after the epoch loop has wound up, a resumed run limited
        by max_steps would count its batches within the next epoch wrongly.
        """

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            steps_done = 0 < trainer.max_steps <= trainer.global_step
            epochs_done = (trainer.max_epochs is not None and trainer.max_epochs > 0
                           and trainer.current_epoch + 1 >= trainer.max_epochs
                           and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
            if steps_done or epochs_done:
                trainer.save_checkpoint(last, weights_only=False)

    class RunRecord(Callback):
        """Every checkpoint says which run it belongs to (see `resume_point`)."""

        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            checkpoint[RUN_KEY] = {"fingerprint": run_fingerprint(run), "options": run}

    class StepCheckpoint(ModelCheckpoint):
        """Saves last.ckpt every N steps, but not again when training ends: FinalCheckpoint has saved
        the final step, and a checkpoint written after the epoch loop has wound up would, on the next
        rerun, count its epoch as one more (and a run that had nothing left to do would rewrite it)."""

        def on_train_end(self, trainer, pl_module):
            return None

    every = StepCheckpoint(
        dirpath=out / "checkpoints", save_top_k=0, save_last=True,
        every_n_train_steps=opts.checkpoint_every_n_steps, enable_version_counter=False,
    )
    return L.Trainer(
        default_root_dir=out,
        accelerator=opts.accelerator,
        devices=opts.devices,
        strategy=opts.strategy,
        precision=hardware["precision"],
        deterministic=hardware["deterministic"],
        max_epochs=opts.max_epochs,
        max_steps=opts.max_steps,
        # every row on disk at once: a killed run keeps the metrics of the steps its checkpoint holds
        logger=CSVLogger(out, name="logs", flush_logs_every_n_steps=1),
        callbacks=[every, FinalCheckpoint(), RunRecord(), *callbacks],
        plugins=[AtomicCheckpointIO()],
        reload_dataloaders_every_n_epochs=1,  # GTokDataModule sets each epoch's order when it builds the loader
        log_every_n_steps=opts.log_every_n_steps,
        val_check_interval=opts.val_check_interval,
        num_sanity_val_steps=opts.num_sanity_val_steps,
        gradient_clip_val=opts.gradient_clip_val,
        accumulate_grad_batches=opts.accumulate_grad_batches,
        enable_progress_bar=progress,
        enable_model_summary=progress,
    )


def flatten_metrics(logs: Path):
    """One row per step from all CSV log versions; a later version replaces the steps it re-did."""
    import pandas as pd

    frames: list = []
    for path in sorted(logs.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1])):
        df = pd.read_csv(path)
        if df.empty:
            continue
        first = df["step"].min()
        frames = [f[f["step"] < first] for f in frames]
        frames.append(df)
    if not frames:
        return pd.DataFrame({"step": []})
    return pd.concat(frames).groupby("step", as_index=False).last()


def plot_loss(metrics, path: Path) -> None:
    """Training and validation loss against the step, as a PNG (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for column, style, label in (("train_loss", "-", "training"), ("val_loss", "o-", "validation")):
        if column in metrics:
            points = metrics[["step", column]].dropna()
            ax.plot(points["step"], points[column], style, label=label, markersize=4)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
