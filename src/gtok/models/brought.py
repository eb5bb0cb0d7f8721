"""LightningModules a user brings: constructed as `Class(vocab, **model_args)`, their checkpoints
made self-describing so that a model folder rebuilds them (docs/models.md).

gtok does not ask such a class to save its own hyperparameters: `BroughtRecord` writes, into every
checkpoint, the import path, the vocabulary and `model_args` under the checkpoint key `gtok` (where
the built-in models write theirs), and `lightning_from` rebuilds the module from them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.callbacks import Callback

from gtok.errors import GtokError, one_line
from gtok.models.base import Vocab
from gtok.modelspec import Brought


def build_lightning(brought: Brought, vocab: Vocab, model_args: Mapping[str, Any]) -> Any:
    """`Class(vocab, **model_args)`; an exception of the class's own is its message, in one line."""
    try:
        return brought.cls(vocab, **model_args)
    except Exception as exc:  # the user's code: any exception may say what is wrong with the arguments
        raise GtokError(f"model_args: {brought.spec.text}(vocab, **model_args) failed: {one_line(exc)}") from None


def lightning_from(brought: Brought, ckpt: dict[str, Any]) -> Any:
    """The module of a checkpoint `BroughtRecord` described, with its weights, in eval mode."""
    record = ckpt["gtok"]
    module = build_lightning(brought, Vocab(**record["vocab"]), record.get("model_args") or {})
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()


class BroughtRecord(Callback):
    """Every checkpoint of a brought module says what it is: {"model", "vocab", "model_args"}."""

    def __init__(self, spec: str, vocab: Vocab, model_args: Mapping[str, Any]):
        self.record = {"model": spec, "vocab": dataclasses.asdict(vocab), "model_args": dict(model_args)}

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint["gtok"] = self.record
