"""The .gtok shard format: round trips, gtars interop, atomic writes and corruption detection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import GENIML, GTARS

from gtok.errors import ShardFormatError
from gtok.formats.gtars import export_gtars
from gtok.formats.manifest import check_shard, load_manifest, write_manifest
from gtok.formats.metadata import ShardMeta, UniverseRecord
from gtok.formats.shard import HEADER, HEADER_SIZE, ShardReader, ShardWriter, record_name, write_shard

FP = "ab" * 32


@pytest.mark.parametrize(("path", "name"), [
    ("data/k562.bed", "k562"), ("data/k562.bed.gz", "k562"), ("/abs/k562.gz", "k562"),
    ("k562.narrowPeak", "k562.narrowPeak"), (Path("dir") / "x.y.bed", "x.y"),
    (".bed", ".bed"), ("dir/.bed.gz", ".bed"), ("dir/sub/", "sub"),
])
def test_a_bed_files_record_name_is_its_file_name_without_the_bed_and_gz_suffixes(path, name):
    assert record_name(path) == name == record_name(os.fspath(Path(path)))


def sample_records(rng, n=50, vocab=1000):
    return [(f"rec{i}", rng.integers(0, vocab, size=rng.integers(0, 300)), f"class{i % 3}") for i in range(n)]


def test_round_trip_with_labels(tmp_path):
    records = sample_records(np.random.default_rng(0))
    path = write_shard(tmp_path / "s.gtok", records, vocab_size=1000, fingerprint=FP)
    r = ShardReader(path)
    assert len(r) == 50 and r.names == [n for n, _, _ in records] and r.labels == [x for _, _, x in records]
    assert r.fingerprint == FP and r.vocab_size == 1000 and r.dtype == np.dtype("<u2")
    for (_, tokens, _), got in zip(records, r):
        assert got.tolist() == tokens.tolist()
    assert r[-1].tolist() == records[-1][1].tolist()
    assert r.n_tokens == sum(t.size for _, t, _ in records)
    r.verify()
    with pytest.raises(IndexError):
        r[50]


def test_a_disk_that_fills_while_the_tables_are_written_is_one_line_and_keeps_the_old_shard(tmp_path, monkeypatch):
    """The tokens fit, the index or names do not: the error is the one a full disk gets while the
    tokens are written, and the shard already there stays as it was, with no temporary left."""
    import gtok.formats.shard as shard
    from gtok.errors import GtokError

    path = write_shard(tmp_path / "s.gtok", [("a", np.arange(5))], 10, None)
    before = path.read_bytes()

    def full(strings):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shard, "_pack_strings", full)
    with pytest.raises(GtokError, match=r"s.gtok: cannot write it: no space left on device; nothing was written \(the existing"):
        write_shard(path, [("b", np.arange(7))], 10, None)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.gtok"]


def test_dtype_follows_vocabulary_size(tmp_path):
    small = write_shard(tmp_path / "a.gtok", [("x", np.array([65535]))], vocab_size=65536, fingerprint=FP)
    big = write_shard(tmp_path / "b.gtok", [("x", np.array([70000, 1]))], vocab_size=1_000_007, fingerprint=FP)
    assert ShardReader(small).dtype == np.dtype("<u2") and ShardReader(big).dtype == np.dtype("<u4")
    assert ShardReader(big)[0].tolist() == [70000, 1]


def test_no_labels_empty_records_and_empty_shard(tmp_path):
    r = ShardReader(write_shard(tmp_path / "e.gtok", [("a", np.array([], int)), ("b", np.array([3]))], 10, None))
    assert r.labels is None and r.fingerprint is None and [x.tolist() for x in r] == [[], [3]]
    empty = ShardReader(write_shard(tmp_path / "z.gtok", [], 10, FP))
    assert len(empty) == 0 and empty.names == []


def test_out_of_vocabulary_ids_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        write_shard(tmp_path / "o.gtok", [("a", np.array([10]))], 10, FP)
    assert not (tmp_path / "o.gtok").exists() and not list(tmp_path.iterdir())


def test_reads_gtars_files_as_one_record_shards():
    from gtars.utils import read_tokens_from_gtok

    for path in [GTARS / "peaks.gtok", GTARS / "tokens.gtok", *sorted((GENIML / "gtok_sample").glob("*.gtok"))]:
        r = ShardReader(path)
        assert len(r) == 1 and r.fingerprint is None and r.names == [path.stem]
        assert r[0].tolist() == list(read_tokens_from_gtok(str(path)))


@pytest.mark.parametrize("tokens", [[0, 1, 65535], [0, 1, 65536, 2**32 - 1], []])
def test_export_is_read_back_equal_by_gtars(tmp_path, tokens):
    from gtars.utils import read_tokens_from_gtok, write_tokens_to_gtok

    ours = export_gtars(np.array(tokens, dtype=np.int64), tmp_path / "ours.gtok")
    assert list(read_tokens_from_gtok(str(ours))) == tokens
    write_tokens_to_gtok(str(tmp_path / "theirs.gtok"), tokens)
    assert ours.read_bytes() == (tmp_path / "theirs.gtok").read_bytes()


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_shard(tmp_path / "s.gtok", [("old", np.array([1, 2]))], 10, FP)
    before = path.read_bytes()
    with pytest.raises(RuntimeError), ShardWriter(path, 10, FP) as w:
        w.add("new", np.array([3]))
        raise RuntimeError("boom")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.gtok"]


def test_killed_writer_leaves_nothing_at_the_output_path(tmp_path):
    out = tmp_path / "killed.gtok"
    code = (
        "import sys, time, numpy as np\n"
        "from gtok.formats.shard import ShardWriter\n"
        "w = ShardWriter(sys.argv[1], 1000, None)\n"
        "w.add('a', np.arange(100))\n"
        "print('writing', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert [name.split(".")[-1] for name in left] == ["lock", "tmp"] and all(n.startswith(".killed.gtok.") for n in left)
    write_shard(out, [("b", np.array([1]))], 1000, None)  # the next writer clears what the killed one left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.gtok"]


def test_a_new_writer_removes_what_a_killed_writer_of_the_same_path_left(tmp_path):
    (tmp_path / ".s.gtok.abc123xy.tmp").write_bytes(b"half a shard")
    (tmp_path / ".other.gtok.abc123xy.tmp").write_bytes(b"another path's")
    write_shard(tmp_path / "s.gtok", [("a", np.array([1]))], 10, FP)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.gtok.abc123xy.tmp", "s.gtok"]


@pytest.fixture
def shard_bytes(tmp_path):
    path = write_shard(tmp_path / "c.gtok", sample_records(np.random.default_rng(1)), 1000, FP)
    return path, path.read_bytes()


def corrupt(path, data: bytes) -> None:
    path.write_bytes(data)


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda b: b[:-7], "truncated or padded"),
        (lambda b: b[:100], "shorter than the 128-byte header"),
        (lambda b: b"", "an empty file, not a .gtok shard"),
        (lambda b: b"GTOX" + b[4:], "magic bytes 'GTOK' are missing"),
        (lambda b: b[:4] + b"\x07" + b[5:], "unknown .gtok variant"),
        (lambda b: b[:5] + b"\x09" + b[6:], "format version 9 is not supported"),
        (lambda b: b[:20] + b"\xff" + b[21:], "header is corrupt"),
    ],
)
def test_corrupt_shards_name_the_file(shard_bytes, mutate, words):
    path, data = shard_bytes
    corrupt(path, mutate(data))
    with pytest.raises(ShardFormatError) as err:
        ShardReader(path)
    assert str(err.value).startswith(f"{path}: ") and words in str(err.value), str(err.value)


@pytest.mark.parametrize("content, words", [
    (b"PK\x03\x04" + bytes(60), "is a zip archive (a PyTorch checkpoint?), not a .gtok shard; give a shard that 'gtok "
                                "tokenize' wrote, or a manifest (.json)."),
    (b"chr1\t10\t20\n", "is a text file (a BED file?), not a .gtok shard; give a shard that 'gtok tokenize' wrote"),
    (b"\x89HDF\r\n\x1a\n" + bytes(60), "is an HDF5 file (.h5ad?), not a .gtok shard"),
    (b"", "is an empty file, not a .gtok shard (a shard cut short?). Re-create it (e.g. rerun the tokenization job)."),
])
def test_a_file_of_another_kind_is_named_as_what_it_is(tmp_path, content, words):
    """A checkpoint or a BED file given as a shard was told to 'Re-create it (e.g. rerun the
    tokenization job)', as if a shard had been damaged."""
    path = tmp_path / "x.gtok"
    path.write_bytes(content)
    with pytest.raises(ShardFormatError) as err:
        ShardReader(path)
    assert str(err.value).startswith(f"{path}: {words}"), str(err.value)


