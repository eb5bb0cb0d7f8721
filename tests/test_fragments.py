"""Fragment files: token parity with gtars' tokenize_fragment_file, barcode options, bad lines."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import GENIML, gtars_tokenizer, write_bed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtok.build import tokenize_to_shard
from gtok.cli import main
from gtok.errors import GtokError
from gtok.formats.shard import ShardReader
from gtok.sources.fragments import FragmentOptions
from gtok.sources.fragments import parser as fragment_parser
from gtok.sources.fragments import records as fragments

UNIVERSE = GENIML / "universe.uniq.bed"
CHROMS = ["chr1", "chr2", "chr10", "chrX", "chrUn_unknown"]  # the last is in no universe


def fragment_text(rows, header: str = "# id=test\n# reference=none\n") -> str:
    return header + "".join(f"{c}\t{s}\t{e}\t{b}\t{n}\n" for c, s, e, b, n in rows)


def write_fragments(path: Path, rows, header: str = "# id=test\n# reference=none\n") -> Path:
    data = fragment_text(rows, header).encode()
    if path.name.endswith(".tsv.gz"):
        data = gzip.compress(data)
    elif path.name.endswith(".bgz"):
        data = bgzf(data)
    path.write_bytes(data)
    return path


def bgzf(data: bytes, block: int = 300) -> bytes:
    """BGZF, as bgzip writes it: gzip members of at most 64 KiB with a BC extra field, then the
    empty end-of-file member."""
    out = []
    for i in range(0, len(data) + 1, block):
        chunk = data[i : i + block]
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = c.compress(chunk) + c.flush()
        size = len(body) + 25
        header = b"\x1f\x8b\x08\x04\0\0\0\0\0\xff\x06\0BC\x02\0" + (size := size).to_bytes(2, "little")
        out.append(header + body + zlib.crc32(chunk).to_bytes(4, "little") + len(chunk).to_bytes(4, "little"))
    return b"".join(out)


def gtars_fragments(universe: Path, path: Path) -> dict[str, list[int]]:
    from gtars.tokenizers import tokenize_fragment_file

    return {k: list(v) for k, v in tokenize_fragment_file(str(path), gtars_tokenizer(str(universe))).items()}


def ours(universe: Path, path: Path, tmp: Path, **options) -> dict[str, list[int]]:
    out = tmp / "out.gtok"
    tokenize_to_shard([str(path)], str(universe), str(out), fragments=FragmentOptions(**options), progress=False)
    reader = ShardReader(out)
    records = {n: t.tolist() for n, t in zip(reader.names, reader)}
    out.unlink()
    return records


fragment_rows = st.lists(
    st.tuples(
        st.sampled_from(CHROMS), st.integers(0, 250_000_000), st.integers(0, 2000),
        st.sampled_from(["AAACGAACAGGTCCAC-1", "TTTGTCATCAGGCTTA-1", "b3", "CELL_4"]), st.integers(1, 9),
    ).map(lambda r: (r[0], r[1], r[1] + r[2], r[3], r[4])),
    min_size=1, max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=fragment_rows, sort=st.booleans())
def test_random_fragments_match_gtars(tmp_path_factory, rows, sort):
    """In file order or sorted, fragments overlapping nothing (or on a chromosome the universe
    lacks) giving <unk>, against the real universe with its long regions."""
    tmp = tmp_path_factory.mktemp("f")
    rows = sorted(rows) if sort else rows
    path = write_fragments(tmp / "f.tsv.gz", rows)
    assert ours(UNIVERSE, path, tmp) == gtars_fragments(UNIVERSE, path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    universe=st.lists(st.tuples(st.sampled_from(CHROMS[:4]), st.integers(0, 3000), st.integers(1, 3000)), min_size=1, max_size=40),
    rows=st.lists(
        st.tuples(st.sampled_from(CHROMS), st.integers(0, 6000), st.integers(0, 800), st.sampled_from("abc"), st.just(1)),
        min_size=1, max_size=50,
    ),
)
def test_dense_overlaps_match_gtars(tmp_path_factory, universe, rows):
    """Small universes of nested and overlapping regions, where fragments hit several at once."""
    tmp = tmp_path_factory.mktemp("d")
    u = write_bed(tmp / "u.bed", list(dict.fromkeys((c, s, s + n) for c, s, n in universe)))
    path = write_fragments(tmp / "f.tsv.gz", [(c, s, s + n, b, k) for c, s, n, b, k in rows])
    assert ours(u, path, tmp) == gtars_fragments(u, path)


@pytest.fixture
def many(tmp_path) -> list[tuple]:
    rng = np.random.default_rng(3)
    n = 20_000
    starts = np.sort(rng.integers(0, 240_000_000, n))
    chroms = rng.choice(["chr1", "chr2", "chr3"], n)
    return [(c, int(s), int(s) + int(w), f"cell{int(b)}", 1)
            for c, s, w, b in zip(chroms, starts, rng.integers(50, 2000, n), rng.integers(0, 300, n))]


@pytest.mark.parametrize("name", ["f.tsv.gz", "f.tsv.bgz", "f.tsv"])
def test_gzip_bgzip_and_plain_give_gtars_tokens(tmp_path, many, name):
    reference = gtars_fragments(UNIVERSE, write_fragments(tmp_path / "ref.tsv.gz", many))
    assert ours(UNIVERSE, write_fragments(tmp_path / name, many), tmp_path) == reference


def test_many_blocks_and_windows_assemble_each_barcode_in_file_order(tmp_path, many, monkeypatch):
    """Blocks of a few KiB and assembly windows of a few hundred tokens: each barcode's document
    is put together from slices of many blocks, through the spill file."""
    path = write_fragments(tmp_path / "f.tsv.gz", many)
    monkeypatch.setattr(fragment_parser, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(fragments, "WINDOW_TOKENS", 300)
    assert ours(UNIVERSE, path, tmp_path) == gtars_fragments(UNIVERSE, path)
    source = fragment_parser.FragmentFile(path, ["chr1"], fragment_parser.Barcodes())
    assert len(list(source.blocks())) > 50  # really many blocks (and lines cut across them)


def kinds_of(paths) -> dict[str, list[str]]:
    from gtok.sources import input_kinds

    return {k: [Path(p).name for p in v] for k, v in input_kinds([str(p) for p in paths]).items() if v}


def test_fragments_are_told_by_content_whatever_the_name(tmp_path, many, recwarn):
    """A fragments file named in capitals or like a BED file used to become one BED record holding
    every cell; a BED-named file read as fragments says so."""
    upper = write_fragments(tmp_path / "f.tsv.gz", many).rename(tmp_path / "F.TSV.GZ")
    as_bed = write_fragments(tmp_path / "fragments.bed.gz", many)
    as_bed.write_bytes(gzip.compress(fragment_text(many).encode()))
    plain = tmp_path / "fragments.txt"
    plain.write_text(fragment_text(many))
    bgzipped = tmp_path / "fragments.gz"
    bgzipped.write_bytes(bgzf(fragment_text(many).encode()))  # many small gzip members
    assert kinds_of([upper, as_bed, plain, bgzipped]) == {"fragments": ["F.TSV.GZ", "fragments.bed.gz", "fragments.txt",
                                                                        "fragments.gz"]}
    warned = [str(w.message) for w in recwarn]
    assert len(warned) == 3 and all("read as a fragments file" in w for w in warned)
    assert str(as_bed) in warned[0] and str(plain) in warned[1]
    reference = gtars_fragments(UNIVERSE, write_fragments(tmp_path / "ref.tsv.gz", many))
    assert ours(UNIVERSE, upper, tmp_path) == ours(UNIVERSE, as_bed, tmp_path) == reference


@pytest.mark.parametrize(("name", "text"), [
    ("bed4.bed", "chr1\t10\t20\tpeak1\nchr1\t30\t40\tpeak1\n"),
    ("bed6.bed", "chr1\t10\t20\tpeak\t500\t+\nchr1\t30\t40\tpeak\t0\t-\n"),
    ("narrow.narrowPeak", "chr1\t10\t20\tp\t500\t.\t5.1\t-1\t3.2\t4\nchr1\t30\t40\tp\t9\t.\t1\t-1\t1\t2\n"),
    ("bed12.bed.gz", "chr1\t1\t9\tn\t0\t+\t1\t9\t0\t1\t8,\t0,\nchr1\t1\t9\tn\t0\t+\t1\t9\t0\t1\t8,\t0,\n"),
    ("scores.bed", "chr1\t10\t20\t.\t500\nchr1\t30\t40\t.\t7\n"),
    ("header.bed", "chrom\tstart\tend\tname\tscore\nchr1\t10\t20\tx\t5\nchr1\t30\t40\tx\t5\n"),
])
def test_bed_files_with_extra_columns_stay_bed_files(tmp_path, recwarn, name, text):
    """Names, scores and strands (BED4-BED12, narrowPeak) are not barcodes and counts."""
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    assert kinds_of([path]) == {"bed": [name]} and not recwarn


def test_a_bed5_of_unique_names_and_scores_stays_bed_with_a_warning(tmp_path, recwarn):
    path = tmp_path / "peaks.bed"
    path.write_text("chr1\t10\t20\tpeak1\t500\nchr1\t30\t40\tpeak2\t7\n")
    assert kinds_of([path]) == {"bed": ["peaks.bed"]}
    assert "read as a BED file (one record), though its lines look like fragments" in str(recwarn[-1].message)


def test_barcode_list_keeps_its_cells_in_its_order(tmp_path, many):
    path = write_fragments(tmp_path / "f.tsv.gz", many)
    (tmp_path / "cells.txt").write_text("cell7\ncell3\n\ncell250\n")
    got = ours(UNIVERSE, path, tmp_path, barcodes=str(tmp_path / "cells.txt"))
    reference = gtars_fragments(UNIVERSE, path)
    assert list(got) == ["cell7", "cell3", "cell250"]
    assert got == {k: reference[k] for k in got}


def test_barcode_list_saved_with_a_byte_order_mark_keeps_its_first_cell(tmp_path, many):
    """Excel's 'CSV UTF-8' and Notepad start a file with a UTF-8 byte-order mark; read as part of
    the first barcode, it would drop that cell with no more than a count in a warning."""
    path = write_fragments(tmp_path / "f.tsv.gz", many)
    (tmp_path / "cells.txt").write_bytes(b"\xef\xbb\xbfcell7\r\ncell3\r\n")
    assert list(ours(UNIVERSE, path, tmp_path, barcodes=str(tmp_path / "cells.txt"))) == ["cell7", "cell3"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_barcode_list_saved_as_utf16_is_decoded(tmp_path, many, encoding):
    """Excel's 'Unicode text' and Windows' Notepad save UTF-16; its zero bytes made it 'a binary file'."""
    path = write_fragments(tmp_path / "f.tsv.gz", many)
    bom = {"utf-16-le": "\ufeff", "utf-16-be": "\ufeff"}.get(encoding, "")  # "utf-16" writes its own
    (tmp_path / "cells.txt").write_bytes((bom + "cell7\r\ncell3\r\n").encode(encoding))
    (tmp_path / "cells.txt.gz").write_bytes(gzip.compress((tmp_path / "cells.txt").read_bytes()))
    for cells in ("cells.txt", "cells.txt.gz"):
        assert list(ours(UNIVERSE, path, tmp_path, barcodes=str(tmp_path / cells))) == ["cell7", "cell3"]


def test_a_header_line_of_a_barcode_list_is_not_counted_as_a_missing_cell(tmp_path, many, capsys):
    """A list saved with a column name ('barcode', 'cell_id') counted it as a cell without
    fragments: 'N-1 of the N barcodes occur'. A first name shaped like a word that no fragment has
    is told to be read as a column name; one that fragments have stays a cell."""
    path = write_fragments(tmp_path / "f.tsv.gz", many)
    (tmp_path / "cells.txt").write_text("cell_id\ncell7\ncell3\n")
    assert main(["tokenize", str(path), "-u", str(UNIVERSE), "-o", str(tmp_path / "o.gtok"),
                 "--barcodes", str(tmp_path / "cells.txt"), "-q"]) == 0
    err = capsys.readouterr().err.strip()
    assert ShardReader(tmp_path / "o.gtok").names == ["cell7", "cell3"]
    assert len(err.splitlines()) == 1 and "cells.txt: its first line 'cell_id' is read as a column name" in err, err
    words = write_fragments(tmp_path / "g.tsv", [("chr1", 10, 20, "barcode", 1), ("chr1", 10, 20, "cell7", 1)])
    (tmp_path / "cells.txt").write_text("barcode\ncell7\nAAAC\n")
    with pytest.warns(UserWarning, match="2 of the 3 barcodes") as warned:  # 'AAAC' is a barcode's shape: a cell missing
        assert list(ours(UNIVERSE, words, tmp_path, barcodes=str(tmp_path / "cells.txt"))) == ["barcode", "cell7"]
    assert len(warned) == 1


def test_barcode_list_from_h5ad_obs_names(tmp_path, many):
    import anndata as ad
    import pandas as pd

    path = write_fragments(tmp_path / "f.tsv.gz", many)
    ad.AnnData(obs=pd.DataFrame(index=["cell1", "cell2"])).write_h5ad(tmp_path / "cells.h5ad")
    assert list(ours(UNIVERSE, path, tmp_path, barcodes=str(tmp_path / "cells.h5ad"))) == ["cell1", "cell2"]
    (tmp_path / "cells.h5ad").rename(tmp_path / "CELLS.H5AD")  # in any case, as inputs are told by their names
    assert list(ours(UNIVERSE, path, tmp_path, barcodes=str(tmp_path / "CELLS.H5AD"))) == ["cell1", "cell2"]


def test_partial_barcode_list_is_reported_as_counts(tmp_path, many, capsys):
    path = write_fragments(tmp_path / "f.tsv.gz", many)
    (tmp_path / "cells.txt").write_text("cell1\ncell2\nnot-a-cell\n")
    assert main(["tokenize", str(path), "-u", str(UNIVERSE), "-o", str(tmp_path / "o.gtok"),
                 "--barcodes", str(tmp_path / "cells.txt"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "2 of the 3 barcodes" in err and "1 have no fragments" in err
    assert ShardReader(tmp_path / "o.gtok").names == ["cell1", "cell2"]


def test_barcode_list_matching_nothing_is_an_error_and_writes_nothing(tmp_path, many, capsys):
    path = write_fragments(tmp_path / "f.tsv.gz", many)
    (tmp_path / "cells.txt").write_text("AAAC-1\nTTTG-1\n")
    assert main(["tokenize", str(path), "-u", str(UNIVERSE), "-o", str(tmp_path / "o.gtok"),
                 "--barcodes", str(tmp_path / "cells.txt"), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none of its 2 barcodes occurs in" in err and "f.tsv.gz" in err
    assert not (tmp_path / "o.gtok").exists()


def test_min_fragments_drops_small_barcodes(tmp_path):
    rows = [("chr1", 100 * i, 100 * i + 50, "big", 1) for i in range(5)] + [("chr1", 10, 60, "small", 1)]
    path = write_fragments(tmp_path / "f.tsv", rows)
    assert list(ours(UNIVERSE, path, tmp_path, min_fragments=5)) == ["big"]
    with pytest.raises(GtokError, match="no barcode has at least 6 fragments"):
        ours(UNIVERSE, path, tmp_path, min_fragments=6)


def test_parts_split_the_barcodes_of_a_file(tmp_path, many):
    path = write_fragments(tmp_path / "f.tsv.gz", many)
    whole = ours(UNIVERSE, path, tmp_path)
    parts = [ours(UNIVERSE, path, tmp_path, part=(k, 3)) for k in range(3)]
    assert sum(len(p) for p in parts) == len(whole)
    assert {k: v for p in parts for k, v in p.items()} == whole
    assert all(parts)


def test_an_empty_file_is_called_empty(tmp_path):
    for name, text in (("empty.tsv", b""), ("comments.tsv.gz", gzip.compress(b"# id=x\n\n# end\n"))):
        (tmp_path / name).write_bytes(text)
        with pytest.raises(GtokError, match=f"{name}: holds no fragments \\(the file is empty"):
            ours(UNIVERSE, tmp_path / name, tmp_path)


def empty_part(path: Path, parts: int) -> int:
    """A part of `parts` that holds none of the file's barcodes."""
    barcodes = {line.split("\t")[3] for line in path.read_text().splitlines() if not line.startswith("#")}
    return next(k for k in range(parts) if not any(fragment_parser.in_part(b, (k, parts)) for b in barcodes))


