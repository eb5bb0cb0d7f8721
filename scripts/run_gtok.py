"""Workflow job: run one `gtok` command in this process, with the rule's `params.argv`; all its
output goes to the job's log.

In process rather than through `shell:` because a shard's command line lists all its input files,
and thousands of paths overflow the 128 KiB limit of one shell command string. `gtok.cli.main`
keeps the command line's behaviour: a user error is one line (in the log) and exit status 1.
"""

import sys

from gtok.cli import main
from gtok.workflow.jobs import job_log

with job_log(snakemake.log[0]):
    status = main([str(arg) for arg in snakemake.params.argv])
sys.exit(status)