def test_a_folder_given_as_a_shard_is_named_as_one(tmp_path):
    """It was 'cannot read the shard (Is a directory)'."""
    with pytest.raises(ShardFormatError) as err:
        ShardReader(tmp_path)
    assert str(err.value) == (f"{tmp_path}: is a folder, not a .gtok shard; give the shards in it ({tmp_path}/*.gtok), "
                              "or a manifest (.json).")


def test_a_broken_names_table_is_refused_at_open(shard_bytes):
    import struct

    from gtok.formats.shard import HEADER

    path, data = shard_bytes
    names_at = HEADER.unpack_from(data)[11]
    corrupt(path, data[: names_at + 8] + struct.pack("<Q", 2**40) + data[names_at + 16 :])
    with pytest.raises(ShardFormatError, match="c.gtok: the names or labels table is corrupt"):
        ShardReader(path)


def test_flipped_token_byte_is_caught_by_verify(shard_bytes):
    path, data = shard_bytes
    flipped = bytearray(data)
    flipped[HEADER_SIZE + 11] ^= 0xFF
    corrupt(path, bytes(flipped))
    reader = ShardReader(path)  # opening checks structure only, to stay O(records)
    with pytest.raises(ShardFormatError, match="token data is corrupt"):
        reader.verify()


def test_truncated_gtars_file(tmp_path):
    p = tmp_path / "t.gtok"
    p.write_bytes(b"GTOK\x02" + b"\x01\x00\x00")
    with pytest.raises(ShardFormatError, match="t.gtok: gtars token file is truncated"):
        ShardReader(p)


