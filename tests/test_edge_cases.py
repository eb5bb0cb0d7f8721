"""Hostile input: every case where gtok once gave silent wrong data, lost input, or a traceback.

Each test asserts three things: the exact kind of outcome (a clear one-line error, or correct
tokens), no traceback, and that the inputs and any earlier output are unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import GENIML, GTARS, gtars_tokens

from gtok.errors import GtokError, ShardFormatError
from gtok.formats.manifest import check_shard, load_manifest, write_manifest
from gtok.formats.shard import ShardReader, write_shard
from gtok.tokenizer import Tokenizer

GTOK = [sys.executable, "-m", "gtok.cli"]
UNIVERSE = GENIML / "universe.uniq.bed"
BEDS = sorted((GENIML / "hg38_sample").glob("*.bed"))
ROOT = Path(__file__).resolve().parent.parent


# -- helpers ----------------------------------------------------------------------------------------


def gtok(*args, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([*GTOK, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file under the folders (hidden ones too), to prove nothing was touched."""
    out = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and not path.is_symlink():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def one_line_error(proc: subprocess.CompletedProcess, *words: str, rc: int = 1) -> str:
    """The command failed with exactly one line on stderr, holding `words`, and no traceback."""
    assert proc.returncode == rc, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A folder with a copy of the universe and three BED files."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(UNIVERSE, folder / "universe.bed")
    for bed in BEDS[:3]:
        shutil.copy(bed, folder / bed.name)
    return folder


@pytest.fixture
def shard(tmp_path, inputs) -> Path:
    out = tmp_path / "out" / "s.gtok"
    assert gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", out, *sorted(inputs.glob("Ex*.bed"))).returncode == 0
    return out


