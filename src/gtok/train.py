"""`gtok train`: fit a model on the shards of a manifest, resumable, with metrics and a loss plot.

Writes into OUT:
  checkpoints/last.ckpt   every `checkpoint_every_n_steps` steps and at the end (atomically)
  logs/version_N/         Lightning's CSV logs, one version per (re)start
  metrics.csv             those logs flattened: one row per step, later runs replacing the
                          steps they re-did after a resume
  loss.png                training and validation loss against the step

Run again on the same OUT after an interruption and training continues from last.ckpt, mid-epoch,
with the exact batches an uninterrupted run would have seen next (see gtok.datamodule). A resumed
run keeps the model options stored in its checkpoint; the trainer options (max_steps, ...) are
read afresh, so a finished run can be extended.

The config YAML (every key optional):

    seed: 0                     # weights, data order, masking; --seed overrides
    data:
      batch_size: 32            # records per batch
      token_budget: null        # instead: pack batches up to this many padded tokens (B * T)
      num_workers: 1            # DataLoader worker processes (a resume needs the same number)
      max_length: 512           # longer records keep a random, ordered subset of this many tokens
      val_fraction: 0.1         # share of records (by name hash) held out for validation; 0: none
      shuffle_tokens: false     # shuffle each record's tokens (region order carries no meaning)
      verify: false             # re-check every shard's checksums before training
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
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtok.atomic import atomic_path
from gtok.errors import GtokError, describe

SECTIONS = ("seed", "data", "trainer", "region2vec", "encoder", "classifier")


@dataclass
class DataOptions:
    batch_size: int = 32
    token_budget: int | None = None
    num_workers: int = 1
    max_length: int | None = 512
    val_fraction: float = 0.1
    shuffle_tokens: bool = False
    verify: bool = False
    universe: str | None = None


@dataclass
class TrainerOptions:
    max_epochs: int | None = 10
    max_steps: int = -1
    checkpoint_every_n_steps: int = 100
    log_every_n_steps: int = 10
    val_check_interval: float | int = 1.0
    num_sanity_val_steps: int = 2
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    precision: str = "auto"
    deterministic: Any = "auto"
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1


def read_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """The YAML config as a dict, with one-line errors for a missing, malformed or misspelt file."""
    if path is None:
        return {}
    import yaml

    name = describe(path)
    try:
        with open(path) as fh:
            cfg = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise GtokError(f"{name}: no such config file.") from None
    except (OSError, yaml.YAMLError) as exc:
        raise GtokError(f"{name}: not a readable YAML config ({str(exc).splitlines()[0]}).") from None
    if not isinstance(cfg, dict):
        raise GtokError(f"{name}: the config must be a mapping of sections ({', '.join(SECTIONS)}).")
    unknown = sorted(set(cfg) - set(SECTIONS))
    if unknown:
        raise GtokError(f"{name}: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}.")
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
    """Train `model` on `manifest` into `out` (resuming from out/checkpoints/last.ckpt); return last.ckpt.

    Arguments other than `config` override the config's values. `callbacks` are extra Lightning
    callbacks (for instance to watch the batches).
    """
    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only

    from gtok.datamodule import GTokDataModule
    from gtok.models import model_class
    from gtok.models.base import make_config

    cfg = dict(config) if isinstance(config, Mapping) else read_config(config)
    cls = model_class(model)
    data = make_config(DataOptions, cfg.get("data"), "config section 'data'")
    opts = make_config(TrainerOptions, cfg.get("trainer"), "config section 'trainer'")
    _override(opts, max_epochs=max_epochs, max_steps=max_steps, devices=devices, accelerator=accelerator)
    seed = int(seed if seed is not None else cfg.get("seed", 0))
    out = Path(out)
    last = out / "checkpoints" / "last.ckpt"
    resume = last if last.is_file() else None

    dm = GTokDataModule(manifest, seed=seed, **{k: v for k, v in dataclasses.asdict(data).items() if k != "universe"})
    source = dm.vocab_source
    vocab = _vocab(source, universe or data.universe)
    L.seed_everything(seed, workers=True, verbose=False)
    net = _build_model(cls, vocab, {**(cfg.get(model) or {}), "seed": seed}, source, str(manifest), resume)
    if resume is None and rank_zero_only.rank == 0:
        shutil.rmtree(out / "logs", ignore_errors=True)  # logs of a run that never checkpointed
    trainer = _trainer(opts, out, last, progress, list(callbacks))
    with warnings.catch_warnings():
        # GTokDataset's len() counts this rank's batches exactly, whatever the number of workers
        warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
        trainer.fit(net, datamodule=dm, ckpt_path=resume)
    if trainer.is_global_zero:
        metrics = flatten_metrics(out / "logs")
        with atomic_path(out / "metrics.csv") as tmp:
            metrics.to_csv(tmp, index=False)
        plot_loss(metrics, out / "loss.png")
    return last


def _override(opts: TrainerOptions, **values: Any) -> None:
    """Command-line values over the config's; --max-steps alone lifts the epoch limit."""
    for key, value in values.items():
        if value is not None:
            setattr(opts, key, value)
    if values["max_steps"] is not None and values["max_epochs"] is None:
        opts.max_epochs = None


