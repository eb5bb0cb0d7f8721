"""geniml's Region2Vec models, for `gtok embed` and `Embedder` (the folder layout: gtok.pretrained).

A model trained in geniml (e.g. on a parquet from `gtok export-parquet`) should give the same
vectors here as geniml's own `Region2VecExModel.encode`; so this is geniml's computation, not
gtok's Region2Vec: the table `projection.weight` indexed by the token ids, pooled over every
position that is not padding (geniml keeps `<unk>` in the mean; gtok's own Region2Vec drops it),
by the folder's `pooling_method` (mean, or max). Token ids are the same in both, since gtok's
tokenizer gives gtars' ids over the same universe.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gtok.errors import GtokError, describe
from gtok.models.base import Vocab, masked_mean
from gtok.tokenizer import Tokenizer

WEIGHT_KEY = "projection.weight"


class GenimlRegion2Vec(nn.Module):
    """geniml's Region2Vec embedding table with geniml's pooling, shaped like a gtok model for `Embedder`."""

    name = "geniml-region2vec"
    #: no attention: records are never cropped
    attends = False

    def __init__(self, weight: torch.Tensor, vocab: Vocab, pooling: str = "mean"):
        super().__init__()
        self.vocab = vocab
        self.pooling = pooling
        self.projection = nn.Embedding.from_pretrained(weight, freeze=True, padding_idx=vocab.pad_token_id)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One vector per record: geniml's pooling of its token vectors, padding excluded."""
        ids = batch["input_ids"]
        mask = batch["attention_mask"].bool() & ids.ne(self.vocab.pad_token_id)
        vectors = self.projection(ids).float()
        if self.pooling == "max":
            return vectors.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values
        return masked_mean(vectors, mask)


def load_geniml(folder: Path, universe: str | os.PathLike | None = None
                ) -> tuple[GenimlRegion2Vec, Tokenizer, dict[str, Any]]:
    """(model in eval mode on the CPU, its tokenizer, {"geniml": config}) from a geniml Region2Vec folder."""
    from gtok.pretrained import GENIML_CHECKPOINT, geniml_config, geniml_tokenizer

    config = geniml_config(folder)
    tokenizer = geniml_tokenizer(folder, universe, config)
    weight = _projection(folder / GENIML_CHECKPOINT, config)
    model = GenimlRegion2Vec(weight, Vocab.of(tokenizer), config["pooling_method"])
    return model.eval(), tokenizer, {"geniml": config}


def _projection(path: Path, config: dict[str, Any]) -> torch.Tensor:
    """`projection.weight` of a geniml checkpoint, checked against its config's sizes."""
    name = describe(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        raise GtokError(f"{name}: not a readable geniml checkpoint ({type(exc).__name__}).") from None
    weight = state.get(WEIGHT_KEY) if isinstance(state, dict) else None
    if not isinstance(weight, torch.Tensor):
        raise GtokError(f"{name}: has no {WEIGHT_KEY}; not a geniml Region2Vec checkpoint.")
    expected = (config["vocab_size"], config["embedding_dim"])
    if tuple(weight.shape) != expected:
        raise GtokError(f"{name}: {WEIGHT_KEY} is {tuple(weight.shape)}, but config.yaml says "
                        f"vocab_size x embedding_dim = {expected}.")
    return weight.float()
