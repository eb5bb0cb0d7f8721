"""Helpers of the rules: the workflow's plan (gtok.workflow.plan, unit-tested without Snakemake),
built once from the validated config by the main process and handed to its jobs
(gtok.workflow.handoff), and the input functions and params that read it.
"""

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

from gtok.errors import GtokError
from gtok.workflow.handoff import hand_to_jobs, plan_from_main
from gtok.workflow.plan import Plan
from gtok.workflow.samples import read_sample_sheet
from gtok.workflow.schema import schema_problem, typed_overrides


def checked(data, schema: str, what: str) -> None:
    """`data` validated against `schema`, its defaults filled in, or one line naming the key and
    what is wrong (gtok.workflow.schema)."""
    try:
        validate(data, schema)
    except WorkflowError as exc:
        raise WorkflowError(schema_problem(exc, what)) from None


def sample_sheet_checked(config) -> None:
    """The BED sample sheet's columns, checked against its schema (as the config is); read as
    the plan reads it (UTF-8, or UTF-16 with a byte-order mark, as spreadsheets save it).
    """
    sheet = config["inputs"]["bed"]
    if isinstance(sheet, str):
        try:
            table = pd.DataFrame(read_sample_sheet(sheet), dtype=str)
        except GtokError as exc:
            raise WorkflowError(str(exc)) from None
        checked(table, "../schemas/samples.schema.yaml", sheet)


def make_plan(config) -> Plan:
    """The main process plans (and checks the model: importing a brought class takes seconds),
    then hands the plan to its jobs; a job takes that plan, or plans again without it.
    """
    if not workflow.is_main_process:
        return plan_from_main(config) or Plan.from_config(config)
    sample_sheet_checked(config)
    plan = Plan.from_config(config)
    plan.check_model()
    hand_to_jobs(plan, config)
    return plan


update_config(
    config,
    typed_overrides(
        workflow.config_settings.config,  # the --config values; a --configfile is read as config/config.yaml is
        f"{workflow.current_basedir}/../schemas/config.schema.yaml",
    ),
)
# an error in the config names the file(s) this run read: not always config/config.yaml
CONFIG_READ = (
    ", ".join(map(str, workflow.configfiles)) or "no config file, only --config"
)
try:
    checked(config, "../schemas/config.schema.yaml", "config")
    PLAN = make_plan(config)
except (GtokError, WorkflowError) as exc:
    raise WorkflowError(
        f"{exc} (This run read its config from {CONFIG_READ}.)"
    ) from None

R = PLAN.results
GTOK_ENV = "../../envs/gtok.yaml"
RUN_GTOK = "../../scripts/run_gtok.py"


def bed_shard_files(wildcards) -> list[str]:
    return PLAN.bed_files(wildcards.shard)


def h5ad_file(wildcards) -> str:
    return PLAN.h5ad[wildcards.sample]


def fragment_inputs(wildcards) -> list[str]:
    return PLAN.fragment_inputs(wildcards.sample)


def refuse_nodes_on_one_machine() -> None:
    """Before any job runs (the executor is known only then): several nodes need a cluster."""
    if PLAN.train.get("enabled") and PLAN.train_world[1] > 1 and workflow.local_exec:
        raise WorkflowError(
            f"config train.trainer.num_nodes is {PLAN.train_world[1]}, but this run executes jobs locally, "
            "on one machine; train on several nodes with a SLURM profile (snakemake --profile profiles/slurm)."
        )


def final_outputs() -> list[str]:
    """The targets of `all`, the default target: the manifest, the stats, and training when enabled."""
    targets = [*rules.manifest.output, *rules.stats.output]
    if PLAN.train.get("enabled"):
        targets += [*rules.train.output, *rules.train_summary.output]
    if PLAN.evaluates():
        targets += rules.evaluate.output
    return targets
