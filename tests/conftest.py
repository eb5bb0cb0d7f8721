"""Shared test helpers. gtars (the reference implementation) is the oracle for token parity."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
GTARS = DATA / "gtars"
GENIML = DATA / "geniml"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep the universe cache of every test out of the user's home."""
    monkeypatch.setenv("GTOK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "gtok-cache"))


@functools.cache
def gtars_tokenizer(universe: str):
    from gtars.tokenizers import Tokenizer

    return Tokenizer(universe)


def gtars_tokens(universe: str | Path, bed: str | Path) -> list[int]:
    """What gtars gives for a BED file against a universe."""
    return list(gtars_tokenizer(str(universe))(str(bed))["input_ids"])


def write_bed(path: Path, rows, header: str = "") -> Path:
    path.write_text(header + "".join(f"{c}\t{s}\t{e}\n" for c, s, e in rows))
    return path


def gtars_regions(universe: str | Path, rows) -> list[int]:
    """What gtars gives for in-memory regions (kept in the given order, unlike a file)."""
    from gtars.models import Region

    return list(gtars_tokenizer(str(universe))([Region(c, int(s), int(e), None) for c, s, e in rows])["input_ids"])
