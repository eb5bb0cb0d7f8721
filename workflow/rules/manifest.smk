# The manifest: one file listing every shard with its checksum, what training reads.


rule manifest:
    input:
        bed_shard_paths(),
        h5ad_shard_paths(),
    output:
        MANIFEST,
    params:
        argv=manifest_argv,
    log:
        f"{R}/logs/manifest.log",
    conda:
        GTOK_ENV
    script:
        "../../scripts/run_gtok.py"
