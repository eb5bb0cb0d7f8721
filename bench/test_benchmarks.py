"""`make bench`: runs the benchmark scripts and checks the targets the issues set.

Marked `bench`, so `make test` skips them; they take minutes and want a quiet machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
pytestmark = pytest.mark.bench


def test_tokenize_speed(tmp_path):
    out = tmp_path / "tokenize.json"
    subprocess.run([sys.executable, str(HERE / "bench_tokenize.py"), "--json", str(out)], check=True)
    res = json.loads(out.read_text())
    bed, cells = res["bed"], res["cells"]
    assert bed["identical"] and cells["identical"]
    assert bed["gtars"] / bed["gtok"] >= 4
    assert cells["gtok_cells_per_s"] / cells["gtars_cells_per_s"] >= 100