def test_a_part_without_barcodes_is_an_empty_shard_that_manifest_stats_and_dataset_take(tmp_path, many, recwarn):
    """The workflow's fragment_parts may exceed the barcodes a file has: the part is a valid empty
    shard (with a warning), not an error telling to lower --min-fragments."""
    from gtok.data.dataset import GTokDataset
    from gtok.formats.manifest import load_manifest, write_manifest
    from gtok.plots import plot_coverage, plot_tokens_per_record, plot_unk_only
    from gtok.stats import shard_stats

    big = write_fragments(tmp_path / "big.tsv", many)
    small = write_fragments(tmp_path / "small.tsv", [("chr1", 10, 20, "a", 1), ("chr1", 15, 90, "b", 1)])
    k = empty_part(small, 16)
    shards = [tmp_path / "big.gtok", tmp_path / "empty.gtok"]
    tokenize_to_shard([str(big)], str(UNIVERSE), str(shards[0]), progress=False)
    tokenize_to_shard([str(small)], str(UNIVERSE), str(shards[1]), fragments=FragmentOptions(part=(k, 16)), progress=False)
    assert len(ShardReader(shards[1])) == 0 and f"part {k}/16 holds no barcode" in str(recwarn[-1].message)
    write_manifest(tmp_path / "m.json", shards)
    assert load_manifest(tmp_path / "m.json").records == 300
    table, lengths = shard_stats([(str(p), "fragment files") for p in shards])
    assert table["records"].tolist() == [300, 0, 300]
    plot_tokens_per_record(lengths, tmp_path / "l.png")
    plot_unk_only(table, tmp_path / "u.png")
    plot_coverage(table, tmp_path / "c.png")
    assert len(list(GTokDataset(tmp_path / "m.json"))) == 300
    with pytest.raises(GtokError, match="no barcode has at least 3 fragments; lower --min-fragments"):
        ours(UNIVERSE, small, tmp_path, min_fragments=3)  # the whole file: nothing qualifies, an error