def mount_tmpfs(folder: Path, options: str) -> contextlib.AbstractContextManager:
    """A real small or read-only file system at `folder` (needs root, as CI has for SLURM)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")

    @contextlib.contextmanager
    def mounted():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
        try:
            yield folder
        finally:
            subprocess.run(["umount", "-l", str(folder)], check=False)

    return mounted()


# -- 1. a user config inherits nothing from the example -----------------------------------------------


@pytest.mark.slow
def test_a_user_config_inherits_nothing_from_the_example(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from workflow_copy import write_workflow

    folder = write_workflow(tmp_path / "wf", yaml.safe_load((ROOT / "config" / "config.yaml").read_text()),
                            extra=("resources", "config"))
    shutil.copy(UNIVERSE, folder / "mine.bed")
    (folder / "my.yaml").write_text(yaml.safe_dump(
        {"universe": "mine.bed", "inputs": {"bed": ["resources/example/bed/Example*.bed"]}, "results": "out"}))
    before = snapshot(folder / "resources")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "my.yaml"], cwd=folder,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    jobs = run.stdout + run.stderr
    assert "tokenize_bed" in jobs and "tokenize_h5ad" not in jobs and "rule train" not in jobs  # no example cells, no toy training
    assert "out/shards/bed/0000.gtok" in jobs  # schema defaults: 200 files per shard, one shard
    assert "inputs come from the bundled example" in jobs  # the BED files are the example's: it says so
    example = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/example.yaml"],
                             cwd=folder, capture_output=True, text=True)
    assert "tokenize_h5ad" in example.stdout and "come from the bundled example" in example.stderr
    corces = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/example-corces.yaml"],
                            cwd=folder, capture_output=True, text=True)  # make run's real cells: their own results
    assert corces.returncode == 0, corces.stderr
    assert "results-corces/eval/metrics.tsv" in corces.stdout and "tokenize_bed" not in corces.stdout
    plain = subprocess.run([sys.executable, "-m", "snakemake", "-n"], cwd=folder, capture_output=True, text=True)
    assert plain.returncode != 0 and "path/to/universe.bed: no such file; edit config/config.yaml" in plain.stdout + plain.stderr
    assert snapshot(folder / "resources") == before


# -- 2. -o never destroys what it points at -------------------------------------------------------------


@pytest.mark.parametrize("target, words", [
    ("input", "must end in .gtok"),
    ("universe", "must end in .gtok"),
    ("no_suffix", "must end in .gtok"),
    ("folder", "is a folder"),
    ("foreign", "exists and is not a gtok shard; refusing to overwrite it"),
    ("shard_input", "is also an input"),
])
def test_tokenize_refuses_an_output_that_would_destroy_something(tmp_path, inputs, shard, target, words):
    beds = sorted(inputs.glob("Ex*.bed"))
    (tmp_path / "foreign.gtok").write_text("my notes\n")
    outputs = {"input": beds[0], "universe": inputs / "universe.bed", "no_suffix": tmp_path / "out" / "s",
               "folder": tmp_path, "foreign": tmp_path / "foreign.gtok", "shard_input": shard}
    extra = [shard] if target == "shard_input" else []
    before = snapshot(tmp_path)
    proc = gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", outputs[target], *beds, *extra)
    one_line_error(proc, words)
    assert snapshot(tmp_path) == before


def test_an_output_that_is_a_device_or_fifo_stays_one(tmp_path, inputs):
    """As root, `-o /dev/null` once turned the device into a regular file. The test makes its own
    device node (a copy of /dev/null's) and FIFO, with the right suffix, so that a regression
    cannot damage the machine's /dev/null."""
    import stat

    specials = [tmp_path / "fifo.gtok"]
    os.mkfifo(specials[0])
    if os.geteuid() == 0:
        specials.append(tmp_path / "null.gtok")
        os.mknod(specials[1], 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    for special in specials:
        proc = gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", special, BEDS[0], timeout=30)
        one_line_error(proc, special.name, "exists and is not a regular file")
        assert not special.is_file()
    one_line_error(gtok("manifest", "-q", "-o", "/dev/null", BEDS[0]), "/dev/null", "must end in .json")
    assert Path("/dev/null").is_char_device()


@pytest.mark.slow
def test_every_writing_command_checks_its_output(tmp_path, inputs, shard):
    before = snapshot(tmp_path)
    one_line_error(gtok("manifest", "-q", "-o", shard, shard), "must end in .json")
    (tmp_path / "notes.json").write_text('{"mine": 1}')
    before = snapshot(tmp_path)
    one_line_error(gtok("manifest", "-q", "-o", tmp_path / "notes.json", shard), "is not a gtok manifest")
    one_line_error(gtok("export-gtars", shard, shard), "exists and is not a folder")
    one_line_error(gtok("train", "-q", "-m", tmp_path / "notes.json", "--model", "encoder", "--out", shard),
                   "s.gtok: exists and is not a folder")
    one_line_error(gtok("embed", "-q", "-c", shard, "-o", BEDS[0], BEDS[0]), "must end in .npy")
    assert snapshot(tmp_path) == before


# -- 3. coordinates beyond 2**32 are refused, never wrapped onto another chromosome -----------------------


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


def test_huge_coordinates_in_h5ad_var_are_refused(tmp_path):
    import anndata as ad
    import pandas as pd

    var = pd.DataFrame({"chr": ["chr1", "chr1"], "start": [100, 2**34 + 150], "end": [200, 2**34 + 160]},
                       index=["a", "b"])
    path = tmp_path / "big.h5ad"
    ad.AnnData(X=np.ones((2, 2), np.float32), var=var).write_h5ad(path)
    one_line_error(gtok("tokenize", "-q", "-u", GTARS / "peaks.bed", "-o", tmp_path / "c.gtok", path),
                   "big.h5ad: var, column 'start', row 1", "is not a coordinate")


# -- 4. the universe cache is checked, not trusted ---------------------------------------------------------


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


# -- 5. export-gtars never lets two records share a file ---------------------------------------------------


def test_export_gtars_numbers_records_that_share_a_name(tmp_path):
    from gtars.utils import read_tokens_from_gtok

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    shutil.copy(BEDS[0], tmp_path / "a" / "s.bed")
    shutil.copy(BEDS[1], tmp_path / "b" / "s.bed")
    out = tmp_path / "s.gtok"
    assert gtok("tokenize", "-q", "-u", UNIVERSE, "-o", out, tmp_path / "a" / "s.bed", tmp_path / "b" / "s.bed").returncode == 0
    proc = gtok("export-gtars", out, tmp_path / "gt")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "1 records share a file name" in proc.stdout and "'s' -> s-2.gtok" in proc.stdout and "wrote 2" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "gt").iterdir()) == ["s-2.gtok", "s.gtok"]
    assert list(read_tokens_from_gtok(str(tmp_path / "gt" / "s.gtok"))) == gtars_tokens(UNIVERSE, BEDS[0])
    assert list(read_tokens_from_gtok(str(tmp_path / "gt" / "s-2.gtok"))) == gtars_tokens(UNIVERSE, BEDS[1])


