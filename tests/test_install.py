"""`pip install gtok` without extras: the core tokenizes in memory, and a command that needs an
extra says which one in one line (pyproject.toml's extras; gtok.extras)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a virtual environment and installs the package

ROOT = Path(__file__).resolve().parent.parent
UNIVERSE = ROOT / "tests" / "data" / "geniml" / "universe.uniq.bed"
BED = ROOT / "tests" / "data" / "geniml" / "s1_a.bed"
#: The core venv's own environment: nothing of this checkout's (a PYTHONPATH would shadow the install).
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
CORE_ONLY = """
import importlib.util, json, sys
from gtok.tokenizer import Tokenizer
tok = Tokenizer.from_bed(sys.argv[1])
ids = tok.encode(sys.argv[2])
absent = [m for m in ("matplotlib", "sklearn", "umap", "snakemake", "transformers") if importlib.util.find_spec(m)]
print(json.dumps({"ids": ids.tolist(), "dtype": str(ids.dtype), "extras_found": absent}))
"""


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=ENV)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=900, env=ENV)  # the CPU build, as `make setup` pins
    # from a copy of what a wheel is built from: pip builds in the source tree, which must stay clean
    source = venv.parent / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "_kernels_*"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([*pip, str(source)], check=True, timeout=900, env=ENV)  # no extras
    return venv


def test_a_core_install_tokenizes_in_memory_like_the_full_one(core_venv):
    from gtok.tokenizer import Tokenizer

    run = subprocess.run([str(core_venv / "bin" / "python"), "-c", CORE_ONLY, str(UNIVERSE), str(BED)],
                         capture_output=True, text=True, timeout=300, cwd=core_venv.parent, env=ENV)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout)
    assert got["extras_found"] == []  # the core pulled in none of the extras' packages
    assert got["ids"] == Tokenizer.from_bed(UNIVERSE).encode(BED).tolist() and got["dtype"] == "torch.int64"


def test_a_command_that_needs_an_extra_names_it(core_venv, tmp_path):
    run = subprocess.run([str(core_venv / "bin" / "gtok"), "train", "--manifest", str(tmp_path / "m.json"),
                          "--model", "encoder", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, env=ENV)
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr[-2000:]
    (line,) = run.stderr.strip().splitlines()
    assert line.endswith("gtok train needs matplotlib, which the 'train' extra installs: pip install 'gtok[train]' "
                         "(or 'gtok[all]').")
    assert not (tmp_path / "run").exists()
