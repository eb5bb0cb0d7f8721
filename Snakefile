# gtok workflow: BED files and .h5ad cells -> .gtok shards (fanned out, e.g. on SLURM) -> a
# manifest -> statistics and a report -> training. Configuration: config/README.md; running it
# locally or on SLURM: docs/workflow.md.

import sys

from snakemake.utils import min_version

min_version("9.0")


# config/config.yaml is the user's own configuration. A --configfile replaces it instead of being
# merged over it, so a run never inherits inputs or settings from a file it was not given; keys
# not given anywhere take the schema's defaults (common.smk validates the config first).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    shard=r"(?:[A-Za-z0-9_]+-)?[0-9]+",  # NNNN, or SPLIT-NNNN
    sample=r"[^/]+",
    part=r"[0-9]+",


include: "workflow/rules/tokenize.smk"
include: "workflow/rules/manifest.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"


localrules:
    all,
    universe_index,
    manifest,
    train_config,
    train_summary,


EXAMPLE_INPUTS = PLAN.example_inputs() if workflow.is_main_process else []
if EXAMPLE_INPUTS:
    print(
        f"gtok: {len(EXAMPLE_INPUTS)} of this run's inputs come from the bundled example "
        f"(resources/example/), e.g. {EXAMPLE_INPUTS[0]}",
        file=sys.stderr,
    )


onstart:
    refuse_nodes_on_one_machine()


rule all:
    default_target: True
    input:
        final_outputs(),
