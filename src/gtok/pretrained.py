"""The self-contained model: a folder that holds its weights, its vocabulary and its config.

A model trained on one universe is useless without that universe: token ids mean its regions.
So `gtok train` leaves in its output folder, beside `model.ckpt`,

    universe.bed.gz   the universe BED the data was tokenized with (its bytes, gzipped)
    config.yaml       the model's name and options, the data options it saw (max_length),
                      the vocabulary's size and fingerprint, and the gtok version

and anything that takes a model (`gtok embed --model`, `Tokenizer.from_pretrained`,
`load_pretrained`) accepts that folder or any checkpoint in it (`model.ckpt`,
`checkpoints/last.ckpt`). The universe is looked for in this order: one given explicitly, the
folder's `universe.bed.gz`, then the path an older checkpoint recorded. Whichever is used must
have the fingerprint the checkpoint records, or nothing is embedded.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gtok.atomic import atomic_path
from gtok.errors import FingerprintMismatchError, GtokError, describe

if TYPE_CHECKING:
    from gtok.models import GTokModel
    from gtok.tokenizer import Tokenizer

UNIVERSE_FILE = "universe.bed.gz"
CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "model.ckpt"


def model_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint a model path stands for: a folder's model.ckpt (else its last checkpoint)."""
    path = Path(path)
    if not path.is_dir():
        return path
    for candidate in (path / CHECKPOINT_FILE, path / "checkpoints" / "last.ckpt"):
        if candidate.is_file():
            return candidate
    raise GtokError(f"{describe(path)}: not a gtok model folder: it holds no {CHECKPOINT_FILE} (nor checkpoints/last.ckpt); "
                    "give the --out folder of 'gtok train', or a checkpoint.")


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


def universe_of(checkpoint: Path, vocab: Any, universe: str | os.PathLike | None) -> str:
    """The universe file to tokenize with for a checkpoint (see the module docstring)."""
    if universe is not None:
        return os.fspath(universe)
    bundled = model_folder(checkpoint) / UNIVERSE_FILE
    if bundled.is_file():
        return str(bundled)
    if vocab.universe is None:
        raise GtokError(f"{describe(checkpoint)}: the model carries no universe (no {UNIVERSE_FILE} beside it, none "
                        "recorded); pass --universe (the BED its training data was tokenized with).")
    if not os.path.isfile(vocab.universe):
        raise GtokError(f"{describe(checkpoint)}: its universe {vocab.universe} is gone and no {UNIVERSE_FILE} is "
                        "beside it; pass --universe with a copy of it.")
    return vocab.universe


def tokenizer_for(vocab: Any, universe: str, checkpoint: Path) -> Tokenizer:
    """The tokenizer of a universe file, refused unless it is the vocabulary the model learned."""
    from gtok.tokenizer import Tokenizer

    tok = Tokenizer.from_bed(universe, cache_dir="off")
    if (vocab.fingerprint and tok.fingerprint != vocab.fingerprint) or tok.vocab_size != vocab.vocab_size:
        raise FingerprintMismatchError(
            f"{describe(universe)}: vocabulary {tok.fingerprint[:12]} ({tok.vocab_size} tokens) is not the one "
            f"{describe(checkpoint)} was trained on ({(vocab.fingerprint or 'unknown')[:12]}, {vocab.vocab_size} tokens)."
        )
    return tok


def load_pretrained(path: str | os.PathLike, universe: str | os.PathLike | None = None
                    ) -> tuple[GTokModel, Tokenizer, dict[str, Any]]:
    """(model in eval mode on the CPU, its tokenizer, its checkpoint) from a model folder or checkpoint."""
    from gtok.models import model_from, read_checkpoint

    checkpoint = model_checkpoint(path)
    ckpt = read_checkpoint(checkpoint)
    model = model_from(ckpt)
    return model, tokenizer_for(model.vocab, universe_of(checkpoint, model.vocab, universe), checkpoint), ckpt


def pretrained_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """`Tokenizer.from_pretrained`: the tokenizer of a model folder or checkpoint, without torch
    when the folder has its config.yaml (the vocabulary's fingerprint is checked against it)."""
    import yaml

    path = Path(path)
    folder = path if path.is_dir() else model_folder(path)
    config, universe = folder / CONFIG_FILE, folder / UNIVERSE_FILE
    if config.is_file() and universe.is_file():
        from types import SimpleNamespace

        vocab = yaml.safe_load(config.read_text())["vocabulary"]
        return tokenizer_for(SimpleNamespace(**vocab), str(universe), folder)
    return load_pretrained(path)[1]
