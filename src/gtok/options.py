"""Every option of training and of the models: its type, default, allowed values and meaning, once.

`gtok train`, the data module, the models and the workflow all take their defaults from these
dataclasses, and `docs/training.md`'s option tables are generated from them (`options_table`;
a test keeps the two equal). The module imports neither torch nor Lightning, so the workflow
checks a whole `train:` config while it parses the Snakefile, before hours of tokenization,
and a wrong type (`max_steps: abc`, `batch_size: 0`) is one line naming the key, not a traceback
deep inside training.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gtok.errors import GtokError
from gtok.formats.metadata import dataset_problem


def opt(default: Any, doc: str, *, min: float | None = None, max: float | None = None,
        choices: tuple | None = None, min_exclusive: bool = False,
        check: Callable[[Any], str | None] | None = None) -> Any:
    """A dataclass field with its documentation and the values it accepts (`check`: why a value of
    the right type is still wrong, or None)."""
    meta = {"doc": doc, "min": min, "max": max, "choices": choices, "min_exclusive": min_exclusive, "check": check}
    return field(default=default, metadata=meta)


# -- values that Lightning takes in several shapes ----------------------------------------------------

#: The precisions gtok trains with (Lightning's names); auto is resolved by gtok.training.hardware.
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
#: The strategies gtok starts the processes for (gtok.training.processes); others are not tested with it.
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true")


def devices_problem(value: Any) -> str | None:
    """Why `value` is not a `devices` option (auto, a positive count, -1 for every GPU, or a list of
    distinct device indices), or None. Whether the devices exist is known only where training runs
    (gtok.training.hardware)."""
    if value == "auto" or (_is(value, int) and (value >= 1 or value == -1)):
        return None
    if isinstance(value, list) and value and all(_is(i, int) and i >= 0 for i in value) and len(set(value)) == len(value):
        return None
    return f"must be auto, a positive count, -1 (every GPU) or a list of distinct device indices like [0, 1], not {value!r}"


def _interval_problem(value: float | int) -> str | None:
    """Lightning reads a float as a share of the epoch and an integer as a number of batches."""
    if isinstance(value, float) and value > 1 and not value.is_integer():
        return f"must be a share of an epoch (at most 1.0) or a whole number of steps, not {value!r}"
    return None


def mixture_problem(value: Any) -> str | None:
    """Why `value` is not a mixture ({dataset: weight}, weights non-negative numbers, not all
    zero), or None; it names the wrong entry, not the whole mapping. Which datasets the data has is
    checked against it by `check_mixture`."""
    if not isinstance(value, Mapping) or not value:
        return f"must map dataset names to weights, like {{pbmc: 0.7, brain: 0.3}}, not {value!r}"
    for name, weight in value.items():
        if dataset_problem(name):
            return f"has {name!r}, which is not a dataset name ({dataset_problem(name)})"
        if not _is(weight, float) or weight < 0:
            return f"weight of {name!r} must be a non-negative number, not {weight!r}"
    if not any(value.values()):
        return "weights are all zero; give at least one dataset a positive weight"
    return None


def _deterministic_problem(value: Any) -> str | None:
    return None if value in ("auto", "warn") or isinstance(value, bool) else f"must be auto, true, false or warn, not {value!r}"


# -- training ---------------------------------------------------------------------------------------


@dataclass
class DataOptions:
    """The `data:` section: how records become batches."""

    batch_size: int = opt(32, "records per batch", min=1)
    token_budget: int | None = opt(None, "instead of batch_size: batches of up to this many padded tokens (B * T); at "
                                   "least max_length", min=1)
    num_workers: int = opt(1, "DataLoader worker processes (per device)", min=0)
    max_length: int | None = opt(512, "longer records keep a random, ordered subset of this many tokens", min=1)
    val_fraction: float = opt(0.1, "share of records without a split held out for validation, by a stable hash of their name; 0: none", min=0.0, max=0.99)
    shuffle_tokens: bool = opt(False, "shuffle each record's tokens")
    verify: bool = opt(True, "check every shard (CRCs, counts) before training")
    mixture: dict | None = opt(None, "draw the training records by dataset in these proportions, {DATASET: weight}; "
                               "datasets left out are not drawn (see Mixtures)", check=mixture_problem)
    samples_per_epoch: int | None = opt(None, "with a mixture: records drawn per epoch (an epoch's plan holds every draw "
                                        "in memory); null: as many as there are", min=1, max=1_000_000_000)
    universe: str | None = opt(None, "the universe BED, recorded with the model for `gtok embed`")


@dataclass
class TrainerOptions:
    """The `trainer:` section: Lightning's Trainer, and when to stop, save, log and validate."""

    max_epochs: int | None = opt(10, "epochs to train; --max-epochs overrides", min=1)
    max_steps: int = opt(-1, "steps to train, -1: no limit; --max-steps overrides (alone, it also lifts max_epochs)", min=-1)
    checkpoint_every_n_steps: int = opt(100, "steps between checkpoints (checkpoints/last.ckpt)", min=1)
    log_every_n_steps: int = opt(10, "steps between logged training metrics", min=1)
    val_check_interval: float | int = opt(1.0, "1.0: validate after each epoch; an integer N: every N steps (at most an epoch's)",
                                          min=0.0, min_exclusive=True, check=_interval_problem)
    num_sanity_val_steps: int = opt(2, "validation batches run before training, to fail early", min=-1)
    accelerator: str = opt("auto", "auto, cpu or gpu; --accelerator overrides", choices=("auto", "cpu", "gpu", "cuda", "mps"))
    devices: Any = opt("auto", "devices per node: auto, a count (on the CPU, of processes: at most twice its cores), -1 (every GPU) or a list of GPU indices; several train with DDP",
                       check=devices_problem)
    num_nodes: int = opt(1, "nodes; the workflow starts devices x num_nodes tasks with srun", min=1)
    strategy: str = opt("auto", "Lightning's strategy: auto, ddp, ddp_spawn or ddp_find_unused_parameters_true", choices=STRATEGIES)
    precision: str = opt("auto", "auto: bf16-mixed on a GPU that has bf16, else 32-true; or 16-mixed, bf16-true, 16-true, 64-true",
                         choices=PRECISIONS)
    deterministic: Any = opt("auto", "auto: true on the CPU (bit-exact resumes), false on a GPU (speed)",
                             check=_deterministic_problem)
    gradient_clip_val: float | None = opt(1.0, "clip the gradient norm to this; null: no clipping", min=0.0)
    accumulate_grad_batches: int = opt(1, "batches whose gradients add up to one step", min=1)
    log_batches: bool = opt(False, "write the records of every trained batch to batches/rank-R.jsonl (to audit what each rank saw)")


