"""What a shard knows about where it came from: its dataset and the universe it was tokenized with.

A token id means a region only through its universe, and a model trained from a manifest alone
must still find that universe to be usable (`gtok embed`). So every shard `gtok tokenize` writes
carries a small metadata section (docs/format.md): the universe file (its path relative to the shard,
sha256 of its bytes, vocabulary fingerprint; for a universe index also the BED it was built from), the name of
the dataset the records belong to (what weighted mixtures draw by), the gtok version, the
kinds of inputs and the order their records' tokens come in (`token_orders`, which a model with
position embeddings must be given again: gtok train records it in the model folder). Manifests
copy the universe and the dataset from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from gtok.errors import GtokError
from gtok.formats.index import index_source, is_index
from gtok.paths import path_in, recorded_path

#: The dataset of shards and manifest entries that record none (written before gtok recorded
#: datasets, or gtars files): they count as one dataset of this name.
DEFAULT_DATASET = "default"
_MAX_DATASET = 200  # characters
#: The orders a record's tokens may come in that gtok can name: "universe", ascending token ids
#: (cells whose var was in the universe's order); "bed", a BED file's regions sorted as gtok and
#: gtars read one (chromosome name as text, then start).
TOKEN_ORDERS = ("universe", "bed")
#: Where a Hugging Face model's config.json records them (gtok.models.hf), which travels with the
#: model as published, where gtok's config.yaml does not.
TOKEN_ORDERS_KEY = "gtok_token_orders"


@dataclass(frozen=True)
class UniverseRecord:
    """The universe file a shard was tokenized with.

    In a file, `path` (and `source`) are relative to the folder of the file that records them, so
    the same inputs tokenized in another folder give the same bytes and name no folder of the
    user's (older shards and manifests recorded absolute paths, which `resolved` keeps as they are);
    `resolved` makes them absolute for use. `sha256` is of the file's bytes when it was used, so
    a file found there later is known to be the same without parsing it. For a universe index
    (`.gtokidx`), `source` and `source_sha256` name the BED it was built from, when the index
    recorded it.
    """

    path: str
    sha256: str
    fingerprint: str
    source: str | None = None
    source_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "sha256": self.sha256, "fingerprint": self.fingerprint}
        if self.source is not None:
            out["source"] = {"path": self.source, "sha256": self.source_sha256}
        return out

    @classmethod
    def from_json(cls, raw: Any) -> "UniverseRecord":
        """Parsed and checked; a `ValueError` names what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError(f"universe is {raw!r}, not an object")
        path, sha256, fingerprint = (_text(raw, key, "universe") for key in ("path", "sha256", "fingerprint"))
        source = raw.get("source")
        if source is None:
            return cls(path, sha256, fingerprint)
        if not isinstance(source, dict):
            raise ValueError(f"universe.source is {source!r}, not an object")
        return cls(path, sha256, fingerprint, _text(source, "path", "universe.source"),
                   _text(source, "sha256", "universe.source"))

    def relative_to(self, folder: str | os.PathLike) -> "UniverseRecord":
        """The record as a file in `folder` writes it: its paths relative to that folder where they
        lead there (gtok.paths.recorded_path)."""
        return self._paths(lambda p: recorded_path(p, folder))

    def resolved(self, folder: str | os.PathLike) -> "UniverseRecord":
        """The record read from a file in `folder`: its paths absolute (an absolute one stays)."""
        return self._paths(lambda p: path_in(p, folder))

    def _paths(self, move: Callable[[str], str]) -> "UniverseRecord":
        return replace(self, path=move(self.path), source=None if self.source is None else move(self.source))

    def files(self) -> list[tuple[str, str | None]]:
        """Where the universe may be found, best first, with the sha256 each had: the BED an index
        was built from (its original bytes), then the file tokenized with."""
        first = [(self.source, self.source_sha256)] if self.source else []
        return [*first, (self.path, self.sha256)]


