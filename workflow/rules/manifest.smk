# The manifest: one file listing every shard with its checksum (and split), what training reads.


rule manifest:
    input:
        PLAN.bed_shard_paths(),
        PLAN.h5ad_shard_paths(),
    output:
        PLAN.manifest,
    params:
        argv=PLAN.manifest_argv(),
    log:
        f"{R}/logs/manifest.log",
    threads: 1
    conda:
        GTOK_ENV
    script:
        RUN_GTOK
