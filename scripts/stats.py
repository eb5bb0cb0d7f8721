"""Workflow job: per-shard statistics (TSV) and the report's plots of the tokenized data."""

from gtok.atomic import atomic_path
from gtok.plots import plot_coverage, plot_tokens_per_record, plot_unk_only
from gtok.stats import shard_stats
from gtok.workflow.jobs import job_log

with job_log(snakemake.log[0]):
    shards = [(path, "BED files") for path in snakemake.input.bed] + [(path, "cells") for path in snakemake.input.h5ad]
    shards += [(path, "fragment files") for path in snakemake.input.fragments]
    table, lengths = shard_stats(shards)
    with atomic_path(snakemake.output.table) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    plot_tokens_per_record(lengths, snakemake.output.lengths)
    plot_unk_only(table, snakemake.output.unk)
    plot_coverage(table, snakemake.output.coverage)
    print(table.to_string(index=False))
