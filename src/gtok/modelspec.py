"""What `--model` (the workflow's `train.model`) names, and whether it can train here.

A model is a built-in name (region2vec, encoder, classifier) or the import path
`package.module:ClassName` of a class a user brings (docs/models.md):

* a Lightning `LightningModule`, constructed as `ClassName(vocab, **model_args)`;
* a Hugging Face `PreTrainedModel`, whose config gtok builds from `model_args` and the data's
  vocabulary, trained through gtok's adapter (gtok.models.hf) with the `hf:` options.

Everything a user can get wrong about a brought class is checked here, before any work: the path
imports and names a class, of one of the two kinds, `model_args` fit it (a Hugging Face class is
built from them on the meta device), the training context fits its positions (its own, or those
of the `hf.init_from` parent it keeps), it is trained for its objective and can compute its loss
here, it can embed when the workflow evaluates it. This module imports neither torch nor
transformers; importing the user's class does, which is why `gtok tokenize` never comes here and
the workflow checks a brought class once, in its main process.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtok.errors import GtokError, one_line
from gtok.vocabulary import Vocabulary

BUILTIN_MODELS = ("region2vec", "encoder", "classifier")
_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_LIGHTNING = {"lightning.pytorch.core.module.LightningModule", "pytorch_lightning.core.module.LightningModule"}
_HF = {"transformers.modeling_utils.PreTrainedModel"}
#: HF config keys that gtok sets from the data's vocabulary (a model_args value would contradict it)
TOKEN_ID_KEYS = ("pad_token_id", "unk_token_id", "mask_token_id", "cls_token_id", "eos_token_id", "bos_token_id",
                 "sep_token_id")
OBJECTIVES = ("rtd", "mlm", "triplet")
#: Flags by which a module records that an optional package imported, which a class's forward
#: asserts before computing its loss, and each package (geniml's AtacformerForMaskedLM: cut-cross-entropy).
LOSS_PACKAGE_FLAGS = {"_CCE_AVAILABLE": "cut-cross-entropy"}


@dataclass(frozen=True)
class ModelSpec:
    """A model option's text: a built-in name, or `package.module:ClassName`."""

    text: str

    @property
    def builtin(self) -> bool:
        return self.text in BUILTIN_MODELS

    @property
    def module(self) -> str:
        return self.text.partition(":")[0]

    @property
    def qualname(self) -> str:
        return self.text.partition(":")[2]

    @property
    def label(self) -> str:
        """A short name for files and tables: the built-in's name, or the class name in lower case;
        never `lsi`, the evaluation's baseline, whose rows and plots a class called LSI would take."""
        label = self.text if self.builtin else self.qualname.rpartition(".")[2].lower()
        return f"{label}-model" if label == "lsi" else label


def parse_model(text: Any, what: str = "--model") -> ModelSpec:
    """The spec of a model option, refused in one line unless it is a built-in or an import path."""
    if isinstance(text, str) and (text in BUILTIN_MODELS or _PATH.match(text)):
        return ModelSpec(text)
    raise GtokError(f"{what}: {text!r} is neither a built-in model ({', '.join(BUILTIN_MODELS)}) nor an import "
                    "path package.module:ClassName of a LightningModule or a Hugging Face PreTrainedModel.")


@dataclass(frozen=True)
class Brought:
    """A brought class, imported, and its kind: "lightning" or "hf"."""

    spec: ModelSpec
    cls: type
    kind: str


@contextlib.contextmanager
def _quiet_import(module: str) -> Iterator[None]:
    """The imported package's loggers below errors while it is imported: geniml warns on every
    import that an optional training kernel is missing, a second line beside gtok's one-line
    errors that says nothing about the run."""
    logger = logging.getLogger(module.split(".")[0])
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def import_brought(spec: ModelSpec, what: str = "--model") -> Brought:
    """The class an import path names, of one of the two kinds a brought model may be."""
    try:
        with _quiet_import(spec.module):
            module = importlib.import_module(spec.module)
    except Exception as exc:  # a missing package, or any error raised by the module's own code
        raise GtokError(f"{what}: {spec.text}: cannot import {spec.module} ({one_line(exc)}); install "
                        "its package in this environment or put it on PYTHONPATH.") from None
    obj: Any = module
    for part in spec.qualname.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type):
        found = "nothing" if obj is None else f"a {type(obj).__name__}"
        raise GtokError(f"{what}: {spec.text}: {spec.module} has no class {spec.qualname} ({found} by that name).")
    kind = _kind(obj)
    if kind is None:
        raise GtokError(f"{what}: {spec.text} is neither a LightningModule nor a Hugging Face PreTrainedModel; "
                        "docs/models.md says what a brought class must be.")
    return Brought(spec, obj, kind)