@pytest.mark.slow
def test_training_takes_a_manifest_with_an_empty_shard(tmp_path, many):
    from gtok.formats.manifest import write_manifest
    from gtok.training.train import train

    small = write_fragments(tmp_path / "small.tsv", [("chr1", 10, 20, "a", 1)])
    shards = [tmp_path / "a.gtok", tmp_path / "empty.gtok", tmp_path / "b.gtok"]
    tokenize_to_shard([str(write_fragments(tmp_path / "big.tsv", many))], str(UNIVERSE), str(shards[0]),
                      fragments=FragmentOptions(part=(0, 2)), progress=False)
    tokenize_to_shard([str(small)], str(UNIVERSE), str(shards[1]), fragments=FragmentOptions(part=(empty_part(small, 2), 2)),
                      progress=False)
    tokenize_to_shard([str(tmp_path / "big.tsv")], str(UNIVERSE), str(shards[2]), fragments=FragmentOptions(part=(1, 2)),
                      progress=False)
    write_manifest(tmp_path / "m.json", shards)
    cfg = {"data": {"batch_size": 8, "num_workers": 0, "max_length": 32}, "region2vec": {"embedding_dim": 8},
           "trainer": {"num_sanity_val_steps": 0}}
    assert train(tmp_path / "m.json", "region2vec", tmp_path / "run", cfg, max_steps=3, progress=False).is_file()


