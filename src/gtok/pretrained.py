"""The self-contained model folder: what `gtok train` leaves in its output folder, and where.

A model trained on one universe is useless without that universe: token ids mean its regions.
So `gtok train` leaves in its output folder, beside `model.ckpt`,

    universe.bed.gz   the universe BED the data was tokenized with (its bytes, gzipped; for data
                      tokenized against a universe index, the index's regions, one line each)
    config.yaml       the model (a built-in's name or a brought class's import path) and its
                      options, the data options it saw (max_length), the vocabulary's size and
                      fingerprint, and the gtok version

and, for a brought Hugging Face model, what its `save_pretrained` writes (config.json,
model.safetensors), which `from_pretrained` of its class reads as it is. A geniml Region2Vec
folder (checkpoint.pt, config.yaml, universe.bed) is the other kind of folder gtok reads.

A folder stands for its finished model, model.ckpt, and nothing else: a run still training (or one
that failed) in checkpoints/ is never taken for it. config.yaml records the run and step of
model.ckpt, and a folder whose files are not of one model (changed by hand, or a publication cut
short) is refused on load. A checkpoint given explicitly (`checkpoints/last.ckpt`) is loaded as it is.

`gtok train` takes that universe from `--universe`, else from where the data's manifest says its
shards were tokenized (`data_universe`), and refuses to start when it cannot find it.

This module knows the layout and writes it; gtok.inference.loading reads every kind of model folder.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gtok.atomic import atomic_path
from gtok.errors import GtokError, describe

if TYPE_CHECKING:
    from gtok.formats.manifest import Manifest
    from gtok.universe import Universe

UNIVERSE_FILE = "universe.bed.gz"
CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "model.ckpt"
HF_CONFIG_FILE = "config.json"  # with model.safetensors: what save_pretrained writes
HF_WEIGHTS_FILE = "model.safetensors"
SAVED_WITH_HF = "save_pretrained"  # config.yaml's `saved_with` when the folder holds them
SUMMARY_FILE = "summary.json"  # how the run was spread and how far it got (gtok.training.callbacks.RunSummary)
MODEL_FILES = (CHECKPOINT_FILE, UNIVERSE_FILE, CONFIG_FILE, HF_CONFIG_FILE, HF_WEIGHTS_FILE, "metrics.csv", "loss.png",
               SUMMARY_FILE)
"""A finished model and how its training went: replaced together when a later run finishes."""
RUN_KEY = "gtok_run"
"""Checkpoint key of the run record: {"fingerprint": sha256 hex, "options": gtok.training.run.run_options}."""
GENIML_CHECKPOINT = "checkpoint.pt"
GENIML_UNIVERSE = "universe.bed"


EVALUATED_FILE = "evaluated.json"
"""What `gtok evaluate` writes beside its scores: the model it scored (the path given, and the run and
step of its model.ckpt), so that an evaluation can follow that model and no other (`keep_evaluation`)."""
EVALUATION_FOLDER = "eval"  # previous/TIME/eval/: the evaluation of the model kept in previous/TIME/


def is_evaluation_file(name: str) -> bool:
    """Whether `name` is one of the files `gtok evaluate` writes (an earlier model's UMAP included):
    here, not in gtok.evaluation, as keep_evaluation copies them and the core must not import that."""
    return name in ("metrics.tsv", "folds.tsv", "summary.html", "caption.rst", EVALUATED_FILE) or (
        name.startswith("umap_") and name.endswith(".png"))


TRAIN_LOCK_FILE = ".gtok-train.lock"
"""The file every `gtok train` locks in its folder (gtok.training.run.claim_folder) and leaves there."""


def is_gtok_folder(folder: Path) -> bool:
    """Whether `folder` is one gtok train wrote into (its lock file, left by every launch), or holds a
    finished model (a model folder copied elsewhere). A checkpoints/ or previous/ folder alone does
    not say so: other tools (Lightning's own runs) make folders of those names."""
    return (folder / CHECKPOINT_FILE).is_file() or (folder / TRAIN_LOCK_FILE).is_file()


def model_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint a model path stands for: a folder's finished model, model.ckpt; a symbolic
    link to a checkpoint, its target, whose folder's config.yaml and universe describe it (what the
    model trained on, the models it started from), not whatever lies beside the link."""
    path = Path(path)
    if not path.is_dir():
        return Path(os.path.realpath(path)) if path.is_symlink() else path
    if (path / CHECKPOINT_FILE).is_file():
        return path / CHECKPOINT_FILE
    if not is_gtok_folder(path):
        raise GtokError(f"{describe(path)}: not a gtok model folder: it holds no {CHECKPOINT_FILE}; give the --out folder "
                        f"of 'gtok train', a checkpoint, a geniml Region2Vec folder ({GENIML_CHECKPOINT} and {CONFIG_FILE}), "
                        f"or a Hugging Face model folder ({HF_CONFIG_FILE} and its weights).")
    kept = sorted(path.glob(f"previous/*/{CHECKPOINT_FILE}"))
    earlier = f"; its latest earlier model is {describe(kept[-1].parent)}" if kept else ""
    last = path / "checkpoints" / "last.ckpt"  # what a run saved so far, which loads as it is
    itself = describe(last) if last.is_file() else "a checkpoint file itself"
    running = training_running(path)
    if running:
        raise GtokError(f"{describe(path)}: holds no finished model yet (no {CHECKPOINT_FILE}): a gtok train is running "
                        f"in it; wait for it to finish, or give {itself}{earlier}.")
    why = "its run has not finished (it was stopped, or failed) or its model was deleted"
    if running is None:  # no locks on its file system: a run may be training as well
        why = "its run is still training, has not finished, or its model was deleted"
    raise GtokError(f"{describe(path)}: holds no finished model (no {CHECKPOINT_FILE}): {why}; rerun 'gtok train' "
                    f"with the same options to finish it or to publish its model again, or give {itself}{earlier}.")


def training_running(folder: Path) -> bool | None:
    """Whether a `gtok train` holds `folder` now (the lock gtok.training.run.claim_folder takes for
    a run's whole life, which the kernel drops when the process dies): None where that cannot be
    told (no lock file, or a file system without locks).

    Asked with a shared lock on a read-only descriptor, released at once: it conflicts with the
    run's exclusive one, needs no write access, and holds nothing a run would wait on (a launch in
    the very same microseconds is refused as if this were a run, and can be started again)."""
    try:
        fd = os.open(folder / TRAIN_LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops a lock taken
    return False


def _card(folder: Path) -> dict[str, Any]:
    """The folder's config.yaml as a mapping; empty when it is missing or unreadable (the callers
    then fall back to what older folders hold)."""
    import yaml

    try:
        config = yaml.safe_load((folder / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def published_run(folder: Path) -> dict[str, Any] | None:
    """The run and step of the folder's model.ckpt, as its config.yaml records them (None for a
    folder an older gtok wrote, or without config.yaml)."""
    return _card(folder).get("run")


def trained_data(folder: Path) -> dict[str, Any]:
    """What the folder's model was trained on, as its config.yaml records it (`data`: max_length,
    val_fraction, the shards' digest, the models it started from); empty when it does not say."""
    data = _card(folder).get("data")
    return data if isinstance(data, dict) else {}


