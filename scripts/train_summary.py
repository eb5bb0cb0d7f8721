"""Workflow job: the run summary of training as a report table, and the loss curve for the report."""

import json
import shutil
from pathlib import Path

from gtok.report import write_summary_html
from gtok.workflow.jobs import job_log

with job_log(snakemake.log[0]):
    folder = Path(snakemake.input[0]).parent  # the model folder, whose finished.json is the input
    with open(folder / "summary.json") as fh:
        write_summary_html(json.load(fh), snakemake.output.summary)
    shutil.copyfile(folder / "loss.png", snakemake.output.loss)
