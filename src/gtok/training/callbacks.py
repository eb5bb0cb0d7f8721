"""The Lightning callbacks and plugins of `gtok train`: atomic checkpoints, a checkpoint at the
last step, and the run record every checkpoint carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
