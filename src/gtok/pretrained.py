"""The self-contained model: a folder that holds its weights, its vocabulary and its config.

A model trained on one universe is useless without that universe: token ids mean its regions.
So `gtok train` leaves in its output folder, beside `model.ckpt`,

    universe.bed.gz   the universe BED the data was tokenized with (its bytes, gzipped)
    config.yaml       the model's name and options, the data options it saw (max_length),
                      the vocabulary's size and fingerprint, and the gtok version

and anything that takes a model (`gtok embed --model`, `Tokenizer.from_pretrained`,
`load_pretrained`) accepts that folder, which stands for its finished model, model.ckpt, and
nothing else: a run still training (or one that failed) in checkpoints/ is never taken for it.
config.yaml records the run and step of model.ckpt, and a folder whose files are not of one model
(changed by hand, or a publication cut short) is refused on load. A checkpoint given explicitly
(`checkpoints/last.ckpt`) is loaded as it is. The universe is looked for in this order: one given
explicitly, the folder's `universe.bed.gz`, then the path an older checkpoint recorded. Whichever
is used must have the fingerprint the checkpoint records, or nothing is embedded.

A geniml Region2Vec folder (what geniml's `Region2VecExModel.export` writes, and its models on
Hugging Face) is accepted too, as the folder or its checkpoint.pt:

    checkpoint.pt     torch state dict; `projection.weight` is [vocab_size, embedding_dim]
    config.yaml       vocab_size and embedding_dim (older models: embedding_size), pooling_method
    universe.bed      the universe its gtars tokenizer was built from (export does not write it)

geniml records no fingerprint, so the universe (`--universe`, else universe.bed) is checked only
by its vocabulary size; its ids are gtars' ids, which are ours (gtok.tokenizer).
"""

from __future__ import annotations

import gzip
import os
import warnings
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
MODEL_FILES = (CHECKPOINT_FILE, UNIVERSE_FILE, CONFIG_FILE, "metrics.csv", "loss.png", "summary.json")
"""A finished model and how its training went: replaced together when a later run finishes."""
RUN_KEY = "gtok_run"
"""Checkpoint key of the run record: {"fingerprint": sha256 hex, "options": gtok.training.run.run_options}."""
GENIML_CHECKPOINT = "checkpoint.pt"
GENIML_UNIVERSE = "universe.bed"


def is_gtok_folder(folder: Path) -> bool:
    """Whether `folder` is one gtok train wrote: it holds a finished model, a run's checkpoints/, or
    the runs it set aside in previous/ (for the moment a new run's checkpoints/ takes their place)."""
    return (folder / CHECKPOINT_FILE).is_file() or (folder / "checkpoints").is_dir() or (folder / "previous").is_dir()


def model_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint a model path stands for: a folder's finished model, model.ckpt."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / CHECKPOINT_FILE).is_file():
        return path / CHECKPOINT_FILE
    if not is_gtok_folder(path):
        raise GtokError(f"{describe(path)}: not a gtok model folder: it holds no {CHECKPOINT_FILE}; give the --out folder "
                        f"of 'gtok train', a checkpoint, or a geniml Region2Vec folder ({GENIML_CHECKPOINT} and {CONFIG_FILE}).")
    kept = sorted(path.glob(f"previous/*/{CHECKPOINT_FILE}"))
    earlier = f"; its latest earlier model is {describe(kept[-1].parent)}" if kept else ""
    raise GtokError(f"{describe(path)}: holds no finished model (no {CHECKPOINT_FILE}): its run is still training, "
                    f"or stopped before the end; rerun 'gtok train' to finish it, or give a checkpoint file itself{earlier}.")


