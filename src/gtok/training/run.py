"""One training run in its folder (`--out`): what identifies a run, whether a rerun continues it or
starts afresh, where an old run goes, and what a finished run publishes.

The folder's rules (docs/training.md, "The run folder"):

- `--out` is new, empty, or a folder gtok train wrote (it holds model.ckpt, or the lock file every launch leaves);
  anything else is refused, since nothing in it is gtok's to write over. In its folder gtok writes
  only its own names (`MODEL_FILES`, `RUN_FILES`, previous/ and the resume decision of
  gtok.training.processes), and leaves anything else (the workflow's summary.html, an eval/).
- The folder's *finished model* (`MODEL_FILES`) stays as it is until a run finishes; only then does
  that run's replace it, config.yaml last (it records the run and step of model.ckpt, which
  gtok.pretrained checks on load). A run in progress, or one that failed, lives in checkpoints/
  and logs/ and is never offered as the model.
- Every checkpoint records the options that decide the run's course (`run_options`). A rerun
  continues from checkpoints/last.ckpt when they are unchanged and it is not past the stopping
  criteria (which are not part of a run, so raising them extends a run). Otherwise the old run
  moves to previous/TIME/, with the finished model when previous/ does not keep it yet, and is
  kept there until the user deletes it.
- The caller (gtok.training.train) checks every option, the data and the hardware before
  `begin` changes anything: a rerun that fails on them leaves the folder as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gtok.atomic import recover
from gtok.errors import GtokError, describe
from gtok.options import DataOptions, TrainerOptions
from gtok.paths import make_folder, same_file
from gtok.pretrained import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    MODEL_FILES,
    RUN_KEY,
    TRAIN_LOCK_FILE,
    is_gtok_folder,
    published_run,
    saved_files,
    trained_data,
)

if TYPE_CHECKING:
    from gtok.formats.manifest import Manifest

NOT_RUN_OPTIONS = {
    "data": {"verify", "universe", "num_workers"},
    "trainer": {"max_epochs", "max_steps", "checkpoint_every_n_steps", "log_every_n_steps",
                "val_check_interval", "num_sanity_val_steps", "devices", "num_nodes", "strategy", "log_batches"},
}
"""Options that say when to stop, save, log or validate, what to check, and how the work is spread
over processes: not where a run goes. The data's position in an epoch is one number whatever the
number of devices, nodes and loader workers (gtok.data.plan), so a run continues on another number
of them: bit-exactly on the same, with exactly the records not yet seen on another."""
LATER_OPTIONS = {"data": {"mixture", "samples_per_epoch"}}
"""Options added after runs were recorded: left out of the record while unset (null), so a run
recorded before them still resumes."""


def run_options(model: str, model_config: Any, data: DataOptions, opts: TrainerOptions, hardware: dict[str, Any],
                manifest: Manifest, model_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """What decides the course of a run, flat ("section.key": value).

    The model and its options (a brought class's `model_args` too), the seed, the data options, the trainer options that change the
    steps (with `auto` resolved), and the data: the vocabulary and every shard's sha256 and split,
    in manifest order (with a mixture, every shard's dataset too). Left out (`NOT_RUN_OPTIONS`): when to stop, checkpoint, log or validate,
    whether to check the shards, and the universe's path; so raising max_steps extends a run.
    """
    model_options = dataclasses.asdict(model_config)
    record = {
        "model": model,
        "seed": model_options.pop("seed"),
        "data.vocabulary": manifest.fingerprint[:16] if manifest.fingerprint else None,
        "data.shards": manifest.shards_digest(),
    }
    if data.mixture is not None:  # a mixture draws by dataset: renaming one in the manifest changes the run
        record["data.datasets"] = hashlib.sha256(json.dumps([e.dataset_name for e in manifest.entries]).encode()).hexdigest()[:16]
    sections = (("data", dataclasses.asdict(data)), ("trainer", {**dataclasses.asdict(opts), **hardware}),
                (model, model_options), ("model_args", model_args or {}))
    for section, values in sections:
        skip, later = NOT_RUN_OPTIONS.get(section, ()), LATER_OPTIONS.get(section, ())
        record.update({f"{section}.{key}": value for key, value in values.items()
                       if key not in skip and not (key in later and value is None)})
    return record


RUN_FILES = ("checkpoints", "logs", "batches")
"""What a run writes while it trains; they move to previous/ together when a new run starts."""


def check_run_folder(out: str | os.PathLike) -> Path:
    """`out` as a Path, once it is known to be a folder gtok train may write into: new, empty, or
    one it wrote before. Nothing is created yet (a run that fails its checks leaves no folder)."""
    name = describe(out)
    if not name:
        raise GtokError("the training folder (--out) path is empty.")
    folder = Path(out)
    if os.path.lexists(folder) and not folder.is_dir():
        raise GtokError(f"{name}: exists and is not a folder; --out must be a folder.")
    if folder.is_dir() and not is_gtok_folder(folder) and any(folder.iterdir()):
        raise GtokError(f"{name}: is not empty and holds no gtok training run (no {CHECKPOINT_FILE} or {TRAIN_LOCK_FILE}); "
                        "train into a new or empty folder, so that nothing in it is overwritten.")
    return folder


#: The descriptors of the folder locks this process holds (`claim_folder`).
_HELD: set[int] = set()


def _drop_held_locks() -> None:
    """In a forked child (a loader worker): close the parent's folder locks. A forked descriptor
    shares the parent's lock, so a worker that outlives its run (kept alive by a stopped run's
    traceback until garbage collection, or orphaned by a `kill -9` for seconds) would hold the
    folder, and a rerun would be refused as if a training were running in it."""
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_held_locks)


@contextlib.contextmanager
def claim_folder(out: Path) -> Iterator[None]:
    """Hold `out` for this launch (its first process), so that a second `gtok train` into the same
    folder is refused in one line before it changes anything: two runs in one folder would write
    over each other's checkpoints and logs.

    The lock is an exclusive `flock` on out/.gtok-train.lock opened for writing (NFS emulates
    flock with byte-range locks, which need that), and the kernel drops it when its holder dies,
    however it dies. Where the file system has no locks, a warning says that nothing is held. A
    folder created here is removed again if this launch, holding the lock, fails before writing
    into it (a launch refused never touches the folder of the one that holds it)."""
    created = not out.exists()
    make_folder(out)
    try:
        fd = os.open(out / TRAIN_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # a read-only or foreign folder: nothing was changed in it
        raise GtokError(f"{describe(out)}: cannot train into it: {os.strerror(exc.errno).lower()}; train into a folder "
                        "you can write.") from None
    held = False
    _HELD.add(fd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            raise GtokError(f"{describe(out)}: another gtok train is running in this folder; wait for it to finish "
                            "(or stop it), or train into another folder.") from None
        except OSError:  # no locks on this file system
            print(f"gtok train: warning: {describe(out)}: its file system has no locks, so nothing stops a second "
                  "gtok train from writing into this folder at the same time; run one at a time.", file=sys.stderr)
        recover(out)  # a publication killed half-way is undone before this launch reads the folder
        yield
    except BaseException:
        if created and held and [p.name for p in out.iterdir()] == [TRAIN_LOCK_FILE]:
            with contextlib.suppress(OSError):
                (out / TRAIN_LOCK_FILE).unlink()
                out.rmdir()
        raise
    finally:
        _HELD.discard(fd)
        os.close(fd)


@dataclasses.dataclass
class Start:
    """How a launch starts: from `checkpoint` (continuing its run), or afresh; `why` says why the
    folder's last checkpoint is not continued (None when there is none, or when it is)."""

    checkpoint: dict[str, Any] | None = None
    why: str | None = None


def resume_point(out: Path, run: dict[str, Any], opts: TrainerOptions) -> Start:
    """Whether out/checkpoints/last.ckpt is continued: when it is of `run` and not past the
    stopping criteria. Reads only; `begin` acts on the answer."""
    from gtok.models import read_checkpoint

    last = out / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return Start()
    ckpt = read_checkpoint(last)
    why = _other_run(ckpt, run, opts)
    return Start(None, why) if why else Start(ckpt)


def begin(out: Path, start: Start) -> None:
    """Prepare `out` for this launch (the first process only), the first change to it: a new run
    sets the folder's old run aside in previous/TIME/ (a run that never checkpointed has nothing
    to keep but its logs, which go); the finished model stays where it is until this run finishes."""
    if start.why is not None:
        kept = _set_aside(out)
        print(f"gtok train: {describe(out / 'checkpoints' / 'last.ckpt')} {start.why}; starting a new run (the old "
              f"one is now in {describe(kept)}).", file=sys.stderr, flush=True)
    elif start.checkpoint is not None:  # said, so a log shows that a rerun continued and did not start over
        print(f"gtok train: continuing the run in {describe(out)} from step {start.checkpoint['global_step']} "
              "(checkpoints/last.ckpt).", file=sys.stderr, flush=True)
    else:
        for name in ("logs", "batches"):
            shutil.rmtree(out / name, ignore_errors=True)
    make_folder(out / "checkpoints")


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


def _set_aside(out: Path) -> Path:
    """Move the run in `out` to a new out/previous/TIME/, and link the folder's finished model into
    it unless previous/ keeps it already: every finished model survives every later run. The
    checkpoints go last, so that a rerun after a crash midway decides the same and loses nothing."""
    folder = _previous_folder(out)
    _keep_model(out, folder)
    for name in (*RUN_FILES[1:], RUN_FILES[0]):
        if (out / name).exists():
            os.replace(out / name, folder / name)
    return folder


def keep_replaced_model(out: Path, fingerprint: str, step: int) -> Path | None:
    """Before a finished run publishes its model, link the folder's model into a new
    out/previous/TIME/ unless previous/ keeps it already: an extended run's shorter model, and a
    model that came into the folder without the run that replaces it (its checkpoints/ deleted, or
    the model folder copied here) alike. Nothing when there is none, or when it is this very model
    (a rerun that trained nothing publishes the same one again)."""
    old = published_run(out) or {}
    this = (old.get("fingerprint"), old.get("step")) == (fingerprint, step) or \
        same_file(out / CHECKPOINT_FILE, out / "checkpoints" / "last.ckpt")  # published from this run's checkpoint
    if not (out / CHECKPOINT_FILE).is_file() or _kept(out) or this:
        return None
    folder = _previous_folder(out)
    _keep_model(out, folder)
    extends = old.get("fingerprint") == fingerprint and isinstance(old.get("step"), int) and old["step"] < step
    how = f"this run extends it to step {step}" if extends else "this run's model replaces it"
    which = f"model of step {old['step']}" if isinstance(old.get("step"), int) else "model"
    print(f"gtok train: the folder's {which} is kept in {describe(folder)}; {how}.", file=sys.stderr, flush=True)
    return folder


def _previous_folder(out: Path) -> Path:
    """A new, empty out/previous/TIME/ (TIME-2, -3... when one of that second exists)."""
    previous = out / "previous"
    previous.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder, n = previous / stamp, 1
    while folder.exists():
        n += 1
        folder = previous / f"{stamp}-{n}"
    folder.mkdir()
    return folder


def _keep_model(out: Path, folder: Path) -> None:
    """Link the folder's finished model (all its files) into `folder`, unless previous/ keeps it.
    model.ckpt goes last: its link is what says the model is kept (`_kept`), so a kill half-way
    leaves it unkept, and the rerun keeps it whole in another folder before replacing its files."""
    if (out / CHECKPOINT_FILE).is_file() and not _kept(out):
        names = dict.fromkeys((*MODEL_FILES, *saved_files(out)))
        for name in [*(n for n in names if n != CHECKPOINT_FILE), CHECKPOINT_FILE]:
            if (out / name).is_file():
                _link(out / name, folder / name)


def _kept(out: Path) -> bool:
    """Whether out/previous/ holds the folder's model.ckpt already (as a hard link)."""
    return any(same_file(out / CHECKPOINT_FILE, p) for p in (out / "previous").glob(f"*/{CHECKPOINT_FILE}"))


def _link(source: Path, target: Path) -> None:
    """A second name for a file (a copy where the file system has no hard links)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def publish(last: Path, final: Path) -> None:
    """`final` (in a staging folder): the finished run's last.ckpt under a name that stays. A hard
    link where the file system has them (no copy of a large file); last.ckpt is only ever replaced
    by a rename, so the link keeps the final weights."""
    _link(last, final)


def data_lineage(path: str | os.PathLike) -> list[dict[str, Any]]:
    """What the model at `path` (which a fine-tuning starts from) was trained on, then what its own
    starting models were: each {val_fraction, shards} as gtok records them, None where the model
    does not say (a model as published, a geniml folder). The records a fine-tuned model's
    evaluation scores as held out must be held out from all of them. A symbolic link is read as
    its target: a model.ckpt's folder says what its run options alone do not (its parents)."""
    path = Path(os.path.realpath(path))
    if path.is_dir() or (path.name == CHECKPOINT_FILE and (path.parent / CONFIG_FILE).is_file()):
        data = trained_data(path if path.is_dir() else path.parent)
    else:  # a checkpoint of its own: its run's options
        from gtok.models import read_checkpoint

        options = (read_checkpoint(path).get(RUN_KEY) or {}).get("options", {})
        data = {"val_fraction": options.get("data.val_fraction"), "shards": options.get("data.shards")}
    parents = data.get("parents") if isinstance(data.get("parents"), list) else []
    return [{"val_fraction": data.get("val_fraction"), "shards": data.get("shards")}, *parents]


def flatten_metrics(logs: Path):
    """One row per step from all CSV log versions; a later version replaces the steps it re-did.

    A version whose log is empty, or cut off before its header was whole (a launch that a full
    disk or a kill stopped at its first row), holds no step and is passed over: it must not stop
    every later run of the folder from publishing its model."""
    import pandas as pd

    frames: list = []
    for path in sorted(logs.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1])):
        try:
            df = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            continue
        if df.empty:
            continue
        first = df["step"].min()
        frames = [f[f["step"] < first] for f in frames]
        frames.append(df)
    if not frames:
        return pd.DataFrame({"step": []})
    return pd.concat(frames).groupby("step", as_index=False).last()