# -- models -----------------------------------------------------------------------------------------


@dataclass
class BaseConfig:
    """Optimiser options, common to every model."""

    lr: float = opt(1e-3, "learning rate (AdamW)", min=0.0, min_exclusive=True)
    weight_decay: float = opt(0.01, "AdamW weight decay (not on biases and norms)", min=0.0)
    warmup_steps: int = opt(0, "steps of linear warm-up", min=0)
    schedule: str = opt("constant", "constant, or cosine: decays to 10% of lr at max_steps", choices=("constant", "cosine"))
    seed: int = opt(0, "weights, data order, crops, masks: the run's one seed, set at the config's top level (or --seed); "
                       "here it may only repeat it", min=0)


@dataclass
class Region2VecConfig(BaseConfig):
    lr: float = opt(1e-2, "learning rate (AdamW)", min=0.0, min_exclusive=True)
    weight_decay: float = opt(0.0, "AdamW weight decay", min=0.0)
    embedding_dim: int = opt(64, "vector size", min=1)
    window_size: int = opt(5, "neighbours on each side", min=1)
    negatives: int = opt(5, "noise regions per centre", min=1)
    mode: str = opt("cbow", "cbow or skipgram", choices=("cbow", "skipgram"))


@dataclass
class BackboneConfig(BaseConfig):
    d_model: int = opt(64, "hidden size", min=1)
    n_layers: int = opt(2, "transformer layers", min=1)
    n_heads: int = opt(4, "attention heads (d_model must be a multiple)", min=1)
    d_ff: int = opt(256, "feed-forward size", min=1)
    dropout: float = opt(0.1, "dropout", min=0.0, max=0.99)

    def conflict(self) -> str | None:
        """Why the options do not fit each other (make_config asks, before any work), or None."""
        if self.d_model % self.n_heads:
            return (f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads} (each head gets an equal share "
                    "of d_model); change one of them")
        return None


#: The options that fix a backbone's weight shapes (copied from a checkpoint by `init_from`).
SHAPE_KEYS = ("d_model", "n_layers", "n_heads", "d_ff")


