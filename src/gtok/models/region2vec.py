"""Region2Vec: word2vec over region sets, with negative sampling (after geniml's Region2Vec).

A record's regions have no meaningful order, so each training step shuffles the tokens of every
record afresh (the shuffle draws come from the step's seeded generator) and takes context windows
over the shuffled list: the neighbours of a region are a random sample of its co-occurring
regions, different every epoch. Two objectives, as in word2vec:

  * `cbow` (default): the mean of the context vectors predicts the centre region;
  * `skipgram`: the centre vector predicts each of its context regions.

Negatives are drawn from the unigram distribution raised to 3/4 (word2vec's choice), estimated
from the training split's records by `gtok train` (`set_noise_counts`); without counts it is uniform.
Everything is vectorized over the batch: window sums are differences of a cumulative sum, and
the skip-gram pairs are shifted views, so a step is a handful of tensor operations.

A record's embedding is the mean of its regions' input vectors (<unk> and padding excluded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gtok.models.base import GTokModel, masked_mean
from gtok.options import Region2VecConfig

if TYPE_CHECKING:
    from gtok.data.records import Records


class Region2Vec(GTokModel):
    """Shallow region embeddings trained with context windows and negative sampling."""

    name = "region2vec"
    Config = Region2VecConfig

    def __init__(self, vocab, config=None):
        super().__init__(vocab, config)
        cfg = self.cfg
        n, d = self.vocab.vocab_size, cfg.embedding_dim
        self.center = nn.Embedding(n, d)
        self.context = nn.Embedding(n, d)
        nn.init.uniform_(self.center.weight, -0.5 / d, 0.5 / d)  # word2vec's initialisation
        nn.init.zeros_(self.context.weight)
        # Cumulative noise distribution over the regions; float64 so rare regions keep their share.
        self.register_buffer("noise_cdf", torch.linspace(0, 1, self.vocab.n_regions + 1, dtype=torch.float64)[1:])

    def set_noise_counts(self, counts: np.ndarray) -> None:
        """Use region frequencies (length >= n_regions) for the negative-sampling distribution."""
        weights = np.asarray(counts[: self.vocab.n_regions], dtype=np.float64) ** 0.75
        if weights.sum() <= 0:
            return
        cdf = np.cumsum(weights / weights.sum())
        cdf[-1] = 1.0
        self.noise_cdf.copy_(torch.from_numpy(cdf))

    def sample_negatives(self, shape: tuple[int, ...]) -> torch.Tensor:
        u = torch.rand(shape, dtype=torch.float64, device=self.noise_cdf.device)
        return torch.searchsorted(self.noise_cdf, u, right=True).clamp_max(self.vocab.n_regions - 1)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return masked_mean(self.center(batch["input_ids"]), self.region_mask(batch))

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids, valid = _shuffle_regions(batch["input_ids"], self.region_mask(batch))
        if self.cfg.mode == "cbow":
            return {"loss": self._cbow(ids, valid)}
        return {"loss": self._skipgram(ids, valid)}

    def _negative_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of `negatives` noise regions per position: [B, T, K]."""
        neg = self.context(self.sample_negatives((*hidden.shape[:2], self.cfg.negatives)))
        return torch.einsum("btd,btkd->btk", hidden, neg)

    def _cbow(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        w = self.cfg.window_size
        vec = self.center(ids) * valid.unsqueeze(-1)
        ctx_sum = _window_sum(vec, w) - vec
        ctx_n = _window_sum(valid.unsqueeze(-1).float(), w) - valid.unsqueeze(-1).float()
        use = valid & (ctx_n.squeeze(-1) > 0)
        hidden = ctx_sum / ctx_n.clamp_min(1.0)
        pos = (hidden * self.context(ids)).sum(-1)
        nll = -F.logsigmoid(pos) - F.logsigmoid(-self._negative_scores(hidden)).sum(-1)
        return (nll * use).sum() / use.sum().clamp_min(1)

    def _skipgram(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        vec, ctx = self.center(ids), self.context(ids)
        total = vec.new_zeros(())
        pairs = torch.zeros(valid.shape, device=ids.device)
        for s in range(1, min(self.cfg.window_size, ids.shape[1] - 1) + 1):
            both = (valid[:, :-s] & valid[:, s:]).float()
            # each (centre, context) pair in both directions: left-to-right and right-to-left
            fwd = (vec[:, :-s] * ctx[:, s:]).sum(-1)
            bwd = (vec[:, s:] * ctx[:, :-s]).sum(-1)
            total = total - ((F.logsigmoid(fwd) + F.logsigmoid(bwd)) * both).sum()
            pairs[:, :-s] += both
            pairs[:, s:] += both
        # word2vec draws `negatives` noise words per pair; here one draw per centre, weighted by its pairs
        neg = -F.logsigmoid(-self._negative_scores(vec)).sum(-1)
        total = total + (neg * pairs).sum()
        return total / pairs.sum().clamp_min(1)


def region_counts(records: Records, vocab_size: int, max_tokens: int = 1 << 26) -> np.ndarray:
    """How often each token occurs in `records` (gtok.data.records: `gtok train` passes the training
    split, since the held-out records must not shape the model, as they do not shape the LSI
    baseline it is compared with), from at most about `max_tokens` tokens.

    A large corpus is sampled by evenly spaced records (a noise distribution needs frequencies, not
    exact counts), so this costs a bounded read whatever the corpus size.
    """
    counts = np.zeros(vocab_size, dtype=np.int64)
    total = int(records.length.sum())
    chosen = np.arange(len(records))
    if total > max_tokens:
        chosen = np.unique(np.linspace(0, len(records) - 1, max(1, len(records) * max_tokens // total)).astype(np.int64))
    for shard in np.unique(records.shard[chosen]):  # one shard's tokens at a time
        counts += np.bincount(records.gather(chosen[records.shard[chosen] == shard]), minlength=vocab_size)[:vocab_size]
    return counts


def _shuffle_regions(ids: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly permute each row's region tokens and move them to the front of the row."""
    keys = torch.rand(ids.shape, device=ids.device).masked_fill(~valid, 2.0)
    order = keys.argsort(dim=1)
    return ids.gather(1, order), valid.gather(1, order)


def _window_sum(x: torch.Tensor, w: int) -> torch.Tensor:
    """Sum of x[:, t-w : t+w+1] for every t (zero beyond the ends): [B, T, D]."""
    t = x.shape[1]
    prefix = F.pad(x.cumsum(1), (0, 0, 1, 0))  # prefix[:, k] = sum of x[:, :k]
    pos = torch.arange(t, device=x.device)
    return prefix[:, (pos + w + 1).clamp_max(t)] - prefix[:, (pos - w).clamp_min(0)]
