"""The self-contained model: a folder that holds its weights, its vocabulary and its config.

A model trained on one universe is useless without that universe: token ids mean its regions.
So `gtok train` leaves in its output folder, beside `model.ckpt`,

    universe.bed.gz   the universe BED the data was tokenized with (its bytes, gzipped; for data
                      tokenized against a universe index, the index's regions, one line each)
    config.yaml       the model's name and options, the data options it saw (max_length),
                      the vocabulary's size and fingerprint, and the gtok version

`gtok train` takes that universe from `--universe`, else from where the data's manifest says its
shards were tokenized (`data_universe`), and refuses to start when it cannot find it. Anything
that takes a model (`gtok embed --model`, `Tokenizer.from_pretrained`,
`load_pretrained`) accepts that folder or any checkpoint in it (`model.ckpt`,
`checkpoints/last.ckpt`). The universe is looked for in this order: one given explicitly, the
folder's `universe.bed.gz`, then the path an older checkpoint recorded. Whichever is used must
have the fingerprint the checkpoint records, or nothing is embedded.

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
    from gtok.formats.manifest import Manifest
    from gtok.models import GTokModel
    from gtok.tokenizer import Tokenizer
    from gtok.universe import Universe

UNIVERSE_FILE = "universe.bed.gz"
CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "model.ckpt"
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
        raw = universe_bed_bytes(universe)
        with atomic_path(out / UNIVERSE_FILE) as tmp:
            Path(tmp).write_bytes(raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw, compresslevel=6, mtime=0))
    with atomic_path(out / CONFIG_FILE) as tmp:
        Path(tmp).write_text(yaml.safe_dump({"gtok_version": __version__, **config}, sort_keys=False))


def universe_bed_bytes(path: str | os.PathLike) -> bytes:
    """A universe file as BED bytes: a BED (or .bed.gz) as it is; a universe index (`gtok index`)
    as its regions in id order, one line each, which gtok and gtars read back as the same
    vocabulary (the same fingerprint)."""
    from gtok.formats.index import is_index

    if is_index(path):
        from gtok.universe import Universe

        return regions_bed(Universe.from_index(path)[0])
    with open(path, "rb") as fh:
        return fh.read()


def regions_bed(universe: Universe) -> bytes:
    """A universe's regions as BED text, in id order."""
    chroms = [universe.chrom_names[c] for c in universe.codes.tolist()]
    lines = (f"{c}\t{s}\t{e}\n" for c, s, e in zip(chroms, universe.starts.tolist(), universe.ends.tolist()))
    return "".join(lines).encode()


def data_universe(manifest: Manifest) -> str:
    """The universe file of a manifest's data, where its shards recorded it: the BED a universe
    index was built from, else the file they were tokenized with. A file is taken when its bytes
    are the recorded ones (sha256), or when it still holds the recorded vocabulary (fingerprint).
    When none is found, the error names each file expected and why it was not taken."""
    from gtok.formats.metadata import sha256_file
    from gtok.tokenizer import Tokenizer

    record = manifest.universe
    if record is None:
        raise GtokError(f"{describe(manifest.path)}: its shards record no universe (they were written by gtars or an "
                        "older gtok); pass --universe with the universe BED they were tokenized with, which the model "
                        "needs to be used.")
    tried = []
    for path, sha256 in record.files():
        if not os.path.isfile(path):
            tried.append(f"{path} is missing")
            continue
        if sha256_file(path) == sha256:
            return path
        try:
            fingerprint = Tokenizer.from_bed(path).fingerprint
        except GtokError as exc:
            tried.append(f"{path} is no longer a universe ({str(exc).rstrip('.')})")
            continue
        if fingerprint == record.fingerprint:
            return path
        tried.append(f"{path} has changed (it is vocabulary {fingerprint[:12]} now)")
    raise GtokError(f"{describe(manifest.path)}: the universe its shards were tokenized with (vocabulary "
                    f"{record.fingerprint[:12]}) is not where they recorded it: {'; '.join(tried)}; pass --universe "
                    "with that universe BED.")


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
    model = model_from(ckpt)
    return model, tokenizer_for(model.vocab, universe_of(checkpoint, model.vocab, universe), checkpoint), ckpt


def pretrained_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """`Tokenizer.from_pretrained`: the tokenizer of a model folder or checkpoint, without torch
    when the folder has its config.yaml (the vocabulary's fingerprint is checked against it)."""
    import yaml

    geniml = geniml_folder(path)
    if geniml is not None:
        return geniml_tokenizer(geniml, None, geniml_config(geniml))
    path = Path(path)
    folder = path if path.is_dir() else model_folder(path)
    config, universe = folder / CONFIG_FILE, folder / UNIVERSE_FILE
    if config.is_file() and universe.is_file():
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
