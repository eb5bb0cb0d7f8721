# The manifest: one file listing every shard with its checksum (and split), what training reads.


rule manifest:
    input:
        PLAN.bed_shard_paths(),
        PLAN.h5ad_shard_paths(),
        PLAN.fragment_shard_paths(),
    output:
        PLAN.manifest,
    log:
        f"{R}/logs/manifest.log",
    benchmark:
        f"{R}/benchmarks/manifest.tsv"
    conda:
        GTOK_ENV
    threads: 1
    params:
        argv=PLAN.manifest_argv(),
    script:
        RUN_GTOK
