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
  checkpoints/last.ckpt   every `checkpoint_every_n_steps` steps, at the end, and at the step SIGTERM or Ctrl-C stops (atomically)
  logs/version_N/         Lightning's CSV logs, one version per (re)start; logs/summary.json of the
                          last launch, published with the model
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

import contextlib
import dataclasses
import os
import shutil
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from gtok.atomic import WRITE_ERRORS, staged_files
from gtok.errors import FingerprintMismatchError, GtokError, describe
from gtok.extras import require
from gtok.formats.manifest import Manifest, load_manifest
from gtok.modelspec import Resolved, resolve_model
from gtok.options import SECTIONS, DataOptions, TrainerOptions, check_mixture, check_train_config, make_config
from gtok.paths import input_file
from gtok.plots import plot_loss
from gtok.pretrained import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    HF_WEIGHTS_FILE,
    MODEL_FILES,
    RUN_KEY,
    SAVED_WITH_HF,
    SUMMARY_FILE,
    data_universe,
    saved_files,
    write_model_folder,
)
from gtok.training.hardware import accelerator_kind, devices_per_node
from gtok.training.hardware import resolved as resolved_hardware
from gtok.training.processes import await_decision, devices_and_environment, launch_id, share_decision, start_launch
from gtok.training.run import (
    Start,
    begin,
    check_run_folder,
    claim_folder,
    data_lineage,
    flatten_metrics,
    keep_replaced_model,
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
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:  # the last: a binary file, or not UTF-8
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

    `model` is a built-in name or the import path of a brought class (gtok.modelspec). Continues
    the run of out/checkpoints/last.ckpt when it is this run (`resume_point`), else starts a new
    one, setting the old aside in out/previous/TIME/. Every option, the data, the hardware and the
    folder itself are checked before anything in `out` changes, and the folder's finished model
    stays until this run finishes (gtok.training.run states the rules). Arguments other than
    `config` override the config's values. `callbacks` are extra Lightning callbacks (for instance
    to watch the batches).
    """
    require("train", "gtok train")
    cfg = dict(config) if isinstance(config, Mapping) else read_config(config)
    check_train_config(cfg)  # everything a user can get wrong is checked before torch is imported
    seed = int(seed if seed is not None else cfg.get("seed", 0))
    what = describe(config) if config is not None and not isinstance(config, Mapping) else "config"
    resolved_model = resolve_model(model, cfg, seed, what)  # imports a brought class: torch, maybe transformers
    out = check_run_folder(out)
    _check_init_from(resolved_model, out, what)
    listed = load_manifest(manifest)
    data = make_config(DataOptions, cfg.get("data"), "config section 'data'")
    opts = make_config(TrainerOptions, cfg.get("trainer"), "config section 'trainer'")
    _override(opts, max_epochs=max_epochs, max_steps=max_steps, devices=devices, accelerator=accelerator)
    _check_hf_vocabulary(resolved_model, listed.vocab_size, what)
    universe_file = _universe(listed, universe or data.universe)  # a model that could never be used is not trained

    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only

    from gtok.data.datamodule import GTokDataModule
    from gtok.models import read_checkpoint
    from gtok.training.callbacks import BatchLog, RunSummary

    # Every process of the launch runs this function: only the first checks the shards and
    # decides whether the run resumes (rearranging `out`); the others wait for its decision.
    leader = rank_zero_only.rank == 0
    if leader:
        start_launch()
    if not progress:
        _quiet_lightning()
    opts.devices, environment = devices_and_environment(opts.devices, opts.num_nodes)
    kind = accelerator_kind(opts.accelerator)
    world = devices_per_node(opts.devices, kind) * opts.num_nodes
    check_mixture(data, list(listed.datasets()), world, what)  # before the data is opened
    hardware = resolved_hardware(opts.precision, opts.deterministic, kind)
    run = run_options(model, resolved_model.config, data, opts, hardware, listed, resolved_model.model_args)

    dm_options = {k: v for k, v in dataclasses.asdict(data).items() if k not in ("universe", "verify")}
    dm = GTokDataModule(manifest, seed=seed, verify=data.verify and leader, progress=progress, **dm_options)
    source = dm.vocab_source  # opens (and checks) the data before anything in `out` changes
    inputs = listed.inputs()  # what the model folder says the shards were made from, read while they are checked
    vocab = _vocab(source, universe_file)
    _check_fit(resolved_model, opts, source, world, manifest, what)
    # The first process holds `out` from here on: a second launch into it is refused (claim_folder).
    with claim_folder(out) if leader else contextlib.nullcontext():
        last = out / "checkpoints" / "last.ckpt"
        start = resume_point(out, run, opts) if leader else Start(read_checkpoint(last) if await_decision(out) else None)
        if start.checkpoint is not None:  # the run goes on as first recorded (1 and 1.0 are one option, not one fingerprint)
            run = start.checkpoint[RUN_KEY]["options"]
        L.seed_everything(seed, workers=True, verbose=False)
        net = _build_model(resolved_model, vocab, source, str(manifest), start.checkpoint, what, leader)
        extra = [RunSummary(out / "logs" / SUMMARY_FILE), *([BatchLog(out / "batches", launch_id())] if opts.log_batches else []),
                 *_model_record(resolved_model, vocab)]
        with _known_warnings_ignored():
            trainer = _trainer(opts, hardware, run, out, last, progress, [*callbacks, *extra], environment)
            if leader:  # everything is checked: the first change to `out`
                begin(out, start)
                share_decision(out, start.checkpoint is not None)
            _fit(trainer, net, dm, out, last if start.checkpoint is not None else None)
        if trainer.is_global_zero:
            _publish(out, last, net, trainer.global_step, run, vocab, model, resolved_model, data, inputs)
    return out / CHECKPOINT_FILE


@contextlib.contextmanager
def _known_warnings_ignored() -> Iterator[None]:
    """Lightning's warnings that say nothing about a gtok run, ignored while its Trainer is made and fits."""
    with warnings.catch_warnings():
        # GTokDataset's len() counts this rank's batches exactly, whatever the number of workers
        warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
        # gtok chose how the processes start (gtok.training.processes); and Lightning's own deprecation
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system")
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        warnings.filterwarnings("ignore", message=r"torch.distributed.nn.functional.all_gather is deprecated")
        warnings.filterwarnings("ignore", message="Total length of `list` across ranks is zero")  # no validation set
        yield


