"""The real workflow on generated data, outside the repository: copy it, configure it, run it.

Shared by bench/bench_dag.py and the scale and fault drills (bench/drill_*.py). Each of them needs
the repository's Snakefile, rules, scripts and profiles in a scratch folder with a config of its
own, generated inputs (a universe and BED collections from bench/make_data.py), Snakemake run
there with this interpreter's tools, and then to read back what happened: the SLURM job ids, each
job's benchmark TSV and peak memory (JobPeaks), and whether the manifest verifies and adds up.
"""

from __future__ import annotations

import csv
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
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)")


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


def slurm_jobs(output: str) -> list[tuple[str, int]]:
    """(rule, SLURM job id) of each submission Snakemake reported, in order; the rule is read
    from the SLURM log path it names (.snakemake/slurm_logs/rule_RULE/...)."""
    jobs = []
    for jobid, log in SUBMITTED.findall(output):
        rule = re.search(r"/rule_(\w+)/", log)
        jobs.append((rule.group(1) if rule else "?", int(jobid)))
    return jobs


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
