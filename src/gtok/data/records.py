"""The records a data set reads: which shards, where each record lies, its label and its split.

Built once when a data set opens (`Records.open`): the source is resolved to shards (a manifest, a
folder, or a list), every shard is opened and checked against its manifest entry
(`gtok.formats.manifest.check_shard`), the shards must share one vocabulary, and the selected records'
positions, lengths and label ids are copied into flat numpy columns. The shards are then closed
again: a DataLoader worker maps the few it reads (`tokens`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gtok.errors import FingerprintMismatchError, GtokError, ShardFormatError, describe
from gtok.formats.manifest import (
    Manifest,
    ManifestEntry,
    check_shard,
    common_vocabulary,
    expand_shards,
    load_manifest,
)
from gtok.formats.metadata import DEFAULT_DATASET
from gtok.formats.shard import ShardReader
from gtok.universe import expand_ranges
from gtok.vocabulary import Vocabulary

IGNORE_LABEL = -100
"""Class id of an unlabeled record in a labeled data set: torch's cross-entropy skips it by default."""

_MAX_OPEN = 8  # shards kept memory-mapped per process
_MOST_OPEN = 256  # ... at most, however many a mixture draws from: each mapping holds a file descriptor (often 1024)


@dataclass
class _Shard:
    """What the index needs from one shard, copied out so its file can be closed again."""

    name: str
    fingerprint: str | None
    vocab_size: int | None
    starts: np.ndarray
    lengths: np.ndarray
    names: list[str]  # only read when a split needs them
    labels: list[str | None] | None
    max_token: int  # the largest token id, or -1 where the CRCs were checked (the writer checked the ids)
    dataset: str  # the manifest entry's dataset, else the shard's own, else DEFAULT_DATASET


@dataclass
class Records:
    """Flat columns over the selected records of every shard: record i is tokens
    [start[i], start[i] + length[i]) of shard `shard[i]`."""

    paths: list[Path]
    shard: np.ndarray  # int32
    start: np.ndarray  # int64
    length: np.ndarray  # int64
    label: np.ndarray | None  # int64 class ids, IGNORE_LABEL for unlabeled records; None without labels
    label_classes: list[str] | None
    fingerprint: str | None
    vocab_size: int
    shard_records: list[int]  # records of each whole shard, to notice a shard changed under us
    datasets: list[str]  # dataset names, in order of first appearance
    shard_dataset: np.ndarray  # int32: each shard's index into `datasets`
    _open: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    keep_open: int = field(default=_MAX_OPEN, repr=False)  # shards kept mapped (`keep_open_at_once`)

    @classmethod
    def open(cls, source, *, verify: bool, split: str | None, val_fraction: float,
             expected_fingerprint: str | None, allow_empty: bool = False) -> "Records":
        """Resolve `source`, check its shards, and keep the records of `split` (None: all). An
        empty selection is an error unless `allow_empty` (evaluation says so and scores nothing)."""
        paths, manifest = _resolve_source(source)
        entries: list[ManifestEntry | None] = manifest.entries if manifest else [None] * len(paths)
        shards = [_scan(p, e, verify, manifest, split is not None) for p, e in zip(paths, entries)]
        fingerprint, vocab_size = _vocabulary(shards, manifest, expected_fingerprint)
        classes = _label_classes(shards, manifest)
        keep = [_split_mask(s, e, split, val_fraction) for s, e in zip(shards, entries)]
        records = cls(
            paths=paths,
            shard=np.concatenate([np.full(int(k.sum()), i, np.int32) for i, k in enumerate(keep)]),
            start=np.concatenate([s.starts[k] for s, k in zip(shards, keep)]),
            length=np.concatenate([s.lengths[k] for s, k in zip(shards, keep)]),
            label=_label_ids(shards, keep, classes),
            label_classes=classes,
            fingerprint=fingerprint,
            vocab_size=vocab_size,
            shard_records=[s.lengths.size for s in shards],
            **_dataset_columns(shards),
        )
        if not records.length.size and not allow_empty:
            what = f" in split {split!r} (val_fraction={val_fraction})" if split else ""
            raise GtokError(f"{_source_name(shards)}: no records to read{what}.")
        return records

    def __len__(self) -> int:
        return int(self.length.size)

    @property
    def dataset(self) -> np.ndarray:
        """Each record's index into `datasets` (what a mixture draws by)."""
        return self.shard_dataset[self.shard]

    def gather(self, chosen: np.ndarray) -> np.ndarray:
        """The tokens of the records `chosen` (ascending indices), concatenated in that order: one
        gather per shard, since the records come grouped by shard in shard order."""
        parts = [np.zeros(0, np.int64)]
        for shard in np.unique(self.shard[chosen]):
            pick = chosen[self.shard[chosen] == shard]
            _, positions = expand_ranges(self.start[pick], self.start[pick] + self.length[pick])
            parts.append(np.asarray(self.tokens(int(shard)))[positions])
        return np.concatenate(parts)

    def keep_open_at_once(self, shards: int) -> None:
        """Keep `shards` shards mapped (within `_MOST_OPEN`): a mixed epoch reads one shard of each
        drawn dataset at a time, and an open shard evicted at every switch would be reopened (its
        header and tables checked again) nearly per record."""
        self.keep_open = min(max(_MAX_OPEN, shards), _MOST_OPEN)

    def tokens(self, shard: int) -> np.ndarray:
        """The token array of a shard. A few shards stay mapped, so small data sets are not
        re-opened every epoch; each mapping holds a file descriptor, so not all of them."""
        tokens = self._open.pop(shard, None)
        if tokens is None:
            reader = ShardReader(self.paths[shard])
            if len(reader) != self.shard_records[shard]:
                raise ShardFormatError(f"{describe(reader.path)}: changed since the data set was opened; restart.")
            tokens = reader.tokens
            if len(self._open) >= self.keep_open:
                self._open.pop(next(iter(self._open)))
        self._open[shard] = tokens  # most recently used last
        return tokens

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}  # mappings do not travel to DataLoader workers