@dataclass(frozen=True)
class ShardMeta:
    """A shard's metadata section. Unknown keys are ignored on reading, so later gtok versions
    can add some without a new format version."""

    dataset: str | None = None
    universe: UniverseRecord | None = None
    gtok_version: str | None = None
    inputs: dict[str, int] = field(default_factory=dict)
    #: The orders every record's tokens are in (a subset of TOKEN_ORDERS, sorted; both when the two
    #: coincide on an .h5ad's var), None when some input's are in neither or not known (fragment
    #: files, which keep their file's order; parquet documents; a var in another order; older shards).
    token_orders: tuple[str, ...] | None = None

    def to_bytes(self) -> bytes:
        raw = {"dataset": self.dataset, "universe": self.universe.to_json() if self.universe else None,
               "gtok_version": self.gtok_version, "inputs": self.inputs,
               "token_orders": None if self.token_orders is None else list(self.token_orders)}
        return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ShardMeta":
        """Parsed and checked; a `ValueError` names what is wrong."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        dataset = raw.get("dataset")
        if dataset is not None:
            problem = dataset_problem(dataset)
            if problem:
                raise ValueError(f"dataset {dataset!r}: {problem}")
        universe = raw.get("universe")
        inputs = raw.get("inputs") or {}
        if not isinstance(inputs, dict) or not all(isinstance(v, int) for v in inputs.values()):
            raise ValueError(f"inputs is {inputs!r}, not counts by kind")
        version = raw.get("gtok_version")
        orders = raw.get("token_orders")
        if orders is not None and (not isinstance(orders, list) or not all(isinstance(o, str) for o in orders)):
            raise ValueError(f"token_orders is {orders!r}, not a list of orders")
        return cls(dataset, None if universe is None else UniverseRecord.from_json(universe),
                   version if isinstance(version, str) else None, dict(inputs),
                   None if orders is None else tuple(o for o in orders if o in TOKEN_ORDERS))


def common_orders(orders: Iterable[tuple[str, ...] | None]) -> tuple[str, ...] | None:
    """The orders every one of several inputs' (or shards') records are in: those all of them are
    in (sorted), None when one is in none gtok can name or does not say, or when they share none."""
    common: set[str] | None = None
    for each in orders:
        if not each:
            return None
        common = set(each) if common is None else common & set(each)
    return tuple(sorted(common)) if common else None


def trained_inputs(metas: Iterable[ShardMeta | None]) -> dict[str, Any]:
    """What a model's training shards were made from, for its model folder: `inputs`, the number
    of inputs by kind (of the shards that record them), and `token_orders`, the orders all their
    records' tokens were in (common_orders; None when not all are known to share one)."""
    metas = list(metas)
    kinds: dict[str, int] = {}
    for meta in metas:
        for kind, count in (meta.inputs if meta is not None else {}).items():
            kinds[kind] = kinds.get(kind, 0) + count
    orders = common_orders(None if meta is None else meta.token_orders for meta in metas)
    return {"inputs": kinds, "token_orders": None if orders is None else list(orders)}


def _text(raw: dict, key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}.{key} is {value!r}, not a text")
    return value


def dataset_problem(name: Any) -> str | None:
    """What makes `name` unusable as a dataset name (it is a key of mixtures and of config files,
    and shown in tables), or None."""
    if isinstance(name, (int, float)) and not isinstance(name, bool):
        return f"a dataset name is a text, not the number {name!r} (in YAML, quote it: '{name}')"
    if not isinstance(name, str) or not name.strip():
        return "a dataset name is a non-empty text"
    if name != name.strip() or any(not c.isprintable() for c in name):
        return "a dataset name has no control characters and no leading or trailing spaces"
    if len(name) > _MAX_DATASET:
        return f"a dataset name has at most {_MAX_DATASET} characters"
    return None


def check_dataset(name: str, what: str) -> str:
    """`name`, or a `GtokError` that says why it cannot name a dataset (`what` names the option)."""
    problem = dataset_problem(name)
    if problem:
        raise GtokError(f"{what} {name!r}: {problem}.")
    return name


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def universe_record(path: str | os.PathLike, fingerprint: str) -> UniverseRecord:
    """The universe file a shard is tokenized with (a BED, or an index, whose source BED it names
    when the index recorded one), its paths absolute (`relative_to` the shard's folder to write it)."""
    absolute = os.path.abspath(path)
    source, source_sha256 = index_source(path) if is_index(path) else (None, None)
    return UniverseRecord(absolute, sha256_file(path), fingerprint, source, source_sha256)