def test_missing_shard(tmp_path):
    with pytest.raises(ShardFormatError, match="nope.gtok: no such shard file"):
        ShardReader(tmp_path / "nope.gtok")


def test_readers_pickle_by_path(tmp_path):
    import pickle

    path = write_shard(tmp_path / "p.gtok", [("a", np.array([1, 2, 3]))], 10, FP)
    again = pickle.loads(pickle.dumps(ShardReader(path)))
    assert again[0].tolist() == [1, 2, 3]


# -- the metadata section ----------------------------------------------------------------------------

META = ShardMeta("pbmc", UniverseRecord("/data/u.gtokidx", "12" * 32, FP, "/data/u.bed", "34" * 32), "0.1.0", {"h5ad": 1})


def test_metadata_round_trips_and_its_bytes_are_checked(tmp_path):
    records = sample_records(np.random.default_rng(2), n=5)
    path = write_shard(tmp_path / "m.gtok", records, 1000, FP, META)
    r = ShardReader(path)
    assert r.meta == META and r.dataset == "pbmc" and r.names == [n for n, _, _ in records]
    r.verify()  # the tables' CRC covers the metadata too, as readers that do not know it compute it
    assert ShardReader(write_shard(tmp_path / "n.gtok", records, 1000, FP)).meta is None
    data = path.read_bytes()
    flipped = bytearray(data)
    flipped[-3] ^= 0x01  # inside the metadata's JSON
    path.write_bytes(bytes(flipped))
    with pytest.raises(ShardFormatError, match="m.gtok: the metadata section is corrupt"):
        ShardReader(path)


def rewrite_header(data: bytes, **changes) -> bytes:
    """`data` with header fields changed (by position in HEADER) and the header CRC made right again."""
    import zlib

    fields = list(HEADER.unpack_from(data))
    for index, value in changes.items():
        fields[int(index.removeprefix("f"))] = value
    head = HEADER.pack(*fields[:-1], 0)
    return HEADER.pack(*fields[:-1], zlib.crc32(head[:-4])) + data[HEADER.size:]


@pytest.mark.parametrize("changes, words", [
    ({"f4": 0}, "reserved bytes are not zero"),  # metadata present, flag bit cleared
    ({"f17": 5}, "do not fit the file"),  # a metadata length that is not the section's
    ({"f4": 0x82}, r"unknown flags 0x80"),  # a flag this gtok does not know: refused, not ignored
    ({"f12": 8}, "do not fit the file"),  # labels that do not start where the names end
])
def test_a_header_that_misplaces_the_metadata_is_refused(tmp_path, changes, words):
    path = write_shard(tmp_path / "m.gtok", sample_records(np.random.default_rng(3), n=4), 1000, FP, META)
    path.write_bytes(rewrite_header(path.read_bytes(), **changes))
    with pytest.raises(ShardFormatError, match=words):
        ShardReader(path)


