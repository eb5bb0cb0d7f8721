"""geniml's Region2Vec models, for `gtok embed` and `Embedder` (the folder: gtok.inference.loading).

A model trained in geniml (e.g. on a parquet from `gtok export-parquet`) should give the same
vectors here as geniml's own `Region2VecExModel.encode`; so this is geniml's computation, not
gtok's Region2Vec: the table `projection.weight` indexed by the token ids, pooled over every
position that is not padding (geniml keeps `<unk>` in the mean; gtok's own Region2Vec drops it),
by the folder's `pooling_method` (mean, or max). Token ids are the same in both, since gtok's
tokenizer gives gtars' ids over the same universe.
"""

from __future__ import annotations

import torch
from torch import nn

from gtok.models.base import Vocab, masked_mean


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
