# Training. Its options go through train_config.yaml, written by a job of its own: changing an
# option reruns that job (params trigger) and training, and nothing upstream.


rule train_config:
    output:
        PLAN.train_config,
    log:
        f"{R}/logs/train_config.log",
    conda:
        GTOK_ENV
    threads: 1
    params:
        options=PLAN.train_options(),
    script:
        "../../scripts/write_yaml.py"


# The outputs are what a finished run leaves; Snakemake deletes them before every (re)run of the
# job (and after a failed one), so in the workflow the finished model of a changed config lives on
# as the checkpoints in train/previous/TIME/. train/checkpoints/last.ckpt is deliberately not an
# output: a job killed mid-run (a preempted SLURM job retried, or `snakemake` rerun with
# --rerun-incomplete) then finds it and `gtok train` continues from it. `gtok train` itself starts
# afresh when the checkpoint is of other options or data, moving the old run to
# train/previous/TIME/.
rule train:
    input:
        manifest=PLAN.manifest,
        config=PLAN.train_config,
    output:
        model=f"{PLAN.train_dir}/model.ckpt",
        metrics=f"{PLAN.train_dir}/metrics.csv",
        summary=f"{PLAN.train_dir}/summary.json",
        universe=f"{PLAN.train_dir}/universe.bed.gz",
        card=f"{PLAN.train_dir}/config.yaml",
        loss=report(
            f"{PLAN.train_dir}/loss.png",
            caption="../report/loss.rst",
            category="Training",
        ),
    log:
        f"{R}/logs/train.log",
    benchmark:
        f"{R}/benchmarks/train.tsv"
    conda:
        GTOK_ENV
    threads: PLAN.train_threads()
    resources:
        **PLAN.train_resources(),
    params:
        argv=PLAN.train_argv(),
        srun=PLAN.train_srun(),
    script:
        # inside a SLURM job, srun starts one process per device; elsewhere Lightning spawns them
        "../../scripts/train.py"


rule train_summary:
    """The run summary (world size, steps, tokens, wall time, records per rank) as a report table."""
    input:
        f"{PLAN.train_dir}/summary.json",
    output:
        report(
            f"{PLAN.train_dir}/summary.html",
            caption="../report/summary.rst",
            category="Training",
        ),
    log:
        f"{R}/logs/train_summary.log",
    conda:
        GTOK_ENV
    threads: 1
    script:
        "../../scripts/train_summary.py"
