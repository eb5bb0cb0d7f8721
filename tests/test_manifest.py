"""The manifest: writing, loading, `gtok manifest` / `gtok verify`, and the damage verify must find."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import gtok, one_line_error, snapshot
from test_dataset import FP, VOCAB, make_shards

from gtok.cli import main
from gtok.data.dataset import GTokDataset
from gtok.errors import FingerprintMismatchError, GtokError, ShardFormatError
from gtok.formats.manifest import load_manifest, verify_manifest, write_manifest
from gtok.formats.metadata import ShardMeta, UniverseRecord
from gtok.formats.shard import ShardReader, write_shard


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


def test_a_linked_shard_in_the_folder_is_listed_as_the_link(shards, tmp_path):
    """A link inside the manifest's folder to a shard kept elsewhere is recorded as the link, so the
    folder still moves whole (its target's place outside would break on the move)."""
    project = tmp_path / "project"
    (project / "shards").mkdir(parents=True)
    (project / "shards" / "linked.gtok").symlink_to(shards[0])
    written = write_manifest(project / "manifest.json", [project / "shards" / "linked.gtok"])
    assert written["shards"][0]["path"] == "shards/linked.gtok"
    (tmp_path / "elsewhere").mkdir()
    project.rename(tmp_path / "elsewhere" / "project")
    assert verify_manifest(tmp_path / "elsewhere" / "project" / "manifest.json") == []


def test_mixed_fingerprints_are_refused(tmp_path, shards):
    other = tmp_path / "other.gtok"
    write_shard(other, [("x", np.array([1, 2]))], VOCAB, "cd" * 32)
    with pytest.raises(FingerprintMismatchError, match="different universes"):
        write_manifest(tmp_path / "m.json", [*shards, other])
    assert not (tmp_path / "m.json").exists()


def test_cli_manifest_then_verify_ok(shards, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["manifest", "-o", str(out), str(shards[0].parent)]) == 0
    assert "2 shards, 8 records" in capsys.readouterr().out
    assert main(["manifest", "-q", "-o", str(out), str(shards[0].parent)]) == 0
    assert capsys.readouterr().out == ""  # --quiet: not even the 'wrote' line
    assert main(["verify", "-q", str(out)]) == 0
    assert capsys.readouterr().out.startswith("OK: 2 shards, 8 records")
    out.write_bytes(b"\xef\xbb\xbf" + out.read_bytes())  # saved by an editor that marks UTF-8
    assert main(["verify", "-q", str(out)]) == 0


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


def test_verify_checks_and_hashes_a_shard_in_one_read(shards, tmp_path, monkeypatch):
    """The CRCs and the sha256 come from the same pass over the file, not a second read to hash it."""
    import gtok.formats.manifest

    out = tmp_path / "m.json"
    write_manifest(out, shards)
    monkeypatch.setattr(gtok.formats.manifest, "sha256_file", lambda path: pytest.fail(f"{path} read again to hash it"))
    assert verify_manifest(out) == []


def test_verify_finds_missing_and_replaced_shards(shards, tmp_path):
    out = tmp_path / "m.json"
    write_manifest(out, shards)
    shards[0].unlink()
    write_shard(shards[1], [("x", np.array([1, 2]))], VOCAB, "cd" * 32)
    problems = verify_manifest(out)
    assert any(str(shards[0]) in p and "missing" in p for p in problems)
    replaced = [p for p in problems if str(shards[1]) in p]
    assert any("fingerprint" in p for p in replaced) and any("records 1" in p for p in replaced)


def test_verify_names_a_folder_in_a_shards_place(shards, tmp_path):
    out = tmp_path / "m.json"
    write_manifest(out, shards)
    shards[0].unlink()
    shards[0].mkdir()
    assert f"{shards[0]}: is a folder, not the shard {out} lists." in verify_manifest(out)


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


def test_a_shard_given_as_a_manifest_is_named_as_one(shards, tmp_path):
    """A shard where a manifest was meant said "not a readable manifest ('utf-8' codec can't decode
    byte 0x97 ...)"."""
    with pytest.raises(GtokError) as err:
        load_manifest(shards[0])
    assert str(err.value) == (f"{shards[0]}: is a .gtok shard, not a manifest (.json); list shards in one with "
                              "'gtok manifest -o manifest.json SHARD...'.")
    bed = tmp_path / "u.bed"
    bed.write_text("chr1\t10\t20\n")
    with pytest.raises(GtokError, match=r"u.bed: is a text file \(a BED file\?\), not a manifest \(.json\)"):
        load_manifest(bed)  # was: not a readable manifest (Expecting value: line 1 column 1 (char 0))
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    with pytest.raises(GtokError, match=r"empty.json: is an empty file, not a manifest \(.json\)"):
        load_manifest(empty)


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


# -- what verify used to call OK -------------------------------------------------------------------------


def edited(manifest: Path, edit) -> Path:
    content = json.loads(manifest.read_text())
    edit(content)
    manifest.write_text(json.dumps(content))
    return manifest


def test_a_shard_listed_twice_is_refused(shards, tmp_path, capsys):
    out = tmp_path / "m.json"
    written = write_manifest(out, shards)

    def twice(m):
        m["shards"].append(dict(m["shards"][0]))
        m["records"] += m["shards"][0]["records"]
        m["tokens"] += m["shards"][0]["tokens"]

    edited(out, twice)
    assert main(["verify", "-q", str(out)]) == 1
    assert "s0.gtok is listed twice (entries 1 and 3), so training would read its records twice" in capsys.readouterr().err
    with pytest.raises(GtokError, match="listed twice"):
        GTokDataset(out)
    assert written["records"] == 8


def test_a_hand_added_label_class_is_refused(shards, tmp_path, capsys):
    out = tmp_path / "m.json"
    write_manifest(out, shards)
    edited(out, lambda m: m.update(label_classes=["A", "B", "T"]))
    assert main(["verify", "-q", str(out)]) == 1
    assert "label_classes include 'A', which no shard's records have" in capsys.readouterr().err


def gtars_file(path: Path, ids) -> Path:
    from gtok.formats.gtars import export_gtars

    return export_gtars(np.array(ids), path)


def test_gtars_ids_outside_the_vocabulary_are_refused_by_manifest_verify_and_export(shards, tmp_path):
    from gtok.formats.parquet import write_parquet

    bad = gtars_file(tmp_path / "bad.gtok", [3, 60_000])  # the shards' vocabulary has 1,007 ids
    with pytest.raises(GtokError, match="bad.gtok: holds token id 60000, outside the vocabulary of size 1007"):
        write_manifest(tmp_path / "m.json", [*shards, bad])
    with pytest.raises(GtokError, match="bad.gtok: holds token id 60000"):
        write_parquet([*shards, bad], tmp_path / "x.parquet")
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "x.parquet").exists()

    good = gtars_file(tmp_path / "late.gtok", [3, 4])
    out = tmp_path / "m.json"
    write_manifest(out, [*shards, good])
    gtars_file(good, [3, 60_000])  # replaced afterwards, by a file of the same length
    edited(out, lambda m: m["shards"][2].update(sha256=hashlib.sha256(good.read_bytes()).hexdigest()))
    assert verify_manifest(out) == [f"{good.resolve()}: holds token id 60000, outside the vocabulary of size 1007 of the "
                                    "other shards; it was tokenized with another universe (or is damaged): tokenize it "
                                    "again with the universe of the others."]


