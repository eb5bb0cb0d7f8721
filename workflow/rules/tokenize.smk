# Tokenization: the universe is checked once, then BED shards and h5ad row ranges fan out.


rule universe:
    """Parse the universe once and fill gtok's binary cache before the shards fan out, so a bad
    universe fails one job, not all of them. Every shard depends on this job: a new universe
    reruns every shard, the manifest, the stats and training."""
    input:
        UNIVERSE,
    output:
        f"{R}/universe.json",
    log:
        f"{R}/logs/universe.log",
    conda:
        GTOK_ENV
    script:
        "../../scripts/universe.py"


rule tokenize_bed:
    """One shard of about `files_per_shard` BED files, one record per file."""
    input:
        beds=bed_shard_files,
        universe=UNIVERSE,
        checked=rules.universe.output[0],
    output:
        BED_SHARD,
    params:
        argv=tokenize_bed_argv,
        labels=bed_shard_labels,
    log:
        f"{R}/logs/tokenize_bed/{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/tokenize_bed/{{shard}}.tsv"
    conda:
        GTOK_ENV
    script:
        "../../scripts/run_gtok.py"


rule tokenize_h5ad:
    """`cells_per_shard` rows of one .h5ad, one record per cell."""
    input:
        h5ad=lambda wildcards: H5AD[wildcards.sample],
        universe=UNIVERSE,
        checked=rules.universe.output[0],
    output:
        H5AD_SHARD,
    params:
        argv=tokenize_h5ad_argv,
    log:
        f"{R}/logs/tokenize_h5ad/{{sample}}/{{part}}.log",
    benchmark:
        f"{R}/benchmarks/tokenize_h5ad/{{sample}}/{{part}}.tsv"
    conda:
        GTOK_ENV
    script:
        "../../scripts/run_gtok.py"