@dataclass
class EncoderConfig(BackboneConfig):
    objective: str = opt("mlm", "mlm: masked-token prediction; rtd: ELECTRA-style replaced-token detection", choices=("mlm", "rtd"))
    mask_prob: float = opt(0.15, "share of region tokens chosen for masking", min=0.0, max=1.0, min_exclusive=True)
    generator_layers: int = opt(1, "rtd: layers of the small generator", min=1)
    generator_d_ff: int = opt(64, "rtd: feed-forward size of the generator", min=1)
    rtd_weight: float = opt(50.0, "rtd: weight of the detection loss", min=0.0)


@dataclass
class ClassifierConfig(BackboneConfig):
    init_from: str | None = opt(None, "an encoder checkpoint, or the gtok train folder of one, whose backbone (weights "
                                     "and size) starts the fine-tuning")
    head_dropout: float = opt(0.1, "dropout before the linear head", min=0.0, max=0.99)


@dataclass
class HFConfig(BaseConfig):
    """The `hf:` section: how gtok trains a brought Hugging Face model (docs/models.md)."""

    objective: str = opt("auto", "rtd: replaced-token detection, mlm: masked tokens, triplet: labelled triplets; auto: from the class name", choices=("auto", "rtd", "mlm", "triplet"))
    mlm_probability: float = opt(0.15, "rtd, mlm: share of region tokens replaced (rtd) or masked (mlm)", min=0.0, max=1.0, min_exclusive=True)
    init_from: str | None = opt(None, "a Hugging Face model folder (gtok's, or as published) whose weights start the training (same vocabulary)")


@dataclass
class LightningConfig:
    """What gtok itself decides for a brought LightningModule (its optimiser is its own)."""

    seed: int = opt(0, "weights, data order, crops", min=0)


MODEL_CONFIGS: dict[str, type] = {"region2vec": Region2VecConfig, "encoder": EncoderConfig, "classifier": ClassifierConfig}
#: Sections of a brought model: the keyword arguments of its class, and the Hugging Face adapter's options.
BROUGHT_SECTIONS = ("model_args", "hf")
SECTIONS = ("seed", "data", "trainer", *MODEL_CONFIGS, *BROUGHT_SECTIONS)


# -- checking ----------------------------------------------------------------------------------------


def make_config(cls: type, options: Mapping[str, Any] | None, what: str) -> Any:
    """An options dataclass from a mapping, every value checked against its field.

    Unknown keys, wrong types and values out of range are refused in one line that names `what`
    (e.g. "config section 'data'") and the key.
    """
    if options is not None and not isinstance(options, Mapping):
        raise GtokError(f"{what}: expected a mapping of options, not {options!r}.")
    options = {key: plain(value) for key, value in (options or {}).items()}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise GtokError(f"{what}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}.")
    hints = typing.get_type_hints(cls)
    for key, value in options.items():
        problem = _problem(value, hints[key], fields[key].metadata)
        if problem:
            raise GtokError(f"{what}: {key} {problem}.")
    config = cls(**options)
    if hasattr(config, "conflict") and (problem := config.conflict()):  # options that do not fit each other
        raise GtokError(f"{what}: {problem}.")
    return config


def _problem(value: Any, hint: Any, meta: Mapping[str, Any]) -> str | None:
    """Why `value` does not fit a field of type `hint`, ending with the wrong value, or None. A
    field's `check` names the value itself: a mixture's wrong weight, not the whole mapping."""
    if problem := _kind_problem(value, hint, meta):
        return f"{problem}, not {value!r}"
    return meta["check"](value) if value is not None and meta.get("check") else None


