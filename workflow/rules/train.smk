# Training. Its options go through train_config.yaml, written by a job of its own: changing an
# option reruns that job (params trigger) and training, and nothing upstream.


rule train_config:
    output:
        TRAIN_CONFIG,
    params:
        options=train_options(),
    log:
        f"{R}/logs/train_config.log",
    conda:
        GTOK_ENV
    script:
        "../../scripts/write_yaml.py"


rule train:
    input:
        manifest=MANIFEST,
        config=TRAIN_CONFIG,
    output:
        checkpoint=f"{TRAIN_DIR}/checkpoints/last.ckpt",
        metrics=f"{TRAIN_DIR}/metrics.csv",
        loss=report(f"{TRAIN_DIR}/loss.png", caption="../report/loss.rst", category="Training"),
    params:
        argv=train_argv,
    log:
        f"{R}/logs/train.log",
    benchmark:
        f"{R}/benchmarks/train.tsv"
    conda:
        GTOK_ENV
    script:
        "../../scripts/run_gtok.py"