def test_labels_come_from_the_sheet_by_barcode(tmp_path, many):
    path = write_fragments(tmp_path / "f.tsv.gz", many)
    (tmp_path / "cells.txt").write_text("cell1\ncell2\ncell3\n")
    (tmp_path / "labels.tsv").write_text("barcode\tlabel\ncell1\tB\ncell2\tT\n")
    out = tmp_path / "o.gtok"
    tokenize_to_shard([str(path)], str(UNIVERSE), str(out), labels_sheet=str(tmp_path / "labels.tsv"),
                      fragments=FragmentOptions(barcodes=str(tmp_path / "cells.txt")), progress=False)
    assert ShardReader(out).labels == ["B", "T", None]


# -- samples: barcodes repeat across samples --------------------------------------------------------------


@pytest.fixture
def two_samples(tmp_path) -> tuple[Path, Path]:
    """Two samples' fragment files, as 10x writes them: the same barcodes, other fragments."""
    a = write_fragments(tmp_path / "donor1.tsv.gz", [("chr1", 10, 5000, "AAAC-1", 1), ("chr1", 200, 900, "TTTG-1", 1)])
    b = write_fragments(tmp_path / "donor2.tsv.gz", [("chr2", 10, 5000, "AAAC-1", 1), ("chr1", 60, 70, "CCCA-1", 1)])
    return a, b


