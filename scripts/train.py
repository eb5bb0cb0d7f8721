"""Workflow job `train`: `gtok train` with the rule's `params.argv`, everything it prints in the
job's log; then the evaluation of a model it set aside in previous/TIME/ copied there, before the
evaluate job deletes it to score the new model (gtok.pretrained.keep_evaluation), and the job's
declared output, that the model is finished (gtok.workflow.jobs.write_finished); a failure of either
fails the job, which leaves the evaluation in place. Inside a SLURM job of several tasks, srun
starts one process per device with the CPUs the job was given (gtok.workflow.jobs.
train_job_command); elsewhere Lightning spawns them."""

import subprocess
import sys
from pathlib import Path

from gtok.errors import GtokError
from gtok.pretrained import keep_evaluation
from gtok.workflow.jobs import train_job_command, write_finished

command = train_job_command([str(arg) for arg in snakemake.params.argv], snakemake.params.srun)
with open(snakemake.log[0], "w") as log:
    status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if status == 0:
        try:
            keep_evaluation(snakemake.params.evaluation, Path(snakemake.output.finished).parent, "gtok train", log)
            write_finished(snakemake.output.finished)
        except GtokError as exc:
            print(f"error: {exc}", file=log)
            status = 1
sys.exit(status)
