"""The gtok models (Lightning modules) and rebuilding any trained model from its checkpoint."""

from __future__ import annotations

import os
from typing import Any

from gtok.errors import GtokError
from gtok.models.base import GTokModel, Vocab, check_fingerprint, read_checkpoint
from gtok.models.classifier import Classifier
from gtok.models.encoder import Encoder
from gtok.models.region2vec import Region2Vec
from gtok.options import ClassifierConfig, EncoderConfig, Region2VecConfig

MODELS: dict[str, type[GTokModel]] = {m.name: m for m in (Region2Vec, Encoder, Classifier)}


def model_class(name: str) -> type[GTokModel]:
    if name not in MODELS:
        raise GtokError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    return MODELS[name]


def load_model(checkpoint: str | os.PathLike, map_location: str = "cpu") -> Any:
    """The model of a `gtok train` checkpoint, in eval mode, whatever its kind."""
    return model_from(read_checkpoint(checkpoint), os.fspath(checkpoint)).to(map_location)


def model_from(ckpt: dict, source: str = "checkpoint") -> Any:
    """The model held by a checkpoint already read with `read_checkpoint`, in eval mode: a built-in,
    a brought LightningModule (gtok.models.brought) or a brought Hugging Face model (gtok.models.hf).
    `source` names the checkpoint in errors (a brought class that does not import here)."""
    from gtok.modelspec import import_brought, parse_model

    spec = parse_model(ckpt["gtok"]["model"], f"{source}: model")
    if spec.builtin:
        model = model_class(spec.text)(**ckpt["hyper_parameters"])
    else:
        brought = import_brought(spec, f"{source}: model")
        if brought.kind == "lightning":
            from gtok.models.brought import lightning_from

            return lightning_from(brought, ckpt)
        from gtok.models.hf import HFModel

        model = HFModel(**ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


__all__ = [
    "MODELS", "GTokModel", "Vocab", "Region2Vec", "Region2VecConfig", "Encoder", "EncoderConfig",
    "Classifier", "ClassifierConfig", "model_class", "load_model", "model_from", "read_checkpoint", "check_fingerprint",
]
