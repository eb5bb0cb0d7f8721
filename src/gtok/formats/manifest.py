"""The manifest: one JSON file that lists a data set's shards with their checksums and counts.

Training reads shards through a manifest so that a half-finished tokenization run, a shard from
another vocabulary, or a file damaged in transfer is caught before the first step, not hours in.
Shard and universe paths are stored relative to the manifest's folder, so a data set folder can be moved whole.
The manifest also records the universe the shards were tokenized with (where the shards' metadata
names it), so that a model trained from the manifest alone can carry it, and each shard's dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gtok.atomic import atomic_path
from gtok.errors import FingerprintMismatchError, GtokError, ShardFormatError, describe, kind_of_file
from gtok.formats.metadata import (
    DEFAULT_DATASET,
    UniverseRecord,
    check_dataset,
    dataset_problem,
    sha256_file,
    trained_inputs,
)
from gtok.formats.names import UniqueNames
from gtok.formats.shard import ShardReader
from gtok.paths import input_file, output_file, refuse_repeats

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ManifestEntry:
    """One shard as the manifest recorded it; `path` is absolute."""

    path: Path
    sha256: str
    records: int
    tokens: int
    fingerprint: str | None
    split: str | None
    vocab_size: int | None = None  # None in manifests written before gtok recorded it per shard
    labels: dict[str, int] | None = None
    dataset: str | None = None  # None where neither the shard nor `gtok manifest --dataset` named one
    header_crc: int | None = None  # the shard header's CRC-32 (None: a gtars file, or an older manifest)

    @property
    def dataset_name(self) -> str:
        """The dataset the entry counts in: its own, else `DEFAULT_DATASET`."""
        return self.dataset if self.dataset is not None else DEFAULT_DATASET


@dataclass(frozen=True)
class Manifest:
    path: Path
    fingerprint: str | None
    vocab_size: int | None
    label_classes: list[str] | None
    records: int
    tokens: int
    entries: list[ManifestEntry]
    universe: UniverseRecord | None = None  # None when no shard recorded its universe

    @property
    def paths(self) -> list[Path]:
        return [e.path for e in self.entries]

    def shards_digest(self) -> str:
        """A short digest of the data a model trains on: every shard's sha256 and split, in order.
        A model records it (gtok.training.run), so evaluation can tell that a manifest is the one
        the model was trained on, and its held-out records the ones it never saw."""
        listed = json.dumps([[e.sha256, e.split] for e in self.entries]).encode()
        return hashlib.sha256(listed).hexdigest()[:16]

    def inputs(self) -> dict[str, Any]:
        """What the shards were made from, as each one's metadata records it (gtok.formats.metadata.
        trained_inputs: the inputs by kind, and the order all their records' tokens came in), which
        a model trained on them records, so that embedding can give it its tokens in that order."""
        return trained_inputs(ShardReader(path).meta for path in self.paths)

    def datasets(self) -> dict[str, dict[str, int]]:
        """Shards, records and tokens per dataset, in order of first appearance."""
        out: dict[str, dict[str, int]] = {}
        for e in self.entries:
            row = out.setdefault(e.dataset_name, {"shards": 0, "records": 0, "tokens": 0})
            row["shards"] += 1
            row["records"] += e.records
            row["tokens"] += e.tokens
        return out


# -- vocabulary agreement (shared with the dataset) -------------------------------------------------


def common_vocabulary(shards: Sequence[tuple[str, str | None, int | None]]) -> tuple[str | None, int | None]:
    """The (fingerprint, vocab_size) that (name, fingerprint, vocab_size) triples agree on.

    gtars files carry neither and agree with anything. Two different fingerprints (or vocabulary
    sizes) mean two different universes, whose token ids mean different regions: refuse.
    """
    fingerprint = _agreed([(name, fp) for name, fp, _ in shards], lambda fp: f"fingerprint {fp}")
    vocab_size = _agreed([(name, vs) for name, _, vs in shards], lambda vs: f"vocabulary size {vs}")
    return fingerprint, vocab_size


def _agreed(values: Sequence[tuple[str, Any]], shown: Callable[[Any], str], key: Callable[[Any], Any] = lambda v: v) -> Any:
    """The first value of the shards that give one (not None), refused when another shard's value
    has another `key`: both shards are named, each with its value as `shown` writes it."""
    first_name, first = "", None
    for name, value in values:
        if value is None:
            continue
        if first is None:
            first_name, first = name, value
        elif key(value) != key(first):
            raise FingerprintMismatchError(
                f"{first_name} ({shown(first)}) and {name} ({shown(value)}) were tokenized with different universes; "
                "tokenize every shard with the same universe."
            )
    return first


def length_stats(lengths: np.ndarray) -> dict[str, float]:
    if not lengths.size:
        return {"min": 0, "median": 0, "mean": 0.0, "max": 0}
    return {
        "min": int(lengths.min()),
        "median": float(np.median(lengths)),
        "mean": round(float(lengths.mean()), 2),
        "max": int(lengths.max()),
    }


# -- writing --------------------------------------------------------------------------------------


def expand_shards(items: Iterable[str | os.PathLike]) -> list[Path]:
    """Shard paths from a mix of files and folders (a folder contributes its `*.gtok`, sorted)."""
    out: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(item.glob("*.gtok"))
            if not found:
                raise GtokError(f"{describe(item)}: no .gtok shards in this folder.")
            out.extend(found)
        else:
            out.append(item)
    return out


#: A shard to list: a path, (path, split), or (path, split, dataset) where `dataset` overrides the
#: one the shard records.
ShardSpec = str | os.PathLike | tuple[str | os.PathLike, str | None] | tuple[str | os.PathLike, str | None, str | None]


def _shard_entry(reader: ShardReader, folder: Path, split: str | None, dataset: str | None) -> dict[str, Any]:
    """A shard's manifest entry; its checksums are checked in the read that hashes it, or a
    damaged shard would be listed under the sha256 of its damage."""
    return {
        # as given, relative to the manifest's folder: a link inside the folder stays a link, so the
        # folder moves whole (resolving it would record the target's place outside)
        "path": os.path.relpath(os.path.abspath(reader.path), folder),
        "sha256": reader.verify(sha256=True),
        "records": len(reader),
        "tokens": reader.n_tokens,
        "fingerprint": reader.fingerprint,
        "vocab_size": reader.vocab_size,
        "split": split,
        "dataset": dataset if dataset is not None else reader.dataset,
        "header_crc": reader.header_crc,
        "length": length_stats(reader.lengths),
        "labels": label_counts(reader),
    }


def label_counts(reader: ShardReader) -> dict[str, int] | None:
    """Records per label in a shard (unlabeled records not counted); None for a shard without labels."""
    labels = reader.labels
    if labels is None:
        return None
    return dict(sorted(Counter(x for x in labels if x is not None).items()))


def write_manifest(out: str | os.PathLike, shards: Sequence[ShardSpec], progress: bool = False) -> dict:
    """Hash and summarise `shards` into the manifest `out`, written atomically; return its content.

    Refused, before anything is written: a shard listed twice, shards of different universes,
    a record name that two records share (in one shard or across shards), and a gtars file whose
    ids do not fit the other shards' vocabulary."""
    from tqdm import tqdm

    specs = [_spec(s) for s in shards]
    target = output_file(out, (".json",), [p for p, _, _ in specs], _is_manifest, "gtok manifest")
    if not specs:
        raise GtokError(f"{describe(out)}: a manifest needs at least one shard.")
    refuse_repeats([p for p, _, _ in specs])
    folder = Path(os.path.abspath(target.parent))  # not resolved: a shard's path is kept as given (below)
    entries, vocab, universes, gtars_ids, names = [], [], [], [], UniqueNames()
    for path, split, dataset in tqdm(specs, desc="hashing shards", unit="shard", disable=not progress or len(specs) < 2):
        reader = ShardReader(path)
        entries.append(_shard_entry(reader, folder, split, dataset))
        vocab.append((describe(path), reader.fingerprint, reader.vocab_size))
        universes.append((describe(path), reader.universe))
        if not reader.version:  # gtars files: no vocabulary, and no writer checked their ids against one
            gtars_ids.append((describe(path), reader.max_id))
        names.add(reader)
    _raise_if(names.problem())
    universe = common_universe(universes)
    fingerprint, vocab_size = common_vocabulary(vocab)
    for name, top in gtars_ids:
        _raise_if(id_problem(name, top, vocab_size))
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "fingerprint": fingerprint,
        "vocab_size": vocab_size,
        "universe": universe.relative_to(folder).to_json() if universe else None,
        "label_classes": _classes([e["labels"] for e in entries]),
        "records": sum(e["records"] for e in entries),
        "tokens": sum(e["tokens"] for e in entries),
        "shards": entries,
    }
    with atomic_path(target) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _spec(shard: ShardSpec) -> tuple[Path, str | None, str | None]:
    """(path, split, dataset) of a shard to list, the names checked."""
    if isinstance(shard, (str, os.PathLike)):
        return Path(shard), None, None
    path, split, *dataset = shard
    name = dataset[0] if dataset else None
    return Path(path), _split_name(split), None if name is None else check_dataset(name, "dataset")