def _kind(cls: type) -> str | None:
    """"lightning" or "hf" by the classes it derives from, named so that nothing new is imported."""
    names = {f"{base.__module__}.{base.__qualname__}" for base in cls.__mro__}
    if names & _LIGHTNING:
        return "lightning"
    if names & _HF:
        return "hf"
    return None


@dataclass(frozen=True)
class Resolved:
    """A model option with its config: the class when brought, and the options gtok itself uses
    (a built-in's section; `hf` for a Hugging Face class; the seed for a LightningModule)."""

    spec: ModelSpec
    brought: Brought | None
    config: Any  # the options dataclass
    model_args: dict[str, Any]


def resolve_model(text: Any, cfg: Mapping[str, Any], seed: int, what: str = "config", *,
                  embeds: bool = False) -> Resolved:
    """The model of a training config (`gtok train --model` and `--config`), every mistake refused in one line."""
    from gtok.options import BROUGHT_SECTIONS, MODEL_CONFIGS, HFConfig, LightningConfig, make_config

    spec = parse_model(text, f"{what} model")
    if spec.builtin:
        for section in BROUGHT_SECTIONS:
            if cfg.get(section):
                raise GtokError(f"{what} section '{section}': applies to a brought class (package.module:ClassName); "
                                f"the options of {spec.text} go in its section '{spec.text}'.")
        options = {**(cfg.get(spec.text) or {}), "seed": _section_seed(cfg, spec.text, seed, what)}
        return Resolved(spec, None, make_config(MODEL_CONFIGS[spec.text], options, f"{what} section '{spec.text}'"), {})
    brought = check_brought(spec.text, cfg, what, embeds=embeds)
    kind = HFConfig if brought.kind == "hf" else LightningConfig
    config = make_config(kind, {**(cfg.get("hf") or {}), "seed": _section_seed(cfg, "hf", seed, what)}, f"{what} section 'hf'")
    return Resolved(spec, brought, config, dict(cfg.get("model_args") or {}))


def _section_seed(cfg: Mapping[str, Any], section: str, seed: int, what: str) -> int:
    """The run's one seed (the config's top level, or --seed): it seeds the weights and the data
    alike, so a model section's own seed may only repeat it, not be set aside in silence."""
    own = (cfg.get(section) or {}).get("seed") if isinstance(cfg.get(section), Mapping) else None
    if own is not None and own != seed:
        raise GtokError(f"{what} section '{section}': seed {own!r} is not the run's seed {seed} (the config's top-level "
                        "seed, or --seed), which seeds the weights, the data order, crops and masks; set it there.")
    return seed


def check_brought(text: str, cfg: Mapping[str, Any], what: str = "config", *, embeds: bool = False) -> Brought:
    """Everything about a brought model that a training config decides, one line per mistake.

    `cfg` is the config of `gtok train` (sections model_args, hf, data); `embeds`: the model must
    embed (the workflow evaluates it)."""
    from gtok.options import DataOptions, model_args

    brought = import_brought(parse_model(text, f"{what} model"), f"{what} model")
    args = model_args(cfg, what)
    where = f"{what} section 'model_args'"
    if brought.kind == "lightning":
        if cfg.get("hf"):
            raise GtokError(f"{what} section 'hf': applies to Hugging Face models, and {text} is a LightningModule; "
                            "remove the section.")
        _check_signature(brought, args, where)
        if embeds and not callable(getattr(brought.cls, "embed", None)):
            raise GtokError(f"{what} model: {text} cannot embed (it defines no embed(batch) -> Tensor[B, D]), and "
                            "the evaluation embeds it; add an embed method, or set evaluate.enabled: false.")
        return brought
    config_class = hf_config_class(brought, what)
    _check_config_keys(config_class, args, where)
    hf = cfg.get("hf") if isinstance(cfg.get("hf"), Mapping) else {}
    parent = _parent_config(hf.get("init_from"))
    config = _check_builds(brought, config_class, {**parent, **args}, where)
    max_length = (cfg.get("data") or {}).get("max_length", DataOptions.max_length)
    _check_positions(getattr(config, "max_position_embeddings", None), max_length, _positions_source(args, parent, hf),
                     text, what)
    hf_objective(brought, hf.get("objective", "auto"), what)
    _check_loss_packages(brought, what)
    return brought