# -- 6. two labels for one file are an error -------------------------------------------------------------


def test_conflicting_label_rows_name_the_sheet_and_both_lines(tmp_path, inputs):
    beds = sorted(inputs.glob("Ex*.bed"))
    sheet = tmp_path / "labels.tsv"
    sheet.write_text(f"path\tlabel\n{beds[0]}\tliver\n{beds[1]}\tlung\n{beds[0]}\tbrain\n{beds[2]}\tlung\n")
    before = snapshot(tmp_path)
    proc = gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", tmp_path / "l.gtok", "--labels", sheet, *beds)
    one_line_error(proc, "labels.tsv, lines 2 and 4", "two labels, 'liver' and 'brain'")
    assert snapshot(tmp_path) == before


# -- 7. verify checks the manifest's own fields ------------------------------------------------------------


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


# -- 8. numeric options accept only valid values -----------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["tokenize", "--chunk-rows", "-5"], "--chunk-rows: '-5' is not a positive integer"),
    (["tokenize", "--chunk-rows", "0"], "--chunk-rows: '0' is not a positive integer"),
    (["train", "--max-steps", "0"], "--max-steps: '0' is not a positive integer (or -1 for no limit)"),
    (["train", "--max-epochs", "x"], "--max-epochs: 'x' is not an integer"),
    (["train", "--seed", "-1"], "--seed: '-1' is not a non-negative integer"),
    (["train", "--devices", "0"], "--devices: '0' is not 'auto'"),
    (["embed", "--batch-size", "0"], "--batch-size: '0' is not a positive integer"),
])
def test_numeric_options_refuse_invalid_values(tmp_path, args, words):
    required = {"tokenize": ["-u", UNIVERSE, "-o", tmp_path / "x.gtok", BEDS[0]],
                "train": ["-m", "m.json", "--model", "encoder", "--out", tmp_path / "r"],
                "embed": ["-c", "c.ckpt", "-o", tmp_path / "e.npy", BEDS[0]]}[args[0]]
    one_line_error(gtok(*args, *required), words, rc=2)
    assert list(tmp_path.iterdir()) == []


def test_rows_option_must_be_a_valid_range(tmp_path):
    for rows, words in (("5:2", "need 0 <= START <= STOP"), ("a:b", "expected START:STOP")):
        one_line_error(gtok("tokenize", "-q", "-u", GTARS / "peaks.bed", "-o", tmp_path / "x.gtok", "--rows", rows,
                            GTARS / "pbmc_hg38.h5ad"), words)
    assert list(tmp_path.iterdir()) == []


# -- 9. the sample sheet's split reaches the manifest and training ---------------------------------------


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


