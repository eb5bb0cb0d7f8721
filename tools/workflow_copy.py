"""The real workflow outside the repository: copy it into a folder with a config of its own, run
Snakemake there with this interpreter's tools.

Used by the workflow tests (test_workflow, test_profile, test_hf) and, through bench/harness.py,
by bench/bench_dag.py and the drills (bench/drill_*.py): a developer tool that both share, so that
neither reaches into the other. pytest puts tools/ on sys.path (pyproject.toml's `pythonpath`), so
tests import it as `from workflow_copy import write_workflow`; bench/harness.py adds tools/ itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ("Snakefile", "workflow", "scripts", "envs", "profiles")
BIN = Path(sys.executable).parent


def write_workflow(folder: Path, config: dict, extra: tuple[str, ...] = ()) -> Path:
    """Copy the workflow (and the `extra` top-level paths, e.g. "resources") into `folder`, with
    `config` as its whole config/config.yaml (the schema fills in the defaults). The profiles come
    along, so profiles/default applies as in the repo."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*WORKFLOW, *extra):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, folder / name)
    (folder / "config").mkdir(exist_ok=True)
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def _env() -> dict[str, str]:
    """This interpreter's bin folder first on PATH: jobs (local or SLURM) then run this venv's tools."""
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")


def _command(args: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "snakemake", *args]


@dataclass
class Run:
    returncode: int
    seconds: float
    output: str  # stdout and stderr, interleaved

    def check(self, what: str) -> "Run":
        """Stop the drill with the end of Snakemake's output when it failed."""
        if self.returncode != 0:
            raise SystemExit(f"{what} failed (exit {self.returncode}):\n{self.output[-4000:]}")
        return self


def snakemake(folder: Path, *args: str, timeout: float | None = None) -> Run:
    """Run `snakemake ARGS` in `folder` to the end; its wall time and output."""
    start = time.perf_counter()
    proc = subprocess.run(_command(args), cwd=folder, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return Run(proc.returncode, time.perf_counter() - start, proc.stdout)


def start_snakemake(folder: Path, log: Path, *args: str) -> subprocess.Popen:
    """Snakemake in the background with its output in `log`, for drills that strike mid-run.
    It gets a session of its own, so a drill can end it and its jobs by its process group."""
    with open(log, "w") as fh:
        return subprocess.Popen(_command(args), cwd=folder, env=_env(), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)


def dry_run(folder: Path, *args: str) -> tuple[float, int]:
    """Seconds of one `snakemake -n --quiet rules`, and the number of jobs it would run."""
    run = snakemake(folder, "-n", "--quiet", "rules", "--cores", "1", *args).check("snakemake -n")
    total = re.search(r"^total\s+(\d+)", run.output, re.M)
    return run.seconds, int(total.group(1)) if total else -1
