"""The vectorized BED parser: formats it accepts, and the exact errors for what it rejects."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from conftest import GENIML, GTARS, gtars_tokens, gtok, one_line_error

from gtok.errors import BedFormatError, GtokError
from gtok.sources.bed import Intervals, read_bed
from gtok.tokenizer import Tokenizer


def rows(iv: Intervals) -> list[tuple[str, int, int]]:
    return [(iv.chrom_names[c], int(s), int(e)) for c, s, e in zip(iv.codes, iv.starts, iv.ends)]


def test_reads_bed3_in_file_order(tmp_path):
    p = tmp_path / "a.bed"
    p.write_text("chr2\t5\t10\nchr1\t1\t2\nchr10\t0\t0\n")
    assert rows(read_bed(p)) == [("chr2", 5, 10), ("chr1", 1, 2), ("chr10", 0, 0)]


def test_skips_comments_track_browser_and_header_row(tmp_path):
    p = tmp_path / "h.bed"
    p.write_text("track name=x\nbrowser position chr1\n# comment\nchrom\tstart\tend\nchr1\t1\t2\n\nchr1\t3\t4\r\n")
    assert rows(read_bed(p)) == [("chr1", 1, 2), ("chr1", 3, 4)]


@pytest.mark.parametrize("name", ["s1_a.bed", "s1_a.bed.gz", "s1_a_coments.bed", "s1_a_headers.bed"])
def test_geniml_header_variants_agree(name):
    assert rows(read_bed(GENIML / "bed_headers" / name)) == rows(read_bed(GENIML / "bed_headers" / "s1_a.bed"))


def test_bed12_and_long_chromosome_names(tmp_path):
    long = "chrUn_KI270442v1_with_a_very_long_suffix"
    p = tmp_path / "x.bed"
    p.write_text(f"{long}\t1\t9\tname\t0\t+\t1\t9\t0\t1\t8,\t0,\nchr1\t2\t3\tn\t5\n{long}\t4\t5\n")
    assert rows(read_bed(p)) == [(long, 1, 9), ("chr1", 2, 3), (long, 4, 5)]
    bed12 = read_bed(GENIML / "universe.bed")
    text = [line.split("\t")[:3] for line in (GENIML / "universe.bed").read_text().splitlines() if line.strip()]
    assert rows(bed12) == [(c, int(s), int(e)) for c, s, e in text]


def test_many_chromosomes_factorize_exactly(tmp_path):
    rng = np.random.default_rng(1)
    names = [f"scaffold_{i}" for i in rng.integers(0, 5000, size=3000)]
    p = tmp_path / "many.bed"
    p.write_text("".join(f"{n}\t{i}\t{i + 1}\n" for i, n in enumerate(names)))
    assert [c for c, _, _ in rows(read_bed(p))] == names


def test_one_very_long_chromosome_name_costs_memory_of_its_own_lines_only(tmp_path):
    """Names were compared as rows as wide as the longest name, one per line: one 20 kB name (a
    FASTA header pasted as a chromosome) among 10,000 lines took 400 MB, among a million 20 GB."""
    import tracemalloc

    long = "chrUn_" + "x" * 20_000
    lines = [f"chr{i % 3 + 1}\t{i}\t{i + 1}\n" for i in range(10_000)]
    lines[5_000] = f"{long}\t7\t9\n"
    lines[7_000] = f"{long}\t3\t4\n"
    p = tmp_path / "long.bed"
    p.write_text("".join(lines))
    tracemalloc.start()
    try:
        parsed = read_bed(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, f"{peak / 2**20:.0f} MiB"
    assert [r for r in rows(parsed) if r[0] == long] == [(long, 7, 9), (long, 3, 4)]
    assert [c for c, _, _ in rows(parsed)] == [line.split("\t")[0] for line in lines]


def test_gzip_is_detected_by_content(tmp_path):
    p = tmp_path / "plain_name.bed"
    p.write_bytes(gzip.compress(b"chr1\t1\t2\n"))
    assert rows(read_bed(p)) == [("chr1", 1, 2)]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("chr1\t1\t2\nchr1\t5\n", 2, "at least 3 columns"),
        ("chr1\t1\t2\nchr1\t1\t2\nchr1\tx\t9\n", 3, "'x' is not a non-negative integer"),
        ("chr1\t1\t2\nchr1\t1.5\t9\n", 2, "'1.5' is not a non-negative integer"),
        ("chr1\t-5\t9\n", 1, "start coordinate -5 is negative"),
        ("chr1\t1\t2\n#c\nchr1\t9\t3\n", 3, "start 9 is greater than end 3"),
        ("\t1\t2\n", 1, "chromosome name is empty"),
        ("chr1 1\t2\t3\n", 1, "both tabs and spaces separate its first three columns"),
        ("chr1\t1\t2\nchr1\t1\t2 \n", 2, "both tabs and spaces separate its first three columns"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, words):
    p = tmp_path / "bad.bed"
    p.write_text(text)
    with pytest.raises(BedFormatError) as err:
        read_bed(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}, line {line}: ") and words in msg, msg


def test_lines_that_mix_tabs_and_spaces_are_refused_as_gtars_reads_them_otherwise(tmp_path):
    """gtars splits a BED line on tabs alone: 'chr 1<TAB>100<TAB>200' is a region of chromosome
    'chr 1' there and 'chr1<TAB>100<TAB>200 ' an error, while splitting on either delimiter read
    chr:1-100 and chr1:100-200. Such a line is refused; tabs alone or spaces alone are read."""
    u = tmp_path / "u.bed"
    u.write_text("chr\t0\t150\nchr1\t100\t200\n")
    bed = tmp_path / "q.bed"
    bed.write_text("chr 1\t100\t200\n")
    assert gtars_tokens(u, bed) == [2]  # <unk>: chromosome 'chr 1' is not in the universe
    with pytest.raises(BedFormatError, match=r"q.bed, line 1: both tabs and spaces separate its first three columns"):
        read_bed(bed)
    bed.write_text("chr1\t100\t200\tname with spaces\nchr1 100 200 name\n")
    assert Tokenizer.from_bed(u, cache_dir="off").tokenize(bed).tolist() == [1, 1]


def test_zero_padded_coordinates_are_read_as_gtars_reads_them(tmp_path):
    """gtars parses coordinates as u32 and accepts any number of leading zeros."""
    from conftest import gtars_tokens

    from gtok import Tokenizer

    p = tmp_path / "padded.bed"
    p.write_text("chr1\t0000000000100\t" + "0" * 30 + "150\nchr1\t007\t8\nchr1\t0\t000\n")
    assert rows(read_bed(p)) == [("chr1", 100, 150), ("chr1", 7, 8), ("chr1", 0, 0)]
    universe = GENIML / "universe.uniq.bed"
    assert Tokenizer.from_bed(universe).tokenize(p).tolist() == gtars_tokens(universe, p)
    p.write_text("chr1\t1\t" + "0" * 30 + "4294967296\n")
    with pytest.raises(BedFormatError, match="line 1: end coordinate 0+4294967296 is too large"):
        read_bed(p)


def test_chromosome_names_that_are_not_utf8_are_refused_at_their_first_line(tmp_path):
    """gtars refuses such a file; decoded with replacement, two names would become one."""
    p = tmp_path / "latin1.bed"
    p.write_bytes(b"chr1\t1\t2\nchr\xe91\t1\t2\nchr\xff\t1\t2\nchr\xe91\t5\t6\n")
    with pytest.raises(BedFormatError, match=r"latin1.bed, line 2: the chromosome name b'chr\\xe91' is not UTF-8"):
        read_bed(p)
    p.write_bytes("chr\u00e91\t1\t2\n".encode())
    assert rows(read_bed(p)) == [("chr\u00e91", 1, 2)]


def test_gtars_scored_fixture_with_end_before_start_is_rejected():
    with pytest.raises(BedFormatError, match=r"peaks\.scored\.bed, line 25: start 49155935 is greater than end 4915618"):
        read_bed(GTARS / "peaks.scored.bed")


def test_empty_file_is_an_error_but_many_headers_are_fine(tmp_path):
    with pytest.raises(BedFormatError, match="s1_empty.bed: no regions found"):
        read_bed(GENIML / "bed_bad" / "s1_empty.bed")
    only_headers = tmp_path / "only_headers.bed"
    only_headers.write_text("track x\n# nothing\nchrom\tstart\tend\n")
    with pytest.raises(BedFormatError, match="only_headers.bed: no regions found"):
        read_bed(only_headers)
    assert len(read_bed(GENIML / "bed_bad" / "s1_many_headers.bed")) > 0


def test_missing_truncated_and_binary_files(tmp_path):
    with pytest.raises(GtokError, match="nope.bed: no such file"):
        read_bed(tmp_path / "nope.bed")
    trunc = tmp_path / "t.bed.gz"
    trunc.write_bytes(gzip.compress(b"chr1\t1\t2\n" * 1000)[:40])
    with pytest.raises(GtokError, match="t.bed.gz: not a readable gzip file"):
        read_bed(trunc)
    garbage = tmp_path / "g.bed"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(GtokError, match="g.bed: looks like a binary file"):
        read_bed(garbage)


def test_a_binary_file_of_a_known_kind_is_named(tmp_path):
    """A shard or a checkpoint given as a universe or BED file was only 'a binary file'."""
    shard = tmp_path / "s.bed"
    shard.write_bytes(b"GTOK\x01" + bytes(200))
    with pytest.raises(GtokError, match=r"^.*s.bed: is a .gtok shard, not a text BED file\.$"):
        read_bed(shard)


def test_a_utf16_bed_file_is_named_as_such_not_as_binary(tmp_path):
    """Windows' 'Unicode' text has a zero byte beside every ASCII character: it was called 'a
    binary file', which hid both what it is and how to convert it."""
    path = tmp_path / "u16.bed"
    path.write_bytes("chr1\t10\t20\n".encode("utf-16"))
    with pytest.raises(GtokError, match=r"^.*u16.bed: is UTF-16 text, but a BED file must be ASCII or UTF-8 text; "
                                        r"convert it first, e.g. with  iconv -f UTF-16 -t UTF-8 IN > OUT\.$"):
        read_bed(path)


