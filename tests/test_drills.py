"""The fault drills that fit CI's time: a shard damaged by one flipped bit (bench/drill_corruption.py).

The bit flip changes a token id by one, to another valid id, so only the checksums can catch it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))  # the drills live with the benchmarks

from drill_corruption import example_manifest, flip_token_bit, gtok, train_on  # noqa: E402

pytestmark = pytest.mark.slow  # real training runs, workflow runs or drills: `make test` runs them

@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> tuple[Path, Path]:
    """The example's manifest, and its shard bed-1.gtok with one token's lowest bit flipped."""
    folder = tmp_path_factory.mktemp("corrupt")
    manifest = example_manifest(folder)
    flip_token_bit(folder / "bed-1.gtok")
    return manifest, folder / "bed-1.gtok"


def test_flip_changes_one_token_to_another_valid_id(tmp_path):
    from gtok.formats.shard import ShardReader

    manifest = example_manifest(tmp_path)
    shard = tmp_path / "bed-1.gtok"
    before = ShardReader(shard).tokens.copy()
    flipped = flip_token_bit(shard)
    reader = ShardReader(shard)  # opening checks only the header and index: it still opens
    changed = (reader.tokens != before).nonzero()[0]
    assert changed.size == 1 and int(reader.tokens[changed[0]]) == flipped["token_after"] < reader.vocab_size
    assert gtok("verify", "-q", manifest).returncode == 1


def test_verify_names_the_damaged_shard_and_only_it(damaged):
    manifest, shard = damaged
    result = gtok("verify", "--quiet", manifest)
    assert result.returncode == 1
    problems = result.stdout.strip().splitlines()
    assert problems and all(line.startswith(f"{shard}: ") for line in problems)
    assert any("token data is corrupt" in line for line in problems)
    assert "Traceback" not in result.stderr


def test_train_refuses_it_by_default_in_one_line_naming_the_shard(damaged, tmp_path):
    manifest, shard = damaged
    result = train_on(manifest, tmp_path / "out")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gtok train: error: {shard}: the token data is corrupt")
    assert not (tmp_path / "out" / "checkpoints").exists()
