"""The Lightning callbacks and plugins of `gtok train`: atomic checkpoints, a checkpoint at the
last step, the run record every checkpoint carries, and the run summary."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gtok.atomic import atomic_path
from gtok.training.run import RUN_KEY, run_fingerprint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written beside their target and renamed: a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class FinalCheckpoint(Callback):
    """`last` also holds the final step when training stops between checkpoint steps.

    Written at that step's end, like the periodic checkpoints: Lightning resumes those exactly,
    whereas from a checkpoint written after the epoch loop has wound up, a resumed run limited
    by max_steps would count its batches within the next epoch wrongly.
    """

    def __init__(self, last: Path):
        self.last = last

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        steps_done = 0 < trainer.max_steps <= trainer.global_step
        epochs_done = (trainer.max_epochs is not None and trainer.max_epochs > 0
                       and trainer.current_epoch + 1 >= trainer.max_epochs
                       and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
        if steps_done or epochs_done:
            trainer.save_checkpoint(self.last, weights_only=False)


class StopCheckpoint(Callback):
    """`last` holds the step during which SIGTERM (a SLURM preemption, scancel, the time limit) or
    Ctrl-C came: without it the rerun would continue from the last periodic checkpoint, up to
    `checkpoint_every_n_steps` steps back, or start over when there was none yet.

    Written at that step's end, as the periodic checkpoints are (Lightning resumes those exactly).
    Lightning then stops the run for SIGTERM at once; Ctrl-C, which `ctrl_c_ends_the_step` turns
    into the flag `ctrl_c`, stops it when the next batch would start (its step's logs and
    validation done, as in a run that goes on), with a KeyboardInterrupt that Lightning ends as
    its own Ctrl-C. With gradient accumulation, Ctrl-C waits for the batch that steps the
    optimizer: a checkpoint between two would lose the gradients gathered so far. The ranks decide
    together, since each may see the signal at another step and saving is collective: one
    all-reduce of the flags per step in multi-process training, nothing in one process."""

    def __init__(self, last: Path):
        self.last = last
        self.sigterm = False  # set by the SIGTERM handler (`setup`)
        self.ctrl_c = False  # set by the SIGINT handler of `ctrl_c_ends_the_step`
        self.stopping = False  # the step of a Ctrl-C (on any rank) is saved: stop before the next
        self._step = 0

    def setup(self, trainer, pl_module, stage):
        """SIGTERM only sets `sigterm`: Lightning's own handler (which the trainer installs after
        this hook, from this attribute) also ran a collective inside the handler, on each rank at
        whatever point the signal found it, which with SIGTERM to every rank failed or hung, and
        stopped each rank at the end of the step it saw the signal in, not at one step for all."""
        trainer._signal_connector._sigterm_notifier_fn = self._on_sigterm

    def _on_sigterm(self, signum, frame) -> None:
        self.sigterm = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.stopping:
            raise KeyboardInterrupt
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        sigterm, ctrl_c = self._signals(trainer, pl_module)
        self.stopping = ctrl_c and trainer.global_step > self._step  # this batch stepped the optimizer
        if sigterm or self.stopping:
            trainer.save_checkpoint(self.last, weights_only=False)
        if sigterm:
            trainer._signal_connector.received_sigterm = True  # Lightning stops every rank after this step

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        """SIGTERM during validation saves the step it came after, and Lightning stops there: the
        rerun runs the next step, as a run never stopped would, and only that validation's row is
        missing from metrics.csv (waiting for its end might outlast SLURM's grace before SIGKILL)."""
        if trainer.sanity_checking:
            return
        if self._signals(trainer, pl_module)[0]:
            trainer.save_checkpoint(self.last, weights_only=False)
            trainer._signal_connector.received_sigterm = True

    def _signals(self, trainer, pl_module) -> tuple[bool, bool]:
        """(SIGTERM, Ctrl-C) came to any rank."""
        flags = (self.sigterm, self.ctrl_c)
        if trainer.world_size == 1:
            return flags
        summed = trainer.strategy.reduce(torch.tensor(flags, dtype=torch.int32, device=pl_module.device), reduce_op="sum")
        return tuple(bool(n) for n in summed.tolist())  # type: ignore[return-value]

    @contextlib.contextmanager
    def ctrl_c_ends_the_step(self, note: str | None) -> Iterator[None]:
        """While training, the first Ctrl-C sets `ctrl_c` (saying `note`, on the first rank) and a
        second one interrupts at once, as Python's does. Nothing changes where SIGINT is ignored
        (a job started with nohup) or outside the main thread (where no handler can be set).
        A forked loader worker inherits the handler and ignores SIGINT: the trainer stops it."""
        if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            yield
            return
        pid = os.getpid()

        def first(signum, frame) -> None:
            if os.getpid() != pid:
                return
            self.ctrl_c = True
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if note:
                os.write(2, f"\n{note}\n".encode())  # not print: a signal handler may interrupt a print

        previous = signal.signal(signal.SIGINT, first)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class RunRecord(Callback):
    """Every checkpoint says which run it belongs to (see `gtok.training.run.resume_point`)."""

    def __init__(self, run: dict[str, Any]):
        self.run = run

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint[RUN_KEY] = {"fingerprint": run_fingerprint(self.run), "options": self.run}


class StepCheckpoint(ModelCheckpoint):
    """Saves last.ckpt every N steps, but not again when training ends: FinalCheckpoint has saved
    the final step, and a checkpoint written after the epoch loop has wound up would, on the next
    rerun, count its epoch as one more (and a run that had nothing left to do would rewrite it)."""

    def __init__(self, folder: Path, every_n_steps: int):
        super().__init__(dirpath=folder, save_top_k=0, save_last=True, every_n_train_steps=every_n_steps,
                         enable_version_counter=False)

    def on_train_end(self, trainer, pl_module):
        return None


class RunSummary(Callback):
    """Writes `summary.json` (into the run's logs/, published with its model) when training ends: how the run was spread (world size, nodes, devices
    per node), how far it got (global step) and, of this launch (from step `launch_first_step`:
    a resumed run's earlier launches are not counted), the epochs, tokens seen, wall time and, per
    data epoch, which records each rank trained on, so that a reader can check that the ranks
    shared the epoch out without overlap (but the documented padding).

    Nothing synchronises per step: a rank keeps the record indices and token counts of its
    batches on its device, and the ranks gather them once per epoch.
    """

    def __init__(self, path: Path):
        self.path = path

    def on_train_start(self, trainer, pl_module):
        self.started, self.first_step = time.monotonic(), trainer.global_step
        self.tokens = torch.zeros((), dtype=torch.int64, device=pl_module.device)
        self.epochs: list[dict[str, Any]] = []
        self._batches: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.tokens += batch["attention_mask"].sum()
        self._batches.append(batch["index"])

    def on_train_epoch_end(self, trainer, pl_module):
        dm = trainer.datamodule
        n = dm.train_set.num_records
        seen = torch.zeros(n, dtype=torch.int32, device=pl_module.device)
        if self._batches:
            seen += torch.bincount(torch.cat(self._batches), minlength=n).to(torch.int32)
        per_rank = trainer.strategy.all_gather(seen).reshape(-1, n)  # [world_size, records]: draws of each
        by_ranks = (per_rank > 0).sum(0)
        self.epochs.append({
            "epoch": dm.data_epoch,
            "records": n,
            "batches_per_rank": len(self._batches),
            "records_per_rank": (per_rank > 0).sum(1).tolist(),
            "records_seen": int((by_ranks > 0).sum()),
            "records_seen_by_several_ranks": int((by_ranks > 1).sum()),
            "records_drawn_more_than_once": int((per_rank.sum(0) > 1).sum()),  # by one rank or several
        })
        self._batches = []

    def on_train_end(self, trainer, pl_module):
        tokens = int(trainer.strategy.reduce(self.tokens, reduce_op="sum"))
        if not trainer.is_global_zero:
            return
        summary = {
            "world_size": trainer.world_size,
            "num_nodes": trainer.num_nodes,
            "devices_per_node": trainer.num_devices,
            "global_step": trainer.global_step,
            "launch_first_step": self.first_step,  # what follows counts this launch's steps only
            "epochs": self.epochs,
            "tokens_seen": tokens,
            "wall_seconds": round(time.monotonic() - self.started, 2),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            Path(tmp).write_text(json.dumps(summary, indent=1) + "\n")


class BatchLog(Callback):
    """Appends one JSON line per trained batch to `folder/rank-R.jsonl`: the launch, the step,
    the data epoch, the batch's index in its epoch and its record indices (positions in the
    training set). A run resumed after a kill redoes the steps after its checkpoint; their lines
    then appear once per launch.

    With `digests`, each line also holds a short sha1 of the batch's token ids: equal digests mean
    equal batches, crops and token shuffles included. The exact-resume tests (tests/test_train.py)
    and the preemption drill (bench/drill_preemption.py) compare a resumed run with an
    uninterrupted one batch by batch with them; it is off by default because it copies every
    batch's token ids to the CPU. Subclass it to act at a step as well (those tests kill the
    process there)."""

    def __init__(self, folder: Path, launch: str, digests: bool = False):
        self.folder, self.launch, self.digests = Path(folder), launch, digests

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._step = trainer.global_step  # the optimizer step this batch counts towards (with accumulation, several do)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.folder.mkdir(parents=True, exist_ok=True)
        row = {"launch": self.launch, "step": self._step, "epoch": trainer.datamodule.data_epoch,
               "batch": batch_idx, "records": batch["index"].tolist()}
        if self.digests:
            row["digest"] = hashlib.sha1(batch["input_ids"].cpu().numpy().tobytes()).hexdigest()[:12]
        with open(self.folder / f"rank-{trainer.global_rank}.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