@pytest.mark.parametrize(("encoding", "form"), [("utf-32-le", "UTF-32LE"), ("utf-32-be", "UTF-32BE")])
def test_a_utf32_bed_file_without_its_mark_is_named_as_such(tmp_path, encoding, form):
    """UTF-32 without a byte-order mark (three zero bytes beside every ASCII character) was called
    'a binary file', where docs/tokenization.md says UTF-32 is told by its mark or its zero bytes."""
    path = tmp_path / "u32.bed"
    path.write_bytes("chr1\t10\t20\n".encode(encoding))
    with pytest.raises(GtokError, match=rf"u32.bed: is {form} text, but a BED file must be ASCII or UTF-8 text"):
        read_bed(path)
    path.write_bytes(b"chr1\x00\x00\x00\t\x00\x00\x00")  # a zero byte's pattern broken: binary as before
    with pytest.raises(GtokError, match="looks like a binary file"):
        read_bed(path)


def test_sorted_like_files_is_stable_by_bytes_then_start():
    iv = Intervals.from_columns(["chr2", "chr10", "chr2", "chr1", "chr2"], [5, 1, 5, 9, 1], [6, 2, 9, 10, 2])
    assert rows(iv.sorted_like_files()) == [
        ("chr1", 9, 10), ("chr10", 1, 2), ("chr2", 1, 2), ("chr2", 5, 6), ("chr2", 5, 9)
    ]