def records(path: Path) -> dict[str, tuple[list[int], str | None]]:
    reader = ShardReader(path)
    return {n: (t.tolist(), lab) for n, t, lab in zip(reader.names, reader, reader.labels or [None] * len(reader))}


def test_samples_that_share_barcodes_give_records_of_their_own(tmp_path, two_samples):
    """Two files in one call are named by their file names; --sample names them; one file keeps
    its barcodes, as gtars names them."""
    a, b = two_samples
    out = tmp_path / "o.gtok"
    tokenize_to_shard([str(a), str(b)], str(UNIVERSE), str(out), progress=False)
    got = {n: t for n, (t, _) in records(out).items()}
    ref_a, ref_b = gtars_fragments(UNIVERSE, a), gtars_fragments(UNIVERSE, b)
    assert got == {**{f"donor1#{k}": v for k, v in ref_a.items()}, **{f"donor2#{k}": v for k, v in ref_b.items()}}
    tokenize_to_shard([str(a), str(b)], str(UNIVERSE), str(out), samples=["x", "y"], name_format="{barcode}-{sample}",
                      progress=False)
    assert ShardReader(out).names == ["AAAC-1-x", "TTTG-1-x", "AAAC-1-y", "CCCA-1-y"]
    assert main(["tokenize", "-q", "-u", str(UNIVERSE), "-o", str(out), "--sample", "S1", str(a)]) == 0
    assert ShardReader(out).names == ["S1#AAAC-1", "S1#TTTG-1"]
    assert list(ours(UNIVERSE, a, tmp_path)) == ["AAAC-1", "TTTG-1"]


def test_bed_h5ad_and_fragment_inputs_in_one_call(tmp_path, two_samples):
    """The cell inputs (in their order) take the samples; BED files keep their names."""
    from conftest import GTARS

    bed = write_bed(tmp_path / "peaks.bed", [("chr1", 1, 100)])
    h5ad = GTARS / "pbmc_hg38.h5ad"
    out = tmp_path / "o.gtok"
    assert main(["tokenize", "-q", "-u", str(UNIVERSE), "-o", str(out), "--sample", "A", "--sample", "P", "--sample", "B",
                 str(two_samples[0]), str(bed), str(h5ad), str(two_samples[1])]) == 0
    names = ShardReader(out).names
    assert names[0] == "peaks" and len(names) == 1 + 20 + 4 and names[1].startswith("P#")
    assert names[-4:] == ["A#AAAC-1", "A#TTTG-1", "B#AAAC-1", "B#CCCA-1"]


