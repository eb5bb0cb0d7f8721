"""The self-contained model folder: what `gtok train` leaves in its output folder, and where.

A model trained on one universe is useless without that universe: token ids mean its regions.
So `gtok train` leaves in its output folder, beside `model.ckpt`,

    universe.bed.gz   the universe BED the data was tokenized with (its bytes, gzipped)
    config.yaml       the model (a built-in's name or a brought class's import path) and its
                      options, the data options it saw (max_length), the vocabulary's size and
                      fingerprint, and the gtok version

and, for a brought Hugging Face model, what its `save_pretrained` writes (config.json,
model.safetensors), which `from_pretrained` of its class reads as it is. A geniml Region2Vec
folder (checkpoint.pt, config.yaml, universe.bed) is the other kind of folder gtok reads.

This module knows the layout and writes it; gtok.loading reads every kind of model folder.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

from gtok.atomic import atomic_path
from gtok.errors import GtokError, describe

UNIVERSE_FILE = "universe.bed.gz"
CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "model.ckpt"
HF_CONFIG_FILE = "config.json"  # with model.safetensors: what save_pretrained writes
SAVED_WITH_HF = "save_pretrained"  # config.yaml's `saved_with` when the folder holds them
GENIML_CHECKPOINT = "checkpoint.pt"
GENIML_UNIVERSE = "universe.bed"


def model_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint a model path stands for: a folder's model.ckpt (else its last checkpoint)."""
    path = Path(path)
    if not path.is_dir():
        return path
    for candidate in (path / CHECKPOINT_FILE, path / "checkpoints" / "last.ckpt"):
        if candidate.is_file():
            return candidate
    raise GtokError(f"{describe(path)}: not a gtok model folder: it holds no {CHECKPOINT_FILE} (nor checkpoints/last.ckpt); "
                    "give the --out folder of 'gtok train', a checkpoint, or a geniml Region2Vec folder "
                    f"({GENIML_CHECKPOINT} and {CONFIG_FILE}).")


def model_folder(checkpoint: Path) -> Path:
    """The folder a checkpoint belongs to (checkpoints/last.ckpt belongs to the folder above)."""
    folder = checkpoint.parent
    return folder.parent if folder.name == "checkpoints" else folder


def write_model_folder(out: Path, universe: str | os.PathLike | None, config: dict[str, Any]) -> None:
    """universe.bed.gz and config.yaml beside a finished run's model.ckpt (both atomically)."""
    import yaml

    from gtok import __version__

    if universe is not None:
        with open(universe, "rb") as fh:
            raw = fh.read()
        with atomic_path(out / UNIVERSE_FILE) as tmp:
            Path(tmp).write_bytes(raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw, compresslevel=6, mtime=0))
    with atomic_path(out / CONFIG_FILE) as tmp:
        Path(tmp).write_text(yaml.safe_dump({"gtok_version": __version__, **config}, sort_keys=False))
