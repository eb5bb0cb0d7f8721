"""Token-for-token parity with gtars, the reference tokenizer, on fixtures and random data."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import GENIML, GTARS, gtars_regions, gtars_tokens, write_bed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtok import Tokenizer

FIXTURE_PAIRS = [
    (GENIML / "universe.uniq.bed", GENIML / "to_tokenize.bed"),
    (GTARS / "peaks.bed", GTARS / "to_tokenize.bed"),
    (GTARS / "peaks.bed.gz", GTARS / "to_tokenize.bed"),
    (GTARS / "peaks.bed", GTARS / "peaks.bed.gz"),
    *[(GENIML / "universe.uniq.bed", p) for p in sorted((GENIML / "to_tokenize").glob("*.bed"))],
    *[(GENIML / "universe.uniq.bed", p) for p in sorted((GENIML / "hg38_sample").glob("*.bed"))],
    *[(GENIML / "universe.uniq.bed", p) for p in sorted((GENIML / "bed_headers").glob("*"))],
    *[(GENIML / "universe.uniq.bed", GENIML / n) for n in ("s1_a.bed", "s1_b.bed", "s2_a.bed")],
    (GENIML / "universe.uniq.bed", GENIML / "bed_bad" / "s1_many_headers.bed"),
]


@pytest.mark.parametrize("universe, query", FIXTURE_PAIRS, ids=lambda p: p.name)
def test_fixture_parity(universe: Path, query: Path):
    assert Tokenizer.from_bed(universe).tokenize(query).tolist() == gtars_tokens(universe, query)


def test_known_values_and_special_tokens():
    tok = Tokenizer.from_bed(GENIML / "universe.uniq.bed")
    assert tok.tokenize(GENIML / "to_tokenize.bed").tolist() == [147, 95, 133]
    assert tok.vocab_size == 2385
    ref = __import__("gtars.tokenizers", fromlist=["Tokenizer"]).Tokenizer(str(GENIML / "universe.uniq.bed"))
    for attr in ("unk", "pad", "mask", "cls", "eos", "bos", "sep"):
        assert getattr(tok, f"{attr}_token_id") == getattr(ref, f"{attr}_token_id"), attr
    assert tok.vocab_size == ref.vocab_size


CHROMS = ["chr1", "chr2", "chr10", "chrX", "chr1_KI270706v1_random"]


def regions(max_size: int, long_share: float = 0.1):
    short = st.tuples(st.sampled_from(CHROMS), st.integers(0, 5000), st.integers(0, 400))
    long = st.tuples(st.sampled_from(CHROMS), st.integers(0, 5000), st.integers(400, 20000))
    one = st.one_of(short, short, short, long) if long_share else short
    return st.lists(one.map(lambda r: (r[0], r[1], r[1] + r[2])), min_size=1, max_size=max_size)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(universe=regions(60).map(lambda rs: list(dict.fromkeys(rs))), query=regions(40))
def test_random_parity(tmp_path_factory, universe, query):
    d = tmp_path_factory.mktemp("h")
    u = write_bed(d / "u.bed", universe)
    q = write_bed(d / "q.bed", query)
    assert Tokenizer.from_bed(u, cache_dir="off").tokenize(q).tolist() == gtars_tokens(u, q)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=regions(50))
def test_in_memory_inputs_keep_their_order(query):
    universe = GENIML / "universe.uniq.bed"
    tok = Tokenizer.from_bed(universe)
    expected = gtars_regions(universe, query)
    assert tok.tokenize(query).tolist() == expected
    import pandas as pd

    assert tok.tokenize(pd.DataFrame(query, columns=["chrom", "start", "end"])).tolist() == expected


@settings(max_examples=40, deadline=None)
@given(query=regions(30))
def test_random_queries_against_real_universe_with_long_regions(query):
    universe = GENIML / "universe.uniq.bed"
    real = [("chr1", s * 40000, s * 40000 + ln) for _, s, ln in query]  # spread over chr1's span
    assert Tokenizer.from_bed(universe).tokenize(real).tolist() == gtars_regions(universe, real)
