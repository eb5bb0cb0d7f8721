"""Record classification: the encoder's backbone, mean-pooled, under a linear head.

Fine-tuning usually starts from a pre-trained encoder (`init_from`: an encoder checkpoint); the
backbone's shape options are then taken from that checkpoint, so the YAML need not repeat them.
Records without a label (label < 0 in the batch) take no part in the loss or the metrics.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from gtok.errors import GtokError
from gtok.models.base import (
    GTokModel,
    check_fingerprint,
    init_weights,
    masked_mean,
    read_checkpoint,
)
from gtok.models.encoder import make_backbone
from gtok.options import SHAPE_KEYS, ClassifierConfig


def encoder_checkpoint(checkpoint: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """The checkpoint a classifier's `init_from` names (a file, or a model folder), read and known
    to hold an encoder (or a classifier's backbone); a one-line GtokError naming the file if not."""
    from gtok.pretrained import model_checkpoint

    name = os.fspath(model_checkpoint(checkpoint))
    ckpt = read_checkpoint(name)
    if ckpt["gtok"]["model"] not in ("encoder", "classifier"):
        raise GtokError(f"{name}: init_from needs an encoder checkpoint, this one holds a {ckpt['gtok']['model']}.")
    return name, ckpt


class Classifier(GTokModel):
    """Fine-tunes a transformer backbone to predict one label per record."""

    name = "classifier"
    Config = ClassifierConfig
    attends = True
    learns_from_labels = True

    def __init__(self, vocab, classes: Sequence[str], config=None):
        super().__init__(vocab, config)
        if not classes:
            raise GtokError("the classifier needs labelled records, and this data has no label classes.")
        self.classes = [str(c) for c in classes]
        self.hparams["classes"] = self.classes
        self.backbone = make_backbone(self.cfg, self.vocab.vocab_size, self.vocab.pad_token_id)
        self.head = nn.Sequential(nn.Dropout(self.cfg.head_dropout), nn.Linear(self.cfg.d_model, len(self.classes)))
        init_weights(self.head)
        n = len(self.classes)
        self.val_acc = MulticlassAccuracy(n, average="micro")
        self.val_f1 = MulticlassF1Score(n, average="macro")

    @classmethod
    def from_encoder(
        cls, checkpoint: str | os.PathLike, vocab: Mapping[str, Any], classes: Sequence[str],
        config: Mapping[str, Any] | None, data: str,
    ) -> "Classifier":
        """A classifier whose backbone starts from an encoder checkpoint (or the folder of its finished
        model) trained on the same vocabulary."""
        name, ckpt = encoder_checkpoint(checkpoint)
        check_fingerprint(vocab.get("fingerprint"), data, ckpt["gtok"]["vocab"].get("fingerprint"), name)
        shapes = {k: ckpt["hyper_parameters"]["config"][k] for k in SHAPE_KEYS}
        vocab = {**vocab, "universe": vocab.get("universe") or ckpt["gtok"]["vocab"].get("universe")}
        model = cls(vocab, classes, {**(config or {}), **shapes})
        state = {k.removeprefix("backbone."): v for k, v in ckpt["state_dict"].items() if k.startswith("backbone.")}
        model.backbone.load_state_dict(state)
        return model

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.embed(batch))

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.backbone(batch["input_ids"], batch["attention_mask"])
        return masked_mean(hidden, batch["attention_mask"].bool())

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "labels" not in batch:
            raise GtokError("the classifier's batches carry no labels; were the shards tokenized with labels?")
        labels = batch["labels"]
        known = labels >= 0
        logits = self.logits(batch)[known].float()
        labels = labels[known]
        if labels.numel() == 0:
            return {"loss": logits.sum() * 0.0, "logits": logits, "labels": labels}
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(-1) == labels).float().mean()
        return {"loss": loss, "acc": acc, "logits": logits.detach(), "labels": labels}

    def log_step(self, stage: str, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> None:
        """Batch accuracy per training step; accuracy and macro-F1 over the whole validation set."""
        if stage == "val":
            out = {k: v for k, v in out.items() if k != "acc"}
            if out["labels"].numel():
                self.val_acc.update(out["logits"], out["labels"])
                self.val_f1.update(out["logits"], out["labels"])
            self.log("val_acc", self.val_acc, on_epoch=True)
            self.log("val_f1", self.val_f1, on_epoch=True)
        super().log_step(stage, out, batch)
