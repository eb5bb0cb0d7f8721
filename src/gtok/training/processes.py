"""How the processes of a training run come to be: started by `srun`, one per device, or spawned by
Lightning on this machine; and how they agree on whether the run resumes.

Lightning treats any process with SLURM_NTASKS in its environment as one task of an srun launch
and never spawns processes itself then. Inside a SLURM job of one task (a workflow job, an
`sbatch` script) `Trainer(devices=2)` therefore trains, silently, on a single process. gtok
decides explicitly: when srun started more than one task, Lightning follows SLURM (and the tasks
must be exactly devices x num_nodes); otherwise Lightning starts `devices` processes on this
machine, which cannot span nodes.

The first process decides whether the run continues from its last checkpoint and rearranges the
run folder; the others must not look before it has done so. It writes its decision, tagged with
an id of this launch, and the others wait for it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from gtok.atomic import atomic_path
from gtok.errors import GtokError, describe

_TOKEN = "GTOK_LAUNCH_ID"
DECISION_FILE = ".resume-decision.json"


def slurm_tasks() -> int:
    """Tasks srun started for this launch (1 when not under srun, or in an interactive job)."""
    if os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return 1
    return int(os.environ.get("SLURM_NTASKS") or 1)


def devices_and_environment(devices: Any, num_nodes: int):
    """(devices per node, the Lightning cluster environment plugin, or None to let Lightning
    choose) for this launch; a launch that cannot give devices x num_nodes processes is refused."""
    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    if "TORCHELASTIC_RUN_ID" in os.environ:  # torchrun started the processes: Lightning knows it
        return devices, None
    tasks = slurm_tasks()
    if tasks > 1:
        per_node = int(os.environ.get("SLURM_NTASKS_PER_NODE") or 0) or tasks // max(num_nodes, 1)
        count = per_node if devices in ("auto", None) else devices
        if not isinstance(count, int) or count * num_nodes != tasks:
            raise GtokError(
                f"srun started {tasks} tasks, but trainer.devices ({devices}) x trainer.num_nodes ({num_nodes}) "
                f"processes are needed: start one task per device (srun --kill-on-bad-exit=1 --nodes=N --ntasks-per-node=DEVICES)."
            )
        return count, SLURMEnvironment(auto_requeue=False)  # requeuing is the workflow's (its retries)
    if num_nodes > 1:
        raise GtokError(
            f"trainer.num_nodes is {num_nodes}, but this process was not started by srun as one of "
            f"{num_nodes} x devices tasks; train on several nodes through the workflow's SLURM profile, "
            "or with srun --kill-on-bad-exit=1 --nodes=N --ntasks-per-node=DEVICES gtok train ..."
        )
    return devices, LightningEnvironment()  # Lightning spawns the other processes on this machine


def start_launch() -> None:
    """The first process of a launch outside srun: a fresh id, which the processes Lightning spawns
    inherit. Fresh each time: one Python process may launch several runs (a notebook, a test
    suite), and an id left from the last would make this launch's logs and decision read as that
    one's (a `gtok train` it starts would inherit it too)."""
    if not (slurm_tasks() > 1 and "SLURM_JOB_ID" in os.environ):
        os.environ[_TOKEN] = uuid.uuid4().hex


def launch_id() -> str:
    """One id for all processes of this launch: srun's job and step, or one the first process
    makes and the processes Lightning spawns from it inherit."""
    if slurm_tasks() > 1 and "SLURM_JOB_ID" in os.environ:
        return f"slurm-{os.environ['SLURM_JOB_ID']}-{os.environ.get('SLURM_STEP_ID', '0')}"
    return os.environ.setdefault(_TOKEN, uuid.uuid4().hex)


def share_decision(out: Path, resume: bool) -> None:
    """The first process: tell the others whether this launch resumes."""
    with atomic_path(out / DECISION_FILE) as tmp:
        Path(tmp).write_text(json.dumps({"launch": launch_id(), "resume": resume}))


def await_decision(out: Path, timeout: float = 6 * 3600) -> bool:
    """Another process: wait until the first has decided (after checking every shard, which can
    take minutes), then return whether this launch resumes."""
    path, me, deadline = out / DECISION_FILE, launch_id(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            decision = json.loads(path.read_text())
            if decision.get("launch") == me:
                return bool(decision["resume"])
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise GtokError(f"{describe(out)}: the first process of this launch decided nothing within {timeout:.0f} s.")