def _vocab(source, universe: str | os.PathLike | None):
    """The data's vocabulary record; a universe given for `gtok embed` must be the data's own."""
    from gtok.models import Vocab, check_fingerprint

    if universe is None:
        return Vocab.of(source)
    from gtok.tokenizer import Tokenizer

    tok = Tokenizer.from_bed(universe)
    check_fingerprint(source.fingerprint, "the training data", tok.fingerprint, describe(universe))
    return Vocab.of(source, universe=os.path.abspath(universe), fingerprint=source.fingerprint or tok.fingerprint)


def _build_model(cls, vocab, options: dict[str, Any], source, manifest: str, resume: Path | None):
    """A fresh model, or the resumed checkpoint's (same options, so its weights fit)."""
    from gtok.models import Classifier, check_fingerprint, read_checkpoint
    from gtok.models.region2vec import Region2Vec, region_counts

    vocab_dict = dataclasses.asdict(vocab)
    extra = {"classes": source.label_classes} if cls is Classifier else {}
    if resume is not None:
        ckpt = read_checkpoint(resume)
        check_fingerprint(vocab.fingerprint, manifest, ckpt["gtok"]["vocab"].get("fingerprint"), describe(resume))
        if ckpt["gtok"]["model"] != cls.name:
            raise GtokError(f"{describe(resume)}: holds a {ckpt['gtok']['model']} model, not a {cls.name}; use another --out.")
        return cls(**ckpt["hyper_parameters"])
    init_from = options.get("init_from") if cls is Classifier else None
    if init_from:
        return Classifier.from_encoder(init_from, vocab_dict, source.label_classes, options, data=manifest)
    net = cls(vocab_dict, config=options, **extra)
    if isinstance(net, Region2Vec):
        from gtok.manifest import load_manifest

        net.set_noise_counts(region_counts(load_manifest(manifest).paths, vocab.vocab_size))
    return net


def _trainer(opts: TrainerOptions, out: Path, last: Path, progress: bool, callbacks: list):
    import lightning as L
    import torch
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

    gpu = opts.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    precision = opts.precision
    if precision == "auto":
        precision = "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"
    deterministic = (not gpu) if opts.deterministic == "auto" else opts.deterministic
    every = ModelCheckpoint(
        dirpath=out / "checkpoints", save_top_k=0, save_last=True,
        every_n_train_steps=opts.checkpoint_every_n_steps, enable_version_counter=False,
    )
    return L.Trainer(
        default_root_dir=out,
        accelerator=opts.accelerator,
        devices=opts.devices,
        strategy=opts.strategy,
        precision=precision,
        deterministic=deterministic,
        max_epochs=opts.max_epochs,
        max_steps=opts.max_steps,
        logger=CSVLogger(out, name="logs"),
        callbacks=[every, FinalCheckpoint(), *callbacks],
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
