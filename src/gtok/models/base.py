"""What every gtok model shares: its vocabulary record, option handling, optimiser and seeding.

A checkpoint must be usable on its own, long after training: `Vocab` (vocabulary size, special
token ids, the tokenizer's fingerprint and, when known, the universe path) is saved in the
hyperparameters of every model, so inference can rebuild the tokenizer and refuse a different one.
`Vocab` is also what a brought LightningModule is constructed with (docs/models.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from torch import nn

from gtok.errors import FingerprintMismatchError, GtokError, kind_of_file, one_line
from gtok.options import BaseConfig, make_config
from gtok.paths import input_file
from gtok.vocabulary import Vocabulary


@dataclass(frozen=True)
class Vocab:
    """The tokenizer a model was trained with (everything but the regions themselves), as its
    checkpoint records it: the size, the special ids a model's layers use, the universe's
    fingerprint (None for data that carries none, such as gtars' files) and its path.

    The ids follow `gtok.vocabulary.Vocabulary`'s layout (checked), which answers the rest.
    """

    vocab_size: int
    pad_token_id: int
    mask_token_id: int
    unk_token_id: int
    cls_token_id: int
    fingerprint: str | None = None
    universe: str | None = None

    def __post_init__(self) -> None:
        layout = self.layout
        ids = (self.pad_token_id, self.mask_token_id, self.unk_token_id, self.cls_token_id)
        if ids != (layout.pad_token_id, layout.mask_token_id, layout.unk_token_id, layout.cls_token_id):
            raise ValueError(f"special token ids {ids} (pad, mask, unk, cls) are not gtars' layout for a vocabulary of "
                             f"{self.vocab_size} tokens")

    @classmethod
    def of(cls, source: Any, universe: str | None = None, fingerprint: str | None = None) -> "Vocab":
        """From anything with a `vocab_size` and `fingerprint`: a Tokenizer or a GTokDataset."""
        return cls.of_size(int(source.vocab_size), fingerprint or source.fingerprint, universe)

    @classmethod
    def of_size(cls, vocab_size: int, fingerprint: str | None = None, universe: str | None = None) -> "Vocab":
        """The vocabulary of `vocab_size` tokens in gtars' layout."""
        layout = Vocabulary.of_size(vocab_size)
        return cls(vocab_size, pad_token_id=layout.pad_token_id, mask_token_id=layout.mask_token_id,
                   unk_token_id=layout.unk_token_id, cls_token_id=layout.cls_token_id, fingerprint=fingerprint,
                   universe=universe)

    @property
    def layout(self) -> Vocabulary:
        return Vocabulary.of_size(self.vocab_size, self.fingerprint)

    @property
    def n_regions(self) -> int:
        """Ids below this are universe regions; the special tokens follow them."""
        return self.layout.n_regions

    @property
    def eos_token_id(self) -> int:
        return self.layout.eos_token_id

    @property
    def bos_token_id(self) -> int:
        return self.layout.bos_token_id

    @property
    def sep_token_id(self) -> int:
        return self.layout.sep_token_id


class GTokModel(L.LightningModule):
    """Base of the gtok models: subclasses define `Config`, `losses(batch)` and `embed(batch)`.

    Randomness inside a step (masking, negative samples, token shuffles, dropout) is drawn from a
    generator seeded by (seed, step, batch index, rank) rather than from one long random stream.
    A run resumed from a checkpoint therefore makes exactly the same draws as an uninterrupted
    one, whatever else (validation, data loader start-up) consumed random numbers in between; and
    validation masks are identical at every evaluation, so validation losses are comparable.
    """

    name: ClassVar[str]
    Config: ClassVar[type] = BaseConfig
    #: Self-attention costs length squared: inference crops records to the training max_length.
    attends: ClassVar[bool] = False
    #: Trains on the records' labels: its evaluation says so beside LSI (which uses them only to choose its components).
    learns_from_labels: ClassVar[bool] = False

    def __init__(self, vocab: Vocab | Mapping[str, Any], config: Mapping[str, Any] | None = None):
        super().__init__()
        self.vocab = vocab if isinstance(vocab, Vocab) else Vocab(**vocab)
        self.cfg = make_config(self.Config, config, f"{self.name} model")
        self.save_hyperparameters({"vocab": dataclasses.asdict(self.vocab), "config": dataclasses.asdict(self.cfg)})

    # -- what subclasses provide --------------------------------------------------------------

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"loss": the scalar to minimise, ...}: every scalar is logged, other tensors are not."""
        raise NotImplementedError

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One vector per record: Tensor[B, D]."""
        raise NotImplementedError

    # -- Lightning ------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        with self.seeded("train", self.global_step, batch_idx):
            out = self.losses(batch)
        self.log_step("train", out, batch)
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        with self.seeded("val", batch_idx):
            out = self.losses(batch)
        self.log_step("val", out, batch)

    def log_step(self, stage: str, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> None:
        """Log every scalar of `out` as `{stage}_{key}`: per step in training, per epoch in validation."""
        train = stage == "train"
        size = int(batch["input_ids"].shape[0])
        for key, value in out.items():
            if value.ndim:
                continue
            self.log(f"{stage}_{key}", value, on_step=train, on_epoch=not train, prog_bar=key == "loss",
                     batch_size=size, sync_dist=not train)

    @property
    def model_spec(self) -> str:
        """The `--model` that rebuilds this model from its checkpoint (gtok.inference.loading)."""
        return self.name

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gtok"] = {"model": self.model_spec, "vocab": dataclasses.asdict(self.vocab)}

    def configure_optimizers(self):
        decay = [p for p in self.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.ndim < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.cfg.lr,
        )
        # trainer.max_steps, not estimated_stepping_batches: the latter loads the train loader early,
        # and Lightning then drops the loader state of a resumed checkpoint (Lightning issue #20550).
        total = self.trainer.max_steps if self._trainer is not None else -1
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(self.cfg.warmup_steps, self.cfg.schedule, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- helpers --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def seeded(self, *key: Any) -> Iterator[None]:
        """Run a block with the global torch RNGs seeded from (seed, *key, rank), then restore them."""
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        rank = self.global_rank if self._trainer is not None else 0
        digest = hashlib.blake2b(repr((self.cfg.seed, *key, rank)).encode(), digest_size=8).digest()
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int.from_bytes(digest, "little") >> 1)
            yield

    def region_mask(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Positions holding a universe region (not padding, not <unk> or another special token)."""
        return batch["attention_mask"].bool() & (batch["input_ids"] < self.vocab.n_regions)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a gtok checkpoint on the CPU, with one-line errors for a missing or foreign file."""
    name = os.fspath(path)
    input_file(path, "checkpoint")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch's zip format, or its legacy pickle
        kind = kind_of_file(head) or "not a file torch wrote"
        raise GtokError(f"{name}: not a checkpoint: it is {kind}; give a model.ckpt or last.ckpt of 'gtok train'.")
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):
        raise GtokError(f"{name}: a checkpoint cut short or damaged (its zip archive has no end); copy it again"
                        f"{_instead_of(path)}.")
    try:
        ckpt = torch.load(name, map_location="cpu", weights_only=False, mmap=True)  # tensors read on use
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        raise GtokError(f"{name}: not a readable checkpoint ({one_line(exc)}).") from None
    if not isinstance(ckpt, dict) or "gtok" not in ckpt:
        raise GtokError(f"{name}: not a gtok checkpoint (it does not say which model and vocabulary it holds).")
    return ckpt


def _instead_of(path: str | os.PathLike) -> str:
    """The run's checkpoints/last.ckpt beside a folder's model.ckpt that cannot be read, to give
    instead ("" for last.ckpt itself, or a file of no run folder)."""
    last = Path(path).parent / "checkpoints" / "last.ckpt"
    return f", or give {os.fspath(last)}" if last.is_file() and not os.path.samefile(last, path) else ""


def check_fingerprint(data_fp: str | None, data: str, model_fp: str | None, checkpoint: str) -> None:
    """Refuse data tokenized with another vocabulary than a checkpoint's (when both are known)."""
    if data_fp and model_fp and data_fp != model_fp:
        raise FingerprintMismatchError(
            f"{data}: tokenized with vocabulary {data_fp[:12]}, but {checkpoint} was trained on vocabulary "
            f"{model_fp[:12]}; use data tokenized with the checkpoint's universe."
        )


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x[B, T, D] over the positions where mask[B, T] is true; zeros for an empty row."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def _schedule(warmup: int, kind: str, total: int):
    if kind not in ("constant", "cosine"):
        raise GtokError(f"unknown schedule {kind!r}; use 'constant' or 'cosine'.")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant" or total <= warmup:
            return 1.0
        progress = min(1.0, (step - warmup) / (total - warmup))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Small normal init for linear and embedding weights (transformer practice), zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