def _resolve_source(source) -> tuple[list[Path], Manifest | None]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.suffix == ".json":
            manifest = load_manifest(path)
            return manifest.paths, manifest
        return expand_shards([path]), None
    paths = expand_shards(source)
    if not paths:
        raise GtokError("GTokDataset: the list of shards is empty.")
    return paths, None


def _scan(path: Path, entry: ManifestEntry | None, verify: bool, manifest: Manifest | None, names: bool) -> _Shard:
    """Open a shard (errors name it), check it against its manifest entry, copy out its index.

    Without `verify` the token ids are still scanned once for the largest (a fast read, several
    times quicker than the CRCs), so a damaged id is refused here instead of failing an embedding
    lookup hours into training; with `verify` the CRCs guarantee the ids the writer checked.
    """
    if entry is not None:
        reader = check_shard(entry, manifest.path, integrity=verify, sha256=verify)
    else:
        reader = ShardReader(path)
        if verify:
            reader.verify()
    return _Shard(
        name=describe(path),
        fingerprint=reader.fingerprint,
        vocab_size=reader.vocab_size,
        starts=np.asarray(reader.offsets[:-1], dtype=np.int64),
        lengths=reader.lengths,
        names=reader.names if names else [],
        labels=reader.labels,
        max_token=-1 if verify and reader.vocab_size is not None else int(reader.tokens.max(initial=0)),
        dataset=entry.dataset_name if entry is not None else reader.dataset or DEFAULT_DATASET,
    )


def _dataset_columns(shards: Sequence[_Shard]) -> dict:
    """The datasets in order of first appearance, and each shard's index into them."""
    names = list(dict.fromkeys(s.dataset for s in shards))
    index = {name: i for i, name in enumerate(names)}
    return {"datasets": names, "shard_dataset": np.array([index[s.dataset] for s in shards], dtype=np.int32)}


def _source_name(shards: Sequence[_Shard]) -> str:
    return shards[0].name + (f" (and {len(shards) - 1} more shards)" if len(shards) > 1 else "")


def _vocabulary(shards: Sequence[_Shard], manifest: Manifest | None, expected: str | None) -> tuple[str | None, int]:
    """The shards' common fingerprint and vocabulary size; gtars-only data get max id + 1 regions,
    so the special ids never collide with data."""
    parties = [(s.name, s.fingerprint, s.vocab_size) for s in shards]
    if manifest is not None:
        parties.insert(0, (describe(manifest.path), manifest.fingerprint, manifest.vocab_size))
    fingerprint, vocab_size = common_vocabulary(parties)
    if expected is not None and fingerprint is not None and expected != fingerprint:
        raise FingerprintMismatchError(
            f"{_source_name(shards)}: tokenized with universe fingerprint {fingerprint}, but the model expects "
            f"{expected}; tokenize the data with the model's universe."
        )
    top = max(s.max_token for s in shards)
    if vocab_size is None:
        return fingerprint, Vocabulary.holding(top).size
    if top >= vocab_size:
        bad = next(s.name for s in shards if s.max_token == top)
        raise ShardFormatError(
            f"{bad}: token id {top} does not fit the vocabulary of size {vocab_size}; the shard is damaged or "
            "from another vocabulary (run 'gtok verify', or re-create it)."
        )
    return fingerprint, vocab_size


def _label_classes(shards: Sequence[_Shard], manifest: Manifest | None) -> list[str] | None:
    if manifest is not None and manifest.label_classes is not None:
        return list(manifest.label_classes)
    if all(s.labels is None for s in shards):
        return None
    return sorted({x for s in shards if s.labels for x in s.labels if x is not None})


def _label_ids(shards: Sequence[_Shard], keep: Sequence[np.ndarray], classes: list[str] | None) -> np.ndarray | None:
    if classes is None:
        return None
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for s, k in zip(shards, keep):
        labels = s.labels or [None] * s.lengths.size
        unknown = {x for x in labels if x is not None} - index.keys()
        if unknown:
            raise GtokError(f"{s.name}: label {sorted(unknown)[0]!r} is not among the manifest's label_classes.")
        ids = np.fromiter((IGNORE_LABEL if x is None else index[x] for x in labels), np.int64, len(labels))
        out.append(ids[k])
    return np.concatenate(out)


def _split_mask(shard: _Shard, entry: ManifestEntry | None, split: str | None, val_fraction: float) -> np.ndarray:
    """Which records of a shard belong to `split`: all of a shard whose manifest entry names a
    split (none of it for another split), else a stable hash of the record name, so a record never
    changes sides between runs."""
    n = shard.lengths.size
    if split is None:
        return np.ones(n, dtype=bool)
    if entry is not None and entry.split is not None:
        return np.full(n, entry.split == split)
    in_val = _name_hash_unit(shard.names) < val_fraction
    return in_val if split == "val" else ~in_val


def _name_hash_unit(names: list[str]) -> np.ndarray:
    """blake2b of each name mapped to [0, 1): stable across runs, machines and Python versions."""
    digests = (int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "little") for n in names)
    return np.fromiter(digests, np.uint64, len(names)) / 2.0**64