def _fit(trainer, net, dm, out: Path, resume_from: Path | None) -> None:
    """`trainer.fit`, from the checkpoint `resume_from` if given; a stop by SIGTERM (SLURM's
    preemption) or Ctrl-C ends it in one line that says how to continue, since Lightning turns the
    first into an exit of status 0, which would pass for success, and the second into an exit of
    status 1 that says nothing under --quiet. Ctrl-C first lets its step end and saves it
    (`StopCheckpoint`), as SIGTERM does; it never publishes the model, even when it came after the
    last step. So does a full disk (or a folder made read-only)
    while Lightning's logger or the batch log writes, which is no atomic write of gtok's: Lightning
    lets it out as a traceback (a checkpoint's own write says so already, naming last.ckpt)."""
    from lightning.pytorch.utilities import rank_zero_only
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from gtok.training.callbacks import StopCheckpoint

    stop = next(c for c in trainer.callbacks if isinstance(c, StopCheckpoint))
    note = (f"gtok train: Ctrl-C: saving the step in progress to {stop.last}, then stopping (Ctrl-C again stops at "
            "once, losing it)." if rank_zero_only.rank == 0 else None)
    error = None
    try:
        with stop.ctrl_c_ends_the_step(note):
            trainer.fit(net, datamodule=dm, ckpt_path=resume_from)
    except SIGTERMException:
        error = GtokError(f"{describe(out)}: training stopped by SIGTERM at step {trainer.global_step}; "
                          "rerun the same command to continue from its last checkpoint.")
    except SystemExit:
        if not trainer.interrupted:
            raise
        error = _stopped_by_ctrl_c(out, trainer.global_step, stop.last) if stop.stopping else GtokError(
            f"{describe(out)}: training interrupted at step {trainer.global_step}; the folder's model is as it was; "
            "rerun the same command to continue from its last checkpoint.")
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        error = GtokError(f"{describe(exc.filename or out)}: cannot write it: {os.strerror(exc.errno).lower()}; training "
                          f"stopped at step {trainer.global_step}, the folder's model is as it was; make room (or make it "
                          "writable) and rerun the same command to continue from its last checkpoint.")
    finally:
        dm.stop_workers()  # they ignore SIGTERM: the process's exit would wait for them forever
    if error is None and stop.ctrl_c:  # after the last step, whose checkpoint FinalCheckpoint wrote
        error = _stopped_by_ctrl_c(out, trainer.global_step, stop.last)
    if error is not None:
        if rank_zero_only.rank != 0:
            raise SystemExit(1)  # every rank stopped at the same step: the first says it, in one line
        raise error


