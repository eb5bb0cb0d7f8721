"""`make profile` (tools/install_profile.py): `snakemake --profile slurm`, literally, from the repository root.

What is checked, with a temporary HOME and no XDG variables (so nothing of the machine's own
Snakemake config takes part): the profile lands where Snakemake looks for named profiles; a
second install of the same profile changes nothing; a different profile already there is left
as it is while the difference is shown; and a dry run `--profile slurm` in a copy of the
repository reads both the installed profile and the workflow's profiles/default.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow_copy import write_workflow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path) -> dict[str, str]:
    """An environment whose HOME is empty and which sets no XDG folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k != "SNAKEMAKE_PROFILE"}
    env.update(HOME=str(tmp_path / "home"), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return env


def install(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "install_profile.py"), *args],
                          env=env, capture_output=True, text=True, timeout=60)


def test_installs_where_snakemake_looks_and_twice_is_a_no_op(home):
    first = install(home)
    assert first.returncode == 0, first.stderr
    dest = Path(home["HOME"]) / ".config" / "snakemake" / "slurm"
    assert (dest / "config.yaml").read_text() == (ROOT / "profiles" / "slurm" / "config.yaml").read_text()
    assert "<account>" in first.stdout  # the placeholders left to fill in are named
    again = install(home)
    assert again.returncode == 0 and "already installed" in again.stdout


def test_xdg_config_home_is_followed(home, tmp_path):
    home["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    assert install(home).returncode == 0
    assert (tmp_path / "xdg" / "snakemake" / "slurm" / "config.yaml").is_file()
    assert not (Path(home["HOME"]) / ".config").exists()


def test_placeholders_are_filled_in(home):
    assert install(home, "--partition", "cpu", "--account", "lab").returncode == 0
    settings = yaml.safe_load((Path(home["HOME"]) / ".config/snakemake/slurm/config.yaml").read_text())
    assert settings["default-resources"]["slurm_partition"] == "cpu"
    assert settings["default-resources"]["slurm_account"] == "lab"
    assert settings["set-resources"]["train"]["slurm_partition"] == "<gpu-partition>"


def test_a_different_profile_is_not_overwritten_and_the_difference_is_shown(home):
    dest = Path(home["HOME"]) / ".config" / "snakemake" / "slurm"
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text("executor: slurm\njobs: 5\n")
    result = install(home)
    assert result.returncode == 1
    assert (dest / "config.yaml").read_text() == "executor: slurm\njobs: 5\n"
    assert "-jobs: 5" in result.stdout and "+jobs: 200" in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1 and str(dest) in result.stderr


@pytest.mark.slow
def test_profile_slurm_works_from_the_repository_root_with_profiles_default(home, tmp_path):
    folder = write_workflow(tmp_path / "repo", yaml.safe_load((ROOT / "config" / "example.yaml").read_text()),
                            extra=("resources",))
    dry_run = ["-m", "snakemake", "--profile", "slurm", "-n"]
    before = subprocess.run([sys.executable, *dry_run], cwd=folder, env=home, capture_output=True, text=True,
                            timeout=300)
    assert before.returncode != 0 and "no profile.yaml (or config.yaml) found" in before.stderr
    assert install(home).returncode == 0
    after = subprocess.run([sys.executable, *dry_run], cwd=folder, env=home, capture_output=True, text=True,
                           timeout=300)
    output = after.stdout + after.stderr
    assert after.returncode == 0, output[-3000:]
    assert "Using profiles slurm and workflow specific profile profiles/default" in output
    assert "slurm_partition=<cpu-partition>" in output  # the installed profile's resources
    assert "Shell command:" in output  # profiles/default's printshellcmds
