"""The `gtok` command: tokenize, dump, info, export-gtars, and one-line errors for bad input."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import BEDS, GENIML, GTARS, UNIVERSE, gtars_tokens, gtok, one_line_error, write_bed

SAMPLES = sorted((GENIML / "hg38_sample").glob("*.bed")) + [GENIML / "to_tokenize.bed"]


def test_tokenize_dump_matches_gtars(tmp_path):
    out = tmp_path / "s.gtok"
    gtok("tokenize", "-q", "--universe", UNIVERSE, "-o", out, *SAMPLES, check=True)
    lines = gtok("dump", out, check=True).stdout.splitlines()
    assert len(lines) == len(SAMPLES)
    for line, bed in zip(lines, SAMPLES):
        name, ids = line.split("\t")
        assert name == bed.name.removesuffix(".bed")
        assert [int(x) for x in ids.split(",")] == gtars_tokens(UNIVERSE, bed)


def test_info_and_export_round_trip(tmp_path):
    out = tmp_path / "s.gtok"
    gtok("tokenize", "-q", "-u", UNIVERSE, "-o", out, *SAMPLES[:3], check=True)
    info = gtok("info", out, check=True).stdout
    assert "records      3" in info and "uint16" in info and "fingerprint" in info and "median" in info
    assert "checksums    OK" in info and "dataset      s" in info and f"universe     {UNIVERSE.resolve()}" in info
    gtok("export-gtars", out, tmp_path / "gt", check=True)
    from gtars.utils import read_tokens_from_gtok

    for bed in SAMPLES[:3]:
        assert list(read_tokens_from_gtok(str(tmp_path / "gt" / f"{bed.stem}.gtok"))) == gtars_tokens(UNIVERSE, bed)


def test_labels_sheet_and_h5ad_label_key(tmp_path):
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text("path\tlabel\n" + "".join(f"{p}\t{'a' if i % 2 else 'b'}\n" for i, p in enumerate(SAMPLES)))
    out = tmp_path / "l.gtok"
    gtok("tokenize", "-q", "-u", UNIVERSE, "-o", out, "--labels", sheet, *SAMPLES, check=True)
    from gtok import ShardReader

    assert ShardReader(out).labels == ["b", "a"] * 3 + ["b"]
    cells = tmp_path / "c.gtok"
    gtok("tokenize", "-q", "-u", GTARS / "peaks.bed", "-o", cells, "--rows", "2:9", "--label-key", "cell_type", GTARS / "pbmc_hg38.h5ad", check=True)
    r = ShardReader(cells)
    assert len(r) == 7 and len(set(r.labels)) > 1


def test_tokenize_does_not_import_torch(tmp_path):
    code = (
        "import sys; from gtok.cli import main; rc = main(sys.argv[1:]);"
        "assert 'torch' not in sys.modules and 'lightning' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    args = ["tokenize", "-q", "-u", str(UNIVERSE), "-o", str(tmp_path / "x.gtok"), *map(str, SAMPLES)]
    subprocess.run([sys.executable, "-c", code, *args], check=True)


def test_every_command_has_help():
    from gtok.cli import build_parser

    commands = build_parser().commands  # every registered subcommand
    assert {"tokenize", "index", "dump", "info", "export-gtars", "manifest", "verify", "simulate", "train", "embed",
            "evaluate"} <= set(commands)
    top = gtok("--help", check=True).stdout
    for cmd in commands:
        assert cmd in top
        page = gtok(cmd, "--help", check=True).stdout
        assert page.startswith("usage: gtok " + cmd) and len(page.splitlines()) > 3, cmd


@pytest.mark.parametrize("args", [["export-gtars", "x.gtok", "out", "-o", "y"], ["info", "x.gtok", "--bogus"]])
def test_an_unknown_option_is_said_by_its_command(tmp_path, args):
    """Not by the top-level `gtok`, whose --help would not list it."""
    line = one_line_error(gtok(*args, cwd=tmp_path), f"gtok {args[0]}: error: unrecognized arguments:", rc=2)
    assert line.endswith(f"(see 'gtok {args[0]} --help').")


BAD_CASES = ["non-integer", "few columns", "start>end", "negative", "missing", "truncated gzip", "garbage", "empty"]


def bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    def write(name, data: bytes) -> Path:
        p = tmp / name
        p.write_bytes(data)
        return p

    return {
        "non-integer": (write("a.bed", b"chr1\t10\t20\nchr1\tten\t20\n"), "a.bed, line 2: start coordinate 'ten'"),
        "few columns": (write("b.bed", b"chr1\t10\t20\nchr1\t10\n"), "b.bed, line 2: expected at least 3 columns"),
        "start>end": (write("c.bed", b"chr1\t30\t20\n"), "c.bed, line 1: start 30 is greater than end 20"),
        "negative": (write("d.bed", b"chr1\t1\t2\nchr1\t-1\t20\n"), "d.bed, line 2: start coordinate -1 is negative"),
        "missing": (tmp / "missing.bed", "missing.bed: no such file"),
        "truncated gzip": (write("e.bed.gz", gzip.compress(b"chr1\t1\t2\n" * 500)[:30]), "e.bed.gz: not a readable gzip file"),
        "garbage": (write("f.bed", bytes(range(256)) * 3), "f.bed: looks like a binary file"),
        "empty": (write("g.bed", b"# only a comment\n"), "g.bed: no regions found"),
    }


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_gives_one_line_and_no_output(tmp_path, case):
    bad, words = bad_inputs(tmp_path)[case]
    out = tmp_path / "out.gtok"
    proc = gtok("tokenize", "-q", "-u", UNIVERSE, "-o", out, SAMPLES[0], bad, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr and words in lines[0], proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.gtok*"))


def test_existing_output_survives_a_failed_run(tmp_path):
    out = tmp_path / "out.gtok"
    gtok("tokenize", "-q", "-u", UNIVERSE, "-o", out, SAMPLES[0], check=True)
    before = out.read_bytes()
    (tmp_path / "bad.bed").write_text("chr1\tx\t1\n")
    assert gtok("tokenize", "-q", "-u", UNIVERSE, "-o", out, SAMPLES[1], tmp_path / "bad.bed", check=False).returncode
    assert out.read_bytes() == before


def test_h5ad_without_coordinates(tmp_path):
    import anndata as ad
    import numpy as np
    import pandas as pd

    p = tmp_path / "genes.h5ad"
    ad.AnnData(X=np.ones((2, 2), dtype=np.float32), var=pd.DataFrame(index=["GAPDH", "ACTB"])).write_h5ad(p)
    proc = gtok("tokenize", "-u", UNIVERSE, "-o", tmp_path / "x.gtok", p, check=False)
    assert proc.returncode == 1 and "no usable region coordinates" in proc.stderr and "Traceback" not in proc.stderr


def test_option_misuse_is_explained(tmp_path):
    proc = gtok("tokenize", "-u", UNIVERSE, "-o", tmp_path / "x.gtok", "--rows", "1:2", SAMPLES[0], check=False)
    assert proc.returncode == 1 and "--rows needs exactly one .h5ad" in proc.stderr
    proc = gtok("tokenize", "-u", UNIVERSE, "-o", tmp_path / "x.gtok", "--rows", "a:b", GTARS / "pbmc_hg38.h5ad", check=False)
    assert "expected START:STOP" in proc.stderr
    proc = gtok("tokenize", "-u", UNIVERSE, "-o", tmp_path / "x.gtok", "--layer", "counts", SAMPLES[0], check=False)
    assert proc.returncode == 1 and "--layer applies to .h5ad and .h5mu inputs" in proc.stderr
    for option, value, words in (("--tile-width", "500", "--tile-width applies to .h5ad and .h5mu inputs"),
                                 ("--modality", "rna", "--modality applies to .h5mu inputs")):
        one_line_error(gtok("tokenize", "-u", UNIVERSE, "-o", tmp_path / "x.gtok", option, value, SAMPLES[0]), words)
    proc = gtok("info", tmp_path / "nope.gtok", check=False)
    assert proc.returncode == 1 and "nope.gtok: no such shard file" in proc.stderr


def test_inputs_that_would_count_twice_are_refused_before_any_work(tmp_path):
    """A BED file given twice, or two BED files of one name, would be two records of one name,
    which only the manifest used to refuse, after the tokenizing; a shard exported twice would
    double its records."""
    twin = tmp_path / "elsewhere" / SAMPLES[0].name
    twin.parent.mkdir()
    shutil.copy(SAMPLES[0], twin)
    out = tmp_path / "x.gtok"
    one_line_error(gtok("tokenize", "-u", UNIVERSE, "-o", out, SAMPLES[0], SAMPLES[1], SAMPLES[0]),
                   f"{SAMPLES[0]}: given twice; it would be two records named {SAMPLES[0].stem!r}")
    one_line_error(gtok("tokenize", "-u", UNIVERSE, "-o", out, SAMPLES[0], twin),
                   f"{SAMPLES[0]} and {twin} would both be the record {SAMPLES[0].stem!r}")
    assert not out.exists()
    gtok("tokenize", "-q", "-u", UNIVERSE, "-o", out, SAMPLES[0], check=True)
    one_line_error(gtok("export-parquet", "-o", tmp_path / "x.parquet", out, tmp_path / "." / out.name), "listed twice")
    one_line_error(gtok("tokenize", "-u", UNIVERSE, "-o", out, "--modality", "", GTARS / "pbmc_hg38.h5ad"),
                   "argument --modality: an empty name names nothing", rc=2)


def test_a_bed_file_of_carriage_returns_alone_says_so(tmp_path):
    bed = tmp_path / "mac.bed"
    bed.write_bytes(b"chr1\t150\t160\rchr2\t150\t350\r")
    one_line_error(gtok("tokenize", "-u", UNIVERSE, "-o", tmp_path / "x.gtok", bed),
                   f"{bed}, line 1: it holds a carriage return", "convert them to")


def test_simulate_replaces_its_cells_and_their_peaks_together(tmp_path, monkeypatch):
    """The .h5ad and its universe BED are one pair: a failure while writing the cells leaves the
    old peaks too, never new cells beside the old peaks' vocabulary."""
    import anndata as ad

    from gtok.cli import main

    cells, peaks = tmp_path / "x.h5ad", tmp_path / "x.bed"
    small = ["--cells", "20", "--peaks", "60", "--cell-types", "2", "--program-peaks", "10"]
    assert main(["simulate", "-o", str(cells), "--universe-out", str(peaks), *small]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", full)
    assert main(["simulate", "-o", str(cells), "--universe-out", str(peaks), "--cells", "30", *small[2:]]) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_simulate_replaces_only_the_peaks_it_wrote(tmp_path, capsys):
    """--universe-out replaces a BED only when it holds the peaks simulate wrote beside the same
    cells: any other may be a universe that shards record as their vocabulary."""
    from gtok.cli import main

    cells, peaks, universe = tmp_path / "x.h5ad", tmp_path / "x.bed", tmp_path / "universe.bed"
    small = ["--cells", "20", "--peaks", "60", "--cell-types", "2", "--program-peaks", "10"]
    assert main(["simulate", "-o", str(cells), "--universe-out", str(peaks), *small]) == 0
    assert main(["simulate", "-o", str(cells), "--universe-out", str(peaks), *small, "--seed", "3"]) == 0  # its own
    universe.write_text("chr1\t100\t200\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    capsys.readouterr()
    assert main(["simulate", "-o", str(cells), "--universe-out", str(universe), *small]) == 1
    assert f"{universe}: exists and is not a BED of the peaks gtok simulate wrote beside that .h5ad; refusing" in \
        capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("args, message", [
    (["simulate", "-o", "x.h5ad", "--base-rate", "0"], "argument --base-rate: '0' is not a positive number"),
    (["simulate", "-o", "x.h5ad", "--cells", "-3"], "argument --cells: '-3' is not a positive integer"),
    (["simulate", "-o", "x.h5ad", "--cell-types", "40"], "gtok simulate: error: 40 programs of 100 peaks need at least 4000 peaks"),
    (["evaluate", "--model", "m", "--manifest", "m.json", "-o", "e", "--val-fraction", "1.5"],
     "argument --val-fraction: '1.5' is not a fraction in [0, 1)"),
])
def test_numeric_options_of_simulate_and_evaluate_accept_only_valid_values(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "gtok.cli", *args], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_tokenize_records_the_dataset_and_the_universe(tmp_path):
    from gtok import ShardReader
    from gtok.cli import main
    from gtok.tokenizer import Tokenizer

    beds = tmp_path / "collection.gtok"
    assert main(["tokenize", "-q", "-u", str(UNIVERSE), "-o", str(beds), *map(str, SAMPLES[:2])]) == 0
    meta = ShardReader(beds).meta
    assert meta.dataset == "collection" and meta.inputs == {"bed": 2}  # BED files: the shard's name
    assert ShardReader(beds).universe.path == str(UNIVERSE.resolve()) and meta.universe.source is None
    assert meta.universe.fingerprint == Tokenizer.from_bed(UNIVERSE).fingerprint
    assert meta.universe.sha256 == hashlib.sha256(UNIVERSE.read_bytes()).hexdigest()
    cells = tmp_path / "part-0000.gtok"
    assert main(["tokenize", "-q", "-u", str(GTARS / "peaks.bed"), "-o", str(cells), "--rows", "0:3",
                 str(GTARS / "pbmc_hg38.h5ad")]) == 0
    assert ShardReader(cells).dataset == "pbmc_hg38"  # one .h5ad: its name
    index = tmp_path / "u.gtokidx"
    assert main(["index", "-q", "-u", str(UNIVERSE), "-o", str(index)]) == 0
    named = tmp_path / "named.gtok"
    assert main(["tokenize", "-q", "-u", str(index), "--dataset", "ENCODE 2024", "-o", str(named), str(SAMPLES[0])]) == 0
    recorded = ShardReader(named).universe
    assert ShardReader(named).dataset == "ENCODE 2024" and recorded.path == str(index.resolve())
    assert (recorded.source, recorded.source_sha256) == (str(UNIVERSE.resolve()), hashlib.sha256(UNIVERSE.read_bytes()).hexdigest())


def test_the_same_inputs_tokenized_in_two_folders_give_the_same_bytes_and_the_moved_folder_finds_its_universe(tmp_path):
    """A shard recorded its universe's absolute path, so the same inputs tokenized in another
    folder gave other bytes (and the files told where the user keeps them). The universe, its index
    and the inputs are recorded relative to the file that names them: a project copied elsewhere
    gives byte-identical indexes, shards and manifests, and a manifest moved with its folder still
    finds the universe its model needs."""
    from gtok import ShardReader
    from gtok.cli import main
    from gtok.formats.manifest import load_manifest
    from gtok.pretrained import data_universe

    def project(root: Path) -> list[bytes]:
        shutil.copy(UNIVERSE, root / "universe.bed")
        assert main(["index", "-q", "-u", str(root / "universe.bed"), "-o", str(root / "u.gtokidx")]) == 0
        for i, universe in enumerate(("universe.bed", "u.gtokidx")):
            assert main(["tokenize", "-q", "-u", str(root / universe), "-o", str(root / "shards" / f"{universe}.gtok"),
                         str(SAMPLES[i])]) == 0
        assert main(["manifest", "-q", "-o", str(root / "m.json"), str(root / "shards")]) == 0
        files = ["u.gtokidx", "shards/universe.bed.gtok", "shards/u.gtokidx.gtok", "m.json"]
        return [(root / f).read_bytes() for f in files]

    (tmp_path / "a").mkdir()
    (tmp_path / "elsewhere" / "b").mkdir(parents=True)
    first = project(tmp_path / "a")
    assert first == project(tmp_path / "elsewhere" / "b")
    assert b"elsewhere" not in b"".join(first) and str(tmp_path).encode() not in b"".join(first)
    assert ShardReader(tmp_path / "a" / "shards" / "u.gtokidx.gtok").meta.universe.source == "../universe.bed"

    shutil.move(tmp_path / "a", tmp_path / "moved")
    manifest = load_manifest(tmp_path / "moved" / "m.json")
    assert data_universe(manifest) == str(tmp_path / "moved" / "universe.bed")
    assert ShardReader(tmp_path / "moved" / "shards" / "u.gtokidx.gtok").universe.path == str(tmp_path / "moved" / "u.gtokidx")


def test_a_shard_written_or_read_through_a_symlinked_folder_finds_its_universe(tmp_path):
    """The recorded path must lead to the universe whichever way the shard's folder is reached. A
    shard written as proj/shards/a.gtok, shards a link to scratch/shards, recorded '../universe.bed',
    which from scratch/shards (a shell's cd into the link, a job given the real path) names a file
    that is not there: such a path is recorded absolute. And a shard of proj/real/ read through a
    link to that folder took the '..' of '../universe.bed' by name, not through the link."""
    from gtok import ShardReader
    from gtok.cli import main

    proj, scratch = tmp_path / "proj", tmp_path / "scratch" / "shards"
    scratch.mkdir(parents=True)
    (proj / "real").mkdir(parents=True)
    (proj / "shards").symlink_to(scratch)
    shutil.copy(UNIVERSE, proj / "universe.bed")
    universe = str(proj / "universe.bed")
    assert main(["tokenize", "-q", "-u", universe, "-o", str(proj / "shards" / "a.gtok"), str(SAMPLES[0])]) == 0
    for shard in (proj / "shards" / "a.gtok", scratch / "a.gtok"):
        assert ShardReader(shard).universe.path == universe, shard

    assert main(["tokenize", "-q", "-u", universe, "-o", str(proj / "real" / "b.gtok"), str(SAMPLES[0])]) == 0
    assert ShardReader(proj / "real" / "b.gtok").meta.universe.path == "../universe.bed"  # no link on the way: relative
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "link").symlink_to(proj / "real")
    assert ShardReader(tmp_path / "elsewhere" / "link" / "b.gtok").universe.path == universe


def test_an_index_of_another_version_is_said_so_not_called_corrupt(tmp_path):
    index = tmp_path / "u.gtokidx"
    gtok("index", "-q", "-u", UNIVERSE, "-o", index, check=True)
    raw = bytearray(index.read_bytes())
    raw[8:12] = (2).to_bytes(4, "little")  # the version field, after the 8 magic bytes (docs/format.md)
    index.write_bytes(bytes(raw))
    proc = gtok("tokenize", "-q", "-u", index, "-o", tmp_path / "x.gtok", SAMPLES[0])
    one_line_error(proc, f"{index}: format version 2 is not supported")


def test_a_record_that_reads_back_under_another_name_is_listed(tmp_path):
    """A record named 'x.bed' becomes x.bed.gtok, which a reader (gtok's, gtars') names 'x'."""
    import numpy as np

    from gtok.formats.shard import ShardReader, write_shard

    shard = write_shard(tmp_path / "s.gtok", [("x.bed", np.array([1])), ("plain", np.array([2]))], 10, None)
    proc = gtok("export-gtars", shard, tmp_path / "out", check=True)
    assert ShardReader(tmp_path / "out" / "x.bed.gtok").names == ["x"] and "x.bed.gtok" in proc.stdout


def test_a_bad_dataset_name_is_one_line_before_any_work(tmp_path):
    proc = gtok("tokenize", "-q", "-u", UNIVERSE, "--dataset", " padded", "-o", tmp_path / "x.gtok", SAMPLES[0], check=False)
    assert proc.returncode == 1 and "--dataset ' padded': a dataset name has no control characters" in proc.stderr
    assert not list(tmp_path.iterdir())


def damaged_shard(tmp_path: Path) -> Path:
    out = tmp_path / "s.gtok"
    gtok("tokenize", "-q", "-u", UNIVERSE, "-o", out, *SAMPLES[:2], check=True)
    data = bytearray(out.read_bytes())
    data[130] ^= 0x10  # a token
    out.write_bytes(bytes(data))
    return out


def test_dump_and_info_say_when_a_checksum_fails(tmp_path):
    shard = damaged_shard(tmp_path)
    proc = gtok("dump", shard, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"gtok dump: error: {shard}: the token data is corrupt (checksum mismatch). Re-create it (e.g. rerun the tokenization job).\n"
    proc = gtok("info", shard, check=False)
    assert proc.returncode == 1 and "checksums    FAILED: " in proc.stdout and "records      2" in proc.stdout
    assert proc.stderr.count("\n") == 1 and "token data is corrupt" in proc.stderr


@pytest.mark.parametrize("command", [["export-gtars", "{shard}", "{tmp}/out"], ["manifest", "-o", "{tmp}/m.json", "{shard}"]])
def test_exporting_or_listing_a_damaged_shard_is_refused(tmp_path, command):
    """Damaged tokens must not leave as clean-looking gtars files, nor enter a manifest under the
    sha256 of their damage."""
    shard = damaged_shard(tmp_path)
    proc = gtok(*(arg.format(shard=shard, tmp=tmp_path) for arg in command))
    one_line_error(proc, f"{shard}: the token data is corrupt (checksum mismatch)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.gtok"]  # nothing written


@pytest.mark.parametrize("name", ["x" * 251, "y" * 240, "a\0b", "é" * 130, ".hid", ".", ".."])
def test_export_gtars_gives_any_record_name_a_file_name(tmp_path, name):
    import numpy as np

    from gtok.formats.shard import ShardReader, write_shard

    shard = write_shard(tmp_path / "s.gtok", [(name, np.array([1, 2])), ("plain", np.array([3]))], 10, None)
    proc = gtok("export-gtars", shard, tmp_path / "out", check=True)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) == 2 and "plain.gtok" in files and "1 records share a file name" in proc.stdout
    odd = next(f for f in files if f != "plain.gtok")
    assert len(odd.encode()) <= 205 and "\0" not in odd and "/" not in odd and not odd.startswith(".")  # not hidden
    assert ShardReader(tmp_path / "out" / odd)[0].tolist() == [1, 2]


def test_export_gtars_replaces_gtars_files_but_never_a_shard(tmp_path):
    """Both begin with b"GTOK": a shard named like a record would lose its records to one of them."""
    import numpy as np

    from gtok.formats.shard import ShardReader, write_shard

    shard = write_shard(tmp_path / "all.gtok", [("a", np.array([1, 2])), ("b", np.array([3]))], 10, None)
    gtok("export-gtars", shard, tmp_path, check=True)
    gtok("export-gtars", shard, tmp_path, check=True)  # its own gtars files: replaced
    other = write_shard(tmp_path / "b.gtok", [("x", np.array([4])), ("y", np.array([5]))], 10, None)
    one_line_error(gtok("export-gtars", shard, tmp_path), f"{other}: exists and is not a gtars .gtok file; refusing to overwrite it")
    assert ShardReader(other).names == ["x", "y"]


def test_inputs_that_share_no_chromosome_with_the_universe_are_named_once_each(tmp_path):
    """`1` against a `chr1` universe gives every region <unk> without a word from gtars; the tokens
    stay gtars', and a warning names each such input (a few, then a count)."""
    beds = [write_bed(tmp_path / f"n{i}.bed", [(str(i), 10, 500), (str(i), 900, 1000)]) for i in range(1, 6)]
    proc = gtok("tokenize", "-q", "-u", UNIVERSE, "-o", tmp_path / "x.gtok", SAMPLES[0], *beds, check=True)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("gtok tokenize: warning: ") for line in lines), lines
    assert "n1.bed: none of its chromosomes (1) is in the universe (chr1, chr10, chr11, ..." in lines[0]
    assert "(1 vs chr1)" in lines[0] and "2 more BED files share no chromosome" in lines[3]
    assert [int(x) for x in gtok("dump", tmp_path / "x.gtok", check=True).stdout.splitlines()[1].split("\t")[1].split(",")] == \
        gtars_tokens(UNIVERSE, beds[0])
    assert not gtok("tokenize", "-q", "-u", UNIVERSE, "-o", tmp_path / "y.gtok", *SAMPLES, check=True).stderr


