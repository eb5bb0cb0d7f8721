# Evaluation: the trained model's embeddings of the held-out records against LSI (gtok.evaluation.evaluate).


rule evaluate:
    """kNN accuracy, ARI, NMI and silhouette of the model and of LSI (fitted on the training
    records) on the same validation records and folds, mean and sd (metrics.tsv) and per fold
    (folds.tsv), with UMAPs; without labels in the held-out records, the outputs say it was skipped.
    """
    input:
        model=rules.train.output.finished,
        manifest=PLAN.manifest,
    output:
        metrics=f"{PLAN.eval_dir}/metrics.tsv",
        folds=f"{PLAN.eval_dir}/folds.tsv",
        caption=f"{PLAN.eval_dir}/caption.rst",
        # the model scored (its run and step): the train job keeps this evaluation with that
        # model when a retrain sets it aside in train/previous/TIME/eval/
        evaluated=f"{PLAN.eval_dir}/evaluated.json",
        summary=report(
            f"{PLAN.eval_dir}/summary.html",
            # written by the job itself, so that it can say which method did better
            caption=os.path.abspath(f"{PLAN.eval_dir}/caption.rst"),
            category="Evaluation",
        ),
        umaps=report(
            multiext(f"{PLAN.eval_dir}/umap_", f"{PLAN.model_label}.png", "lsi.png"),
            caption="../report/umap.rst",
            category="Evaluation",
        ),
    log:
        f"{R}/logs/evaluate.log",
    benchmark:
        f"{R}/benchmarks/evaluate.tsv"
    conda:
        GTOK_ENV
    threads: 1
    params:
        argv=PLAN.evaluate_argv(),
    script:
        RUN_GTOK
