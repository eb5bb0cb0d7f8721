"""The Snakemake workflow's glue, importable and testable without Snakemake.

`plan` turns a validated config into what the workflow will do (inputs, shards, job command
lines); `handoff` hands the main process's plan to its jobs, so they do not plan again;
`samples` finds the inputs (BED patterns or a sample sheet, .h5ad and fragment files);
`sharding` assigns BED files to shards; `schema` types `--config` overrides and words a schema
error as one line; `jobs` runs a job's gtok command with its output in the job's log.
`workflow/rules/common.smk` imports `plan`, `handoff`, `samples` (the sheet's reader) and
`schema`; the scripts import `jobs`.
"""
