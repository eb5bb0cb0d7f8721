"""Workflow job: the run summary of training as a report table."""

import json

from gtok.report import write_summary_html
from gtok.workflow.jobs import job_log

with job_log(snakemake.log[0]):
    with open(snakemake.input[0]) as fh:
        write_summary_html(json.load(fh), snakemake.output[0])
