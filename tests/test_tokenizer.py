"""The Tokenizer's API: vocabulary, duplicates, fingerprints and in-memory torch encoding."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import BEDS, GENIML, GTARS, gtars_tokens, gtok, write_bed

from gtok import Tokenizer
from gtok.errors import GtokError

UNIVERSE = [("chr1", 100, 200), ("chr1", 150, 250), ("chr1", 300, 400), ("chr1", 100, 150), ("chr2", 0, 10)]


@pytest.fixture
def tok(tmp_path) -> Tokenizer:
    return Tokenizer.from_bed(write_bed(tmp_path / "u.bed", UNIVERSE))


def test_overlap_rules(tok):
    unk = tok.unk_token_id
    assert unk == 5 and tok.vocab_size == 12
    assert tok.tokenize([("chr1", 199, 200)]).tolist() == [0, 1]
    assert tok.tokenize([("chr1", 200, 300)]).tolist() == [1]  # touching 300 does not count
    assert tok.tokenize([("chr1", 0, 100)]).tolist() == [unk]
    assert tok.tokenize([("chr1", 101, 101)]).tolist() == [3, 0]  # zero-length query inside
    assert tok.tokenize([("chr1", 120, 320)]).tolist() == [3, 0, 1, 2]  # by universe (start, end)
    assert tok.tokenize([("chrZ", 0, 10**9)]).tolist() == [unk]
    assert tok.tokenize([("chrZ", 0, 9), ("chr2", 5, 6), ("chr1", 310, 311)]).tolist() == [4, 2]
    assert tok.tokenize([]).tolist() == [unk]


def test_special_token_ids(tok):
    n = 5
    assert (tok.unk_token_id, tok.pad_token_id, tok.mask_token_id, tok.cls_token_id,
            tok.eos_token_id, tok.bos_token_id, tok.sep_token_id) == tuple(range(n, n + 7))
    assert tok.decode([0, n, n + 6]) == ["chr1:100-200", "<unk>", "<sep>"]


def test_duplicates_keep_first_id_and_warn(tmp_path):
    u = write_bed(tmp_path / "dup.bed", [("chr1", 100, 200), ("chr1", 300, 400), ("chr1", 100, 200), ("chr1", 500, 600)])
    with pytest.warns(UserWarning, match="1 duplicate region"):
        t = Tokenizer.from_bed(u, cache_dir="off")
    assert t.vocab_size == 3 + 7
    assert t.tokenize([("chr1", 0, 10**9)]).tolist() == [0, 1, 2]


def test_geniml_universe_with_duplicates_matches_first_occurrence_ids():
    with pytest.warns(UserWarning, match="duplicate"):
        t = Tokenizer.from_bed(GENIML / "universe.bed", cache_dir="off")
    lines = [tuple(line.split("\t")[:3]) for line in (GENIML / "universe.bed").read_text().splitlines()]
    first_id = {}
    for row in lines:
        first_id.setdefault(row, len(first_id))
    assert t.vocab_size == len(first_id) + 7
    regions = t.universe.region_names(range(len(first_id)))  # every id, in id order
    assert regions == [f"{c}:{s}-{e}" for c, s, e in first_id]


def test_fingerprint_changes_iff_vocabulary_changes(tmp_path):
    a = Tokenizer.from_bed(write_bed(tmp_path / "a.bed", UNIVERSE), cache_dir="off")
    same = tmp_path / "same.bed.gz"
    import gzip

    same.write_bytes(gzip.compress(("track x\n" + "".join(f"{c} {s} {e}\n" for c, s, e in UNIVERSE)).encode()))
    assert Tokenizer.from_bed(same, cache_dir="off").fingerprint == a.fingerprint  # same vocabulary, other file
    reordered = write_bed(tmp_path / "r.bed", UNIVERSE[::-1])
    moved = write_bed(tmp_path / "m.bed", UNIVERSE[:-1] + [("chr2", 0, 11)])
    renamed = write_bed(tmp_path / "n.bed", UNIVERSE[:-1] + [("chr3", 0, 10)])
    prints = {Tokenizer.from_bed(p, cache_dir="off").fingerprint for p in (reordered, moved, renamed)}
    assert a.fingerprint not in prints and len(prints) == 3
    assert re.fullmatch("[0-9a-f]{64}", a.fingerprint)
    expected = hashlib.sha256(b"gtok-vocabulary-v1\0" + b"chr1\0chr2\0\0")  # the documented definition, by hand
    names = sorted({c for c, _, _ in UNIVERSE})
    codes = np.array([names.index(c) for c, _, _ in UNIVERSE], "<i4")
    for arr in (codes, np.array([s for _, s, _ in UNIVERSE], "<i8"), np.array([e for _, _, e in UNIVERSE], "<i8")):
        expected.update(arr.tobytes())
    assert names == ["chr1", "chr2"] and a.fingerprint == expected.hexdigest()


def test_universe_cache_is_used_and_equivalent(tmp_path):
    u = GENIML / "universe.uniq.bed"
    cold = Tokenizer.from_bed(u, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("universe-*.gtokidx"))) == 1
    warm = Tokenizer.from_bed(u, cache_dir=tmp_path)
    q = GENIML / "to_tokenize.bed"
    assert warm.fingerprint == cold.fingerprint and warm.tokenize(q).tolist() == cold.tokenize(q).tolist()
    cache = next(tmp_path.glob("universe-*.gtokidx"))
    for damaged in (cache.read_bytes()[:-100], b"garbage"):  # truncated, or not a cache at all
        cache.write_bytes(damaged)
        assert Tokenizer.from_bed(u, cache_dir=tmp_path).tokenize(q).tolist() == [147, 95, 133]


def test_a_folder_in_place_of_the_cache_entry_is_left_alone(tmp_path):
    """The cache is an optimisation: a folder where its entry would be is neither read nor
    replaced, and the universe is built from the BED instead of failing with a traceback."""
    u = GENIML / "universe.uniq.bed"
    Tokenizer.from_bed(u, cache_dir=tmp_path)
    entry = next(tmp_path.glob("universe-*.gtokidx"))
    entry.unlink()
    entry.mkdir()
    (entry / "keep").write_text("mine")
    for _ in range(2):
        assert Tokenizer.from_bed(u, cache_dir=tmp_path).tokenize(GENIML / "to_tokenize.bed").tolist() == [147, 95, 133]
    assert (entry / "keep").read_text() == "mine"


def test_encode_returns_long_tensors(tok, tmp_path):
    bed = write_bed(tmp_path / "q.bed", [("chr1", 310, 311), ("chr1", 120, 130)])
    t = tok.encode(bed)
    assert t.dtype == torch.long and t.tolist() == [3, 0, 2]  # the file is sorted first
    assert tok.encode([("chr1", 310, 311), ("chr1", 120, 130)], return_tensors=None) == [2, 3, 0]
    df = pd.DataFrame({"chrom": ["chr1"], "start": [120], "end": [130], "name": ["x"]})
    assert tok.encode(df).tolist() == [3, 0]


def test_a_dataframes_coordinates_are_its_columns_of_those_names_wherever_they_are(tok):
    """A frame with other columns before or between the coordinates gives the tokens of its
    chrom/start/end columns (any case, chr or seqnames, stop); one without such names (a BED file
    read with header=None) gives its first three; one with only some of them is refused."""
    rows = {"chrom": ["chr1", "chr1"], "start": [310, 120], "end": [311, 130]}
    expected = tok.encode(list(zip(*rows.values())), return_tensors=None)
    shuffled = pd.DataFrame({"peak_id": [7, 8], "End": rows["end"], "Chromosome": rows["chrom"], "Start": rows["start"]})
    assert tok.encode(shuffled, return_tensors=None) == expected
    seqnames = pd.DataFrame({"name": ["a", "b"], "seqnames": rows["chrom"], "start": rows["start"], "stop": rows["end"]})
    assert tok.encode(seqnames, return_tensors=None) == expected
    assert tok.encode(pd.DataFrame(list(zip(*rows.values()))), return_tensors=None) == expected
    for names in (["chrom", "chromStart", "chromEnd"], ["#chrom", "start", "end"], ["seqname", "begin", "end"]):
        assert tok.encode(pd.DataFrame(list(zip(*rows.values())), columns=names), return_tensors=None) == expected
    with pytest.raises(GtokError, match=r"the DataFrame has 2 chromosome columns \('chr', 'chrom'\); keep one"):
        tok.encode(pd.DataFrame({"chr": rows["chrom"], **rows}))
    with pytest.raises(GtokError, match=r"the DataFrame has no start or end column \(its columns: 'chrom', 'from', 'to'\)"):
        tok.encode(pd.DataFrame({"chrom": rows["chrom"], "from": rows["start"], "to": rows["end"]}))
    for extra in ({"Start": [0, 0]}, {"#chrom": ["chr2", "chr2"]}):  # one name in two spellings: neither is guessed
        with pytest.raises(GtokError, match=r"the DataFrame has 2 (start|chromosome) columns .*; keep one"):
            tok.encode(pd.DataFrame({**rows, **extra}))


@pytest.mark.parametrize("kind", ["object", "category"])
def test_a_missing_chromosome_name_in_a_frame_is_refused_not_read_as_the_text_none(tok, kind):
    """(A PyRanges cannot hold one: it turns a missing name into the text 'nan' when it is made.)"""
    frame = pd.DataFrame({"chrom": ["chr1", None], "start": [120, 5], "end": [130, 6]}).astype({"chrom": kind})
    with pytest.raises(GtokError, match=r"the DataFrame, row 1: the chromosome name is missing"):
        tok.encode(frame)


@pytest.mark.parametrize("max_length", [0, -1, 2.5, True])
def test_a_crop_to_nothing_is_refused(tok, max_length):
    with pytest.raises(ValueError, match="max_length must be None or a whole number of at least 1"):
        tok.encode_batch([[("chr1", 120, 130)]], max_length=max_length)


def test_encode_pyranges_keeps_its_order(tok):
    import pyranges as pr

    gr = pr.PyRanges(chromosomes=["chr1", "chr2"], starts=[310, 5], ends=[311, 6])
    assert tok.encode(gr).tolist() == tok.tokenize(list(zip(gr.df.Chromosome.astype(str), gr.df.Start, gr.df.End))).tolist()


def test_encode_batch_pads(tok):
    batch = tok.encode_batch([[("chr1", 120, 320)], [("chr1", 310, 311)], []])
    assert batch["input_ids"].tolist() == [[3, 0, 1, 2], [2, 6, 6, 6], [5, 6, 6, 6]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 0, 0, 0], [1, 0, 0, 0]]
    cut = tok.encode_batch([[("chr1", 120, 320)]], max_length=2)
    assert cut["input_ids"].tolist() == [[3, 2]]  # spread over the document (gtok.crop), not its first tokens


def test_bad_in_memory_regions(tok):
    with pytest.raises(GtokError, match="the region list, row 1: start 9 is greater than end 3"):
        tok.tokenize([("chr1", 1, 2), ("chr1", 9, 3)])
    with pytest.raises(TypeError):
        tok.tokenize(42)


def test_importing_gtok_and_tokenizing_do_not_import_torch(tmp_path):
    code = (
        "import sys, gtok; t = gtok.Tokenizer.from_bed(sys.argv[1]); t.tokenize(sys.argv[2]);"
        "assert 'torch' not in sys.modules and 'lightning' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(GTARS / "peaks.bed"), str(GTARS / "to_tokenize.bed")], check=True)


def test_tokenize_many_matches_one_by_one(tok):
    docs = [[("chr1", 120, 320)], [], [("chr2", 1, 2), ("chr1", 310, 311)], [("chr9", 1, 2)]]
    from gtok.tokenizer import to_intervals

    ids, lengths = tok.tokenize_many([to_intervals(d) for d in docs])
    split = np.split(ids, np.cumsum(lengths)[:-1])
    assert [s.tolist() for s in split] == [tok.tokenize(d).tolist() for d in docs]


# -- hostile input (once tests/test_edge_cases.py): one-line errors or correct tokens, nothing touched --


@pytest.mark.slow
def test_every_damaged_byte_of_the_universe_cache_is_caught(tmp_path):
    universe, query = GTARS / "peaks.bed", GTARS / "to_tokenize.bed"
    cache_dir = tmp_path / "cache"
    expected = Tokenizer.from_bed(universe, cache_dir=cache_dir)
    tokens, fingerprint = expected.tokenize(query).tolist(), expected.fingerprint
    cache = next(cache_dir.glob("universe-*.gtokidx"))
    good = cache.read_bytes()
    for i in range(len(good)):
        damaged = bytearray(good)
        damaged[i] ^= 0x01
        cache.write_bytes(bytes(damaged))
        tok = Tokenizer.from_bed(universe, cache_dir=cache_dir)  # never a traceback: rebuilt instead
        assert tok.tokenize(query).tolist() == tokens and tok.fingerprint == fingerprint, i
        assert cache.read_bytes() == good, i  # and the damaged entry was replaced
    assert tokens == gtars_tokens(universe, query)


def test_duplicate_universe_warning_is_one_line(tmp_path):
    u = tmp_path / "dup.bed"
    u.write_text("chr1\t100\t200\nchr1\t100\t200\nchr1\t300\t400\n")
    proc = gtok("tokenize", "-q", "--no-cache", "-u", u, "-o", tmp_path / "d.gtok", BEDS[0])
    assert proc.returncode == 0
    assert proc.stderr.strip().splitlines() == [
        f"gtok tokenize: warning: {u}: 1 duplicate region line(s) ignored; each region keeps the id of its first line."
    ]


def test_errors_of_the_library_name_their_source():
    with pytest.raises(GtokError, match=r"the DataFrame, column 's', row 0: 1.5 is not a coordinate"):
        import pandas as pd

        Tokenizer.from_bed(GTARS / "peaks.bed", cache_dir="off").tokenize(pd.DataFrame({"c": ["chr1"], "s": [1.5], "e": [9]}))
