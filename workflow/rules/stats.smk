# Per-shard statistics and the report's plots of the tokenized data.


rule stats:
    """Tokens per record, the share of records that are only `<unk>`, and universe coverage."""
    input:
        bed=PLAN.bed_shard_paths(),
        h5ad=PLAN.h5ad_shard_paths(),
        fragments=PLAN.fragment_shard_paths(),
    output:
        table=report(
            f"{R}/stats/shards.tsv",
            caption="../report/shards.rst",
            category="Tokenization",
        ),
        lengths=report(
            f"{R}/stats/tokens_per_record.png",
            caption="../report/tokens_per_record.rst",
            category="Tokenization",
        ),
        unk=report(
            f"{R}/stats/unk_only.png",
            caption="../report/unk_only.rst",
            category="Tokenization",
        ),
        coverage=report(
            f"{R}/stats/coverage.png",
            caption="../report/coverage.rst",
            category="Tokenization",
        ),
    log:
        f"{R}/logs/stats.log",
    benchmark:
        f"{R}/benchmarks/stats.tsv"
    conda:
        GTOK_ENV
    threads: 1
    script:
        "../../scripts/stats.py"
