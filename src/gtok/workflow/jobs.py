"""How a workflow job runs gtok: everything it prints goes to the job's log, and a user error is
one line there, not a traceback; how the training job starts its processes, and what it declares
when its model is finished."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from gtok.atomic import atomic_path
from gtok.errors import GtokError


class Terminated(BaseException):
    """SIGTERM, raised where the job was (a BaseException, as KeyboardInterrupt is: no `except
    Exception` of the command swallows it, and its atomic writes are undone on the way out)."""


def _terminated(signum, frame) -> None:
    # once: SLURM and the job's own Snakemake each pass SIGTERM on, and a second one raised while
    # the first unwinds would cut short the clean-up of a half-done write
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


@contextlib.contextmanager
def job_log(path: str | os.PathLike) -> Iterator[None]:
    """Send everything this process prints, from Python and from C libraries, to a workflow job's
    log; a `GtokError` ends the job with its one-line message there, not with a traceback, and so
    does SIGTERM (scancel, a preemption, the time limit), which would otherwise end it silently.

    File descriptors 1 and 2 are pointed at the log for good, so output after the block (an
    unexpected exception's traceback, warnings at exit) lands there too.
    """
    log = open(path, "w", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    before = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    except GtokError as exc:
        print(f"error: {exc}", file=log)
        raise SystemExit(1) from None
    except Terminated:
        print("error: stopped by SIGTERM (the job was cancelled, preempted or out of time); its outputs are "
              "not written, and rerunning the workflow runs it again.", file=log)
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        signal.signal(signal.SIGTERM, before)
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        log.close()


def train_job_command(argv: Sequence[str], srun: Sequence[str]) -> list[str]:
    """The command of the workflow's train job: `gtok train argv`, started by srun as one task per
    device inside a SLURM job when `srun` (Plan.train_srun) has options; else one process, and
    Lightning spawns the others.

    Each task gets the CPUs per task the job was given, not those the plan asked for: a profile's
    `set-resources` may have changed them, and a step asking for more than its job has cannot start
    ("More processors requested than permitted").
    """
    gtok = [sys.executable, "-m", "gtok.cli", *argv]
    if not srun or "SLURM_JOB_ID" not in os.environ:
        return gtok
    cpus = job_cpus_per_task()
    return ["srun", *srun, *([f"--cpus-per-task={cpus}"] if cpus else []), "--kill-on-bad-exit=1", *gtok]


def job_cpus_per_task() -> int | None:
    """CPUs per task of the SLURM job this process runs in: $SLURM_CPUS_PER_TASK, else what
    `scontrol show job` says (a Snakemake job's command sees no SLURM variable but the job id: the
    jobstep executor removes them), else None (srun's default then applies)."""
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    try:
        shown = subprocess.run(["scontrol", "show", "job", os.environ["SLURM_JOB_ID"]], capture_output=True,
                               text=True, timeout=60).stdout
    except (KeyError, OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\bCPUs/Task=(\d+)", shown)
    return int(found.group(1)) if found else None


def write_finished(path: str | os.PathLike) -> None:
    """`path`, in a model folder: the train job's declared output, that the folder's model is
    finished, with the run and step its config.yaml records for model.ckpt.

    Snakemake deletes a job's declared outputs before it runs the job, and after the job fails. So
    none of the model folder's files is declared: the finished model stays in place while a
    changed config retrains, and survives a job that fails, and `gtok train` sets it aside whole
    in previous/TIME/ when a new run starts.
    """
    from gtok.pretrained import CHECKPOINT_FILE, published_run

    folder = Path(path).parent
    run = published_run(folder)
    if run is None:
        raise GtokError(f"{folder}: gtok train ended without a finished model in it (no config.yaml with its run).")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"model": CHECKPOINT_FILE, **run}, indent=1) + "\n")