def _stopped_by_ctrl_c(out: Path, step: int, last: Path) -> GtokError:
    return GtokError(f"{describe(out)}: training interrupted by Ctrl-C at step {step}, saved in {describe(last)}; the "
                     "folder's model is as it was; rerun the same command to continue from there.")


def _publish(out: Path, last: Path, net, step: int, run: dict[str, Any], vocab, model: str, resolved_model: Resolved,
             data: DataOptions, inputs: dict[str, Any]) -> None:
    """The finished run becomes the folder's model: metrics.csv, loss.png and summary.json, a
    Hugging Face model's save_pretrained files, model.ckpt, its universe, and config.yaml, which
    records model.ckpt's run and step and the saved weights' sha256 (gtok.inference.loading checks
    them on load). All are written aside first and then renamed into place together, config.yaml
    last, and a file of the old model that this one lacks is removed (gtok.atomic.staged_files):
    a publication cut short is never mistaken for a model, nor mixes two runs' files. `inputs`:
    what the shards were made from (Manifest.inputs), recorded under data."""
    metrics = flatten_metrics(out / "logs")
    keep_replaced_model(out, run_fingerprint(run), step)  # the model it replaces survives in previous/
    owned = (*MODEL_FILES, *saved_files(out))  # the old model's save_pretrained files too, however many
    with staged_files(out, owned=owned, last=CONFIG_FILE) as stage:
        metrics.to_csv(stage / "metrics.csv", index=False)
        plot_loss(metrics, stage / "loss.png")
        if (out / "logs" / SUMMARY_FILE).is_file():
            shutil.copyfile(out / "logs" / SUMMARY_FILE, stage / SUMMARY_FILE)
        saved = _save_pretrained(net, stage, inputs.get("token_orders"))
        publish(last, stage / CHECKPOINT_FILE)
        write_model_folder(stage, vocab.universe, {
            "model": model, "options": dataclasses.asdict(resolved_model.config),
            **({"model_args": resolved_model.model_args} if resolved_model.brought is not None else {}), **saved,
            "data": {"max_length": data.max_length, "val_fraction": data.val_fraction, "shards": run["data.shards"],
                     **inputs, **_parents(resolved_model)},
            "vocabulary": {"vocab_size": vocab.vocab_size, "fingerprint": vocab.fingerprint},
            "run": {"fingerprint": run_fingerprint(run), "step": step},
        })


def _parents(resolved_model: Resolved) -> dict[str, Any]:
    """For a model fine-tuned from another (`init_from`), what that one and its own starting
    models trained on (gtok.training.run.data_lineage): its evaluation must hold out their training
    records too."""
    init_from = getattr(resolved_model.config, "init_from", None)
    return {"parents": data_lineage(init_from)} if init_from else {}


