"""One training run in its folder: what identifies it, whether a rerun continues it or starts
afresh, and what a finished run publishes (model.ckpt, metrics.csv).

Every checkpoint records the options that decide the run's course (`run_options`). A rerun on
the same folder continues from checkpoints/last.ckpt when they are unchanged and it is not past
the stopping criteria; otherwise the old run moves to previous/ and a new one starts. The stopping
criteria themselves are not part of a run, so raising them extends a run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gtok.atomic import atomic_path
from gtok.errors import describe
from gtok.options import DataOptions, TrainerOptions

if TYPE_CHECKING:
    from gtok.formats.manifest import Manifest

RUN_KEY = "gtok_run"
"""Checkpoint key of the run record: {"fingerprint": sha256 hex, "options": `run_options`}."""
NOT_RUN_OPTIONS = {
    "data": {"verify", "universe", "num_workers"},
    "trainer": {"max_epochs", "max_steps", "checkpoint_every_n_steps", "log_every_n_steps",
                "val_check_interval", "num_sanity_val_steps", "devices", "num_nodes", "strategy", "log_batches"},
}
"""Options that say when to stop, save, log or validate, what to check, and how the work is spread
over processes: not where a run goes. The data's position in an epoch is one number whatever the
number of devices, nodes and loader workers (gtok.data.plan), so a run continues on another number
of them: bit-exactly on the same, with exactly the records not yet seen on another."""


def run_options(model: str, model_config: Any, data: DataOptions, opts: TrainerOptions, hardware: dict[str, Any],
                manifest: Manifest, model_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """What decides the course of a run, flat ("section.key": value).

    The model and its options (a brought class's `model_args` too), the seed, the data options, the trainer options that change the
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
                (model, model_options), ("model_args", model_args or {}))
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
            for name in ("logs", "batches"):  # of a run that never checkpointed
                shutil.rmtree(out / name, ignore_errors=True)
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
    for name in ("checkpoints", "logs", "metrics.csv", "loss.png", "summary.json", "batches"):
        if (out / name).exists():
            os.replace(out / name, previous / name)


def publish(last: Path, final: Path) -> None:
    """`final`: the finished run's last.ckpt under a name that stays, atomically. A hard link where
    the file system has them (no copy of a large file); last.ckpt is only ever replaced by a rename,
    so the link keeps the final weights."""
    with atomic_path(final) as tmp:
        tmp.unlink()
        try:
            os.link(last, tmp)
        except OSError:
            shutil.copyfile(last, tmp)


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


