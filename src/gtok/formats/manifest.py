"""The manifest: one JSON file that lists a data set's shards with their checksums and counts.

Training reads shards through a manifest so that a half-finished tokenization run, a shard from
another vocabulary, or a file damaged in transfer is caught before the first step, not hours in.
Shard paths are stored relative to the manifest's folder, so a data set folder can be moved whole.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gtok.atomic import atomic_path
from gtok.errors import FingerprintMismatchError, GtokError, ShardFormatError, describe
from gtok.formats.shard import ShardReader
from gtok.paths import input_file, output_file

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


@dataclass(frozen=True)
class Manifest:
    path: Path
    fingerprint: str | None
    vocab_size: int | None
    label_classes: list[str] | None
    records: int
    tokens: int
    entries: list[ManifestEntry]

    @property
    def paths(self) -> list[Path]:
        return [e.path for e in self.entries]


# -- vocabulary agreement (shared with the dataset) -------------------------------------------------


def common_vocabulary(shards: Sequence[tuple[str, str | None, int | None]]) -> tuple[str | None, int | None]:
    """The (fingerprint, vocab_size) that (name, fingerprint, vocab_size) triples agree on.

    gtars files carry neither and agree with anything. Two different fingerprints (or vocabulary
    sizes) mean two different universes, whose token ids mean different regions: refuse.
    """
    fingerprint = _agreed([(name, fp) for name, fp, _ in shards], "fingerprint")
    vocab_size = _agreed([(name, vs) for name, _, vs in shards], "vocabulary size")
    return fingerprint, vocab_size


def _agreed(values: Sequence[tuple[str, Any]], what: str) -> Any:
    """The one value that every shard giving one (not None) gives; refuse two different ones."""
    first_name, first = "", None
    for name, value in values:
        if value is None:
            continue
        if first is None:
            first_name, first = name, value
        elif value != first:
            raise FingerprintMismatchError(
                f"{first_name} ({what} {first}) and {name} ({what} {value}) were tokenized with "
                "different universes; tokenize every shard with the same universe."
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


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


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


def _shard_entry(path: Path, folder: Path, split: str | None) -> tuple[dict[str, Any], ShardReader]:
    reader = ShardReader(path)
    entry = {
        "path": os.path.relpath(path.resolve(), folder),
        "sha256": sha256_file(path),
        "records": len(reader),
        "tokens": reader.n_tokens,
        "fingerprint": reader.fingerprint,
        "vocab_size": reader.vocab_size,
        "split": split,
        "length": length_stats(reader.lengths),
        "labels": label_counts(reader),
    }
    return entry, reader


def label_counts(reader: ShardReader) -> dict[str, int] | None:
    """Records per label in a shard (unlabeled records not counted); None for a shard without labels."""
    labels = reader.labels
    if labels is None:
        return None
    return dict(sorted(Counter(x for x in labels if x is not None).items()))


def write_manifest(
    out: str | os.PathLike,
    shards: Sequence[str | os.PathLike | tuple[str | os.PathLike, str | None]],
    progress: bool = False,
) -> dict:
    """Hash and summarise `shards` (paths, or (path, split) pairs) into the manifest `out`,
    written atomically; return its content."""
    from tqdm import tqdm

    pairs = [(Path(s), None) if isinstance(s, (str, os.PathLike)) else (Path(s[0]), s[1]) for s in shards]
    target = output_file(out, (".json",), [p for p, _ in pairs], _is_manifest, "gtok manifest")
    if not pairs:
        raise GtokError(f"{describe(out)}: a manifest needs at least one shard.")
    _refuse_repeats(pairs)
    folder = target.parent.resolve()
    entries, vocab = [], []
    for path, split in tqdm(pairs, desc="hashing shards", unit="shard", disable=not progress or len(pairs) < 2):
        entry, reader = _shard_entry(path, folder, _split_name(split))
        entries.append(entry)
        vocab.append((describe(path), reader.fingerprint, reader.vocab_size))
    fingerprint, vocab_size = common_vocabulary(vocab)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "fingerprint": fingerprint,
        "vocab_size": vocab_size,
        "label_classes": _classes([e["labels"] for e in entries]),
        "records": sum(e["records"] for e in entries),
        "tokens": sum(e["tokens"] for e in entries),
        "shards": entries,
    }
    with atomic_path(target) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _is_manifest(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("schema_version") is not None
    except (OSError, ValueError, AttributeError):
        return False


def _refuse_repeats(pairs: Sequence[tuple[Path, str | None]]) -> None:
    seen: dict[Path, Path] = {}
    for path, _ in pairs:
        key = path.resolve()
        if key in seen:
            raise GtokError(f"{describe(path)}: listed twice (also as {describe(seen[key])}); list each shard once.")
        seen[key] = path


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
    """Parse a manifest and check that it agrees with itself (totals, vocabulary, label classes);
    shard paths come back absolute. The shards themselves are checked by `check_shard`."""
    path = Path(path)
    name = describe(path)
    try:
        raw = json.loads(input_file(path, "manifest").read_text())
    except GtokError as exc:
        raise GtokError(str(exc).replace("no such file", "no such manifest file")) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GtokError(f"{name}: not a readable manifest ({exc}).") from None
    if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
        raise GtokError(f"{name}: not a gtok manifest of schema version {SCHEMA_VERSION}; rewrite it with 'gtok manifest'.")
    try:
        manifest = _parse(raw, path)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise GtokError(f"{name}: the manifest is malformed (bad or missing field {exc}); rewrite it with 'gtok manifest'.") from None
    problem = _inconsistency(manifest, raw)
    if problem:
        raise GtokError(f"{name}: {problem}; the manifest was edited or damaged: rewrite it with 'gtok manifest'.")
    return manifest


def _parse(raw: dict[str, Any], path: Path) -> Manifest:
    folder = path.parent.resolve()
    entries = [
        ManifestEntry(
            path=(folder / _text(e["path"])).resolve(),
            sha256=_text(e["sha256"]),
            records=_count(e["records"]),
            tokens=_count(e["tokens"]),
            fingerprint=e.get("fingerprint"),
            split=e.get("split"),
            vocab_size=e.get("vocab_size"),
            labels=e.get("labels"),
        )
        for e in raw["shards"]
    ]
    return Manifest(
        path=path,
        fingerprint=raw["fingerprint"],
        vocab_size=raw["vocab_size"],
        label_classes=raw["label_classes"],
        records=_count(raw["records"]),
        tokens=_count(raw["tokens"]),
        entries=entries,
    )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(repr(value))
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(repr(value))
    return value


def _inconsistency(m: Manifest, raw: dict[str, Any]) -> str | None:
    """What in the manifest contradicts the rest of it, or None."""
    if not m.entries:
        return "it lists no shards"
    if m.records != sum(e.records for e in m.entries):
        return f"its total of {m.records:,} records is not the sum over its shards ({sum(e.records for e in m.entries):,})"
    if m.tokens != sum(e.tokens for e in m.entries):
        return f"its total of {m.tokens:,} tokens is not the sum over its shards ({sum(e.tokens for e in m.entries):,})"
    for e in m.entries:
        if e.fingerprint != m.fingerprint and e.fingerprint is not None:
            return f"shard {describe(e.path)} has fingerprint {e.fingerprint}, the manifest {m.fingerprint}"
        if e.vocab_size is not None and e.vocab_size != m.vocab_size:
            return f"shard {describe(e.path)} has vocabulary size {e.vocab_size}, the manifest {m.vocab_size}"
        if e.split is not None and not isinstance(e.split, str):
            return f"shard {describe(e.path)} has split {e.split!r}, which is not a name"
    if any(e.fingerprint is not None for e in m.entries) and m.fingerprint is None:
        return "it has no fingerprint, but its shards have one"
    return _label_inconsistency(m)


def _label_inconsistency(m: Manifest) -> str | None:
    """label_classes must hold every label of every shard (more is allowed: a class list shared
    by several data sets), sorted and unique; None when no shard has labels."""
    held = _classes([e.labels for e in m.entries])
    if held is None or m.label_classes is None:
        return None if held == m.label_classes else f"its label_classes {m.label_classes} do not match its shards' labels"
    if list(m.label_classes) != sorted(set(m.label_classes)):
        return f"its label_classes {m.label_classes} are not sorted and unique"
    for e in m.entries:
        missing = sorted(set(e.labels or ()) - set(m.label_classes))
        if missing:
            return f"shard {describe(e.path)}: label {missing[0]!r} is not among its label_classes {m.label_classes}"
    return None


# -- checking shards against their entries -----------------------------------------------------------


def shard_problems(entry: ManifestEntry, manifest: str | os.PathLike, *, integrity: bool, sha256: bool) -> tuple[ShardReader | None, list[str]]:
    """Everything that is wrong with the shard of one manifest entry, one sentence each.

    Always: the shard exists and opens (its header and index are valid) and its records, tokens,
    vocabulary and label counts are the entry's. With `integrity`, every byte is checked too:
    against the CRCs of a gtok shard, or the sha256 of a gtars file (which has no CRCs). With
    `sha256`, the file must also be the very one the manifest hashed: only that catches a shard
    replaced by another intact one of the same counts. The dataset, the data module and
    `gtok verify` all check shards here.
    """
    name = describe(entry.path)
    if not entry.path.is_file():
        return None, [f"{name}: missing (listed in {describe(manifest)})."]
    problems = []
    if sha256 and sha256_file(entry.path) != entry.sha256:
        problems.append(f"{name}: sha256 differs from {describe(manifest)} (the file changed or is damaged).")
    try:
        reader = ShardReader(entry.path)
        if integrity and reader.version:
            reader.verify()
    except ShardFormatError as exc:
        return None, [*problems, str(exc)]
    if integrity and not reader.version and not sha256 and sha256_file(entry.path) != entry.sha256:
        problems.append(f"{name}: sha256 differs from {describe(manifest)} (the file changed or is damaged).")
    found = {"records": len(reader), "tokens": reader.n_tokens, "fingerprint": reader.fingerprint,
             "vocabulary size": reader.vocab_size}
    listed = {"records": entry.records, "tokens": entry.tokens, "fingerprint": entry.fingerprint,
              "vocabulary size": entry.vocab_size if entry.vocab_size is not None else reader.vocab_size}
    differ = [key for key in found if found[key] != listed[key]]
    if entry.labels is not None or reader.labels is not None:
        found["labels"], listed["labels"] = label_counts(reader), entry.labels
        differ += ["labels"] if found["labels"] != listed["labels"] else []
    if differ:
        problems.append(
            f"{name}: has {', '.join(f'{k} {found[k]}' for k in differ)}; {describe(manifest)} says "
            f"{', '.join(f'{k} {listed[k]}' for k in differ)} (the file changed since the manifest was written)."
        )
    return reader, problems


def check_shard(entry: ManifestEntry, manifest: str | os.PathLike, *, integrity: bool, sha256: bool = False) -> ShardReader:
    """The opened shard of `entry`, or a `ShardFormatError` with the first of its `shard_problems`."""
    reader, problems = shard_problems(entry, manifest, integrity=integrity, sha256=sha256)
    if problems:
        raise ShardFormatError(problems[0])
    return reader


def verify_manifest(path: str | os.PathLike, progress: bool = False) -> list[str]:
    """Check the manifest and re-check every shard against it, every byte and the sha256: one
    sentence per problem found."""
    from tqdm import tqdm

    manifest = load_manifest(path)
    problems: list[str] = []
    entries = manifest.entries
    for entry in tqdm(entries, desc="verifying shards", unit="shard", disable=not progress or len(entries) < 2):
        problems.extend(shard_problems(entry, manifest.path, integrity=True, sha256=True)[1])
    return problems
