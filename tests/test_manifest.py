"""The manifest: writing, loading, `gtok manifest` / `gtok verify`, and the damage verify must find."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from test_dataset import FP, VOCAB, make_shards

from gtok.cli import main
from gtok.data.dataset import GTokDataset
from gtok.errors import FingerprintMismatchError, GtokError, ShardFormatError
from gtok.formats.manifest import load_manifest, verify_manifest, write_manifest
from gtok.formats.shard import write_shard


@pytest.fixture
def shards(tmp_path) -> list[Path]:
    return sorted(make_shards(tmp_path / "data" / "shards", sizes=(3, 5)).glob("*.gtok"))


def test_write_and_load_round_trip(shards, tmp_path):
    out = tmp_path / "data" / "manifest.json"
    written = write_manifest(out, shards)
    assert json.loads(out.read_text()) == written
    assert sorted(p.name for p in out.parent.iterdir()) == ["manifest.json", "shards"]  # no temporary file left
    assert (written["schema_version"], written["fingerprint"], written["vocab_size"]) == (1, FP, VOCAB)
    assert written["label_classes"] == ["B", "T"] and written["records"] == 8
    first = written["shards"][0]
    assert first["path"] == "shards/s0.gtok"
    assert first["sha256"] == hashlib.sha256(shards[0].read_bytes()).hexdigest()
    assert first["records"] == 3 and first["labels"] == {"B": 1, "T": 1}  # record 0 is unlabeled
    assert set(first["length"]) == {"min", "median", "mean", "max"}
    assert written["tokens"] == sum(e["tokens"] for e in written["shards"])

    m = load_manifest(out)
    assert m.paths == [p.resolve() for p in shards] and m.fingerprint == FP and m.label_classes == ["B", "T"]
    assert [e.records for e in m.entries] == [3, 5]


def test_manifest_paths_survive_moving_the_folder(shards, tmp_path):
    write_manifest(tmp_path / "data" / "manifest.json", shards)
    moved = tmp_path / "moved"
    (tmp_path / "data").rename(moved)
    assert verify_manifest(moved / "manifest.json") == []
    assert GTokDataset(moved / "manifest.json").num_records == 8


def test_mixed_fingerprints_are_refused(tmp_path, shards):
    other = tmp_path / "other.gtok"
    write_shard(other, [("x", np.array([1, 2]))], VOCAB, "cd" * 32)
    with pytest.raises(FingerprintMismatchError, match="different universes"):
        write_manifest(tmp_path / "m.json", [*shards, other])
    assert not (tmp_path / "m.json").exists()


def test_cli_manifest_then_verify_ok(shards, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["manifest", "-q", "-o", str(out), str(shards[0].parent)]) == 0
    assert "2 shards, 8 records" in capsys.readouterr().out
    assert main(["verify", "-q", str(out)]) == 0
    assert capsys.readouterr().out.startswith("OK: 2 shards, 8 records")


def test_cli_verify_names_a_flipped_byte(shards, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["manifest", "-q", "-o", str(out), *map(str, shards)]) == 0
    data = bytearray(shards[1].read_bytes())
    data[140] ^= 0x01  # token data
    shards[1].write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["verify", "-q", str(out)]) == 1
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert all(str(shards[1]) in line for line in lines) and len(lines) == 2
    assert "sha256 differs" in lines[0] and "corrupt" in lines[1] and "checksum" in lines[1]
    assert "2 problem(s)" in printed.err and "Traceback" not in printed.err


def test_verify_finds_missing_and_replaced_shards(shards, tmp_path):
    out = tmp_path / "m.json"
    write_manifest(out, shards)
    shards[0].unlink()
    write_shard(shards[1], [("x", np.array([1, 2]))], VOCAB, "cd" * 32)
    problems = verify_manifest(out)
    assert any(str(shards[0]) in p and "missing" in p for p in problems)
    replaced = [p for p in problems if str(shards[1]) in p]
    assert any("fingerprint" in p for p in replaced) and any("records 1" in p for p in replaced)


def test_dataset_checks_the_manifest(shards, tmp_path):
    out = tmp_path / "m.json"
    content = write_manifest(out, shards)
    content["shards"][0]["sha256"] = "0" * 64
    out.write_text(json.dumps(content))
    GTokDataset(out)  # hashing is only done on request
    with pytest.raises(ShardFormatError, match="sha256 differs"):
        GTokDataset(out, verify=True)
    content["shards"][0]["records"] = 4
    out.write_text(json.dumps(content))
    with pytest.raises(GtokError, match="total of 8 records is not the sum over its shards"):
        GTokDataset(out)
    content["records"] = 9  # totals edited to agree: the shard itself still disagrees
    out.write_text(json.dumps(content))
    with pytest.raises(GtokError, match="has records 3"):
        GTokDataset(out)


def test_a_malformed_manifest_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GtokError, match="not a readable manifest"):
        load_manifest(bad)
    bad.write_text(json.dumps({"schema_version": 1, "shards": [{}]}))
    with pytest.raises(GtokError, match="malformed"):
        load_manifest(bad)
    assert main(["verify", str(tmp_path / "absent.json")]) == 1
    assert "no such manifest" in capsys.readouterr().err