@pytest.mark.parametrize("folder", ["model.ckpt", "checkpoints"], ids=["finished model", "run in progress"])
def test_evaluate_refuses_to_write_into_a_model_folder(tmp_path, folder):
    """Its summary.html and plots would replace the training folder's own (the workflow writes a summary.html there)."""
    run = tmp_path / "run"
    run.mkdir()
    if folder == "checkpoints":  # a first run, still training: its checkpoints and the lock every run leaves
        (run / folder).mkdir()
        (run / ".gtok-train.lock").touch()
    else:
        (run / folder).write_bytes(b"weights")
    (run / "summary.html").write_text("the training summary")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir())
    proc = gtok("evaluate", "-q", "--model", run, "--manifest", tmp_path / "m.json", "--out", run, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"gtok evaluate: error: {run}: is a model folder; give evaluate a folder "
                                                f"of its own for its metrics, plots and summary.html, such as {run / 'eval'}."]
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir()) == before


@pytest.mark.parametrize("files", [("config.json", "model.safetensors", "summary.html"), ("notes.txt",)],
                         ids=["a model as published", "a folder of the user's"])
def test_evaluate_writes_only_into_a_new_empty_or_evaluation_folder(tmp_path, files):
    folder = tmp_path / "out"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("{}" if name == "config.json" else "mine")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    words = "is a model folder" if "config.json" in files else "holds notes.txt, which is not of an evaluation"
    one_line_error(gtok("evaluate", "-q", "--model", tmp_path, "--manifest", tmp_path / "m.json", "--out", folder), words)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before