def test_record_names_must_be_unique_across_and_within_shards(shards, tmp_path):
    copy = tmp_path / "copy.gtok"
    copy.write_bytes(shards[0].read_bytes())
    with pytest.raises(GtokError, match=f"record name 'rec0' is in both {shards[0]} and {copy}; record names must be unique"):
        write_manifest(tmp_path / "m.json", [*shards, copy])
    twice = write_shard(tmp_path / "twice.gtok", [("a", np.array([1])), ("b", np.array([2])), ("a", np.array([3]))],
                        VOCAB, FP)
    with pytest.raises(GtokError, match="twice.gtok: record name 'a' is used by records 0 and 2"):
        write_manifest(tmp_path / "m.json", [twice])
    assert not (tmp_path / "m.json").exists()

    out = tmp_path / "m.json"
    write_manifest(out, shards)
    write_shard(shards[1], [(f"rec{i}", np.array([i + 1])) for i in range(5)], VOCAB, FP)  # now reuses s0's names
    assert any(f"record name 'rec0' is in both {shards[0].resolve()} and {shards[1].resolve()}" in p
               for p in verify_manifest(out))


@pytest.mark.parametrize("edit, words", [
    (lambda m: m["shards"][0].update(records="6"), "field 'records' of shard entry 1 (shards/s0.gtok) is \"6\", not a count"),
    (lambda m: m["shards"][1].pop("sha256"), "field 'sha256' of shard entry 2 (shards/s1.gtok) is missing"),
    (lambda m: m["shards"][1].update(dataset=""), "field 'dataset' of shard entry 2 (shards/s1.gtok) is \"\", not a dataset"),
    (lambda m: m.update(vocab_size=-3), "field 'vocab_size' of the manifest is -3, not a positive integer"),
    (lambda m: m["shards"].__setitem__(0, 6), "shard entry 1 is 6, not an object"),
])
def test_a_malformed_field_is_named_with_its_entry(shards, tmp_path, capsys, edit, words):
    out = tmp_path / "data" / "m.json"
    write_manifest(out, shards)
    edited(out, edit)
    assert main(["verify", "-q", str(out)]) == 1
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err


