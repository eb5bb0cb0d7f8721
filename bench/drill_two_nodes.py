#!/usr/bin/env python
"""Training across two SLURM nodes: the workflow's train job as 2 nodes x 1 task, on this machine.

    bash tools/local-slurm.sh start 2      # two slurmd daemons, nodes n1 and n2
    python bench/drill_two_nodes.py [--steps 40] [--json OUT]

Runs the bundled example (config/example.yaml, a tiny encoder) with `train.trainer: {devices: 1,
num_nodes: 2, accelerator: cpu}` through `snakemake --profile profiles/slurm-local`, then checks,
from SLURM (`scontrol show job`) and from the run's `summary.json`, that training was one job of
2 tasks on two node names with world size 2, and that the two ranks trained on disjoint halves of
each epoch (`trainer.log_batches`). Prints a Markdown table for bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

import yaml
from harness import ROOT, run_drill, slurm_jobs, snakemake, write_workflow


def nodes() -> list[str]:
    """The cluster's node names (sinfo), or a stop naming how to start two."""
    try:
        names = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit("no SLURM cluster here: start one with `bash tools/local-slurm.sh start 2`") from None
    found = sorted(set(names.split()))
    if len(found) < 2:
        raise SystemExit(f"the cluster has one node ({found}); start two with `bash tools/local-slurm.sh start 2`")
    return found


def job_fields(jobid: int) -> dict[str, str]:
    text = subprocess.run(["scontrol", "show", "job", str(jobid)], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", text))


def config(steps: int) -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    train = cfg.setdefault("train", {})
    train["trainer"] = {**train.get("trainer", {}), "devices": 1, "num_nodes": 2, "accelerator": "cpu",
                        "max_steps": steps, "max_epochs": 1000, "log_batches": True}
    train["data"] = {**train.get("data", {}), "num_workers": 0, "val_fraction": 0}
    cfg["evaluate"] = {"enabled": False}  # training is what this drill is about
    return cfg


def overlap(train: Path) -> list[int]:
    """Per (launch, epoch): records both ranks trained on (0 but for the padding)."""
    seen: dict[tuple, list[set[int]]] = {}
    for rank in (0, 1):
        for line in (train / "batches" / f"rank-{rank}.jsonl").read_text().splitlines():
            row = json.loads(line)
            seen.setdefault((row["launch"], row["epoch"]), [set(), set()])[rank].update(row["records"])
    return [len(a & b) for a, b in seen.values()]


def run(folder: Path, steps: int) -> dict:
    wf = write_workflow(folder / "wf", config(steps), extra=("resources",))
    result = snakemake(wf, "--profile", "profiles/slurm-local").check("the workflow")
    (train_job,) = [jobid for rule, jobid in slurm_jobs(result.output) if rule == "train"]
    job = job_fields(train_job)
    train = wf / "results" / "train"
    summary = json.loads((train / "summary.json").read_text())
    return {"cluster_nodes": nodes(), "job": {k: job.get(k) for k in ("JobId", "NumNodes", "NumTasks", "NodeList",
                                                                        "RunTime", "JobState")},
            "summary": summary, "records_on_both_ranks": overlap(train), "workflow_seconds": round(result.seconds, 1)}


def report(r: dict) -> str:
    s, j = r["summary"], r["job"]
    epochs = s["epochs"]
    return "\n".join([
        "| what | value |", "| --- | --- |",
        f"| SLURM job (scontrol) | {j['JobId']}: NumNodes={j['NumNodes']} NumTasks={j['NumTasks']} "
        f"NodeList={j['NodeList']} RunTime={j['RunTime']} {j['JobState']} |",
        f"| summary.json | world_size {s['world_size']}, num_nodes {s['num_nodes']}, "
        f"devices_per_node {s['devices_per_node']}, global_step {s['global_step']}, "
        f"tokens_seen {s['tokens_seen']:,}, wall_seconds {s['wall_seconds']} |",
        f"| epochs | {len(epochs)}; records per rank in the first {epochs[0]['records_per_rank']}, "
        f"records seen by both ranks (padding) per epoch {r['records_on_both_ranks']} |",
        f"| whole workflow (tokenize, stats, train, report table) | {r['workflow_seconds']} s |",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100, help="training steps (2 ranks x 8 records per step)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    nodes()
    run_drill(args, "gtok-two-nodes-", lambda folder: run(folder, args.steps), report, failed=not_two_nodes)


def not_two_nodes(res: dict) -> str | None:
    s = res["summary"]
    if (s["world_size"], s["num_nodes"], s["devices_per_node"]) != (2, 2, 1) or res["job"]["NumNodes"] != "2":
        return f"training did not run as 2 ranks on 2 nodes: {s}, the job's NumNodes {res['job']['NumNodes']}"
    return None


if __name__ == "__main__":
    main()
