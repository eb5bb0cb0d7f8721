"""What bench/bench_dag.py and the scale and fault drills (bench/drill_*.py) share.

Each of them needs the repository's workflow in a scratch folder with a config of its own (the
copy and the Snakemake runners are tools/workflow_copy.py, which the workflow tests use too,
re-exported here),
generated inputs (a universe and BED collections from bench/make_data.py), and then to read back
what happened: the SLURM job ids, each job's benchmark TSV and peak memory (JobPeaks), and whether
the manifest verifies and adds up. `run_drill` is the end of every drill's main().
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# The workflow copy is a developer tool (tools/), shared with the workflow tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from workflow_copy import (  # noqa: E402, F401  (re-exported for the drills)
    BIN,
    ROOT,
    Run,
    dry_run,
    snakemake,
    start_snakemake,
    write_workflow,
)

SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)")
ARRAY_SUBMITTED = re.compile(r"Submitted array job with Snakemake IDs \S+ and SLURM job ID (\d+)")


def run_drill(args, prefix: str, run: Callable[[Path], dict], report: Callable[[dict], str],
              failed: Callable[[dict], str | None] | None = None, tmp_dir: str | None = None) -> dict:
    """The end of every drill's main(): `run` in a temporary folder (`prefix`, under `tmp_dir`;
    deleted afterwards), print its `report`, write the results to `args.json` if given, and exit
    with the message `failed` returns, if it returns one (the drill's own target was missed)."""
    with tempfile.TemporaryDirectory(prefix=prefix, dir=tmp_dir) as tmp:
        res = run(Path(tmp))
    print(report(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    message = failed(res) if failed else None
    if message:
        sys.exit(message)
    return res


def slurm_jobs(output: str) -> list[tuple[str, int]]:
    """(rule, SLURM job id) of each submission Snakemake reported, in order; the rule is read
    from the SLURM log path it names (.snakemake/slurm_logs/rule_RULE/...)."""
    jobs = []
    for jobid, log in SUBMITTED.findall(output):
        rule = re.search(r"/rule_(\w+)/", log)
        jobs.append((rule.group(1) if rule else "?", int(jobid)))
    return jobs


def slurm_arrays(output: str) -> list[int]:
    """The SLURM job id of each `sbatch --array` call Snakemake reported (slurm-array-jobs), which
    slurm_jobs does not list: the plugin words those submissions differently."""
    return [int(jobid) for jobid in ARRAY_SUBMITTED.findall(output)]


def benchmarks(results: Path, rule: str) -> list[dict[str, float]]:
    """One row per job of a rule's `benchmark:` TSVs: `s` (wall seconds), `max_rss` (MB), ..."""
    folder = results / "benchmarks"
    rows = []
    for path in [*sorted((folder / rule).rglob("*.tsv")), *[p for p in (folder / f"{rule}.tsv",) if p.is_file()]]:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                rows.append({k: _number(v) for k, v in row.items()})
    return rows


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def gtok(*args: object) -> subprocess.CompletedProcess:
    """This venv's `gtok` command line, output captured."""
    return subprocess.run([str(BIN / "gtok"), *map(str, args)], capture_output=True, text=True)


def check_manifest(manifest: Path, expected_records: int) -> dict:
    """`gtok verify` passes, the records add up to `expected_records`, and no name is repeated.

    Raises SystemExit naming what is wrong; returns the counts and the seconds verify took.
    """
    from gtok.formats.manifest import load_manifest
    from gtok.formats.shard import ShardReader

    start = time.perf_counter()
    verify = gtok("verify", "-q", manifest)
    seconds = time.perf_counter() - start
    if verify.returncode != 0:
        raise SystemExit(f"gtok verify {manifest} failed:\n{verify.stdout}{verify.stderr}")
    m = load_manifest(manifest)
    names = [name for entry in m.entries for name in ShardReader(entry.path).names]
    unique = len(set(names))
    if not m.records == len(names) == unique == expected_records:
        raise SystemExit(f"{manifest}: {m.records:,} records in the manifest, {len(names):,} in the shards, "
                         f"{unique:,} distinct names; expected {expected_records:,} of each.")
    return {"shards": len(m.entries), "records": m.records, "tokens": m.tokens, "verify_seconds": round(seconds, 1)}


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them (other work shares the machine)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_universe(folder: Path, regions: int, seed: int = 0):
    """`folder/universe.bed` of about `regions` regions (bench/make_data.py); returns the random
    generator, to draw more from, and the universe's rows, for queries near its regions."""
    import numpy as np
    from make_data import universe, write_bed

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    uni = universe(rng, regions)
    write_bed(str(folder / "universe.bed"), uni)
    return rng, uni


def write_bed_collection(folder: Path, n_files: int, regions: tuple[int, int], universe_regions: int,
                         seed: int = 0) -> int:
    """`folder/universe.bed` and `n_files` BED files of `regions` (low, high: uniform) regions each,
    from bench/make_data.py's realistic generator, in 100 subfolders `bed/NN/` as large collections
    are laid out. Returns the number of regions written."""
    from make_data import queries, write_bed
    from tqdm import tqdm

    rng, uni = write_universe(folder, universe_regions, seed)
    for sub in range(min(100, n_files)):
        (folder / "bed" / f"{sub:02d}").mkdir(parents=True, exist_ok=True)
    total = 0
    for i in tqdm(range(n_files), desc="writing BED files", unit="file", mininterval=5):
        n = int(rng.integers(regions[0], regions[1] + 1))
        total += write_bed(str(folder / "bed" / f"{i % 100:02d}" / f"sample{i:06d}.bed"), queries(rng, uni, n), rng)
    return total


class JobPeaks:
    """Peak resident memory of each job's script process (`.snakemake/scripts/tmpXXXX.NAME.py`) in a
    workflow folder, by job: the job is known by the log file it holds open (`results/logs/RULE/...`).

    Reads the kernel's own high-water mark (VmHWM in /proc/PID/status) every `interval` seconds,
    so a job's peak is exact unless it rises in the job's last interval; Snakemake's `benchmark:`
    samples RSS every 30 s after the first 15 s, which can miss a peak. Works for SLURM jobs too
    (single-node cluster: their processes are on this machine). Use as a context manager.
    """

    def __init__(self, folder: Path, interval: float = 0.2):
        import threading

        self.folder, self.interval = folder.resolve(), interval
        self.peaks_mb: dict[str, float] = {}  # job log, relative to results/logs -> MB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "JobPeaks":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def of_rule(self, rule: str) -> list[int]:
        """The peaks of one rule's jobs, in MB, in the order of their logs."""
        return [round(mb) for job, mb in sorted(self.peaks_mb.items()) if job.split("/")[0].removesuffix(".log") == rule]

    def _watch(self) -> None:
        import psutil

        logs = str(self.folder / "results" / "logs") + os.sep
        while not self._stop.wait(self.interval):
            for proc in psutil.process_iter(["cmdline"]):
                if not any("/.snakemake/scripts/" in a for a in proc.info["cmdline"] or ()):
                    continue
                try:
                    job = next((f.path[len(logs):] for f in proc.open_files() if f.path.startswith(logs)), None)
                    if job is not None:
                        self.peaks_mb[job] = max(self.peaks_mb.get(job, 0.0), _hwm_mb(proc.pid))
                except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError, ProcessLookupError):
                    continue


def _hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
