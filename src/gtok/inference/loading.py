"""Reading a model back: the one module that knows every kind of model path (docs/models.md).

* a `gtok train` folder (or a checkpoint in it) of a built-in model or a brought LightningModule:
  the module is rebuilt from its checkpoint (gtok.models.model_from);
* a `gtok train` folder of a brought Hugging Face model: its weights as `save_pretrained` left them
  (config.json, model.safetensors), read by the class's own `from_pretrained`; the class, its
  adapter options and the vocabulary come from config.yaml (a checkpoint of such a run is read as
  above);
* a geniml Region2Vec folder (what `Region2VecExModel.export` writes, or a geniml model from
  Hugging Face): checkpoint.pt and config.yaml, plus universe.bed, which geniml does not write;
* a Hugging Face model as it is published, not trained by gtok (a snapshot of
  databio/atacformer-base-hg38, or any `save_pretrained` folder): config.json, the weights, and
  universe.bed.gz, the universe gtars' `Tokenizer.from_pretrained` reads from such a repository.
  The class is config.json's architecture, imported from the package that defines its model type
  (`HF_PACKAGES`; transformers for its own types).

What a model was trained on travels with it: `expected_vocabulary` names the universe to tokenize
with (one given explicitly, else the folder's own, else the path an older checkpoint recorded) and
the vocabulary it must have, without torch when the folder has its config.yaml; `check_tokenizer`
refuses a universe of another vocabulary. geniml records no fingerprint, so a geniml model's
universe is checked only by its size, with a warning saying so. This module does not import
gtok.tokenizer (whose `from_pretrained` comes here): callers build the tokenizer from what it names.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from gtok.atomic import recover
from gtok.errors import FingerprintMismatchError, GtokError, describe, one_line
from gtok.formats.metadata import TOKEN_ORDERS_KEY
from gtok.pretrained import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    GENIML_CHECKPOINT,
    GENIML_UNIVERSE,
    HF_CONFIG_FILE,
    HF_WEIGHTS_FILE,
    RUN_KEY,
    SAVED_WITH_HF,
    UNIVERSE_FILE,
    check_published,
    checkpoint_run,
    is_gtok_folder,
    model_checkpoint,
    model_folder,
)

GENIML_WEIGHT = "projection.weight"


class Expected(NamedTuple):
    """The universe to tokenize with for a model, and the vocabulary it must turn out to be."""

    universe: str
    vocab_size: int
    fingerprint: str | None
    model: str  # the model path, for messages
    shipped: bool = False  # the universe came with the model (a Hugging Face repository's): no warning on its size check


@dataclass
class LoadedModel:
    """A model read back, in eval mode on the CPU, with what using it needs."""

    model: Any  # a torch module with embed(batch) -> Tensor[B, D]
    vocab: Any  # gtok.models.Vocab
    expected: Expected
    name: str  # for files and tables: the built-in's name, or the class name in lower case
    data: dict[str, Any]  # the data options it was trained with (max_length, val_fraction)
    run: dict[str, Any] | None = None  # its checkpoint's run and step (pretrained.checkpoint_run), None when it records none

    @property
    def attends(self) -> bool:
        """Whether its cost grows with the record length squared (then records are cropped to max_length)."""
        return bool(getattr(self.model, "attends", True))


def load_model(path: str | os.PathLike, universe: str | os.PathLike | None = None) -> LoadedModel:
    """The model a path stands for (see the module docstring), refused in one line when it cannot embed."""
    recover(path if os.path.isdir(path) else os.path.dirname(os.fspath(path)) or ".")  # a publication cut short
    geniml = geniml_folder(path)
    if geniml is not None:
        loaded = _load_geniml(geniml, universe)
    elif (card := hf_card(path)) is not None:
        loaded = _load_hf(Path(path), card, universe)
    elif (published := published_hf_folder(path)) is not None:
        loaded = _load_published(published, universe)
    else:
        loaded = _load_checkpoint(model_checkpoint(path), universe)
    if not callable(getattr(loaded.model, "embed", None)):
        raise GtokError(f"{describe(path)}: its model ({type(loaded.model).__name__}) cannot embed: it defines no "
                        "embed(batch) -> Tensor[B, D] (docs/models.md).")
    return loaded


def expected_vocabulary(path: str | os.PathLike, universe: str | os.PathLike | None = None) -> Expected:
    """The universe and vocabulary of a model path; torch is needed only for a checkpoint that has
    no config.yaml and universe beside it."""
    geniml = geniml_folder(path)
    if geniml is not None:
        config = geniml_config(geniml)
        return _folder_expected(geniml, universe, GENIML_UNIVERSE, "geniml", config["vocab_size"])
    published = published_hf_folder(path)
    if published is not None:
        _, vocab_size = published_config(published)
        return _folder_expected(published, universe, UNIVERSE_FILE, "Hugging Face", vocab_size, ships=True)
    path = Path(path)
    checkpoint = None if hf_card(path) is not None else model_checkpoint(path)
    folder = path if checkpoint is None else checkpoint.parent
    finished = checkpoint is None or checkpoint.name == CHECKPOINT_FILE  # config.yaml describes model.ckpt only
    card = _read_card(folder) if finished and (folder / CONFIG_FILE).is_file() else None
    if card is not None and (universe is not None or (folder / UNIVERSE_FILE).is_file()):
        vocab = card["vocabulary"]
        return Expected(os.fspath(universe or folder / UNIVERSE_FILE), vocab["vocab_size"], vocab.get("fingerprint"),
                        describe(folder))
    from gtok.models import read_checkpoint

    return _expected(checkpoint, read_checkpoint(checkpoint)["gtok"]["vocab"], universe)


def check_tokenizer(tokenizer: Any, expected: Expected) -> None:
    """Refuse a tokenizer of another vocabulary than the model's; warn where only its size can be checked."""
    if expected.fingerprint is None:
        if tokenizer.vocab_size != expected.vocab_size:
            raise FingerprintMismatchError(
                f"{describe(expected.universe)}: its vocabulary has {tokenizer.vocab_size} tokens, but the model "
                f"{expected.model} was trained on {expected.vocab_size}; give the universe BED it was trained with.")
        if tokenizer.universe.duplicate_lines:
            warnings.warn(f"{describe(expected.universe)}: gtars (geniml's tokenizer) numbers the regions after a "
                          "duplicate line differently from its own vocabulary, so geniml's encode and gtok can "
                          "disagree for this model; remove the duplicate lines from the universe before training "
                          "in geniml.", stacklevel=2)
        if not expected.shipped:
            warnings.warn(f"{expected.model} records no fingerprint of its universe, so {describe(expected.universe)} "
                          f"was checked only for its size ({expected.vocab_size} tokens): another universe of that size "
                          "would give vectors without an error; make sure it is the one the model was trained with.",
                          stacklevel=2)
        return
    if tokenizer.fingerprint != expected.fingerprint or tokenizer.vocab_size != expected.vocab_size:
        raise FingerprintMismatchError(
            f"{describe(expected.universe)}: vocabulary {tokenizer.fingerprint[:12]} ({tokenizer.vocab_size} tokens) "
            f"is not the one {expected.model} was trained on ({expected.fingerprint[:12]}, {expected.vocab_size} tokens)."
        )