def _kind_problem(value: Any, hint: Any, meta: Mapping[str, Any]) -> str | None:
    """Why `value` is not of a field's type, among its choices and within its range, or None."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,)
    if value is None:
        return None if type(None) in allowed else "must be given (not null)"
    if meta.get("choices") and not (isinstance(value, str) and value in meta["choices"]):
        return f"must be one of {', '.join(map(str, meta['choices']))}"
    kinds = [t for t in allowed if t is not type(None)]
    if Any not in allowed and not any(_is(value, t) for t in kinds):
        return f"must be {' or '.join(_KIND_NAMES[t] for t in kinds)}" + (" or null" if type(None) in allowed else "")
    low, high = meta.get("min"), meta.get("max")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if low is not None and (value < low or (meta.get("min_exclusive") and value == low)):
            return f"must be {'above' if meta.get('min_exclusive') else 'at least'} {low}"
        if high is not None and value > high:
            return f"must be at most {high}"
    return None


_UnionType = type(int | None)
_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, and a mapping's values (a mixture's weights)
    so too; anything else as it is: options computed with numpy (an np.int64 sum, np.float32
    weights) are checked as numbers, and a run's YAML and JSON take only Python's."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    return value.item() if isinstance(value, np.generic) else value


def _is(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
    return isinstance(value, kind)


def _finite(value: int | float) -> bool:
    """Whether `value` is a finite float; an integer too large for one (a YAML weight of 400
    digits) is not, where math.isfinite would raise an OverflowError instead of a one-line refusal."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_train_config(cfg: Mapping[str, Any], what: str = "config") -> None:
    """Check every section of a training config (the YAML of `gtok train --config`)."""
    unknown = sorted(set(cfg) - set(SECTIONS))
    if unknown:
        raise GtokError(f"{what}: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}.")
    if "seed" in cfg:
        problem = _problem(cfg["seed"], int, {"min": 0})
        if problem:
            raise GtokError(f"{what}: seed {problem}.")
    data = make_config(DataOptions, cfg.get("data"), f"{what} section 'data'")
    if data.samples_per_epoch is not None and data.mixture is None:
        raise GtokError(f"{what} section 'data': samples_per_epoch is the length of a mixture's epoch; "
                        "give a mixture too, or leave samples_per_epoch out.")
    if data.token_budget is not None and "batch_size" in (cfg.get("data") or {}):
        raise GtokError(f"{what} section 'data': batch_size and token_budget are two ways of forming batches; give one.")
    if data.token_budget is not None and data.max_length is not None and data.token_budget < data.max_length:
        raise GtokError(f"{what} section 'data': token_budget {data.token_budget} is below max_length {data.max_length}, "
                        f"so a record of {data.max_length} tokens would make a batch over the budget; give a token_budget "
                        "of at least max_length.")
    make_config(TrainerOptions, cfg.get("trainer"), f"{what} section 'trainer'")
    for name, cls in MODEL_CONFIGS.items():
        make_config(cls, cfg.get(name), f"{what} section '{name}'")
    make_config(HFConfig, cfg.get("hf"), f"{what} section 'hf'")
    model_args(cfg, what)


def check_mixture(data: DataOptions, datasets: Sequence[str], world: int, what: str) -> None:
    """What a mixture needs of the data and the job: its datasets exist (`datasets`, the manifest's),
    and an epoch of `samples_per_epoch` draws gives every one of `world` ranks a whole batch."""
    if data.mixture is None:
        return
    unknown = [name for name in data.mixture if name not in datasets]
    if unknown:
        raise GtokError(f"{what} section 'data': mixture names dataset {unknown[0]!r}, which the data lacks (its "
                        f"datasets: {', '.join(map(repr, datasets))}); name one of those (`gtok info` lists them).")
    batch = 1 if data.token_budget is not None else data.batch_size  # a budget's batch holds at least one record
    if data.samples_per_epoch is not None and data.samples_per_epoch < world * batch:
        raise GtokError(f"{what} section 'data': samples_per_epoch is {data.samples_per_epoch}, below the "
                        f"{world * batch} records of one batch on each of {world} processes (world size x "
                        f"{'1 record' if data.token_budget is not None else 'batch_size'}); give at least {world * batch}.")


def model_args(cfg: Mapping[str, Any], what: str = "config") -> dict[str, Any]:
    """The `model_args:` section: keyword arguments for a brought class, checked only for being a
    mapping of names here (the class itself says what it accepts: gtok.modelspec)."""
    args = cfg.get("model_args")
    if args is None:
        return {}
    if not isinstance(args, Mapping) or not all(isinstance(k, str) and k.isidentifier() for k in args):
        raise GtokError(f"{what} section 'model_args': expected a mapping of argument names to values, not {args!r}.")
    return dict(args)


# -- documentation -----------------------------------------------------------------------------------


def options_table(cls: type) -> str:
    """The Markdown table of a section's options, as docs/training.md shows it."""
    rows = ["| option | default | meaning |", "| --- | --- | --- |"]
    for f in dataclasses.fields(cls):
        rows.append(f"| `{f.name}` | `{_yaml(f.default)}` | {f.metadata['doc']} |")
    return "\n".join(rows)


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
