"""A record is a bag of regions: its vector, the mean of its region vectors, should predict which
regions it holds. Train it with `train.model: bag_of_regions:BagOfRegions` (docs/models.md)."""

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class BagOfRegions(L.LightningModule):
    attends = False  # a mean over the regions: embedding needs no cropping to the training length

    def __init__(self, vocab, dim: int = 32, lr: float = 0.01):
        super().__init__()
        self.vocab, self.lr = vocab, lr
        self.embedding = nn.Embedding(vocab.vocab_size, dim)
        self.decoder = nn.Linear(dim, vocab.n_regions)

    def embed(self, batch):
        regions = batch["attention_mask"].bool() & (batch["input_ids"] < self.vocab.n_regions)
        vectors = self.embedding(batch["input_ids"]) * regions.unsqueeze(-1)
        return vectors.sum(1) / regions.sum(1, keepdim=True).clamp_min(1)

    def training_step(self, batch, batch_idx):
        ids = batch["input_ids"]
        regions = batch["attention_mask"].bool() & (ids < self.vocab.n_regions)
        present = torch.zeros(len(ids), self.vocab.n_regions, device=ids.device)
        present.scatter_add_(1, ids.clamp_max(self.vocab.n_regions - 1), regions.float()).clamp_(max=1)
        loss = F.binary_cross_entropy_with_logits(self.decoder(self.embed(batch)), present)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)