def test_a_shard_replaced_by_an_intact_one_of_the_same_counts_is_caught_on_opening(shards, tmp_path):
    from gtok.data.datamodule import check_shards

    out = tmp_path / "m.json"
    write_manifest(out, shards)
    old = ShardReader(shards[0])
    records = [(n, np.asarray(t) % 7, x) for n, t, x in zip(old.names, old, old.labels)]  # same lengths and labels
    del old
    write_shard(shards[0], records, VOCAB, FP)
    with pytest.raises(ShardFormatError, match="s0.gtok: is not the shard .* lists \\(its header checksum differs"):
        check_shards(out)  # what training checks before its first step: CRCs, not the sha256
    with pytest.raises(ShardFormatError, match="header checksum differs"):
        GTokDataset(out)


# -- the universe and the datasets -----------------------------------------------------------------------


def meta(dataset: str, path: str = "/u/universe.bed", fingerprint: str = FP) -> ShardMeta:
    return ShardMeta(dataset, UniverseRecord(path, "0" * 64, fingerprint))


def test_the_manifest_records_the_universe_and_each_shards_dataset(tmp_path):
    a = write_shard(tmp_path / "a.gtok", [("x", np.array([1]))], VOCAB, FP, meta("pbmc"))
    b = write_shard(tmp_path / "b.gtok", [("y", np.array([2]))], VOCAB, FP, meta("beds", "/copy/universe.bed.gz"))
    old = write_shard(tmp_path / "old.gtok", [("z", np.array([3]))], VOCAB, FP)
    out = tmp_path / "m.json"
    written = write_manifest(out, [a, (b, None, "renamed"), old])
    # a shard of before recorded an absolute path; one that leads to no file here stays absolute (a relative
    # path is recorded only where the file system finds the universe by it: '../../../../u/universe.bed' was)
    assert written["universe"] == {"path": "/u/universe.bed", "sha256": "0" * 64, "fingerprint": FP}
    m = load_manifest(out)
    assert [e.dataset for e in m.entries] == ["pbmc", "renamed", None]
    assert [e.dataset_name for e in m.entries] == ["pbmc", "renamed", "default"]
    assert m.universe.path == "/u/universe.bed" and m.datasets()["pbmc"] == {"shards": 1, "records": 1, "tokens": 1}


def test_shards_of_two_universes_name_both(tmp_path):
    a = write_shard(tmp_path / "a.gtok", [("x", np.array([1]))], VOCAB, FP, meta("d"))
    b = write_shard(tmp_path / "b.gtok", [("y", np.array([2]))], VOCAB, "cd" * 32, meta("d", "/v/other.bed", "cd" * 32))
    with pytest.raises(FingerprintMismatchError, match=r"a.gtok \(universe /u/universe.bed, fingerprint abababababab\) "
                                                       r"and .*b.gtok \(universe /v/other.bed, fingerprint cdcdcdcdcdcd\)"):
        write_manifest(tmp_path / "m.json", [a, b])


def test_cli_manifest_dataset_overrides_and_info_lists_datasets(tmp_path, capsys):
    a = write_shard(tmp_path / "a.gtok", [("x", np.array([1, 2]))], VOCAB, FP, meta("pbmc"))
    b = write_shard(tmp_path / "b.gtok", [("y", np.array([2])), ("w", np.array([5]))], VOCAB, FP, meta("beds"))
    c = write_shard(tmp_path / "c.gtok", [("z", np.array([3]))], VOCAB, FP, meta("beds"))
    out = tmp_path / "m.json"
    assert main(["manifest", "-q", "-o", str(out), str(a), "--split", "val", str(b), "--dataset", "atlas", str(b), str(c)]) == 0
    m = load_manifest(out)
    assert [(e.path.name, e.split, e.dataset) for e in m.entries] == [("a.gtok", None, "pbmc"), ("b.gtok", "val", "atlas"),
                                                                     ("c.gtok", None, "atlas")]
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  datasets     2" in lines
    rows = {line.split()[0]: line.split()[1:] for line in lines[lines.index("  datasets     2") + 2:]}
    assert rows == {"pbmc": ["1", "1", "2", "25.0%"], "atlas": ["2", "3", "3", "75.0%"]}  # shares of the records
    assert main(["manifest", "-q", "-o", str(out), str(a), "--dataset", "x", str(a), "--dataset", "y", str(a)]) == 1
    assert "is given two datasets, 'x' and 'y'" in capsys.readouterr().err


