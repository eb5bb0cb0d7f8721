"""The vectorized BED parser: formats it accepts, and the exact errors for what it rejects."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from conftest import GENIML, GTARS

from gtok.errors import BedFormatError, GtokError
from gtok.sources.bed import Intervals, read_bed


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
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, words):
    p = tmp_path / "bad.bed"
    p.write_text(text)
    with pytest.raises(BedFormatError) as err:
        read_bed(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}, line {line}: ") and words in msg, msg


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


def test_sorted_like_files_is_stable_by_bytes_then_start():
    iv = Intervals.from_columns(["chr2", "chr10", "chr2", "chr1", "chr2"], [5, 1, 5, 9, 1], [6, 2, 9, 10, 2])
    assert rows(iv.sorted_like_files()) == [
        ("chr1", 9, 10), ("chr10", 1, 2), ("chr2", 1, 2), ("chr2", 5, 6), ("chr2", 5, 9)
    ]
