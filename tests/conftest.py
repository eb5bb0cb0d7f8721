"""Shared test helpers. gtars (the reference implementation) is the oracle for token parity.

For hostile input, a test asserts three things: the exact kind of outcome (a clear one-line error,
`one_line_error`, or correct tokens), no traceback, and that the inputs and any earlier output are
unchanged (`snapshot` before and after). `gtok` runs the command line; `inputs`, `shard` and
`tiny_model` are the small data and model those tests run it on.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DATA = Path(__file__).parent / "data"
GTARS = DATA / "gtars"
GENIML = DATA / "geniml"
UNIVERSE = GENIML / "universe.uniq.bed"
BEDS = sorted((GENIML / "hg38_sample").glob("*.bed"))
GTOK = [sys.executable, "-m", "gtok.cli"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep the universe cache of every test out of the user's home."""
    monkeypatch.setenv("GTOK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "gtok-cache"))


@functools.cache
def gtars_tokenizer(universe: str):
    from gtars.tokenizers import Tokenizer

    return Tokenizer(universe)


def gtars_tokens(universe: str | Path, bed: str | Path) -> list[int]:
    """What gtars gives for a BED file against a universe."""
    return list(gtars_tokenizer(str(universe))(str(bed))["input_ids"])


def write_bed(path: Path, rows, header: str = "") -> Path:
    path.write_text(header + "".join(f"{c}\t{s}\t{e}\n" for c, s, e in rows))
    return path


def gtars_regions(universe: str | Path, rows) -> list[int]:
    """What gtars gives for in-memory regions (kept in the given order, unlike a file)."""
    from gtars.models import Region

    return list(gtars_tokenizer(str(universe))([Region(c, int(s), int(e), None) for c, s, e in rows])["input_ids"])


def gtok(*args, check: bool = False, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    """`python -m gtok.cli ARGS`, output captured; with `check`, a failure fails the test with its stderr."""
    proc = subprocess.run([*GTOK, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if check and proc.returncode:
        raise AssertionError(proc.stderr)
    return proc


def snapshot(folder: Path) -> dict[str, tuple[str, int, int]]:
    """Every file under `folder` (hidden ones too; not symlinks), by its path relative to it:
    (sha256, inode, modification time), to prove that nothing was touched: neither rewritten,
    replaced nor added."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_ino,
                                         p.stat().st_mtime_ns)
            for p in sorted(Path(folder).rglob("*")) if p.is_file() and not p.is_symlink()}


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


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A one-step encoder trained with `gtok train -q`, whose output must be its one result line."""
    folder = tmp_path_factory.mktemp("tiny")
    shard = folder / "s.gtok"
    assert gtok("tokenize", "-q", "-u", UNIVERSE, "-o", shard, *BEDS).returncode == 0
    from gtok.formats.manifest import write_manifest

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


def write_h5mu(path, modalities: dict) -> None:
    """A .h5mu as mudata lays it out: each modality an .h5ad's groups under mod/<name>, the
    root marked MuData, with global obs and var (built here with h5py, so mudata is not needed)."""
    import h5py
    import pandas
    from anndata.io import write_elem

    with h5py.File(path, "w") as out:
        out.attrs.update({"encoding-type": "MuData", "encoding-version": "0.1.0", "encoder": "mudata"})
        mod = out.create_group("mod")
        mod.attrs["mod-order"] = list(modalities)
        for name, adata in modalities.items():
            single = path.with_suffix(f".{name}.h5ad")
            adata.write_h5ad(single)
            group = mod.create_group(name)
            with h5py.File(single, "r") as src:
                for key in src:
                    src.copy(src[key], group, name=key)
                group.attrs.update(dict(src.attrs))
        first = next(iter(modalities.values()))
        write_elem(out, "obs", pandas.DataFrame(index=first.obs_names))
        write_elem(out, "var", pandas.DataFrame(index=[v for a in modalities.values() for v in a.var_names]))