def test_malformed_metadata_is_named(tmp_path):
    import zlib

    path = write_shard(tmp_path / "m.gtok", [("a", np.array([1]))], 10, FP, ShardMeta(dataset="x"))
    data = path.read_bytes()
    bad = b'{"dataset": 7}'
    meta_len = HEADER.unpack_from(data)[17]
    body = data[:-meta_len] + bad
    crc_tables = zlib.crc32(body[HEADER.unpack_from(data)[11]:])
    path.write_bytes(rewrite_header(body, f16=crc_tables, f17=len(bad), f18=zlib.crc32(bad), f13=len(body)))
    with pytest.raises(ShardFormatError, match=r"metadata section is malformed \(dataset 7: a dataset name"):
        ShardReader(path)


def test_a_record_name_that_is_not_utf8_is_named_not_a_decode_traceback(tmp_path):
    path = write_shard(tmp_path / "n.gtok", [("caf\u00e9", np.array([1]))], 10, FP)
    data = path.read_bytes()
    path.write_bytes(data.replace("caf\u00e9".encode(), b"caf\xc3\x28"))  # a broken 2-byte sequence
    with pytest.raises(ShardFormatError, match=r"n\.gtok: a record name or label is not valid UTF-8") as caught:
        list(ShardReader(path).names)
    assert isinstance(caught.value.__context__, UnicodeDecodeError)


# -- hostile input (once tests/test_edge_cases.py): one-line errors or correct tokens, nothing touched --


def test_every_damaged_byte_of_a_shard_is_refused_by_verify_and_training(tmp_path):
    rng = np.random.default_rng(0)
    records = [(f"r{i}", rng.integers(0, 900, int(rng.integers(1, 9))), "AB"[i % 2]) for i in range(5)]
    path = write_shard(tmp_path / "s.gtok", records, 1007, "ab" * 32)
    manifest = tmp_path / "m.json"
    write_manifest(manifest, [path])
    entry = load_manifest(manifest).entries[0]
    good = path.read_bytes()
    assert len(good) % 8 and (len(good) - 128) > 0
    for i in range(len(good)):
        damaged = bytearray(good)
        damaged[i] ^= 0x04
        path.write_bytes(bytes(damaged))
        with pytest.raises(ShardFormatError):  # what training checks before its first step (CRCs, no sha256)
            check_shard(entry, manifest, integrity=True)
    path.write_bytes(good)
    check_shard(entry, manifest, integrity=True)


def test_changed_padding_byte_is_refused_on_opening(tmp_path):
    path = write_shard(tmp_path / "p.gtok", [("a", np.array([1, 2, 3]))], 100, None)  # 6 token bytes, 2 padding
    data = bytearray(path.read_bytes())
    data[128 + 6] = 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ShardFormatError, match="p.gtok: the alignment padding after the token data is not zero"):
        ShardReader(path)


def test_a_second_writer_leaves_the_live_temporary_file_of_the_first_alone(tmp_path):
    out = tmp_path / "s.gtok"
    code = (
        "import sys, time, numpy as np\n"
        "from gtok.formats.shard import ShardWriter\n"
        "with ShardWriter(sys.argv[1], 1000, None) as w:\n"
        "    w.add('first', np.arange(100))\n"
        "    print('writing', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    first = subprocess.Popen([sys.executable, "-c", code, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert first.stdout.readline().strip() == "writing"
    write_shard(out, [("second", np.arange(5))], 1000, None)  # meanwhile, a second writer of the same path
    assert ShardReader(out).names == ["second"]
    _, errors = first.communicate("go\n", timeout=60)
    assert first.returncode == 0 and "Traceback" not in errors
    assert ShardReader(out).names == ["first"]  # the first writer finished: the last complete shard wins
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.gtok"]


def test_clean_up_touches_only_the_temporaries_of_its_own_target(tmp_path):
    other = tmp_path / ".s.gtok.abcdefgh.tmp"  # a temporary of the target "s.gtok", not of "s"
    other.write_bytes(b"someone else's")
    write_shard(tmp_path / "s", [("a", np.array([1]))], 10, None)
    assert other.read_bytes() == b"someone else's"
