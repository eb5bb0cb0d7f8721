"""Hugging Face models a user brings (trained by gtok, or as published): the Lightning adapter
around a `PreTrainedModel`.

The model is built from its config class, filled from `model_args` with the vocabulary set from the
data (`hf_config`): vocab_size and every special token id (gtars' layout), so that padding, masks
and replacements mean what the shards mean. The adapter is a `GTokModel`, so the optimiser,
schedule, logging and the step-seeded draws (exact resumes) are the built-ins'; what it adds is
the objective's inputs (`hf.objective`):

* `rtd`, replaced-token detection (`...ForReplacedTokenDetection`, ELECTRA): geniml's
  `DataCollatorForReplacedTokenDetection`: each region token (not a special token, not padding)
  is chosen with `mlm_probability` and replaced by a region drawn uniformly from all regions
  (it may draw itself, and then counts as kept); labels are 1 replaced, 0 kept, -100 on special
  tokens and padding. The model's `forward(input_ids, attention_mask, labels)` gives the loss.
* `mlm`, masked tokens (`...ForMaskedLM`): BERT's 80/10/10 with the `<mask>` id, labels the
  original ids at the chosen positions and -100 elsewhere.
* `triplet` (`AtacformerForCellClustering`, a forward of anchor, positive and negative): triplets
  from the batch's labels, each labelled record an anchor with a random record of its label
  (positive) and one of another label (negative); records without either take no part.

A record's vector is the attention-masked mean of the base model's last hidden state, which is
what geniml's `encode_tokenized_cells` returns. At the end of training the model is saved with
`save_pretrained` (config.json, model.safetensors) into the model folder, where `from_pretrained`
of the class, and gtok.inference.loading, read it.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from gtok.errors import GtokError
from gtok.formats.metadata import TOKEN_ORDERS_KEY
from gtok.models.base import GTokModel, Vocab, masked_mean
from gtok.modelspec import Brought, ModelSpec, hf_config_class, hf_objective, import_brought, token_ids
from gtok.options import HFConfig

#: Mask, random and kept shares of the chosen tokens under `mlm` (BERT's).
_MLM_MASK, _MLM_RANDOM = 0.8, 0.1


class HFModel(GTokModel):
    """A brought `PreTrainedModel` (`self.model`) trained on gtok's batches."""

    name = "hf"
    Config = HFConfig
    attends = True

    def __init__(self, vocab: Vocab | Mapping[str, Any], model_class: str, hf_config: Mapping[str, Any],
                 config: Mapping[str, Any] | None = None, model: Any = None):
        """`hf_config`: the whole config of the model (`hf_config()`); `model`: one already built
        with it (loaded from a folder), else a freshly initialised one."""
        super().__init__(vocab, config)
        self.model_class = model_class
        self.hparams.update(model_class=model_class, hf_config=dict(hf_config))
        self._brought = import_brought(ModelSpec(model_class))
        self.model = model if model is not None else self._brought.cls(hf_config_class(self._brought).from_dict(dict(hf_config)))
        _quiet_fast_path()  # before training's own filters, so that validating adds none

    @functools.cached_property
    def objective(self) -> str:
        """The training objective (`hf.objective`, or what the class is for), read only once
        training asks: a base model (AtacformerModel as published) is trained for nothing and
        still embeds."""
        return hf_objective(self._brought, self.cfg.objective)

    @property
    def learns_from_labels(self) -> bool:  # type: ignore[override]
        """Trained on labelled triplets: its evaluation says so beside the unsupervised LSI."""
        try:
            return self.objective == "triplet"
        except GtokError:  # a base model as published: trained for no objective gtok knows
            return False

    @property
    def model_spec(self) -> str:
        return self.model_class

    @property
    def max_positions(self) -> int | None:
        """The most tokens a record may hold: the model's position embeddings (None: no limit)."""
        return getattr(self.model.config, "max_position_embeddings", None)

    @property
    def embedding(self) -> torch.nn.Module:
        """The token embedding table (the evaluation's region vectors)."""
        return self.model.get_input_embeddings()

    # -- objectives -----------------------------------------------------------------------------

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.objective == "triplet":
            return self._triplet(batch)
        inputs, labels = corrupt(self.objective, batch["input_ids"], self.region_mask(batch), self.vocab,
                                 self.cfg.mlm_probability)
        out = self.model(input_ids=inputs, attention_mask=batch["attention_mask"].bool(), labels=labels)
        logits = out.logits if hasattr(out, "logits") else out[1]
        loss = _loss(out)
        if loss is None or not (labels >= 0).any():  # nothing to predict in this batch
            loss = logits.sum() * 0.0  # still through every parameter: DDP needs each one used
        result = {"loss": loss}
        if self.objective == "rtd" and logits.shape == labels.shape:
            with torch.no_grad():
                active = labels != -100
                result["detector_acc"] = ((logits > 0).long() == labels)[active].float().mean()
        return result

    def _triplet(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "labels" not in batch:
            raise GtokError("hf.objective triplet needs labelled records, and these batches carry no labels; "
                            "tokenize with --label-key or --labels.")
        ids, attention, y = batch["input_ids"], batch["attention_mask"].bool(), batch["labels"]
        anchors, positives, negatives = triplets(y)
        if anchors.numel() == 0:  # no label twice in this batch
            return {"loss": self.embed(batch).sum() * 0.0, "triplets": torch.zeros((), device=ids.device)}
        out = self.model(
            input_ids_anchor=ids[anchors], attention_mask_anchor=attention[anchors],
            input_ids_positive=ids[positives], attention_mask_positive=attention[positives],
            input_ids_negative=ids[negatives], attention_mask_negative=attention[negatives],
        )
        return {"loss": _loss(out), "triplets": torch.tensor(float(anchors.numel()), device=ids.device)}

    # -- embedding and saving -------------------------------------------------------------------

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The attention-masked mean of the last hidden state (geniml's encode_tokenized_cells)."""
        attention = batch["attention_mask"].bool()
        _quiet_fast_path()
        hidden = self.model.base_model(input_ids=batch["input_ids"], attention_mask=attention)
        return masked_mean(hidden if isinstance(hidden, torch.Tensor) else hidden[0], attention)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        _quiet_fast_path()  # in eval mode, as embedding
        super().validation_step(batch, batch_idx)

    def save_pretrained(self, folder: str | os.PathLike, token_orders: Sequence[str] | None = None) -> list[Path]:
        """`save_pretrained` into `folder`, each file renamed into place (a kill leaves no half file).
        config.json records `token_orders`, the order the training records' tokens came in (null:
        not known), under TOKEN_ORDERS_KEY: config.json, the weights and the universe are what a
        model is published with, without gtok's config.yaml, and embedding warns by that order."""
        folder = Path(folder)
        setattr(self.model.config, TOKEN_ORDERS_KEY, None if token_orders is None else list(token_orders))
        staging = Path(tempfile.mkdtemp(prefix=".save_pretrained-", dir=folder))
        try:
            self.model.save_pretrained(staging, safe_serialization=True)
            written = []
            for path in sorted(staging.iterdir()):
                os.replace(path, folder / path.name)
                written.append(folder / path.name)
            return written
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def fine_tune(cls, parent: "HFModel", vocab: Vocab, model_class: str, model_args: Mapping[str, Any],
                  config: Mapping[str, Any], what: str) -> tuple["HFModel", int]:
        """A model of `model_class` whose config is the parent's with `model_args` over it, starting
        from every parent weight of the same name and shape; (model, number of tensors taken)."""
        brought = import_brought(ModelSpec(model_class))
        base = parent.model.config.to_dict()
        net = cls(vocab, model_class, hf_config(brought, model_args, vocab, base, what), config)
        own = net.model.state_dict()
        theirs = parent.model.state_dict()
        clash = [k for k, v in theirs.items() if k in own and own[k].shape != v.shape]
        if clash:
            raise GtokError(f"{what}: {clash[0]} is {tuple(theirs[clash[0]].shape)} in the init_from model but "
                            f"{tuple(own[clash[0]].shape)} in {model_class}; leave the shape options out of model_args.")
        shared = {k: v for k, v in theirs.items() if k in own}
        if not shared:
            raise GtokError(f"{what}: the init_from model ({parent.model_class}) has no weight in common with "
                            f"{model_class}.")
        net.model.load_state_dict(shared, strict=False)
        return net, len(shared)


def hf_config(brought: Brought, model_args: Mapping[str, Any], vocab: Vocab, base: Mapping[str, Any] | None = None,
              what: str = "config") -> dict[str, Any]:
    """The whole config (a dict) of a brought HF model: `base` (a parent's), `model_args` over it,
    and the data's vocabulary size and special token ids over both. The vocab_size is model_args',
    else the parent's (larger than the data's when it was trained so: its embedding rows are
    taken whole), else the data's."""
    size = model_args.get("vocab_size", (base or {}).get("vocab_size", vocab.vocab_size))
    if size < vocab.vocab_size:
        raise GtokError(f"{what} section 'model_args': vocab_size {size} is smaller than the data's vocabulary of "
                        f"{vocab.vocab_size} tokens ({vocab.n_regions} regions and the special tokens); leave "
                        "vocab_size out and gtok sets it.")
    values = {**(base or {}), **model_args, "vocab_size": size, **token_ids(vocab.vocab_size)}
    return hf_config_class(brought, what).from_dict(values).to_dict()


def corrupt(objective: str, ids: torch.Tensor, regions: torch.Tensor, vocab: Vocab, probability: float
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(model inputs, labels) of an `rtd` or `mlm` step (see the module docstring); `regions`: the
    positions holding a universe region. Draws from the global generator (the step's seeded one)."""
    chosen = regions & (torch.rand(ids.shape, device=ids.device) < probability)
    random_ids = torch.randint_like(ids, vocab.n_regions)
    if objective == "rtd":
        inputs = torch.where(chosen, random_ids, ids)
        return inputs, (inputs != ids).long().masked_fill(~regions, -100)
    r = torch.rand(ids.shape, device=ids.device)
    inputs = torch.where(chosen & (r < _MLM_MASK), torch.full_like(ids, vocab.mask_token_id), ids)
    inputs = torch.where(chosen & (r >= _MLM_MASK) & (r < _MLM_MASK + _MLM_RANDOM), random_ids, inputs)
    return inputs, ids.masked_fill(~chosen, -100)


def triplets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(anchors, positives, negatives): record indices of a batch, from its labels (< 0: none).

    Each labelled record that shares its label with another and not with all is an anchor; its
    positive and negative are drawn uniformly (from the step's seeded generator)."""
    n = labels.shape[0]
    known = labels >= 0
    both = known[:, None] & known[None, :]
    same = (labels[:, None] == labels[None, :]) & both & ~torch.eye(n, dtype=torch.bool, device=labels.device)
    other = (labels[:, None] != labels[None, :]) & both
    draw = torch.rand((n, n), device=labels.device)
    positives = draw.masked_fill(~same, -1.0).argmax(1)
    negatives = draw.masked_fill(~other, -1.0).argmax(1)
    anchors = torch.nonzero(same.any(1) & other.any(1)).squeeze(1)
    return anchors, positives[anchors], negatives[anchors]


_FAST_PATH_NOTICE = "The PyTorch API of nested tensors is in prototype stage"
_FAST_PATH_MODULE = "torch.nn.modules.transformer"  # where torch says it


def _quiet_fast_path() -> None:
    """Hide torch's notice, on every batch in eval mode (embedding, validation), that the fast
    path of nn.TransformerEncoder (geniml's Atacformer) uses a prototype API: a line about torch,
    not about the run, under `gtok train --quiet` too. The filter is added only when the first
    filter that decides the notice does not ignore it, and stays: a catch_warnings per batch, or
    a filter added on every batch, resets Python's record of the warnings already said, and
    Lightning's per-epoch notices would come again after every validation."""
    deciding = next((f for f in warnings.filters if _decides_fast_path_notice(*f)), None)
    if deciding is None or deciding[0] != "ignore":
        warnings.filterwarnings("ignore", message=_FAST_PATH_NOTICE)


def _decides_fast_path_notice(action: str, message: Any, category: type, module: Any, lineno: int) -> bool:
    """Whether a warnings filter matches torch's fast-path notice (the first that does decides it)."""
    return ((message is None or message.match(_FAST_PATH_NOTICE) is not None) and issubclass(UserWarning, category)
            and (module is None or module.match(_FAST_PATH_MODULE) is not None) and lineno == 0)


def _loss(out: Any) -> torch.Tensor | None:
    """The loss of a model's output: a ModelOutput's `loss`, or a tuple's first element."""
    return out.loss if hasattr(out, "loss") else out[0]