def published_run(folder: Path) -> dict[str, Any] | None:
    """The run and step of the folder's model.ckpt, as its config.yaml records them (None for a
    folder an older gtok wrote, or without config.yaml)."""
    import yaml

    try:
        config = yaml.safe_load((folder / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return config.get("run") if isinstance(config, dict) else None


def check_published(checkpoint: Path, ckpt: dict[str, Any]) -> None:
    """A folder's model.ckpt must be the model its config.yaml (and universe.bed.gz) describe."""
    if checkpoint.name != CHECKPOINT_FILE:
        return
    recorded = published_run(checkpoint.parent)
    found = {"fingerprint": (ckpt.get(RUN_KEY) or {}).get("fingerprint"), "step": ckpt.get("global_step")}
    if recorded is not None and recorded != found:
        folder = describe(checkpoint.parent)
        raise GtokError(f"{folder}: {CHECKPOINT_FILE} (run {str(found['fingerprint'])[:12]}, step {found['step']}) is not "
                        f"the model its {CONFIG_FILE} describes (run {str(recorded.get('fingerprint'))[:12]}, step "
                        f"{recorded.get('step')}): the folder's files are of different runs; rerun the 'gtok train' that "
                        "wrote it to publish its model again, or copy a model's files together.")


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

    geniml = geniml_folder(path)
    if geniml is not None:
        from gtok.models.geniml import load_geniml

        return load_geniml(geniml, universe)
    checkpoint = model_checkpoint(path)
    ckpt = read_checkpoint(checkpoint)
    check_published(checkpoint, ckpt)
    model = model_from(ckpt)
    return model, tokenizer_for(model.vocab, universe_of(checkpoint, model.vocab, universe), checkpoint), ckpt


def pretrained_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """`Tokenizer.from_pretrained`: the tokenizer of a model folder or checkpoint, without torch
    for a folder's finished model with its config.yaml (the vocabulary's fingerprint is checked
    against it)."""
    import yaml

    geniml = geniml_folder(path)
    if geniml is not None:
        return geniml_tokenizer(geniml, None, geniml_config(geniml))
    checkpoint = model_checkpoint(path)
    folder = checkpoint.parent
    config, universe = folder / CONFIG_FILE, folder / UNIVERSE_FILE
    if checkpoint.name == CHECKPOINT_FILE and config.is_file() and universe.is_file():
        from types import SimpleNamespace

        vocab = yaml.safe_load(config.read_text())["vocabulary"]
        return tokenizer_for(SimpleNamespace(**vocab), str(universe), folder)
    return load_pretrained(path)[1]


# -- geniml Region2Vec folders --------------------------------------------------------------------


def geniml_folder(path: str | os.PathLike) -> Path | None:
    """The geniml Region2Vec folder `path` names (the folder, or its checkpoint.pt), else None.

    Such a folder holds checkpoint.pt and config.yaml; one that also holds a gtok model.ckpt is
    a gtok folder, so the two kinds can never be confused."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent if path.name == GENIML_CHECKPOINT else None
    if folder is None or (folder / CHECKPOINT_FILE).is_file():
        return None
    if (folder / GENIML_CHECKPOINT).is_file() and (folder / CONFIG_FILE).is_file():
        return folder
    return None


def geniml_config(folder: Path) -> dict[str, Any]:
    """A geniml folder's config.yaml, with `vocab_size` and `embedding_dim` known to be positive integers
    (older geniml models call the latter `embedding_size`)."""
    import yaml

    name = describe(folder / CONFIG_FILE)
    try:
        config = yaml.safe_load((folder / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise GtokError(f"{name}: not a readable geniml config ({type(exc).__name__}).") from None
    if not isinstance(config, dict):
        raise GtokError(f"{name}: not a geniml config (expected a mapping with vocab_size and embedding_dim).")
    config = {**config, "embedding_dim": config.get("embedding_dim", config.get("embedding_size"))}
    for key in ("vocab_size", "embedding_dim"):
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise GtokError(f"{name}: {key} is {value!r}, not a positive integer; is this a geniml Region2Vec folder?")
    config.setdefault("pooling_method", "mean")
    if config["pooling_method"] not in ("mean", "max"):
        raise GtokError(f"{name}: pooling_method {config['pooling_method']!r} is neither 'mean' nor 'max'.")
    return config


def geniml_tokenizer(folder: Path, universe: str | os.PathLike | None, config: dict[str, Any]) -> Tokenizer:
    """The tokenizer of a geniml folder: over `universe` if given, else its universe.bed, refused
    unless it has the vocabulary size the model was trained with (geniml records no fingerprint)."""
    from gtok.tokenizer import Tokenizer

    path = Path(universe) if universe is not None else folder / GENIML_UNIVERSE
    if universe is None and not path.is_file():
        raise GtokError(f"{describe(folder)}: a geniml model folder without its {GENIML_UNIVERSE} (geniml's export "
                        "does not write it); pass --universe with the universe BED its tokenizer was built from.")
    tok = Tokenizer.from_bed(path, cache_dir="off")  # parsed, so that duplicate lines are counted
    if tok.universe.duplicate_lines:
        warnings.warn(f"{describe(path)}: gtars (geniml's tokenizer) numbers the regions after a duplicate line "
                      "differently from its own vocabulary, so geniml's encode and gtok can disagree for this model; "
                      "remove the duplicate lines from the universe before training in geniml.", stacklevel=2)
    if tok.vocab_size != config["vocab_size"]:
        raise FingerprintMismatchError(
            f"{describe(path)}: its vocabulary has {tok.vocab_size} tokens, but the geniml model {describe(folder)} "
            f"was trained on {config['vocab_size']}; give the universe BED its tokenizer was built from."
        )
    return tok
