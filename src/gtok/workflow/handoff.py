"""The main Snakemake process's plan, handed to its jobs instead of being made again in each.

Snakemake parses the Snakefile in every job as well (twice on SLURM: the job, then its `srun`
step), so without this each job would expand the BED globs, derive and check every record name
and read every .h5ad's size again: seconds per process at a million files, thousands of times
over, and possibly a different answer than the main process's if files were added meanwhile.

So the main process writes its plan once, to `.snakemake/gtok/plan-SHA256.json`, and names the
file in the environment variable `GTOK_PLAN`, which its jobs inherit (the SLURM plugin submits
with `--export=ALL`; local jobs are its children). A job uses the file only when it is intact (the
SHA-256 of its bytes is the one in its name), of this format version, and made from the very
config the job was given; otherwise the job says why on its log and plans again, as it always
could. The layout is in docs/format.md, "The workflow's plan".
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gtok.atomic import atomic_path
from gtok.errors import GtokError
from gtok.workflow.plan import Plan

ENV = "GTOK_PLAN"
FORMAT = "gtok-workflow-plan"
VERSION = 1
FOLDER = os.path.join(".snakemake", "gtok")


def config_digest(config: Mapping[str, Any]) -> str:
    """SHA-256 of the config as canonical JSON: equal in the main process and in its jobs."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def hand_to_jobs(plan: Plan, config: Mapping[str, Any], folder: str = FOLDER) -> str | None:
    """Write the plan for this process's jobs and name it in `GTOK_PLAN`; return its path.

    The name is the content's digest, so an unchanged plan is not written again (a damaged one
    is). The plans of earlier runs are removed: a job that still wanted one plans for itself. A
    plan that cannot be written costs only time, so that is a warning, not a failure."""
    body = json.dumps({"format": FORMAT, "version": VERSION, "config_sha256": config_digest(config),
                       "plan": plan.to_json()}, separators=(",", ":")).encode()
    path = Path(folder).resolve() / f"plan-{hashlib.sha256(body).hexdigest()}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (path.is_file() and path.read_bytes() == body):  # unchanged, or damaged since
            with atomic_path(path) as tmp:
                tmp.write_bytes(body)
        for old in path.parent.glob("plan-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except (OSError, GtokError) as exc:
        print(f"gtok: warning: could not write the plan for the jobs ({exc}); each job plans again.", file=sys.stderr)
        os.environ.pop(ENV, None)
        return None
    os.environ[ENV] = str(path)
    return str(path)


def plan_from_main(config: Mapping[str, Any]) -> Plan | None:
    """The plan that the main process named in `GTOK_PLAN`, or None (with the reason on stderr, the
    job's log) when there is none this job may use."""
    path = os.environ.get(ENV)
    if not path:
        return None
    try:
        plan = _read(Path(path), config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"gtok: {path}: not using the main process's plan ({exc}); planning again.", file=sys.stderr)
        return None
    print(f"gtok: the plan of the main process, from {path}", file=sys.stderr)
    return plan


def _read(path: Path, config: Mapping[str, Any]) -> Plan:
    body = path.read_bytes()
    if path.name != f"plan-{hashlib.sha256(body).hexdigest()}.json":
        raise ValueError("its checksum does not match its name: the file was changed or cut short")
    doc = json.loads(body)
    if (doc.get("format"), doc.get("version")) != (FORMAT, VERSION):
        raise ValueError(f"it is {doc.get('format')!r} version {doc.get('version')!r}, not {FORMAT!r} version {VERSION}")
    if doc["config_sha256"] != config_digest(config):
        raise ValueError("it was made from another config")
    return Plan.from_json(doc["plan"])
