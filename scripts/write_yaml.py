"""Workflow job: write the rule's `params.options` as a YAML file (the training options)."""

from pathlib import Path

import yaml

from gtok.atomic import atomic_path
from gtok.workflow.jobs import job_log

with job_log(snakemake.log[0]):
    with atomic_path(snakemake.output[0]) as tmp:
        Path(tmp).write_text(yaml.safe_dump(dict(snakemake.params.options), sort_keys=True))
