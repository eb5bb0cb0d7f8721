# Training. Its options go through train_config.yaml, written by a job of its own: changing an
# option reruns that job (params trigger) and training, and nothing upstream.


rule train_config:
    output:
        PLAN.train_config,
    log:
        f"{R}/logs/train_config.log",
    benchmark:
        f"{R}/benchmarks/train_config.tsv"
    conda:
        GTOK_ENV
    threads: 1
    params:
        options=PLAN.train_options(),
    script:
        "../../scripts/write_yaml.py"


# Snakemake deletes a job's declared outputs before every (re)run of it, and after a failed one.
# So the model folder's files (model.ckpt, config.yaml, universe.bed.gz, a Hugging Face model's
# files, metrics.csv, summary.json, loss.png) are not declared: train/finished.json, written once
# the model is published, stands for them. The folder's finished model then stays usable while a
# changed config retrains, survives a job that fails, and is set aside whole in
# train/previous/TIME/ when a new run starts. train/checkpoints/last.ckpt is not an output either:
# a job killed mid-run (a preempted SLURM job retried, or `snakemake` rerun with
# --rerun-incomplete) finds it and `gtok train` continues from it, or starts afresh when it is of
# other options or data.
rule train:
    input:
        manifest=PLAN.manifest,
        config=PLAN.train_config,
    output:
        finished=f"{PLAN.train_dir}/finished.json",
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
        # the evaluation of a model set aside goes with it, to previous/TIME/eval/ (before the
        # evaluate job deletes its outputs to score the new model)
        evaluation=PLAN.eval_dir,
    script:
        # inside a SLURM job, srun starts one process per device; elsewhere Lightning spawns them
        "../../scripts/train.py"


rule train_summary:
    """The run summary (world size, steps, tokens, wall time, records per rank) as a report table,
    and the loss curve for the report (a copy: the model folder's own files are not outputs).
    """
    input:
        rules.train.output.finished,
    output:
        summary=report(
            f"{PLAN.train_dir}/summary.html",
            caption="../report/summary.rst",
            category="Training",
        ),
        loss=report(
            f"{R}/report/loss.png",
            caption="../report/loss.rst",
            category="Training",
        ),
    log:
        f"{R}/logs/train_summary.log",
    benchmark:
        f"{R}/benchmarks/train_summary.tsv"
    conda:
        GTOK_ENV
    threads: 1
    script:
        "../../scripts/train_summary.py"
