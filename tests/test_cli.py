"""The `gtok` command: tokenize, dump, info, export-gtars, and one-line errors for bad input."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import GENIML, GTARS, gtars_tokens

GTOK = [sys.executable, "-m", "gtok.cli"]
UNIVERSE = GENIML / "universe.uniq.bed"
SAMPLES = sorted((GENIML / "hg38_sample").glob("*.bed")) + [GENIML / "to_tokenize.bed"]


def gtok(*args, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*GTOK, *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(proc.stderr)
    return proc


def test_tokenize_dump_matches_gtars(tmp_path):
    out = tmp_path / "s.gtok"
    gtok("tokenize", "-q", "--universe", UNIVERSE, "-o", out, *SAMPLES)
    lines = gtok("dump", out).stdout.splitlines()
    assert len(lines) == len(SAMPLES)
    for line, bed in zip(lines, SAMPLES):
        name, ids = line.split("\t")
        assert name == bed.name.removesuffix(".bed")
        assert [int(x) for x in ids.split(",")] == gtars_tokens(UNIVERSE, bed)


def test_info_and_export_round_trip(tmp_path):
    out = tmp_path / "s.gtok"
    gtok("tokenize", "-q", "-u", UNIVERSE, "-o", out, *SAMPLES[:3])
    info = gtok("info", out).stdout
    assert "records      3" in info and "uint16" in info and "fingerprint" in info and "median" in info
    gtok("export-gtars", out, tmp_path / "gt")
    from gtars.utils import read_tokens_from_gtok

    for bed in SAMPLES[:3]:
        assert list(read_tokens_from_gtok(str(tmp_path / "gt" / f"{bed.stem}.gtok"))) == gtars_tokens(UNIVERSE, bed)


def test_labels_sheet_and_h5ad_label_key(tmp_path):
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text("path\tlabel\n" + "".join(f"{p}\t{'a' if i % 2 else 'b'}\n" for i, p in enumerate(SAMPLES)))
    out = tmp_path / "l.gtok"
    gtok("tokenize", "-q", "-u", UNIVERSE, "-o", out, "--labels", sheet, *SAMPLES)
    from gtok import ShardReader

    assert ShardReader(out).labels == ["b", "a"] * 3 + ["b"]
    cells = tmp_path / "c.gtok"
    gtok("tokenize", "-q", "-u", GTARS / "peaks.bed", "-o", cells, "--rows", "2:9", "--label-key", "cell_type", GTARS / "pbmc_hg38.h5ad")
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

    commands = build_parser()._subparsers._group_actions[0].choices  # every registered subcommand
    assert {"tokenize", "index", "dump", "info", "export-gtars", "manifest", "verify", "simulate", "train", "embed",
            "evaluate"} <= set(commands)
    top = gtok("--help").stdout
    for cmd in commands:
        assert cmd in top
        page = gtok(cmd, "--help").stdout
        assert page.startswith("usage: gtok " + cmd) and len(page.splitlines()) > 3, cmd


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
    gtok("tokenize", "-q", "-u", UNIVERSE, "-o", out, SAMPLES[0])
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
    proc = gtok("info", tmp_path / "nope.gtok", check=False)
    assert proc.returncode == 1 and "nope.gtok: no such shard file" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["simulate", "-o", "x.h5ad", "--base-rate", "0"], "argument --base-rate: '0' is not a positive number"),
    (["simulate", "-o", "x.h5ad", "--cells", "-3"], "argument --cells: '-3' is not a positive integer"),
    (["simulate", "-o", "x.h5ad", "--cell-types", "40"], "40 programs of 100 peaks need at least 4000 peaks"),
    (["evaluate", "--model", "m", "--manifest", "m.json", "-o", "e", "--val-fraction", "1.5"],
     "argument --val-fraction: '1.5' is not a fraction in [0, 1)"),
])
def test_numeric_options_of_simulate_and_evaluate_accept_only_valid_values(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "gtok.cli", *args], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("folder", ["model.ckpt", "checkpoints"], ids=["finished model", "run in progress"])
def test_evaluate_refuses_to_write_into_a_model_folder(tmp_path, folder):
    """Its summary.html and plots would replace the training folder's own (the workflow writes a summary.html there)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / folder).mkdir() if folder == "checkpoints" else (run / folder).write_bytes(b"weights")
    (run / "summary.html").write_text("the training summary")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir())
    proc = gtok("evaluate", "-q", "--model", run, "--manifest", tmp_path / "m.json", "--out", run, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"gtok evaluate: error: {run}: is a model folder; give evaluate a folder "
                                                f"of its own for its metrics, plots and summary.html, such as {run / 'eval'}."]
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir()) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal cannot be seen")
def test_embed_on_a_device_the_machine_lacks_is_one_line(tmp_path):
    proc = gtok("embed", "-q", "--model", tmp_path, "-o", tmp_path / "v.npy", "--device", "cuda", SAMPLES[0], check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("gtok embed: error: --device cuda: this machine has no GPU that torch can use (")
    assert line.endswith("); use --device cpu, or leave --device out.")
    assert list(tmp_path.iterdir()) == []