# -- gtok checkpoints (built-in models, brought LightningModules) -----------------------------------


def _load_checkpoint(checkpoint: Path, universe: str | os.PathLike | None) -> LoadedModel:
    from gtok.models import model_from, read_checkpoint
    from gtok.modelspec import ModelSpec

    ckpt = read_checkpoint(checkpoint)
    check_published(checkpoint, ckpt)
    model = model_from(ckpt, describe(checkpoint))
    record = ckpt["gtok"]
    return LoadedModel(model, _vocab(record["vocab"], checkpoint), _expected(checkpoint, record["vocab"], universe),
                       ModelSpec(record["model"]).label, _data_options(checkpoint, ckpt), _run(ckpt))


def _run(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """What tells this model from any other (the run's fingerprint and the step), when it records its run."""
    run = checkpoint_run(ckpt)
    return run if run["fingerprint"] is not None else None


def _data_options(checkpoint: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """The data options inference follows (max_length) and evaluation checks (val_fraction, and
    `shards`: the digest of the training data, gtok.formats.manifest.Manifest.shards_digest): a
    finished model's folder config.yaml, the copy users read and may look up, else what a
    checkpoint of an unfinished run recorded; the digest from the checkpoint's run record when
    the config.yaml predates it."""
    folder = checkpoint.parent
    data = None
    if checkpoint.name == CHECKPOINT_FILE and (folder / CONFIG_FILE).is_file():
        data = _read_card(folder).get("data")
    if not isinstance(data, dict):
        data = ckpt.get("datamodule_hyper_parameters") or {}
    shards = (ckpt.get(RUN_KEY) or {}).get("options", {}).get("data.shards")
    return {**data, "shards": data.get("shards", shards)}


def _vocab(record: dict[str, Any], checkpoint: str | os.PathLike) -> Any:
    from gtok.models import Vocab

    try:
        return Vocab(**record)
    except (TypeError, ValueError) as exc:
        raise GtokError(f"{describe(checkpoint)}: its vocabulary record is damaged ({exc}); retrain or restore the file.") from None


def _expected(checkpoint: Path, vocab: dict[str, Any], universe: str | os.PathLike | None) -> Expected:
    """The universe for a checkpoint: given, else its folder's universe.bed.gz, else the one it recorded."""
    if universe is None:
        bundled = model_folder(checkpoint) / UNIVERSE_FILE
        if bundled.is_file():
            universe = bundled
        elif vocab.get("universe") is None:
            raise GtokError(f"{describe(checkpoint)}: the model carries no universe (no {UNIVERSE_FILE} beside it, none "
                            "recorded); pass --universe (the BED its training data was tokenized with).")
        elif not os.path.isfile(vocab["universe"]):
            raise GtokError(f"{describe(checkpoint)}: its universe {vocab['universe']} is gone and no {UNIVERSE_FILE} is "
                            "beside it; pass --universe with a copy of it.")
        else:
            universe = vocab["universe"]
    return Expected(os.fspath(universe), vocab["vocab_size"], vocab.get("fingerprint"), describe(checkpoint))


# -- brought Hugging Face models ---------------------------------------------------------------------


def hf_card(path: str | os.PathLike) -> dict[str, Any] | None:
    """The config.yaml of a folder where `gtok train` saved a Hugging Face model with save_pretrained, else None."""
    folder = Path(path)
    if not folder.is_dir() or not (folder / CONFIG_FILE).is_file() or not (folder / HF_CONFIG_FILE).is_file():
        return None
    card = _read_card(folder)
    return card if card.get("saved_with") == SAVED_WITH_HF else None


def _load_hf(folder: Path, card: dict[str, Any], universe: str | os.PathLike | None) -> LoadedModel:
    from gtok.models import Vocab
    from gtok.modelspec import import_brought, parse_model

    name = describe(folder / CONFIG_FILE)
    ckpt = _check_hf_published(folder, card)
    if universe is None and not (folder / UNIVERSE_FILE).is_file():
        raise GtokError(f"{describe(folder)}: the model carries no {UNIVERSE_FILE}; pass --universe (the BED its "
                        "training data was tokenized with).")
    brought = import_brought(parse_model(card.get("model"), f"{name}: model"), f"{name}: model")
    vocab = Vocab.of_size(card["vocabulary"]["vocab_size"], card["vocabulary"].get("fingerprint"))
    model = _pretrained(folder, brought, vocab, card.get("options"), f"the vocabulary of {name}", "the folder mixes two models")
    expected = Expected(os.fspath(universe or folder / UNIVERSE_FILE), vocab.vocab_size, vocab.fingerprint,
                        describe(folder))
    return LoadedModel(model, vocab, expected, brought.spec.label, _data_options(model_checkpoint(folder), ckpt), _run(ckpt))


def _check_hf_published(folder: Path, card: dict[str, Any]) -> dict[str, Any]:
    """save_pretrained's files are those of the finished model that config.yaml describes: it
    records their sha256 and model.ckpt's run (a publication cut short, or files copied together
    from two runs, is refused). Returns model.ckpt, read."""
    from gtok.formats.metadata import sha256_file
    from gtok.models import read_checkpoint

    checkpoint = model_checkpoint(folder)
    ckpt = read_checkpoint(checkpoint)
    check_published(checkpoint, ckpt)
    weights = folder / HF_WEIGHTS_FILE
    recorded = card.get("weights_sha256")
    if recorded is not None and (not weights.is_file() or sha256_file(weights) != recorded):
        raise GtokError(f"{describe(folder)}: {HF_WEIGHTS_FILE} is not the model its {CONFIG_FILE} describes (its "
                        "sha256 differs, or it is missing): the folder's files are of different runs; rerun the "
                        "'gtok train' that wrote it to publish its model again.")
    return ckpt


def _read_card(folder: Path) -> dict[str, Any]:
    """A gtok model folder's config.yaml (gtok.pretrained.write_model_folder)."""
    import yaml

    path = folder / CONFIG_FILE
    try:
        card = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise GtokError(f"{describe(path)}: not a readable model config ({type(exc).__name__}).") from None
    if not isinstance(card, dict) or not isinstance(card.get("vocabulary"), dict):
        raise GtokError(f"{describe(path)}: not the config.yaml of a gtok model (it names no vocabulary).")
    return card


# -- Hugging Face models as published ----------------------------------------------------------------

HF_PACKAGES = {"atacformer": "geniml.atacformer"}
"""The package that defines each model type transformers does not know itself (importing it
registers the type)."""


def published_hf_folder(path: str | os.PathLike) -> Path | None:
    """The folder `path` names when it holds a Hugging Face model as published (a config.json;
    its class's from_pretrained reads the weights beside it) and nothing of gtok's (no
    model.ckpt, no config.yaml), else None."""
    folder = Path(path)
    if not folder.is_dir() or not (folder / HF_CONFIG_FILE).is_file():
        return None
    if (folder / CHECKPOINT_FILE).exists() or (folder / CONFIG_FILE).exists() or is_gtok_folder(folder):
        return None
    return folder


def published_config(folder: Path) -> tuple[str, int]:
    """(the import path of the model's class, its vocab_size) from a published folder's config.json."""
    import json

    name = describe(folder / HF_CONFIG_FILE)
    try:
        config = json.loads((folder / HF_CONFIG_FILE).read_text())
        architecture, model_type, vocab_size = config["architectures"][0], config["model_type"], config["vocab_size"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise GtokError(f"{name}: not the config.json of a Hugging Face model (it needs architectures, model_type and "
                        f"vocab_size; {type(exc).__name__}).") from None
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
        raise GtokError(f"{name}: vocab_size is {vocab_size!r}, not a positive integer.")
    if not isinstance(model_type, str) or not isinstance(architecture, str):
        raise GtokError(f"{name}: model_type {model_type!r} and architectures[0] {architecture!r} must be names (text), "
                        "as save_pretrained writes them.")
    return f"{HF_PACKAGES.get(model_type, 'transformers')}:{architecture}", vocab_size


def _unknown_type(folder: Path) -> str:
    """Why a published folder's class was looked for in transformers, when its model_type is neither
    transformers' own nor one gtok knows the package of: the hint that the type, not the class
    name, is what went wrong."""
    try:
        from transformers import CONFIG_MAPPING
    except ImportError:  # the error already says transformers cannot be imported
        return ""
    model_type = _json(folder).get("model_type")
    if model_type in HF_PACKAGES or model_type in CONFIG_MAPPING:
        return ""
    known = ", ".join(f"{kind} ({package.split('.')[0]})" for kind, package in HF_PACKAGES.items())
    return (f" Its model_type {model_type!r} is not one gtok knows the package of, so transformers was tried; gtok "
            f"reads published folders of transformers' own model types and of {known}.")


def _folder_expected(folder: Path, universe: str | os.PathLike | None, file: str, kind: str, vocab_size: int,
                     ships: bool = False) -> Expected:
    """What a `kind` folder's model (geniml, or a Hugging Face model as published), which records
    no fingerprint, is checked against. Its own `file` is the universe, checked by size (with a
    warning, unless such a model `ships` with its universe); a folder without one (geniml's export
    writes none) needs `universe`, refused in one line when missing. A `universe` given beside the
    folder's own must be that very vocabulary: it is checked against the own file's fingerprint.
    The universe a model ships with decides its vocabulary (`_shipped_size`)."""
    own = folder / file
    if universe is None and not own.is_file():
        raise GtokError(f"{describe(folder)}: a {kind} model folder without its {file}; pass --universe with the "
                        "universe BED its tokenizer was built from.")
    if own.is_file() and (ships or universe is not None):
        from gtok.universe import Universe

        parsed = Universe.from_bed(own, cache_dir="off")
        fingerprint = parsed.fingerprint if universe is not None else None
        vocab_size = _shipped_size(folder, own, len(parsed), vocab_size) if ships else vocab_size
    else:
        fingerprint = None
    return Expected(os.fspath(universe or own), vocab_size, fingerprint, describe(folder), ships and universe is None)


def _shipped_size(folder: Path, own: Path, regions: int, vocab_size: int) -> int:
    """The number of tokens of a published model's vocabulary: its universe's, in gtars' layout.
    config.json's vocab_size may be larger (a gtok folder trained with a larger model_args
    vocab_size, copied as docs/models.md says: rows above the universe's are never used), not
    smaller."""
    from gtok.vocabulary import Vocabulary

    size = Vocabulary(regions).size
    if size > vocab_size:
        raise GtokError(f"{describe(folder / HF_CONFIG_FILE)}: vocab_size {vocab_size} is smaller than the {size} "
                        f"tokens of its {own.name}; the folder mixes a model and another universe.")
    return size


def _load_published(folder: Path, universe: str | os.PathLike | None) -> LoadedModel:
    from gtok.models import Vocab
    from gtok.modelspec import import_brought, parse_model

    name = describe(folder / HF_CONFIG_FILE)
    spec, vocab_size = published_config(folder)
    try:
        brought = import_brought(parse_model(spec, f"{name}: architectures"), f"{name}: architectures")
    except GtokError as exc:
        raise GtokError(f"{exc}{_unknown_type(folder)}") from None
    if brought.kind != "hf":
        raise GtokError(f"{name}: {spec} is not a Hugging Face PreTrainedModel.")
    expected = _folder_expected(folder, universe, UNIVERSE_FILE, "Hugging Face", vocab_size, ships=True)
    untrained = "the model was not trained on gtars' tokens"
    if (folder / UNIVERSE_FILE).is_file():
        layout, why = f"its {UNIVERSE_FILE}", f"the universe is not the one the model was trained on, or {untrained}"
    else:
        layout, why = "its vocab_size", untrained
    model = _pretrained(folder, brought, Vocab.of_size(expected.vocab_size), None, f"gtars' layout of {layout}", why)
    # the order its training records' tokens came in, where gtok trained it (gtok.models.hf.save_pretrained)
    return LoadedModel(model, model.vocab, expected, brought.spec.label, {"token_orders": _json(folder).get(TOKEN_ORDERS_KEY)})


def _pretrained(folder: Path, brought: Any, vocab: Any, options: dict[str, Any] | None, what: str, why: str) -> Any:
    """The model save_pretrained left in `folder`, read by its class's from_pretrained, in gtok's
    adapter (gtok.models.hf); refused in one line when its vocabulary and <pad> do not fit
    `vocab` (`what`: the vocabulary it must fit; `why`: what a misfit means). The config is checked
    before the weights are read: a config.json without pad_token_id takes its class's default
    (geniml's is hg38's <pad>), which the model's embedding cannot hold, and from_pretrained
    would stop on that with an assertion that names neither the file nor the key."""
    from gtok.models.hf import HFModel

    config = _read_saved(folder, brought, brought.cls.config_class.from_pretrained)
    if config.vocab_size < vocab.vocab_size or config.pad_token_id != vocab.pad_token_id:
        default = " (config.json sets none: the class's default)" if "pad_token_id" not in _json(folder) else ""
        raise GtokError(f"{describe(folder / HF_CONFIG_FILE)}: vocab_size {config.vocab_size} and pad_token_id "
                        f"{config.pad_token_id}{default} do not fit {what} ({vocab.vocab_size} tokens, <pad> "
                        f"{vocab.pad_token_id}): {why}.")
    weights = _read_saved(folder, brought, brought.cls.from_pretrained)
    return HFModel(vocab, brought.spec.text, weights.config.to_dict(), options, model=weights).eval()


def _read_saved(folder: Path, brought: Any, reader: Any) -> Any:
    """What `reader` (the class's or its config's from_pretrained) reads from `folder`, refused in
    one line naming the folder when it cannot."""
    try:
        return reader(folder)
    except Exception as exc:  # transformers raises many kinds for missing or damaged files
        raise GtokError(f"{describe(folder)}: {brought.spec.text}.from_pretrained cannot read the saved model "
                        f"({one_line(exc)}).") from None


def _json(folder: Path) -> dict[str, Any]:
    """A model folder's config.json as written (from_pretrained fills in the class's defaults)."""
    import json

    try:
        config = json.loads((folder / HF_CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


# -- geniml Region2Vec folders ---------------------------------------------------------------------


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


def _load_geniml(folder: Path, universe: str | os.PathLike | None) -> LoadedModel:
    from gtok.models import Vocab
    from gtok.models.geniml import GenimlRegion2Vec

    config = geniml_config(folder)
    expected = _folder_expected(folder, universe, GENIML_UNIVERSE, "geniml", config["vocab_size"])
    vocab = Vocab.of_size(config["vocab_size"])
    model = GenimlRegion2Vec(_geniml_projection(folder / GENIML_CHECKPOINT, config), vocab, config["pooling_method"])
    return LoadedModel(model.eval(), vocab, expected, GenimlRegion2Vec.name.replace("-", ""), {})


def _geniml_projection(path: Path, config: dict[str, Any]) -> Any:
    """`projection.weight` of a geniml checkpoint, checked against its config's sizes."""
    import torch

    name = describe(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        raise GtokError(f"{name}: not a readable geniml checkpoint ({type(exc).__name__}).") from None
    weight = state.get(GENIML_WEIGHT) if isinstance(state, dict) else None
    if not isinstance(weight, torch.Tensor):
        raise GtokError(f"{name}: has no {GENIML_WEIGHT}; not a geniml Region2Vec checkpoint.")
    expected = (config["vocab_size"], config["embedding_dim"])
    if tuple(weight.shape) != expected:
        raise GtokError(f"{name}: {GENIML_WEIGHT} is {tuple(weight.shape)}, but config.yaml says "
                        f"vocab_size x embedding_dim = {expected}.")
    return weight.float()
