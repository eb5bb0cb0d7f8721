"""The fault drills that fit CI's time: a shard damaged by one flipped bit (bench/drill_corruption.py).

The bit flip changes a token id by one, to another valid id, so only the checksums can catch it.
The drill runs as a user runs it, `python bench/drill_corruption.py --json OUT`; the tests read
what it found.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DRILL = Path(__file__).resolve().parent.parent / "bench" / "drill_corruption.py"

pytestmark = pytest.mark.slow  # real training runs, workflow runs or drills: `make test` runs them


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict:
    """The drill's results: the example's shard bed-1.gtok with one token's lowest bit flipped,
    then `gtok verify` and `gtok train` (default options, and `data.verify: false`) on its manifest."""
    out = tmp_path_factory.mktemp("corrupt") / "drill.json"
    run = subprocess.run([sys.executable, str(DRILL), "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(out.read_text())


def test_flip_changes_one_token_to_another_valid_id(damaged):
    assert damaged["tokens_changed"] == 1 and damaged["token_after"] == damaged["token_before"] ^ 1
    assert damaged["token_after"] < damaged["vocab_size"]  # the shard still opens, and the id is valid
    assert damaged["verify_exit"] == 1


def test_verify_names_the_damaged_shard_and_only_it(damaged):
    problems = damaged["verify_stdout"].splitlines()
    assert problems and all(line.startswith(f"{damaged['path']}: ") for line in problems)
    assert any("token data is corrupt" in line for line in problems)
    assert "Traceback" not in damaged["verify_stderr"]


def test_train_refuses_it_by_default_in_one_line_naming_the_shard(damaged):
    assert damaged["train_default_exit"] == 1
    lines = damaged["train_default_stderr"].splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gtok train: error: {damaged['path']}: the token data is corrupt")
    assert not damaged["train_default_checkpoints"]
    assert damaged["train_no_verify_exit"] == 0  # the documented opt-out trains on it