def test_an_earlier_evaluations_folder_is_one_evaluate_writes_into():
    """The workflow deletes an evaluation's declared files before rerunning it: an earlier model's
    UMAP may be all that is left, and the folder is still an evaluation's."""
    from gtok.pretrained import is_evaluation_file

    assert all(map(is_evaluation_file, ["metrics.tsv", "folds.tsv", "caption.rst", "summary.html", "umap_lsi.png",
                                        "umap_region2vec.png", "evaluated.json"]))
    assert not any(map(is_evaluation_file, ["notes.txt", "config.json", "umap.txt", "model.safetensors"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal cannot be seen")
def test_embed_on_a_device_the_machine_lacks_is_one_line(tmp_path):
    proc = gtok("embed", "-q", "--model", tmp_path, "-o", tmp_path / "v.npy", "--device", "cuda", SAMPLES[0], check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("gtok embed: error: --device cuda: this machine has no GPU that torch can use (")
    assert line.endswith("); use --device cpu, or leave --device out.")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("second, words", [
    ("a/s.bed", "a/s.bed: given twice; it would be two records named 's'. Give each file once."),
    ("b/s.bed", "a/s.bed and b/s.bed would both be the record 's' (a BED file's record is named by its file name); "
                "rename one of them."),
])
def test_embed_refuses_two_inputs_of_one_name(tmp_path, tiny_model, second, words):
    """Two BED files of one file name were embedded as two rows both named 's' in .names.txt, which
    then could not tell them apart (the same file twice: the same vector twice)."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "s.bed").write_text("chr1\t10\t20\n")
    proc = gtok("embed", "-q", "--model", tiny_model, "-o", tmp_path / "v.npy", "a/s.bed", second, cwd=tmp_path)
    one_line_error(proc, words)
    assert not (tmp_path / "v.npy").exists()


# -- hostile input (once tests/test_edge_cases.py): one-line errors or correct tokens, nothing touched --


def test_export_gtars_numbers_records_that_share_a_name(tmp_path):
    """A shard may hold two records of one name (cells of an .h5ad whose obs names repeat; only a
    manifest refuses them): their gtars files must not overwrite each other."""
    from gtars.utils import read_tokens_from_gtok

    from gtok.formats.shard import ShardReader, write_shard

    parts = []
    for i, sub in enumerate(("a", "b")):
        gtok("tokenize", "-q", "-u", UNIVERSE, "-o", tmp_path / f"{sub}.gtok", BEDS[i], check=True)
        parts.append(ShardReader(tmp_path / f"{sub}.gtok"))
    out = tmp_path / "s.gtok"
    write_shard(out, [("s", part[0]) for part in parts], parts[0].vocab_size, parts[0].fingerprint)
    proc = gtok("export-gtars", out, tmp_path / "gt")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "1 records share a file name" in proc.stdout and "'s' -> s-2.gtok" in proc.stdout and "wrote 2" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "gt").iterdir()) == ["s-2.gtok", "s.gtok"]
    assert list(read_tokens_from_gtok(str(tmp_path / "gt" / "s.gtok"))) == gtars_tokens(UNIVERSE, BEDS[0])
    assert list(read_tokens_from_gtok(str(tmp_path / "gt" / "s-2.gtok"))) == gtars_tokens(UNIVERSE, BEDS[1])


def test_version():
    from gtok import __version__

    proc = gtok("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"gtok {__version__}"
