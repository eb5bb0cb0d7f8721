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


# The outputs are what a finished run leaves; Snakemake deletes them before every (re)run of the
# job, and that loses nothing. train/checkpoints/last.ckpt is deliberately not an output: a job
# killed mid-run (a preempted SLURM job retried, or `snakemake` rerun with --rerun-incomplete)
# then finds it and `gtok train` continues from it. `gtok train` itself starts afresh when the
# checkpoint is of other options or data, moving the old run to train/previous/.
rule train:
    input:
        manifest=MANIFEST,
        config=TRAIN_CONFIG,
    output:
        model=f"{TRAIN_DIR}/model.ckpt",
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
