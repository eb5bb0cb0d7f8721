"""An Atacformer-like transformer encoder over region tokens, pre-trained without labels.

No positional encoding, neither sinusoidal nor learned. A record is a *set* of regions: the
order of its tokens is only the order of the input file (or a shuffle of it), and where a token
sits in that list says nothing about the biology; the position that matters, on the genome, is
already part of each token's identity, since every token is one fixed universe region. A
position embedding would let the model key on list index, which shifts whenever an unrelated
region is added before it. Without one, self-attention is permutation-equivariant and the mean
pooled embedding is permutation-invariant: a record's vector does not depend on token order.

Objectives:
  * `mlm` (default): BERT-style masked-token prediction; 15% of region tokens are chosen, 80% of
    those become <mask>, 10% a random region, 10% stay; the model predicts the originals through
    an output layer tied to the input embedding (logits only at the chosen positions, since a
    universe can hold millions of regions).
  * `rtd`: ELECTRA-style replaced-token detection. A small generator (same embedding table, fewer
    layers, narrower feed-forward) fills masked positions with sampled regions; the encoder
    learns to tell, at every position, whether the token is the original. Every token gives a
    training signal, not only the masked 15%.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gtok.errors import GtokError
from gtok.models.base import GTokModel, init_weights, masked_mean
from gtok.options import BackboneConfig, EncoderConfig


class Backbone(nn.Module):
    """Token embedding and pre-norm transformer layers: ids[B, T] -> hidden[B, T, d_model]."""

    def __init__(self, embedding: nn.Embedding, n_layers: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.embedding = embedding
        d_model = embedding.embedding_dim
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, d_ff, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.layers(self.embedding(ids), src_key_padding_mask=~attention_mask.bool())


def make_backbone(cfg: BackboneConfig, vocab_size: int, pad_token_id: int) -> Backbone:
    if cfg.d_model % cfg.n_heads:
        raise GtokError(f"d_model ({cfg.d_model}) must be a multiple of n_heads ({cfg.n_heads}).")
    embedding = nn.Embedding(vocab_size, cfg.d_model, padding_idx=pad_token_id)
    backbone = Backbone(embedding, cfg.n_layers, cfg.n_heads, cfg.d_ff, cfg.dropout)
    init_weights(backbone)
    return backbone


class Encoder(GTokModel):
    """Transformer encoder pre-trained with masked-token (default) or replaced-token objectives."""

    name = "encoder"
    Config = EncoderConfig
    attends = True

    def __init__(self, vocab, config=None):
        super().__init__(vocab, config)
        cfg = self.cfg
        self.backbone = make_backbone(cfg, self.vocab.vocab_size, self.vocab.pad_token_id)
        embedding = self.backbone.embedding
        self.mlm = MaskedTokenHead(embedding)  # with rtd, the generator's output layer
        if cfg.objective == "rtd":
            self.generator = Backbone(embedding, cfg.generator_layers, cfg.n_heads, cfg.generator_d_ff, cfg.dropout)
            init_weights(self.generator.layers)
            self.detector = nn.Linear(cfg.d_model, 1)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.backbone(batch["input_ids"], batch["attention_mask"])
        return masked_mean(hidden, batch["attention_mask"].bool())

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.cfg.objective == "mlm":
            return self._mlm_losses(batch)
        return self._rtd_losses(batch)

    def _choose(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Positions to corrupt: a `mask_prob` share of the region tokens."""
        regions = self.region_mask(batch)
        return regions & (torch.rand(regions.shape, device=regions.device) < self.cfg.mask_prob)

    def _mlm_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids, attn = batch["input_ids"], batch["attention_mask"]
        chosen = self._choose(batch)
        r = torch.rand(ids.shape, device=ids.device)
        random_ids = torch.randint_like(ids, self.vocab.n_regions)
        corrupted = torch.where(chosen & (r < 0.8), torch.full_like(ids, self.vocab.mask_token_id), ids)
        corrupted = torch.where(chosen & (r >= 0.8) & (r < 0.9), random_ids, corrupted)
        hidden = self.backbone(corrupted, attn)
        logits = self.mlm(hidden[chosen])
        loss = _mean(F.cross_entropy(logits.float(), ids[chosen], reduction="sum"), chosen.sum())
        with torch.no_grad():
            acc = _mean((logits.argmax(-1) == ids[chosen]).sum(), chosen.sum())
        return {"loss": loss, "mlm_acc": acc}

    def _rtd_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids, attn = batch["input_ids"], batch["attention_mask"]
        chosen = self._choose(batch)
        masked = torch.where(chosen, torch.full_like(ids, self.vocab.mask_token_id), ids)
        gen_logits = self.mlm(self.generator(masked, attn)[chosen]).float()
        n_chosen = chosen.sum()
        gen_loss = _mean(F.cross_entropy(gen_logits, ids[chosen], reduction="sum"), n_chosen)
        with torch.no_grad():  # the generator is trained by its own loss only, as in ELECTRA
            probs = torch.softmax(gen_logits[:, : self.vocab.n_regions], -1)  # never sample a special token
            sampled = torch.multinomial(probs, 1).squeeze(-1) if n_chosen else ids[chosen]
            replaced_ids = ids.clone()
            replaced_ids[chosen] = sampled
            replaced = (replaced_ids != ids).float()
        hidden = self.backbone(replaced_ids, attn)
        real = attn.bool()
        det_logits = self.detector(hidden[real]).squeeze(-1).float()
        det_loss = F.binary_cross_entropy_with_logits(det_logits, replaced[real])
        with torch.no_grad():
            det_acc = ((det_logits > 0).float() == replaced[real]).float().mean()
        return {
            "loss": gen_loss + self.cfg.rtd_weight * det_loss,
            "generator_loss": gen_loss,
            "detector_loss": det_loss,
            "detector_acc": det_acc,
        }


class MaskedTokenHead(nn.Module):
    """Predicts token ids from hidden states through a transform and the tied input embedding."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        d = embedding.embedding_dim
        self.transform = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d))
        self.embedding = embedding
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings))
        init_weights(self.transform)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(hidden), self.embedding.weight, self.bias)


def _mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """total / count, and 0 when nothing was chosen. The sum over no positions still passes through
    the output layer, so every parameter gets its (zero) gradient: DDP requires that each step use
    all parameters, and no host sync is needed to find out."""
    return total / count.clamp_min(1)