def test_info_aligns_dataset_names_of_wide_characters(tmp_path, capsys):
    """CJK names take two terminal columns a character: padded by len(), their rows ran past the others."""
    import unicodedata

    def columns(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)

    a = write_shard(tmp_path / "a.gtok", [("x", np.array([1, 2]))], VOCAB, FP, meta("肝臓アトラス"))
    b = write_shard(tmp_path / "b.gtok", [("y", np.array([2]))], VOCAB, FP, meta("pbmc"))
    out = tmp_path / "m.json"
    assert main(["manifest", "-q", "-o", str(out), str(a), str(b)]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index("  datasets     2") + 1:]
    assert len(table) == 3 and len({columns(line) for line in table}) == 1, table  # every row ends in one column


# -- hostile input (once tests/test_edge_cases.py): one-line errors or correct tokens, nothing touched --


@pytest.mark.slow
@pytest.mark.parametrize("edit, words", [
    (lambda m: m.update(records=999_999), "total of 999,999 records is not the sum"),
    (lambda m: m.update(tokens=m["tokens"] + 1), "tokens is not the sum"),
    (lambda m: m.update(fingerprint="cd" * 32), "has fingerprint"),
    (lambda m: m["shards"][0].update(fingerprint="cd" * 32), "has fingerprint"),
    (lambda m: m.update(shards=[], records=0, tokens=0), "it lists no shards"),
    (lambda m: m.update(label_classes=["x"]), "label_classes"),
])
def test_verify_refuses_an_edited_manifest(tmp_path, shard, edit, words):
    manifest = tmp_path / "m.json"
    content = write_manifest(manifest, [shard])
    edit(content)
    manifest.write_text(json.dumps(content))
    before = snapshot(tmp_path)
    proc = gtok("verify", "-q", manifest)
    one_line_error(proc, "m.json", words)
    assert "OK" not in proc.stdout
    one_line_error(gtok("train", "-q", "-m", manifest, "--model", "encoder", "--out", tmp_path / "run"), words)
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_manifest_splits_decide_training_and_validation(tmp_path, inputs):
    from gtok.data.datamodule import GTokDataModule

    beds = sorted(inputs.glob("Ex*.bed"))
    u = inputs / "universe.bed"
    for name, files in (("train", beds[:2]), ("val", beds[2:])):
        assert gtok("tokenize", "-q", "-u", u, "-o", tmp_path / f"{name}.gtok", *files).returncode == 0
    manifest = tmp_path / "m.json"
    proc = gtok("manifest", "-q", "-o", manifest, "--split", "train", tmp_path / "train.gtok", "--split", "val", tmp_path / "val.gtok")
    assert proc.returncode == 0, proc.stderr
    assert [e.split for e in load_manifest(manifest).entries] == ["train", "val"]
    for val_fraction in (0.0, 0.5):  # a hash split never moves records across the sheet's splits
        dm = GTokDataModule(manifest, batch_size=1, num_workers=0, val_fraction=val_fraction, verify=False)
        dm.setup("fit")
        assert (dm.train_set.num_records, dm.val_set.num_records) == (2, 1)


def test_shards_must_agree_on_vocabulary_and_universe_and_the_refusal_names_both():
    from gtok.formats.manifest import common_universe, common_vocabulary
    from gtok.formats.metadata import UniverseRecord

    assert common_vocabulary([("a", None, None), ("b", "ab" * 32, 10), ("c", "ab" * 32, None)]) == ("ab" * 32, 10)
    with pytest.raises(FingerprintMismatchError, match=r"^a \(fingerprint x\) and c \(fingerprint y\) were tokenized "
                                                       r"with different universes; tokenize every shard with the same"):
        common_vocabulary([("a", "x", 10), ("b", None, None), ("c", "y", 10)])
    with pytest.raises(FingerprintMismatchError, match=r"^a \(vocabulary size 10\) and b \(vocabulary size 11\)"):
        common_vocabulary([("a", "x", 10), ("b", "x", 11)])
    bed, index = (UniverseRecord(p, "0" * 64, "ab" * 32) for p in ("/u.bed", "/u.gtokidx"))
    assert common_universe([("a", None), ("b", bed), ("c", index)]) is bed  # one vocabulary, two files
    other = UniverseRecord("/v.bed", "1" * 64, "cd" * 32)
    with pytest.raises(FingerprintMismatchError, match=r"^b \(universe /u.bed, fingerprint abababababab\) and c "
                                                       r"\(universe /v.bed, fingerprint cdcdcdcdcdcd\) were tokenized"):
        common_universe([("a", None), ("b", bed), ("c", other)])
