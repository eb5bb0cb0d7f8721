# Tokenization: the universe is indexed once, then BED shards, h5ad row ranges and fragment-file
# barcode parts fan out.
# How a cluster batches the shard jobs is the profile's choice, not the rules': `groups` (these
# rules into group "tokenize") with `group-components: tokenize=N` sends N of them as one cluster
# job, run one after another; `slurm-array-jobs` submits them as SLURM job arrays, which a group
# in the rule would rule out (the plugin submits group jobs one by one). See profiles/.
# Each rule's `options` param is its command without --threads, which Snakemake records: a change
# of anything a shard holds reruns it (gtok.workflow.plan).


rule universe_index:
    """The universe parsed, deduplicated and sorted into its binary index (gtok.formats.index),
    once: every tokenization job reads it, and a bad universe fails here, not in every job. A new
    universe reruns it and so every shard, the manifest, the stats and training. `cache: True`
    lets Snakemake's between-workflow cache (--cache) share it across runs of one universe.
    """
    input:
        PLAN.universe,
    output:
        PLAN.index,
    log:
        f"{R}/logs/universe_index.log",
    cache: True
    conda:
        GTOK_ENV
    threads: 1
    params:
        argv=PLAN.index_argv(),
    script:
        RUN_GTOK


rule tokenize_bed:
    """One shard of about `files_per_shard` BED files, one record per file."""
    input:
        beds=bed_shard_files,
        index=PLAN.index,
    output:
        PLAN.bed_shard("{shard}"),
    log:
        f"{R}/logs/tokenize_bed/{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/tokenize_bed/{{shard}}.tsv"
    conda:
        GTOK_ENV
    threads: 2
    params:
        argv=lambda wildcards, threads: PLAN.tokenize_bed_argv(wildcards.shard, threads),
        options=lambda wildcards: PLAN.tokenize_bed_argv(wildcards.shard),
        labels=lambda wildcards: PLAN.bed_labels(wildcards.shard),
    script:
        RUN_GTOK


rule tokenize_h5ad:
    """`cells_per_shard` rows of one .h5ad, one record per cell, named SAMPLE#OBS_NAME."""
    input:
        h5ad=h5ad_file,
        index=PLAN.index,
    output:
        PLAN.h5ad_shard("{sample}", "{part}"),
    log:
        f"{R}/logs/tokenize_h5ad/{{sample}}/{{part}}.log",
    benchmark:
        f"{R}/benchmarks/tokenize_h5ad/{{sample}}/{{part}}.tsv"
    conda:
        GTOK_ENV
    threads: 2
    params:
        argv=lambda wildcards, threads: PLAN.tokenize_h5ad_argv(
            wildcards.sample, wildcards.part, threads
        ),
        options=lambda wildcards: PLAN.tokenize_h5ad_argv(
            wildcards.sample, wildcards.part
        ),
    script:
        RUN_GTOK


rule tokenize_fragments:
    """Part `part` of `fragment_parts` of one fragments file: the barcodes whose hash falls in it,
    one record per barcode, named SAMPLE#BARCODE (each part's job reads the whole file, in
    bounded memory)."""
    input:
        fragments=fragment_inputs,
        index=PLAN.index,
    output:
        PLAN.fragment_shard("{sample}", "{part}"),
    log:
        f"{R}/logs/tokenize_fragments/{{sample}}/{{part}}.log",
    benchmark:
        f"{R}/benchmarks/tokenize_fragments/{{sample}}/{{part}}.tsv"
    conda:
        GTOK_ENV
    threads: 2
    params:
        argv=lambda wildcards, threads: PLAN.tokenize_fragments_argv(
            wildcards.sample, wildcards.part, threads
        ),
        options=lambda wildcards: PLAN.tokenize_fragments_argv(
            wildcards.sample, wildcards.part
        ),
    script:
        RUN_GTOK