@pytest.mark.parametrize(("args", "message"), [
    (["--sample", "x"], "--sample is given 1 time(s) for 2 cell input(s)"),
    (["--sample", "x", "--sample", "x"], "have the same sample name 'x'"),
    (["--sample", "x", "--sample", "a/b"], "--sample 'a/b': a sample name must not"),
    (["--sample", "x", "--sample", "y", "--name-format", "{sample}"], "--name-format '{sample}': a record name format holds"),
])
def test_sample_options_are_checked_before_any_work(tmp_path, two_samples, capsys, args, message):
    assert main(["tokenize", "-q", "-u", str(UNIVERSE), "-o", str(tmp_path / "o.gtok"), *args, *map(str, two_samples)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "o.gtok").exists()


def test_one_input_without_a_sample_takes_no_name_format_and_bed_inputs_no_sample(tmp_path, two_samples):
    with pytest.raises(GtokError, match="--name-format makes record names of a sample name and a barcode; give --sample"):
        tokenize_to_shard([str(two_samples[0])], str(UNIVERSE), str(tmp_path / "o.gtok"), name_format="{sample}_{barcode}")
    bed = write_bed(tmp_path / "a.bed", [("chr1", 1, 100)])
    with pytest.raises(GtokError, match="--sample names the cells of fragment and .h5ad inputs; there are none"):
        tokenize_to_shard([str(bed)], str(UNIVERSE), str(tmp_path / "o.gtok"), samples=["x"])


def test_labels_by_sample_and_barcode_label_only_that_samples_cells(tmp_path, two_samples, recwarn):
    a, b = two_samples
    out = tmp_path / "o.gtok"
    sheet = tmp_path / "labels.tsv"
    sheet.write_text("sample\tbarcode\tlabel\ndonor1\tAAAC-1\tB\ndonor2\tCCCA-1\tT\n")
    tokenize_to_shard([str(a), str(b)], str(UNIVERSE), str(out), labels_sheet=str(sheet), progress=False)
    assert {n: lab for n, (_, lab) in records(out).items()} == {
        "donor1#AAAC-1": "B", "donor1#TTTG-1": None, "donor2#AAAC-1": None, "donor2#CCCA-1": "T"}
    sheet.write_text("name\tlabel\ndonor2#AAAC-1\tNK\n")
    tokenize_to_shard([str(a), str(b)], str(UNIVERSE), str(out), labels_sheet=str(sheet), progress=False)
    assert [lab for _, lab in records(out).values()] == [None, None, "NK", None]
    assert f"{a}: none of its 2 cells has a label in the label sheet (matched on record names such as 'donor1#BARCODE')" in \
        str(recwarn[-1].message)
    sheet.write_text("barcode\tlabel\nAAAC-1\tB\n")
    with pytest.raises(GtokError, match="labels.tsv: the label sheet matches cells by 'barcode' alone, but 2 samples"):
        tokenize_to_shard([str(a), str(b)], str(UNIVERSE), str(out), labels_sheet=str(sheet), progress=False)
    tokenize_to_shard([str(b)], str(UNIVERSE), str(out), labels_sheet=str(sheet), samples=["donor2"], progress=False)
    assert {n: lab for n, (_, lab) in records(out).items()} == {"donor2#AAAC-1": "B", "donor2#CCCA-1": None}
    sheet.write_text("sample\tbarcode\tlabel\ndonor2\tAAAC-1\tB\n")
    with pytest.raises(GtokError, match="the label sheet has a 'sample' column, but the cells have no sample name; give --sample"):
        tokenize_to_shard([str(b)], str(UNIVERSE), str(out), labels_sheet=str(sheet), progress=False)


def test_a_barcode_list_of_record_names_keeps_each_samples_own_cells(tmp_path, two_samples, recwarn):
    """The obs names of a merged object (SAMPLE#BARCODE) select the cells of each sample."""
    import anndata as ad
    import pandas as pd

    cells = tmp_path / "cells.h5ad"
    ad.AnnData(obs=pd.DataFrame(index=["donor1#TTTG-1", "donor2#AAAC-1", "donor2#CCCA-1"])).write_h5ad(cells)
    out = tmp_path / "o.gtok"
    tokenize_to_shard([str(p) for p in two_samples], str(UNIVERSE), str(out), fragments=FragmentOptions(barcodes=str(cells)),
                      progress=False)
    assert ShardReader(out).names == ["donor1#TTTG-1", "donor2#AAAC-1", "donor2#CCCA-1"]
    assert not [w for w in recwarn if "barcodes of" in str(w.message)]


def test_an_empty_count_column_is_refused_as_gtars_refuses_it(tmp_path):
    """gtars splits a line on whitespace and needs a fifth field: a trailing tab with nothing after
    it leaves four, and the file is refused; one with any text after the fourth tab is read."""
    bad = tmp_path / "bad.tsv"
    bad.write_text(fragment_text([("chr1", 1, 50, "cellA", 1)]) + "chr1\t10\t20\tcellB\t\n")
    with pytest.raises(RuntimeError, match="Invalid fragment file"):
        gtars_fragments(UNIVERSE, bad)
    with pytest.raises(GtokError, match=r"bad.tsv, line 4: the count \(column 5\) is empty"):
        ours(UNIVERSE, bad, tmp_path)
    good = tmp_path / "good.tsv"
    good.write_text(fragment_text([("chr1", 1, 50, "cellA", 1)]) + "chr1\t10\t20\tcellB\t\t7\nchr1\t10\t20\tcellC\t 1\n")
    assert ours(UNIVERSE, good, tmp_path) == gtars_fragments(UNIVERSE, good) != {}


@pytest.mark.parametrize(
    "line, expected",
    [
        ("chr1\t10\t20\tcellA", "expected at least 5 tab-separated columns"),
        ("chr1 10 20 cellA 1", "its columns are separated by spaces, not tabs,"),
        ("chr1\t10.5\t20\tcellA\t1", "start coordinate '10.5' is not a non-negative integer"),
        ("chr1\t10\tabc\tcellA\t1", "end coordinate 'abc' is not a non-negative integer"),
        ("chr1\t10\t20\t\t1", "the barcode (column 4) is empty"),
        ("chr1\t10\t20\tcellA\t", "the count (column 5) is empty"),
        ("chr1\t10\t20\tcellA\t \t\r", "the count (column 5) is empty"),
        ("\t10\t20\tcellA\t1", "the chromosome name is empty"),
        ("chr 1\t10\t20\tcellA\t1", "the chromosome name 'chr 1' holds a space"),  # gtars: chr, 1, 10 and cell '20'
        (" \t10\t20\tcellA\t1", "the chromosome name is empty"),  # spaces alone: gtars shifts every column
        ("chr1\t30\t20\tcellA\t1", "start 30 is greater than end 20"),
        ("chr1\t-5\t20\tcellA\t1", "-5 is negative"),
        ("chr1\t10\t99999999999\tcellA\t1", "too large"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path, capsys, line, expected):
    path = tmp_path / "f.tsv"
    path.write_text(fragment_text([("chr1", 1, 50, "cellA", 1)]) + line + "\n")
    out = tmp_path / "o.gtok"
    assert main(["tokenize", str(path), "-u", str(UNIVERSE), "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{path}, line 4: " in err and expected in err, err
    assert not out.exists()


def test_a_fragments_file_whose_lines_end_in_cr_alone_is_refused(tmp_path, capsys):
    """Lines ending in \\r alone (classic Mac) made the file one line: one fragment of the first
    barcode, every other line inside its count column, in silence (gtars reads it so too)."""
    path = tmp_path / "mac.tsv"
    path.write_bytes(fragment_text([("chr1", 1, 50, "cellA", 1), ("chr1", 60, 90, "cellB", 1)]).replace("\n", "\r").encode())
    out = tmp_path / "o.gtok"
    assert main(["tokenize", str(path), "-u", str(UNIVERSE), "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"gtok tokenize: error: {path}: its lines end in \\r alone (classic Mac), so it would read as one "
                   "line; convert them to \\n, e.g. with  tr '\\r' '\\n' < IN > OUT."), err
    assert not out.exists()
    path.write_bytes(path.read_bytes().replace(b"\r", b"\r\n"))  # Windows line ends read as they are
    assert main(["tokenize", str(path), "-u", str(UNIVERSE), "-o", str(out), "-q"]) == 0


@pytest.mark.parametrize(("encoding", "form"), [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16LE"), ("utf-32", "UTF-32")])
@pytest.mark.parametrize("name", ["f.tsv", "f.tsv.gz"])
def test_a_utf16_fragments_file_is_refused_in_one_line_saying_so(tmp_path, capsys, encoding, form, name):
    """Windows' 'Unicode' text (UTF-16, with or without its byte-order mark) was refused with a
    dump of its first line's bytes, as 'not UTF-8 text; fix or remove this line'; it is the
    file's encoding, not a line, that is wrong, and iconv converts it."""
    text = fragment_text([("chr1", 1, 50, "cellA", 1), ("chr1", 60, 90, "cellB", 1)]).encode(encoding)
    path = tmp_path / name
    path.write_bytes(gzip.compress(text) if name.endswith(".gz") else text)
    out = tmp_path / "o.gtok"
    assert main(["tokenize", str(path), "-u", str(UNIVERSE), "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    command = f"zcat IN | iconv -f {form} -t UTF-8 | gzip > OUT" if name.endswith(".gz") else f"iconv -f {form} -t UTF-8 IN > OUT"
    assert err == (f"gtok tokenize: error: {path}: is {form} text, but a fragments file must be ASCII or UTF-8 text; "
                   f"convert it first, e.g. with  {command}."), err
    assert not out.exists()


def test_a_bed_file_named_tsv_is_told_to_be_named_bed(tmp_path, capsys):
    """A .tsv name makes a fragments file; when its first line is not a fragment, the likelier
    cause is a BED file saved as .tsv, and 'fix or remove this line' would be the wrong advice."""
    path = tmp_path / "peaks.tsv"
    path.write_text("chr1\t10\t20\nchr1\t30\t40\n")
    assert main(["tokenize", str(path), "-u", str(UNIVERSE), "-o", str(tmp_path / "o.gtok"), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}, line 1: expected at least 5" in err, err
    assert "if it is a BED file, name it .bed" in err


def test_zero_padded_coordinates_match_gtars(tmp_path):
    """gtars reads coordinates as u32, leading zeros and all; they are not 'too large'."""
    path = tmp_path / "f.tsv"
    path.write_text(fragment_text([("chr1", "0000000000100", "0" * 25 + "16000", "a", 1), ("chr1", "00", "0", "b", 1)]))
    assert ours(UNIVERSE, path, tmp_path) == gtars_fragments(UNIVERSE, path)


def test_barcodes_that_are_not_utf8_are_refused_by_line(tmp_path, capsys):
    """gtars refuses such a file; read with replacement, b'\\xff1' and b'\\xfe1' would both be '\\ufffd1'.
    UTF-8 barcodes beyond ASCII are fine."""
    path = tmp_path / "f.tsv"
    path.write_bytes(fragment_text([("chr1", 10, 20, "caf\u00e9-1", 1)]).encode() + b"chr1\t30\t40\t\xff1\t1\nchr1\t30\t40\t\xfe1\t1\n")
    assert main(["tokenize", str(path), "-u", str(UNIVERSE), "-o", str(tmp_path / "o.gtok"), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}, line 4: " in err and "is not UTF-8 text" in err, err
    path.write_bytes(fragment_text([("chr1", 10, 20, "caf\u00e9-1", 1), ("chr1", 10, 20, "cafe-1", 1)]).encode())
    assert ours(UNIVERSE, path, tmp_path) == gtars_fragments(UNIVERSE, path)


def test_a_barcode_holding_a_space_is_refused_by_line(tmp_path, capsys):
    """gtars splits a line on any whitespace and would name the cell 'A'; gtok, on tabs, 'A A':
    neither is what the file meant, so it is refused."""
    path = tmp_path / "f.tsv"
    path.write_text(fragment_text([("chr1", 10, 20, "B-1", 1), ("chr1", 30, 40, "A A", 1)]))
    assert main(["tokenize", str(path), "-u", str(UNIVERSE), "-o", str(tmp_path / "o.gtok"), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}, line 4: barcode 'A A' holds a space" in err, err  # 2 header lines


def test_a_file_on_no_chromosome_of_the_universe_is_named(tmp_path, recwarn):
    path = write_fragments(tmp_path / "f.tsv", [("1", 10, 20, "a", 1), ("2", 10, 20, "b", 1)])
    assert ours(UNIVERSE, path, tmp_path) == gtars_fragments(UNIVERSE, path)
    assert f"{path}: none of its chromosomes (1) is in the universe" in str(recwarn[-1].message)
    recwarn.clear()
    ours(UNIVERSE, write_fragments(tmp_path / "g.tsv", [("1", 10, 20, "a", 1), ("chr1", 10, 20, "b", 1)]), tmp_path)
    assert not recwarn


def test_truncated_gzip_is_one_line(tmp_path, many, capsys):
    path = write_fragments(tmp_path / "f.tsv.gz", many)
    path.write_bytes(path.read_bytes()[:-5000])
    assert main(["tokenize", str(path), "-u", str(UNIVERSE), "-o", str(tmp_path / "o.gtok"), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "truncated or corrupt" in err


def test_fragment_options_without_fragment_inputs_are_refused(tmp_path):
    bed = write_bed(tmp_path / "a.bed", [("chr1", 1, 100)])
    with pytest.raises(GtokError, match="apply to fragment files"):
        tokenize_to_shard([str(bed)], str(UNIVERSE), str(tmp_path / "o.gtok"), fragments=FragmentOptions(min_fragments=3))


def test_tokenize_of_fragments_does_not_import_torch(tmp_path, many):
    import subprocess
    import sys

    path = write_fragments(tmp_path / "f.tsv.gz", many)
    code = (
        "import sys; from gtok.cli import main; "
        f"rc = main(['tokenize', {str(path)!r}, '-u', {str(UNIVERSE)!r}, '-o', {str(tmp_path / 'o.gtok')!r}, '-q']); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lines_longer_than_a_block_grow_the_buffer(tmp_path, many, monkeypatch):
    path = write_fragments(tmp_path / "f.tsv", many[:300])
    monkeypatch.setattr(fragment_parser, "BLOCK_BYTES", 16)  # every line is longer than this
    assert ours(UNIVERSE, path, tmp_path) == gtars_fragments(UNIVERSE, path)
