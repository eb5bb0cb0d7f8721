"""The Snakemake workflow's glue, importable and testable without Snakemake.

`plan` turns a validated config into what the workflow will do (inputs, shards, job command
lines); `handoff` hands the main process's plan to its jobs, so they do not plan again;
`samples` reads the BED inputs; `sharding` assigns BED files to shards; `jobs` runs a job's gtok
command with its output in the job's log. `workflow/rules/common.smk` imports `plan` and
`handoff`.
"""