def _check_init_from(resolved_model: Resolved, out: Path, what: str) -> None:
    """The model `init_from` names, checked before any work: it must be there (a typo would else
    be a bare "no such file" once the shards are read, naming no option), and not in the --out
    folder itself (its model, or a checkpoint of it): the run replaces the very model it starts
    from, so a rerun with any other option would start, in silence, from the fine-tuned model
    instead of its parent."""
    from gtok.pretrained import model_folder

    init_from = getattr(resolved_model.config, "init_from", None)
    if not init_from:
        return
    option = f"{what} section '{'hf' if resolved_model.brought is not None else resolved_model.spec.text}': init_from"
    parent = Path(init_from)
    if not parent.exists():
        raise GtokError(f"{option} {init_from}: no such file or folder; give the model folder (or checkpoint) to "
                        "start from.")
    if out.is_dir() and os.path.samefile(parent if parent.is_dir() else model_folder(parent), out):
        raise GtokError(f"{option} {init_from} is in the training folder {describe(out)}, whose model this run "
                        "replaces with the one it fine-tunes; train into another folder (--out), or copy the parent "
                        "model elsewhere and start from the copy.")
    if resolved_model.brought is None:  # a built-in classifier's encoder; a brought model's parent is read by its loader
        from gtok.models.classifier import encoder_checkpoint

        try:
            encoder_checkpoint(parent)
        except GtokError as exc:  # named by its option, before the shards are checked
            raise GtokError(f"{option} {exc}") from None


def _check_fit(resolved_model: Resolved, opts: TrainerOptions, source, world: int, manifest: str | os.PathLike,
               what: str) -> None:
    """What Lightning or the model would refuse only once training has started: options that do
    not fit this data."""
    from gtok.data.plan import per_rank
    from gtok.modelspec import hf_objective

    classes = source.label_classes or []
    if resolved_model.spec.text == "classifier" and len(classes) < 2:
        raise GtokError(f"{describe(manifest)}: the classifier learns to tell label classes apart, and this data has "
                        f"{len(classes)} ({', '.join(map(str, classes)) or 'no labels'}); tokenize records of two or more "
                        "classes with --labels or --label-key.")
    triplets = resolved_model.brought is not None and resolved_model.brought.kind == "hf" and \
        hf_objective(resolved_model.brought, resolved_model.config.objective) == "triplet"
    if triplets and not classes:
        raise GtokError(f"{what} model: {resolved_model.spec.text} trains on labelled triplets, and the data has no "
                        "labels; tokenize with --label-key or --labels.")
    if triplets and source.batch_size is not None and source.batch_size < 3:
        raise GtokError(f"data.batch_size is {source.batch_size}, and {resolved_model.spec.text} learns from triplets "
                        "of a batch (two records of one label, one of another): it would train on nothing; give a "
                        "batch_size of at least 3 (more than the number of labels, for most batches to hold one).")
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


def _build_model(resolved: Resolved, vocab, source, manifest: str, resume: dict[str, Any] | None, what: str,
                 leader: bool):
    """A fresh model, or the resumed checkpoint's (same options, so its weights fit)."""
    brought = resolved.brought
    if brought is not None and brought.kind == "lightning":  # its weights come from the checkpoint on resume
        from gtok.models.brought import build_lightning

        return build_lightning(brought, vocab, resolved.model_args)
    if brought is not None:
        return _build_hf(resolved, vocab, resume, what, leader)
    return _build_builtin(resolved, vocab, source, manifest, resume)


def _build_builtin(resolved: Resolved, vocab, source, manifest: str, resume: dict[str, Any] | None):
    from gtok.models import Classifier, model_class
    from gtok.models.region2vec import Region2Vec, region_counts

    cls = model_class(resolved.spec.text)
    if resume is not None:
        return cls(**resume["hyper_parameters"])
    options = dataclasses.asdict(resolved.config)
    vocab_dict = dataclasses.asdict(vocab)
    init_from = options.get("init_from") if cls is Classifier else None
    if init_from:
        return Classifier.from_encoder(init_from, vocab_dict, source.label_classes, options, data=manifest)
    extra = {"classes": source.label_classes} if cls is Classifier else {}
    net = cls(vocab_dict, config=options, **extra)
    if isinstance(net, Region2Vec):
        net.set_noise_counts(region_counts(source.records, vocab.vocab_size))  # the training split's
    return net