@pytest.mark.slow
def test_workflow_passes_the_sheet_split_to_the_manifest(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from workflow_copy import write_workflow

    folder = write_workflow(tmp_path / "wf", {"universe": "u.bed", "inputs": {"bed": "sheet.tsv"},
                                              "shards": {"files_per_shard": 2}})
    shutil.copy(UNIVERSE, folder / "u.bed")
    splits = ["train", "train", "val", "train", "test", "val"]
    rows = "".join(f"{bed}\t{split}\n" for bed, split in zip(BEDS, splits))
    (folder / "sheet.tsv").write_text("path\tsplit\n" + rows)
    run = subprocess.run([sys.executable, "-m", "snakemake", "-c1", "results/manifest.json"], cwd=folder,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = load_manifest(folder / "results" / "manifest.json")
    by_split = {}
    for entry in manifest.entries:
        by_split.setdefault(entry.split, set()).update(ShardReader(entry.path).names)
    assert by_split == {s: {b.stem for b, x in zip(BEDS, splits) if x == s} for s in ("train", "val", "test")}


# -- 10. every byte of a shard is checked -------------------------------------------------------------------


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


# -- file system errors on the output --------------------------------------------------------------------


def test_a_missing_output_folder_is_created(tmp_path, inputs):
    out = tmp_path / "new" / "deeper" / "s.gtok"
    assert gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", out, BEDS[0]).returncode == 0
    assert len(ShardReader(out)) == 1


def test_empty_output_path(inputs):
    one_line_error(gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", "", BEDS[0]), "output path is empty")


def test_read_only_folder(tmp_path, inputs):
    with mount_tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        proc = gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", ro / "s.gtok", BEDS[0])
        one_line_error(proc, "s.gtok: cannot write it: read-only file system; nothing was written")


def test_full_disk_keeps_the_old_shard(tmp_path, inputs):
    big = tmp_path / "big.bed"
    rows = np.random.default_rng(0).integers(0, 10**8, 200_000)
    big.write_text("".join(f"chr1\t{s}\t{s + 500}\n" for s in rows))
    universe = tmp_path / "wide.bed"
    universe.write_text("".join(f"chr1\t{s}\t{s + 1000}\n" for s in range(0, 10**8, 1000)))
    with mount_tmpfs(tmp_path / "small", "size=1m") as small:
        assert gtok("tokenize", "-q", "-u", universe, "-o", small / "s.gtok", BEDS[0]).returncode == 0
        before = snapshot(small)
        proc = gtok("tokenize", "-q", "--no-cache", "-u", universe, "-o", small / "s.gtok", big)
        one_line_error(proc, "s.gtok: cannot write it: no space left on device; nothing was written (the existing file is unchanged)")
        assert snapshot(small) == before


@pytest.mark.slow
def test_train_out_and_export_into_a_file(tmp_path, shard):
    manifest = tmp_path / "m.json"
    write_manifest(manifest, [shard])
    before = snapshot(tmp_path)
    one_line_error(gtok("train", "-q", "-m", manifest, "--model", "encoder", "--out", manifest),
                   "m.json: exists and is not a folder")
    one_line_error(gtok("export-gtars", shard, manifest), "m.json: exists and is not a folder")
    assert snapshot(tmp_path) == before


# -- two writers of one output -------------------------------------------------------------------------


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


# -- h5ad errors ---------------------------------------------------------------------------------------------


@pytest.fixture
def truncated_h5ad(tmp_path) -> Path:
    data = (GTARS / "pbmc_hg38.h5ad").read_bytes()
    path = tmp_path / "cut.h5ad"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.slow
def test_truncated_h5ad_is_one_line_in_tokenize_and_embed(tmp_path, truncated_h5ad, tiny_model):
    before = snapshot(tmp_path)
    one_line_error(gtok("tokenize", "-q", "-u", GTARS / "peaks.bed", "-o", tmp_path / "c.gtok", truncated_h5ad),
                   "cut.h5ad: not a readable .h5ad file")
    one_line_error(gtok("embed", "-q", "-c", tiny_model, "-o", tmp_path / "e.h5ad", truncated_h5ad),
                   "cut.h5ad: not a readable .h5ad file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("start, words", [
    ([100.0, np.nan], "column 'start', row 1: nan is not a coordinate"),
    ([100.0, 150.7], "column 'start', row 1: 150.7 is not a coordinate"),
])
def test_bad_h5ad_var_names_the_file_column_and_row(tmp_path, start, words):
    import anndata as ad
    import pandas as pd

    var = pd.DataFrame({"chr": ["chr1", "chr1"], "start": start, "end": [200.0, 300.0]}, index=["a", "b"])
    path = tmp_path / "v.h5ad"
    ad.AnnData(X=np.ones((2, 2), np.float32), var=var).write_h5ad(path)
    proc = gtok("tokenize", "-q", "-u", GTARS / "peaks.bed", "-o", tmp_path / "c.gtok", path)
    one_line_error(proc, "v.h5ad: var, ", words)
    assert "Warning" not in proc.stderr


def test_integral_float_coordinates_in_h5ad_var_are_whole_numbers(tmp_path):
    import anndata as ad

    src = ad.read_h5ad(GTARS / "pbmc_hg38.h5ad")
    as_float = src.copy()
    as_float.var["start"] = as_float.var["start"].astype(float)
    path = tmp_path / "f.h5ad"
    as_float.write_h5ad(path)
    tok = Tokenizer.from_bed(GTARS / "peaks.bed", cache_dir="off")
    assert [t.tolist() for t in tok.encode_anndata(path)] == [t.tolist() for t in tok.encode_anndata(src)]


# -- headers: only real header lines are skipped ---------------------------------------------------------


@pytest.mark.parametrize("first, words", [
    ("chr1  100\t200\n", "line 1: start coordinate is empty"),
    (" chr1\t100\t200\n", "line 1: the chromosome name is empty"),
    ("\tchr1\t100\t200\n", "line 1: the chromosome name is empty"),
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


# -- other inputs --------------------------------------------------------------------------------------------


def test_a_folder_or_fifo_input_is_named_as_such(tmp_path, inputs):
    one_line_error(gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", tmp_path / "x.gtok", tmp_path),
                   "is a folder")
    fifo = tmp_path / "pipe.bed"
    os.mkfifo(fifo)
    one_line_error(gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", tmp_path / "x.gtok", fifo),
                   "pipe.bed: is not a regular file")
    start = time.monotonic()  # a FIFO nobody writes to, as the universe: refused at once, no hang
    one_line_error(gtok("tokenize", "-q", "-u", fifo, "-o", tmp_path / "x.gtok", BEDS[0], timeout=30),
                   "pipe.bed: is not a regular file")
    assert time.monotonic() - start < 30 and not (tmp_path / "x.gtok").exists()


@pytest.mark.parametrize("line, words", [
    ("chr1\t1234567890123456789\t1234567890123456799\n", "start coordinate 1234567890123456789 is too large"),
    ("chr1\t\u0661\u0660\u0660\t200\n", "start coordinate '\u0661\u0660\u0660' is not a non-negative integer (only the digits 0-9)"),
])
def test_number_messages(tmp_path, inputs, line, words):
    bed = tmp_path / "n.bed"
    bed.write_text(line)
    one_line_error(gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", tmp_path / "n.gtok", bed),
                   "n.bed, line 1: " + words)


@pytest.mark.slow
def test_braces_in_a_bed_file_name_are_named_by_the_workflow(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from workflow_copy import write_workflow

    folder = write_workflow(tmp_path / "wf", {"universe": "u.bed", "inputs": {"bed": ["data/*.bed"]}})
    shutil.copy(UNIVERSE, folder / "u.bed")
    (folder / "data").mkdir()
    shutil.copy(BEDS[0], folder / "data" / "a{x}.bed")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n"], cwd=folder, capture_output=True, text=True)
    assert run.returncode != 0 and "Traceback" not in run.stdout + run.stderr
    assert "BED input data/a{x}.bed: Snakemake cannot use file names with braces" in run.stdout + run.stderr


# -- training and embedding --------------------------------------------------------------------------------


@pytest.fixture
def manifest(tmp_path, shard) -> Path:
    path = tmp_path / "m.json"
    write_manifest(path, [shard])
    return path


@pytest.mark.slow
@pytest.mark.parametrize("config, words", [
    ({"trainer": {"max_steps": "abc"}}, "section 'trainer': max_steps must be an integer, not 'abc'"),
    ({"data": {"batch_size": 0}}, "section 'data': batch_size must be at least 1, not 0"),
    ({"encoder": {"objective": "gpt"}}, "section 'encoder': objective must be one of mlm, rtd, not 'gpt'"),
    ({"data": {"val_fraction": 1.5}}, "section 'data': val_fraction must be at most 0.99, not 1.5"),
    ({"seed": -3}, "seed must be at least 0, not -3"),
])
def test_wrong_types_in_the_train_config_are_one_line(tmp_path, manifest, config, words):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(config))
    before = snapshot(tmp_path)
    one_line_error(gtok("train", "-q", "-m", manifest, "--model", "encoder", "--out", tmp_path / "run", "-c", cfg),
                   "train.yaml", words)
    assert snapshot(tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize("kind, words", [("bed", "it is a text file (a BED file?)"), ("shard", "it is a .gtok shard")])
def test_a_checkpoint_that_is_a_bed_file_or_a_shard(tmp_path, shard, kind, words):
    path = BEDS[0] if kind == "bed" else shard
    one_line_error(gtok("embed", "-q", "-c", path, "-o", tmp_path / "e.npy", BEDS[1]), "not a checkpoint: " + words)
    assert not (tmp_path / "e.npy").exists()


@pytest.mark.slow
def test_an_id_beyond_the_vocabulary_is_refused_before_training_without_verify(tmp_path):
    from gtok.tokenizer import Tokenizer

    universe = tmp_path / "u.bed"  # 93 regions and 7 special tokens: 100 ids
    universe.write_text("".join(f"chr1\t{i * 100}\t{i * 100 + 50}\n" for i in range(93)))
    fingerprint = Tokenizer.from_bed(universe).fingerprint
    path = write_shard(tmp_path / "s.gtok", [("a", np.array([1, 2, 3])), ("b", np.array([4, 5]))], 100, fingerprint)
    manifest = tmp_path / "m.json"
    write_manifest(manifest, [path])
    data = bytearray(path.read_bytes())
    data[128:130] = (5000).to_bytes(2, "little")  # a damaged id; with verify: false no CRC is checked
    path.write_bytes(bytes(data))
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"verify": False, "val_fraction": 0}}))
    proc = gtok("train", "-q", "-m", manifest, "--model", "encoder", "--out", tmp_path / "run", "-c", cfg, "--max-steps", "1",
                "-u", universe)
    one_line_error(proc, "s.gtok: token id 5000 does not fit the vocabulary of size 100")
    assert not (tmp_path / "run" / "model.ckpt").exists()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A one-step encoder trained with `gtok train -q`, whose output must be its one result line."""
    folder = tmp_path_factory.mktemp("tiny")
    shard = folder / "s.gtok"
    assert gtok("tokenize", "-q", "-u", UNIVERSE, "-o", shard, *BEDS).returncode == 0
    write_manifest(folder / "m.json", [shard])
    cfg = folder / "t.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"batch_size": 2, "val_fraction": 0, "num_workers": 0},
                                   "encoder": {"d_model": 8, "n_layers": 1, "n_heads": 2, "d_ff": 8}}))
    proc = gtok("train", "-q", "-m", folder / "m.json", "--model", "encoder", "--out", folder / "run", "-c", cfg,
                "--max-steps", "1", "-u", UNIVERSE, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [f"trained encoder: {folder / 'run' / 'model.ckpt'}"]
    assert "Tip" not in proc.stderr and "GPU available" not in proc.stderr
    return folder / "run" / "model.ckpt"


@pytest.mark.slow
def test_train_quiet_prints_no_lightning_tips(tiny_model):
    assert tiny_model.is_file()  # the fixture ran `gtok train -q` and checked its output


# -- small additions -------------------------------------------------------------------------------------------


def test_version():
    from gtok import __version__

    proc = gtok("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"gtok {__version__}"


def test_duplicate_universe_warning_is_one_line(tmp_path):
    u = tmp_path / "dup.bed"
    u.write_text("chr1\t100\t200\nchr1\t100\t200\nchr1\t300\t400\n")
    proc = gtok("tokenize", "-q", "--no-cache", "-u", u, "-o", tmp_path / "d.gtok", BEDS[0])
    assert proc.returncode == 0
    assert proc.stderr.strip().splitlines() == [
        f"gtok tokenize: warning: {u}: 1 duplicate region line(s) ignored; each region keeps the id of its first line."
    ]


def test_errors_of_the_library_name_their_source():
    with pytest.raises(GtokError, match=r"the DataFrame, column 'start', row 0: 1.5 is not a coordinate"):
        import pandas as pd

        Tokenizer.from_bed(GTARS / "peaks.bed", cache_dir="off").tokenize(pd.DataFrame({"c": ["chr1"], "s": [1.5], "e": [9]}))