def saved_files(folder: Path) -> list[str]:
    """The files a Hugging Face model's save_pretrained wrote into the folder, as its config.yaml
    lists them (config.json and the weights, sharded or not); none for other models."""
    names = _card(folder).get("saved_files")
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and n not in ("", ".", "..") and "/" not in n]


def checkpoint_run(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The run and step of a checkpoint, as config.yaml records them for model.ckpt (`published_run`)."""
    return {"fingerprint": (ckpt.get(RUN_KEY) or {}).get("fingerprint"), "step": ckpt.get("global_step")}


def check_published(checkpoint: Path, ckpt: dict[str, Any]) -> None:
    """A folder's model.ckpt must be the model its config.yaml (and universe.bed.gz) describe."""
    if checkpoint.name != CHECKPOINT_FILE:
        return
    recorded = published_run(checkpoint.parent)
    found = checkpoint_run(ckpt)
    if recorded is not None and recorded != found:
        folder = describe(checkpoint.parent)
        raise GtokError(f"{folder}: {CHECKPOINT_FILE} (run {str(found['fingerprint'])[:12]}, step {found['step']}) is not "
                        f"the model its {CONFIG_FILE} describes (run {str(recorded.get('fingerprint'))[:12]}, step "
                        f"{recorded.get('step')}): the folder's files are of different runs; rerun the 'gtok train' that "
                        "wrote it to publish its model again, or copy a model's files together.")


def keep_evaluation(evaluation: str | os.PathLike, folder: str | os.PathLike, who: str, log: TextIO) -> list[Path]:
    """Copy the evaluation in `evaluation` (a `gtok evaluate --out` folder) into previous/TIME/eval/ of
    the run folder `folder` wherever previous/TIME/ keeps the very model it scored, saying so on
    `log` as `who`; the folders it went into. Only the files an evaluation writes go, and nothing
    where previous/TIME/eval/ holds anything already (an evaluation kept there), nor when the
    evaluation records no model (an older gtok wrote it) or its model is not kept.

    gtok train sets a model aside whole, but not its evaluation, which lives where the user or the
    workflow put it and which the next evaluation replaces (the workflow's evaluate job deletes it
    first, as declared outputs). So the callers are those that come before that: the workflow's
    train job, once `gtok train` has set the model aside and before the evaluate job may run, and
    `gtok evaluate` itself, before it replaces an earlier evaluation; `gtok train` knows no
    evaluation folder. The model is told by the run fingerprint and step that evaluated.json
    records, the identity config.yaml vouches for (`check_published`), never by time or place. The
    files are small and copied whole through a stage renamed into place, evaluated.json last, so a
    copy cut short is never taken for one.
    """
    from gtok.atomic import staged_files
    from gtok.paths import make_folder

    evaluation, folder = Path(evaluation), Path(folder)
    scored = _evaluated_run(evaluation)
    if scored is None:
        return []
    kept = []
    for model in sorted(folder.glob(f"previous/*/{CHECKPOINT_FILE}")):
        target = model.parent / EVALUATION_FOLDER
        if published_run(model.parent) != scored or _taken(target):
            continue
        try:
            make_folder(target)
            with staged_files(target, last=EVALUATED_FILE) as stage:
                for path in evaluation.iterdir():
                    if path.is_file() and is_evaluation_file(path.name):  # not a caller's own files beside it
                        with atomic_path(stage / path.name) as tmp:  # a full disk: one line naming the file
                            shutil.copyfile(path, tmp)
        except GtokError as exc:  # said why a command that scores or trains a model writes into previous/
            raise GtokError(f"{str(exc).rstrip('.')}; the evaluation in {describe(evaluation)}, of the model kept in "
                            f"{describe(model.parent)}, was to be copied beside it before it is replaced, and is where "
                            "it was.") from None
        print(f"{who}: the evaluation in {describe(evaluation)} is of the model kept in {describe(model.parent)}; "
              f"copied to {describe(target)}.", file=log, flush=True)
        kept.append(target)
    return kept


def _taken(target: Path) -> bool:
    """Whether previous/TIME/eval/ holds anything already (an evaluation kept there, one an older
    gtok wrote there without evaluated.json, a user's file), which a copy must not write over; a
    copy cut short leaves only hidden files (staged_files), so it is tried again."""
    try:
        return any(not name.startswith(".") for name in os.listdir(target))
    except FileNotFoundError:
        return False
    except OSError:  # not a folder: nothing of gtok's goes there
        return True


def _evaluated_run(evaluation: Path) -> dict[str, Any] | None:
    """The run and step of the model an evaluation scored, as its evaluated.json records them;
    None when it records none (an older gtok, a model gtok did not train) or cannot be read."""
    try:
        record = json.loads((evaluation / EVALUATED_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    run = record.get("run") if isinstance(record, dict) else None
    return run if isinstance(run, dict) and run.get("fingerprint") is not None else None


def model_folder(checkpoint: Path) -> Path:
    """The folder a checkpoint belongs to (checkpoints/last.ckpt belongs to the folder above): for
    a symbolic link, its target's, whose universe, config.yaml and previous/ are the model's (the
    link's own folder may hold another model's, or nothing)."""
    folder = Path(os.path.realpath(checkpoint)).parent
    return folder.parent if folder.name == "checkpoints" else folder


def write_model_folder(out: Path, universe: str | os.PathLike | None, config: dict[str, Any]) -> None:
    """universe.bed.gz and config.yaml beside a finished run's model.ckpt (both atomically)."""
    import yaml

    from gtok import __version__

    if universe is not None:
        raw = universe_bed_bytes(universe)
        with atomic_path(out / UNIVERSE_FILE) as tmp:
            Path(tmp).write_bytes(raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw, compresslevel=6, mtime=0))
    with atomic_path(out / CONFIG_FILE) as tmp:
        Path(tmp).write_text(yaml.safe_dump({"gtok_version": __version__, **config}, sort_keys=False))


def universe_bed_bytes(path: str | os.PathLike) -> bytes:
    """A universe file as BED bytes: a BED (or .bed.gz) as it is; a universe index (`gtok index`)
    as its regions in id order, one line each, which gtok and gtars read back as the same
    vocabulary (the same fingerprint)."""
    from gtok.formats.index import is_index

    if is_index(path):
        from gtok.universe import Universe

        return regions_bed(Universe.from_index(path)[0])
    with open(path, "rb") as fh:
        return fh.read()


def regions_bed(universe: Universe) -> bytes:
    """A universe's regions as BED text, in id order."""
    chroms = [universe.chrom_names[c] for c in universe.codes.tolist()]
    lines = (f"{c}\t{s}\t{e}\n" for c, s, e in zip(chroms, universe.starts.tolist(), universe.ends.tolist()))
    return "".join(lines).encode()


def data_universe(manifest: Manifest) -> str:
    """The universe file of a manifest's data, where its shards recorded it: the BED a universe
    index was built from, else the file they were tokenized with. A file is taken when its bytes
    are the recorded ones (sha256), or when it still holds the recorded vocabulary (fingerprint).
    When none is found, the error names each file expected and why it was not taken."""
    from gtok.formats.metadata import sha256_file
    from gtok.universe import Universe

    record = manifest.universe
    if record is None:
        raise GtokError(f"{describe(manifest.path)}: its shards record no universe (they were written by gtars or an "
                        "older gtok); pass --universe with the universe BED they were tokenized with, which the model "
                        "needs to be used.")
    tried = []
    for path, sha256 in record.files():
        if not os.path.isfile(path):
            tried.append(f"{path} is missing")
            continue
        if sha256_file(path) == sha256:
            return path
        try:
            fingerprint = Universe.from_bed(path).fingerprint
        except GtokError as exc:
            tried.append(f"{path} is no longer a universe ({str(exc).rstrip('.')})")
            continue
        if fingerprint == record.fingerprint:
            return path
        tried.append(f"{path} has changed (it is vocabulary {fingerprint[:12]} now)")
    raise GtokError(f"{describe(manifest.path)}: the universe its shards were tokenized with (vocabulary "
                    f"{record.fingerprint[:12]}) is not where they recorded it: {'; '.join(tried)}; pass --universe "
                    "with that universe BED.")