def _check_loss_packages(brought: Brought, what: str) -> None:
    """A class whose forward asserts an optional package that its module could not import (the
    forward reads a `LOSS_PACKAGE_FLAGS` flag, and it is False) fails at the first training step
    with an AssertionError; it is refused before any work."""
    forward = brought.cls.forward
    names = set(getattr(getattr(forward, "__code__", None), "co_names", ()))
    for flag in sorted(names & set(LOSS_PACKAGE_FLAGS)):
        if getattr(forward, "__globals__", {}).get(flag) is False:
            package = LOSS_PACKAGE_FLAGS[flag]
            raise GtokError(f"{what} model: {brought.spec.text} computes its training loss with {package}, which "
                            f"is not installed here ({forward.__module__}.{flag} is False); pip install {package}, "
                            "or train another class.")


def _parent_config(init_from: Any) -> dict[str, Any]:
    """The config.json of an `hf.init_from` folder (gtok's, or as published): the fine-tuned model's
    config is it with model_args over it (gtok.models.hf.HFModel.fine_tune), so its sizes and
    positions are what the checks below must read. {} when there is none to read yet (the
    workflow's dry run, before the parent is trained) or it is unreadable (loading the parent
    refuses that in one line)."""
    import json

    from gtok.pretrained import HF_CONFIG_FILE

    if not isinstance(init_from, str):
        return {}
    try:
        config = json.loads((Path(init_from) / HF_CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _check_builds(brought: Brought, config_class: type, values: Mapping[str, Any], where: str) -> Any:
    """The config that `values` (model_args, over a parent's config) make, once the class has been
    built from it on the meta device (no memory, no time, whatever its sizes): a value the config
    or the model refuses (hidden_size 30 with 4 heads, a string for a size) is one line here, not
    the model's traceback once the shards are read. The class's __init__ runs; one that needs real
    tensor values (a meta tensor has none) is given the benefit of the doubt, and training builds it
    for real. The token ids are gtars' layout of the config's vocab_size, as training sets them
    (gtok.models.hf.hf_config). torch is the one the class's own module imported (transformers
    needs it): this module never imports it itself."""
    try:
        config = config_class.from_dict({**values, **token_ids(values.get("vocab_size", config_class().vocab_size))})
    except Exception as exc:  # the user's values meet the config's own code: any exception may say what is wrong
        raise GtokError(f"{where}: {brought.spec.text}'s config refuses them ({one_line(exc)}); fix the values in "
                        "model_args.") from None
    torch = sys.modules.get("torch")
    try:
        if torch is not None:
            with torch.device("meta"):
                brought.cls(config)
    except NotImplementedError:  # an operation the meta device cannot run: not the values' fault
        pass
    except Exception as exc:  # the values meet the class's own code: any exception may say what is wrong
        if "meta" not in str(exc).lower():
            raise GtokError(f"{where}: {brought.spec.text} cannot be built from them ({one_line(exc)}); fix the values "
                            "in model_args.") from None
    return config


def token_ids(vocab_size: Any) -> dict[str, int]:
    """The special token ids of gtars' vocabulary of `vocab_size` tokens ({} for a size that is no
    vocabulary's: the config or the class refuses it)."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 7:
        return {}
    layout = Vocabulary.of_size(vocab_size)
    return {key: layout.special_id(f"<{key.removesuffix('_token_id')}>") for key in TOKEN_ID_KEYS}


def _positions_source(args: Mapping[str, Any], parent: Mapping[str, Any], hf: Mapping[str, Any]) -> str:
    """Where a Hugging Face model's max_position_embeddings comes from, and how to change it."""
    if "max_position_embeddings" in args:
        return "model_args max_position_embeddings; lower max_length or raise max_position_embeddings"
    if "max_position_embeddings" in parent:
        return (f"the max_position_embeddings of hf.init_from {hf['init_from']}; lower max_length: the fine-tuned "
                "model takes the parent's position embeddings")
    return "its config's default max_position_embeddings; lower max_length or raise max_position_embeddings in model_args"


def _check_positions(positions: Any, max_length: Any, source: str, text: str, what: str) -> None:
    """Records of data.max_length tokens must fit the model's position embeddings (None: uncropped)."""
    if isinstance(positions, int) and (max_length is None or max_length > positions):
        raise GtokError(f"{what} section 'data': max_length {max_length} is longer than the {positions} positions of "
                        f"{text} ({source}).")


def _check_signature(brought: Brought, args: Mapping[str, Any], where: str) -> None:
    """`Class(vocab, **model_args)` must be a valid call (by the signature of its __init__)."""
    params = list(inspect.signature(brought.cls.__init__).parameters.values())[1:]  # less self
    if not params or not _takes_vocabulary(params[0], args):
        raise GtokError(f"{where}: {brought.spec.text}.__init__ takes no vocabulary as its first argument; "
                        "a brought LightningModule is constructed as Class(vocab, **model_args).")
    named = {p.name: p for p in params[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not any(p.kind == p.VAR_KEYWORD for p in params):
        unknown = sorted(set(args) - set(named))
        if unknown:
            raise GtokError(f"{where}: {brought.spec.text} accepts no argument {', '.join(unknown)}; it accepts: "
                            f"{', '.join(named) or 'nothing but the vocabulary'}.")
    missing = [n for n, p in named.items() if p.default is p.empty and n not in args]
    if missing:
        raise GtokError(f"{where}: {brought.spec.text} needs {', '.join(missing)}; give them in model_args.")


def _takes_vocabulary(first: inspect.Parameter, args: Mapping[str, Any]) -> bool:
    """Whether `__init__`'s first parameter can be the vocabulary: positional, and not one of the
    class's own options (named in model_args, a default other than None, or annotated as a number
    or a string). `def __init__(self, dim=8)` would otherwise be given the vocabulary as its dim
    and fail once the shards are read, with the class's own confusing error."""
    if first.kind not in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD) or first.name in args:
        return False
    annotation = first.annotation if isinstance(first.annotation, str) else getattr(first.annotation, "__name__", "")
    return first.default in (first.empty, None) and annotation not in ("int", "float", "str", "bool")


def hf_config_class(brought: Brought, what: str = "config") -> type:
    config_class = getattr(brought.cls, "config_class", None)
    if not isinstance(config_class, type) or config_class.__name__ == "PretrainedConfig":
        raise GtokError(f"{what} model: {brought.spec.text} names no config_class of its own, so gtok cannot build "
                        "its config from model_args.")
    return config_class


def _check_config_keys(config_class: type, args: Mapping[str, Any], where: str) -> None:
    """model_args must be options of the config class; the token ids are the data's, not the user's."""
    ids = sorted(set(args) & set(TOKEN_ID_KEYS))
    if ids:
        raise GtokError(f"{where}: {', '.join(ids)} are set from the data's vocabulary; remove them.")
    known = set(config_class().to_dict())
    for klass in config_class.__mro__:
        if "__init__" in vars(klass):
            known |= {p.name for p in inspect.signature(klass.__init__).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(args) - known - {"self"})
    if unknown:
        raise GtokError(f"{where}: {config_class.__name__} has no option {', '.join(unknown)}; its options: "
                        f"{', '.join(sorted(known - {'self'} - set(TOKEN_ID_KEYS)))}.")


def hf_objective(brought: Brought, objective: str, what: str = "config") -> str:
    """The training objective of an HF class: `hf.objective`, or with `auto` what the class is for.

    An explicit objective is checked against the same evidence `auto` reads (`_evident_objective`),
    for a class trained for another would train in silence on labels it misreads (an rtd head
    given token ids as labels: a loss of -26) or fail only once training has started."""
    if objective not in ("auto", *OBJECTIVES):
        return objective  # no objective at all: refused with the hf section's options (gtok.options.make_config)
    evident = _evident_objective(brought.cls)
    text = brought.spec.text
    if objective == "auto":
        if evident is None:
            raise GtokError(f"{what} section 'hf': objective auto cannot tell what {text} is trained for; "
                            f"set hf.objective to one of {', '.join(OBJECTIVES)}.")
        return evident[0]
    if evident is not None and evident[0] != objective:
        raise GtokError(f"{what} section 'hf': objective {objective} does not fit {text}, which is trained for "
                        f"{evident[0]} ({evident[1]}); set hf.objective to {evident[0]} (or auto), or bring a class "
                        f"made for {objective}.")
    if objective == "triplet" and evident is None:
        raise GtokError(f"{what} section 'hf': objective triplet needs a forward of anchor, positive and negative "
                        f"inputs (input_ids_anchor, ...), and {text}'s forward takes none; bring such a class, or set "
                        "another objective.")
    if evident is None and "labels" not in _forward_parameters(brought.cls):
        raise GtokError(f"{what} section 'hf': {text}'s forward takes no labels, so it computes no {objective} loss; "
                        "bring the class with the training head (e.g. ...ForMaskedLM for mlm).")
    return objective


def _forward_parameters(cls: type) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(cls.forward).parameters


def _evident_objective(cls: type) -> tuple[str, str] | None:
    """(objective, the evidence) that a class's forward or name shows it is trained for, else None:
    a forward of anchor, positive and negative inputs (triplet), a name ending in
    ReplacedTokenDetection (rtd) or ForMaskedLM (mlm)."""
    if "input_ids_anchor" in _forward_parameters(cls):
        return "triplet", "its forward takes anchor, positive and negative inputs"
    if cls.__name__.endswith("ReplacedTokenDetection"):
        return "rtd", "its name"
    if cls.__name__.endswith("ForMaskedLM"):
        return "mlm", "its name"
    return None
