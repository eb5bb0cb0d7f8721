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

from gtok.atomic import atomic_path
from gtok.errors import FingerprintMismatchError, GtokError, ShardFormatError, describe
from gtok.shard import ShardReader
from gtok.stats import length_stats

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


def _shard_entry(path: Path, folder: Path) -> tuple[dict[str, Any], ShardReader]:
    reader = ShardReader(path)
    labels = reader.labels
    counts = Counter(x for x in labels if x is not None) if labels is not None else None
    entry = {
        "path": os.path.relpath(path.resolve(), folder),
        "sha256": sha256_file(path),
        "records": len(reader),
        "tokens": reader.n_tokens,
        "fingerprint": reader.fingerprint,
        "length": length_stats(reader.lengths),
        "labels": dict(sorted(counts.items())) if counts is not None else None,
    }
    return entry, reader


def write_manifest(out: str | os.PathLike, shards: Sequence[str | os.PathLike], progress: bool = False) -> dict:
    """Hash and summarise `shards` into the manifest `out` (written atomically); return its content."""
    from tqdm import tqdm

    out = Path(out)
    folder = out.parent.resolve()
    entries, vocab = [], []
    classes: set[str] = set()
    for path in tqdm([Path(s) for s in shards], desc="hashing shards", unit="shard", disable=not progress or len(shards) < 2):
        entry, reader = _shard_entry(path, folder)
        entries.append(entry)
        vocab.append((describe(path), reader.fingerprint, reader.vocab_size))
        classes.update(entry["labels"] or ())
    if not entries:
        raise GtokError(f"{describe(out)}: a manifest needs at least one shard.")
    fingerprint, vocab_size = common_vocabulary(vocab)
    labeled = any(e["labels"] is not None for e in entries)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "fingerprint": fingerprint,
        "vocab_size": vocab_size,
        "label_classes": sorted(classes) if labeled else None,
        "records": sum(e["records"] for e in entries),
        "tokens": sum(e["tokens"] for e in entries),
        "shards": entries,
    }
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


# -- reading --------------------------------------------------------------------------------------


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Parse and check a manifest; shard paths come back absolute."""
    path = Path(path)
    name = describe(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise GtokError(f"{name}: no such manifest file.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GtokError(f"{name}: not a readable manifest ({exc}).") from None
    if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
        raise GtokError(f"{name}: not a gtok manifest of schema version {SCHEMA_VERSION}; rewrite it with 'gtok manifest'.")
    folder = path.parent.resolve()
    try:
        entries = [
            ManifestEntry(
                path=(folder / e["path"]).resolve(),
                sha256=str(e["sha256"]),
                records=int(e["records"]),
                tokens=int(e["tokens"]),
                fingerprint=e.get("fingerprint"),
                split=e.get("split"),
            )
            for e in raw["shards"]
        ]
        return Manifest(
            path=path,
            fingerprint=raw["fingerprint"],
            vocab_size=raw["vocab_size"],
            label_classes=raw["label_classes"],
            records=int(raw["records"]),
            tokens=int(raw["tokens"]),
            entries=entries,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise GtokError(f"{name}: the manifest is malformed (bad or missing field {exc}); rewrite it with 'gtok manifest'.") from None


# -- verifying ------------------------------------------------------------------------------------


def verify_manifest(path: str | os.PathLike, progress: bool = False) -> list[str]:
    """Re-hash and re-check every shard against the manifest; one sentence per problem found."""
    from tqdm import tqdm

    manifest = load_manifest(path)
    problems: list[str] = []
    entries = manifest.entries
    for entry in tqdm(entries, desc="verifying shards", unit="shard", disable=not progress or len(entries) < 2):
        problems.extend(_entry_problems(entry, manifest))
    return problems


def _entry_problems(entry: ManifestEntry, manifest: Manifest) -> list[str]:
    name = describe(entry.path)
    if not entry.path.is_file():
        return [f"{name}: missing (listed in {describe(manifest.path)})."]
    problems = []
    if sha256_file(entry.path) != entry.sha256:
        problems.append(f"{name}: sha256 differs from the manifest (the file changed or is damaged).")
    try:
        reader = ShardReader(entry.path)
        reader.verify()
    except ShardFormatError as exc:
        return [*problems, str(exc)]
    if reader.fingerprint != entry.fingerprint:
        problems.append(f"{name}: fingerprint {reader.fingerprint} differs from the manifest's {entry.fingerprint}.")
    if (len(reader), reader.n_tokens) != (entry.records, entry.tokens):
        problems.append(
            f"{name}: has {len(reader):,} records and {reader.n_tokens:,} tokens; "
            f"the manifest says {entry.records:,} and {entry.tokens:,}."
        )
    return problems