def _raise_if(problem: str | None) -> None:
    if problem:
        raise GtokError(problem)


def _is_manifest(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig")).get("schema_version") is not None
    except (OSError, ValueError, AttributeError):
        return False


def common_universe(universes: Sequence[tuple[str, UniverseRecord | None]]) -> UniverseRecord | None:
    """The universe that (shard name, recorded universe) pairs agree on: the first one recorded.

    The same vocabulary recorded under two paths (a BED and its index, or a copy) is the same
    universe; two fingerprints are refused, naming both shards and both universe files."""
    return _agreed(universes, lambda u: f"universe {u.path}, fingerprint {u.fingerprint[:12]}", lambda u: u.fingerprint)


def id_problem(shard: str, top: int, vocab_size: int | None) -> str | None:
    """Why a shard whose largest token id is `top` cannot belong to a vocabulary of `vocab_size`, or None."""
    if vocab_size is None or top < vocab_size:
        return None
    return (f"{shard}: holds token id {top}, outside the vocabulary of size {vocab_size} of the other shards; it was "
            "tokenized with another universe (or is damaged): tokenize it again with the universe of the others.")


def _split_name(split: str | None) -> str | None:
    if split is not None and not (split and split.replace("_", "").isalnum()):
        raise GtokError(f"split {split!r}: a split name is letters, digits and '_' (e.g. train, val).")
    return split


def _classes(per_shard: Sequence[dict[str, int] | None]) -> list[str] | None:
    """The label classes of a data set: every label any shard holds, sorted; None if no shard has labels."""
    if all(counts is None for counts in per_shard):
        return None
    return sorted({label for counts in per_shard if counts for label in counts})


# -- reading --------------------------------------------------------------------------------------


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Parse a manifest and check that it agrees with itself (totals, vocabulary, label classes,
    each shard listed once); shard paths come back absolute. The shards themselves are checked by
    `check_shard`."""
    path = Path(path)
    name = describe(path)
    try:
        data = input_file(path, "manifest").read_bytes()
        _refuse_another_kind(data[:64], name)
        raw = json.loads(data.decode("utf-8-sig"))  # an editor may add a BOM
    except GtokError as exc:
        raise GtokError(str(exc).replace("no such file", "no such manifest file")) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GtokError(f"{name}: not a readable manifest ({exc}).") from None
    if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
        raise GtokError(f"{name}: not a gtok manifest of schema version {SCHEMA_VERSION}; rewrite it with 'gtok manifest'.")
    try:
        manifest = _parse(raw, path)
    except _Malformed as exc:
        raise GtokError(f"{name}: the manifest is malformed ({exc}); rewrite it with 'gtok manifest'.") from None
    problem = _inconsistency(manifest)
    if problem:
        raise GtokError(f"{name}: {problem}; the manifest was edited or damaged: rewrite it with 'gtok manifest'.")
    return manifest


def _refuse_another_kind(head: bytes, name: str) -> None:
    """A shard, a checkpoint, a BED or an empty file given as a manifest is named as what it is (its
    bytes would be a JSON or codec error); JSON, or text that is not ASCII, is left to the JSON
    parser, which says where it fails."""
    kind = kind_of_file(head)
    if kind is not None and not kind.startswith("a JSON"):
        raise GtokError(f"{name}: is {kind}, not a manifest (.json); list shards in one with "
                        "'gtok manifest -o manifest.json SHARD...'.")


class _Malformed(ValueError):
    """A manifest field of the wrong type; the message names the field and its entry."""


def _parse(raw: dict[str, Any], path: Path) -> Manifest:
    folder = path.parent.resolve()
    shards = _field(raw, "shards", "the manifest", _is_list, "a list of shard entries")
    entries = [_entry(e, i, folder) for i, e in enumerate(shards)]
    top = "the manifest"
    universe = raw.get("universe")
    try:
        # as written: relative to the manifest's folder unresolved, as its writer saw it
        universe = None if universe is None else UniverseRecord.from_json(universe).resolved(os.path.abspath(path.parent))
    except ValueError as exc:
        raise _Malformed(f"{exc}, in {top}") from None
    return Manifest(
        path=path,
        fingerprint=_field(raw, "fingerprint", top, _is_digest_or_none, "a sha256 hex digest or null"),
        vocab_size=_field(raw, "vocab_size", top, _is_size_or_none, "a positive integer or null"),
        label_classes=_field(raw, "label_classes", top, _is_texts_or_none, "a list of label names or null"),
        records=_field(raw, "records", top, _is_count, "a count"),
        tokens=_field(raw, "tokens", top, _is_count, "a count"),
        entries=entries,
        universe=universe,
    )


def _entry(e: Any, i: int, folder: Path) -> ManifestEntry:
    where = f"shard entry {i + 1}"
    if not isinstance(e, dict):
        raise _Malformed(f"{where} is {_shown(e)}, not an object")
    rel = _field(e, "path", where, _is_text, "a path")
    where = f"shard entry {i + 1} ({rel})"
    return ManifestEntry(
        path=(folder / rel).resolve(),
        sha256=_field(e, "sha256", where, _is_digest, "a sha256 hex digest"),
        records=_field(e, "records", where, _is_count, "a count"),
        tokens=_field(e, "tokens", where, _is_count, "a count"),
        fingerprint=_field(e, "fingerprint", where, _is_digest_or_none, "a sha256 hex digest or null", missing_ok=True),
        split=_field(e, "split", where, _is_split_or_none, "a split name (letters, digits, '_') or null", missing_ok=True),
        vocab_size=_field(e, "vocab_size", where, _is_size_or_none, "a positive integer or null", missing_ok=True),
        labels=_field(e, "labels", where, _is_label_counts_or_none, "counts by label or null", missing_ok=True),
        dataset=_field(e, "dataset", where, _is_dataset_or_none, "a dataset name or null", missing_ok=True),
        header_crc=_field(e, "header_crc", where, _is_crc_or_none, "a CRC-32 (an integer) or null", missing_ok=True),
    )


def _field(raw: dict, key: str, where: str, valid, expected: str, missing_ok: bool = False) -> Any:
    """raw[key] when `valid`, else a `_Malformed` that names the field, where it is, and its value."""
    if key not in raw:
        if missing_ok:
            return None
        raise _Malformed(f"field {key!r} of {where} is missing")
    value = raw[key]
    if not valid(value):
        raise _Malformed(f"field {key!r} of {where} is {_shown(value)}, not {expected}")
    return value


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_count(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _is_list(v: Any) -> bool:
    return isinstance(v, list)


def _is_text(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _is_digest(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _is_digest_or_none(v: Any) -> bool:
    return v is None or _is_digest(v)


def _is_size_or_none(v: Any) -> bool:
    return v is None or (_is_int(v) and v > 0)


def _is_texts_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v))


def _is_split_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, str) and bool(v) and v.replace("_", "").isalnum())


def _is_label_counts_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, dict) and all(_is_count(n) for n in v.values()))


def _is_dataset_or_none(v: Any) -> bool:
    return v is None or dataset_problem(v) is None


def _is_crc_or_none(v: Any) -> bool:
    return v is None or (_is_int(v) and 0 <= v < 2**32)


def _inconsistency(m: Manifest) -> str | None:
    """What in the manifest contradicts the rest of it, or None."""
    if not m.entries:
        return "it lists no shards"
    if m.records != sum(e.records for e in m.entries):
        return f"its total of {m.records:,} records is not the sum over its shards ({sum(e.records for e in m.entries):,})"
    if m.tokens != sum(e.tokens for e in m.entries):
        return f"its total of {m.tokens:,} tokens is not the sum over its shards ({sum(e.tokens for e in m.entries):,})"
    listed: dict[Path, int] = {}
    for i, e in enumerate(m.entries, start=1):
        if e.path in listed:
            return (f"shard {describe(e.path)} is listed twice (entries {listed[e.path]} and {i}), so training would "
                    "read its records twice")
        listed[e.path] = i
        if e.fingerprint != m.fingerprint and e.fingerprint is not None:
            return f"shard {describe(e.path)} has fingerprint {e.fingerprint}, the manifest {m.fingerprint}"
        if e.vocab_size is not None and e.vocab_size != m.vocab_size:
            return f"shard {describe(e.path)} has vocabulary size {e.vocab_size}, the manifest {m.vocab_size}"
    if any(e.fingerprint is not None for e in m.entries) and m.fingerprint is None:
        return "it has no fingerprint, but its shards have one"
    if m.universe is not None and m.universe.fingerprint != m.fingerprint:
        return f"its universe {m.universe.path} has fingerprint {m.universe.fingerprint}, the manifest {m.fingerprint}"
    return _label_inconsistency(m)


def _label_inconsistency(m: Manifest) -> str | None:
    """label_classes must be exactly the labels of the shards, sorted: a class no record holds
    would shift the class ids of a classifier; None when no shard has labels."""
    held = _classes([e.labels for e in m.entries])
    if held is None or m.label_classes is None:
        return None if held == m.label_classes else f"its label_classes {m.label_classes} do not match its shards' labels"
    if list(m.label_classes) != sorted(set(m.label_classes)):
        return f"its label_classes {m.label_classes} are not sorted and unique"
    for e in m.entries:
        missing = sorted(set(e.labels or ()) - set(m.label_classes))
        if missing:
            return f"shard {describe(e.path)}: label {missing[0]!r} is not among its label_classes {m.label_classes}"
    unused = sorted(set(m.label_classes) - set(held))
    if unused:
        return (f"its label_classes include {unused[0]!r}, which no shard's records have (a class without records "
                "shifts a classifier's class ids)")
    return None


# -- checking shards against their entries -----------------------------------------------------------


def shard_problems(entry: ManifestEntry, manifest: str | os.PathLike, *, integrity: bool, sha256: bool,
                   vocab_size: int | None = None) -> tuple[ShardReader | None, list[str]]:
    """Everything that is wrong with the shard of one manifest entry, one sentence each.

    Always: the shard exists and opens (its header and index are valid), its records, tokens,
    vocabulary and label counts are the entry's, and its header (whose CRC covers the CRCs of all
    its bytes) is the one the manifest recorded: that catches, at the cost of opening, a shard
    replaced by another intact one of the same counts. With `integrity`, every byte is checked
    too: against the CRCs of a gtok shard, or the sha256 of a gtars file (which has no CRCs), and
    with `vocab_size` every token id must lie below it. With `sha256`, the file must also be the
    very one the manifest hashed. The dataset, the data module and `gtok verify` all check shards
    here.
    """
    name = describe(entry.path)
    if entry.path.is_dir():
        return None, [f"{name}: is a folder, not the shard {describe(manifest)} lists."]
    if not entry.path.is_file():
        return None, [f"{name}: missing (listed in {describe(manifest)})."]
    changed = f"{name}: sha256 differs from {describe(manifest)} (the file changed or is damaged)."
    try:
        reader = ShardReader(entry.path)
    except ShardFormatError as exc:
        return None, [*([changed] if sha256 and sha256_file(entry.path) != entry.sha256 else []), str(exc)]
    problems: list[str] = []
    if integrity or sha256:
        hashed = sha256 or not reader.version  # a gtars file's bytes are checked by its sha256 alone
        corrupt, digest = reader.check_bytes(sha256=hashed) if integrity else ([], sha256_file(entry.path))
        problems = [*([changed] if hashed and digest != entry.sha256 else []), *corrupt]
        if corrupt:
            return None, problems
    differ = _count_problem(entry, reader, manifest)
    if differ:
        problems.append(differ)
    elif not problems and None not in (entry.header_crc, reader.header_crc) and entry.header_crc != reader.header_crc:
        problems.append(f"{name}: is not the shard {describe(manifest)} lists (its header checksum differs: it was "
                        "replaced or rewritten since the manifest was written); rerun 'gtok manifest' if it is meant.")
    if integrity and vocab_size is not None:
        problems.extend(filter(None, [id_problem(name, reader.max_id, vocab_size)]))
    return reader, problems


def _count_problem(entry: ManifestEntry, reader: ShardReader, manifest: str | os.PathLike) -> str | None:
    """How a shard's records, tokens, vocabulary and labels differ from its entry's, or None."""
    found = {"records": len(reader), "tokens": reader.n_tokens, "fingerprint": reader.fingerprint,
             "vocabulary size": reader.vocab_size}
    listed = {"records": entry.records, "tokens": entry.tokens, "fingerprint": entry.fingerprint,
              "vocabulary size": entry.vocab_size if entry.vocab_size is not None else reader.vocab_size}
    differ = [key for key in found if found[key] != listed[key]]
    if entry.labels is not None or reader.labels is not None:
        found["labels"], listed["labels"] = label_counts(reader), entry.labels
        differ += ["labels"] if found["labels"] != listed["labels"] else []
    if not differ:
        return None
    return (f"{describe(entry.path)}: has {', '.join(f'{k} {found[k]}' for k in differ)}; {describe(manifest)} says "
            f"{', '.join(f'{k} {listed[k]}' for k in differ)} (the file changed since the manifest was written).")


def check_shard(entry: ManifestEntry, manifest: str | os.PathLike, *, integrity: bool, sha256: bool = False) -> ShardReader:
    """The opened shard of `entry`, or a `ShardFormatError` with the first of its `shard_problems`."""
    reader, problems = shard_problems(entry, manifest, integrity=integrity, sha256=sha256)
    if problems:
        raise ShardFormatError(problems[0])
    return reader


def verify_manifest(path: str | os.PathLike, progress: bool = False) -> list[str]:
    """Check the manifest and re-check every shard against it, every byte, the sha256 and the token
    ids, and that no two records share a name: one sentence per problem found."""
    from tqdm import tqdm

    manifest = load_manifest(path)
    problems: list[str] = []
    names = UniqueNames()
    entries = manifest.entries
    for entry in tqdm(entries, desc="verifying shards", unit="shard", disable=not progress or len(entries) < 2):
        reader, found = shard_problems(entry, manifest.path, integrity=True, sha256=True, vocab_size=manifest.vocab_size)
        problems.extend(found)
        if reader is not None:
            names.add(reader)
    problems.extend(filter(None, [names.problem()]))
    return problems