def _build_hf(resolved: Resolved, vocab, resume: dict[str, Any] | None, what: str, leader: bool):
    """The adapter around a brought Hugging Face model: resumed, fine-tuned from `hf.init_from`, or new."""
    from gtok.models.hf import HFModel, hf_config

    if resume is not None:
        return HFModel(**resume["hyper_parameters"])
    options = dataclasses.asdict(resolved.config)
    net_args = (vocab, resolved.spec.text)
    if not resolved.config.init_from:
        return HFModel(*net_args, hf_config(resolved.brought, resolved.model_args, vocab, what=what), options)
    parent, universe = _init_from(resolved.config.init_from, vocab, what)
    vocab = dataclasses.replace(vocab, universe=vocab.universe or universe)  # the parent's, unless given
    net, taken = HFModel.fine_tune(parent, vocab, resolved.spec.text, resolved.model_args, options,
                                   f"{what} section 'hf': init_from")
    if leader:
        print(f"gtok train: {resolved.spec.text} starts from {taken} weight tensors of {resolved.config.init_from} "
              f"({parent.model_class}).", file=sys.stderr, flush=True)
    return net


def _init_from(path: str, vocab, what: str):
    """The Hugging Face model that `hf.init_from` names (a gtok folder, or one as published), on
    the data's vocabulary, and the path of its universe."""
    from gtok.inference.loading import load_model
    from gtok.models import check_fingerprint
    from gtok.models.hf import HFModel
    from gtok.tokenizer import Tokenizer

    parent = load_model(path)
    if not isinstance(parent.model, HFModel):
        raise GtokError(f"{what} section 'hf': init_from {path} holds a {parent.name} model, not a Hugging Face model.")
    # a published folder records no fingerprint: its universe's (whose size the tokenizer checks)
    fingerprint = parent.vocab.fingerprint or Tokenizer.for_model(parent.expected).fingerprint
    check_fingerprint(vocab.fingerprint, "the training data", fingerprint, describe(path))
    if parent.vocab.vocab_size != vocab.vocab_size:
        raise GtokError(f"{what} section 'hf': init_from {path} was trained on {parent.vocab.vocab_size} tokens, the "
                        f"data has {vocab.vocab_size}; fine-tune on data tokenized with its universe.")
    return parent.model, os.path.abspath(parent.expected.universe)


def _check_hf_vocabulary(resolved: Resolved, vocab_size: int | None, what: str) -> None:
    """A Hugging Face config of a vocabulary smaller than the manifest's is refused before the shards are read."""
    if resolved.brought is None or resolved.brought.kind != "hf" or vocab_size is None:
        return
    from gtok.models import Vocab
    from gtok.models.hf import hf_config

    hf_config(resolved.brought, resolved.model_args, Vocab.of_size(vocab_size), what=what)


def _model_record(resolved: Resolved, vocab) -> list:
    """The callback that makes a brought LightningModule's checkpoints say what they hold."""
    if resolved.brought is None or resolved.brought.kind != "lightning":
        return []
    from gtok.models.brought import BroughtRecord

    return [BroughtRecord(resolved.spec.text, vocab, resolved.model_args)]


def _save_pretrained(net, out: Path, token_orders: list[str] | None) -> dict[str, Any]:
    """A Hugging Face model's save_pretrained into the model folder (its config.json records
    `token_orders`, which travel with the model as published); what config.yaml then says of
    it, with the weights' sha256, so that weights of another run are never served with this card."""
    from gtok.formats.metadata import sha256_file
    from gtok.models.hf import HFModel

    if not isinstance(net, HFModel):
        return {}
    written = [path.name for path in net.save_pretrained(out, token_orders)]
    card: dict[str, Any] = {"saved_with": SAVED_WITH_HF, "saved_files": written}
    if HF_WEIGHTS_FILE in written:  # one weights file (not shards)
        card["weights_sha256"] = sha256_file(out / HF_WEIGHTS_FILE)
    return card


def _trainer(opts: TrainerOptions, hardware: dict[str, Any], run: dict[str, Any], out: Path, last: Path,
             progress: bool, callbacks: list, environment):
    """Lightning's Trainer; it checks its options as it is made (and writes nothing), so what gtok
    did not check itself is still refused before the run folder changes, in one line."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.loggers import CSVLogger

    from gtok.training.callbacks import AtomicCheckpointIO, FinalCheckpoint, RunRecord, StepCheckpoint, StopCheckpoint

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
                   StopCheckpoint(last), RunRecord(run), *callbacks],
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