# -- hostile input (once tests/test_edge_cases.py): one-line errors or correct tokens, nothing touched --


def test_huge_coordinates_are_refused_in_queries_universes_and_h5ad(tmp_path):
    universe = tmp_path / "u.bed"
    universe.write_text("chr1\t100\t200\nchr2\t0\t50\n")
    query = tmp_path / "q.bed"
    query.write_text("chr1\t100\t150\nchr1\t17179869334\t17179869344\n")
    one_line_error(gtok("tokenize", "-q", "-u", universe, "-o", tmp_path / "q.gtok", query),
                   "q.bed, line 2: start coordinate 17179869334 is too large")
    bad_universe = tmp_path / "bad_u.bed"
    bad_universe.write_text("chr1\t100\t200\nchr1\t1\t17179869300\n")
    one_line_error(gtok("tokenize", "-q", "-u", bad_universe, "-o", tmp_path / "b.gtok", query),
                   "bad_u.bed, line 2: end coordinate 17179869300 is too large")
    edge = tmp_path / "edge.bed"  # gtars' own limit, 2**32 - 1, is accepted, and agrees with gtars
    edge.write_text("chr1\t4294967000\t4294967295\n")
    edge_u = tmp_path / "edge_u.bed"
    edge_u.write_text("chr1\t100\t200\nchr1\t4294967200\t4294967295\n")
    assert Tokenizer.from_bed(edge_u, cache_dir="off").tokenize(edge).tolist() == gtars_tokens(edge_u, edge) == [1]
    assert not (tmp_path / "q.gtok").exists() and not (tmp_path / "b.gtok").exists()


@pytest.mark.parametrize("first, words", [
    ("chr1  100\t200\n", "line 1: start coordinate is empty"),
    (" chr1\t100\t200\n", "line 1: the chromosome name is empty"),
    ("\tchr1\t100\t200\n", "line 1: the chromosome name is empty"),
    ("chr1\tabc\t200\n", "line 1: start coordinate 'abc' is not a non-negative integer"),  # one column of names is no header
    ("chr1\t100\tend\n", "line 1: end coordinate 'end' is not a non-negative integer"),
])
def test_a_malformed_first_line_is_an_error_not_a_header(tmp_path, inputs, first, words):
    for extra in ("", "chr1\t300\t400\n"):  # alone (it once said "no regions found") or before a region
        bed = tmp_path / "h.bed"
        bed.write_text(first + extra)
        one_line_error(gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", tmp_path / "h.gtok", bed),
                       "h.bed, " + words)
        assert not (tmp_path / "h.gtok").exists()


def test_real_header_lines_are_still_skipped(tmp_path):
    bed = tmp_path / "ok.bed"
    bed.write_text("track name=x\n# c\nchrom\tstart\tend\nchr1\t100\t200\n")
    u = tmp_path / "u.bed"
    u.write_text("chr1\t150\t160\n")
    assert Tokenizer.from_bed(u, cache_dir="off").tokenize(bed).tolist() == [0]


@pytest.mark.parametrize("line, words", [
    ("chr1\t1234567890123456789\t1234567890123456799\n", "start coordinate 1234567890123456789 is too large"),
    ("chr1\t\u0661\u0660\u0660\t200\n", "start coordinate '\u0661\u0660\u0660' is not a non-negative integer (only the digits 0-9)"),
])
def test_number_messages(tmp_path, inputs, line, words):
    bed = tmp_path / "n.bed"
    bed.write_text(line)
    one_line_error(gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", tmp_path / "n.gtok", bed),
                   "n.bed, line 1: " + words)
