"""Workflow job: check the universe once, fill gtok's binary cache, describe it in a JSON file."""

import json
from pathlib import Path

from gtok.atomic import atomic_path
from gtok.report import job_log, universe_summary

with job_log(snakemake.log[0]):
    summary = universe_summary(snakemake.input[0])
    with atomic_path(snakemake.output[0]) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{summary['path']}: {summary['regions']:,} regions, fingerprint {summary['fingerprint']}")
