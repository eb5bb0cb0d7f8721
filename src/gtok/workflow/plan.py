"""What the workflow will do, computed once from its validated config: inputs, shards, commands.

Snakemake parses the Snakefile in every process, so everything here runs once per process: the
BED globs are expanded (or the sample sheet read) once, shard membership is computed once into
dicts, and the rules' input functions are dict lookups. That keeps the DAG of 100,000 BED files
quick to build (bench/README.md, "Workflow DAG at scale").

The `gtok` command line of each job is built from the wildcards alone (not from `input` or
`output`) and passed as a param, because Snakemake records params: any change to it (a file added
to a shard, another row range, another model) reruns exactly the jobs whose command changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from gtok.errors import GtokError
from gtok.formats.metadata import dataset_problem
from gtok.modelspec import parse_model, resolve_model
from gtok.options import DataOptions, check_mixture, check_train_config, make_config
from gtok.sources.samples import DEFAULT_NAME_FORMAT
from gtok.workflow.samples import (
    bed_rows,
    check_cell_samples,
    check_fragment_labels,
    check_label_key,
    fragment_samples,
    h5ad_samples,
    n_obs,
    refuse_braces,
    require_file,
)
from gtok.workflow.sharding import group_shards

HOW_TO_CONFIGURE = "fix it in the config file (config/README.md documents every key); `make run` runs the bundled example"
EXAMPLE = "resources/example"


@dataclass
class Plan:
    """The workflow's inputs and outputs, from `Plan.from_config`."""

    results: str
    universe: str
    bed_shards: dict[str, list[dict]]  # shard id -> rows (path, label, split)
    label_sheet: str | None
    h5ad: dict[str, str]  # sample -> path
    h5ad_parts: dict[tuple[str, str], tuple[int, int]]  # (sample, part) -> (start, stop) rows
    label_key: str | None
    fragments: dict[str, dict[str, str | None]] = field(default_factory=dict)  # sample -> path, barcodes
    fragment_parts: int = 1  # shards per fragments file, split by barcode hash
    min_fragments: int = 1
    fragment_labels: str | None = None  # barcode -> label sheet
    name_format: str = DEFAULT_NAME_FORMAT  # a cell's record name, of its sample and barcode (or obs name)
    train: dict[str, Any] = field(default_factory=dict)
    evaluate: str | bool = "auto"
    bed_dataset: str = "bed"  # the dataset of the BED inputs: the sample sheet's name, or `bed` for glob patterns
    renamed_datasets: dict[str, str] = field(default_factory=dict)  # inputs.datasets: default name -> recorded name

    @classmethod
    def from_config(cls, config: Mapping[str, Any], n_obs: Callable[[str], int] = n_obs) -> "Plan":
        universe = config["universe"]
        refuse_braces(universe, "config universe:")
        refuse_braces(config["results"], "config results:", "choose a results folder without them")
        if os.path.exists(config["results"]) and not os.path.isdir(config["results"]):
            raise GtokError(f"config results: {config['results']}: is a file, not a folder; choose another results folder.")
        if not os.path.isfile(universe):
            what = "is a folder; give the universe BED file itself" if os.path.isdir(universe) else "no such file"
            raise GtokError(f"config universe: {universe}: {what}; {HOW_TO_CONFIGURE}.")
        spec = config["inputs"]["bed"]
        rows = bed_rows(spec) if spec else []
        samples = h5ad_samples(config["inputs"]["h5ad"])
        for path in samples.values() if config["inputs"]["label_key"] else ():
            check_label_key(path, config["inputs"]["label_key"])
        plan = cls(
            results=config["results"],
            universe=universe,
            bed_shards=group_shards(rows, config["shards"]["files_per_shard"]),
            label_sheet=spec if isinstance(spec, str) and rows and "label" in rows[0] else None,
            h5ad=samples,
            h5ad_parts=_row_ranges(samples, config["shards"]["cells_per_shard"], n_obs),
            label_key=config["inputs"]["label_key"],
            fragments=fragment_samples(config["inputs"].get("fragments") or []),
            fragment_parts=config["shards"].get("fragment_parts", 1),
            min_fragments=config["inputs"].get("min_fragments", 1),
            fragment_labels=config["inputs"].get("fragment_labels"),
            name_format=config["inputs"].get("name_format", DEFAULT_NAME_FORMAT),
            train=dict(config["train"]),
            evaluate=(config.get("evaluate") or {}).get("enabled", "auto"),
            bed_dataset=os.path.splitext(os.path.basename(spec))[0] if isinstance(spec, str) else "bed",
            renamed_datasets=dict(config["inputs"].get("datasets") or {}),
        )
        if not plan.bed_shards and not plan.h5ad_parts and not plan.fragments:
            raise GtokError(f"config: inputs.bed, inputs.h5ad and inputs.fragments select no input at all; {HOW_TO_CONFIGURE}.")
        check_cell_samples(plan.h5ad, plan.fragments, plan.name_format)
        if plan.fragment_labels:
            require_file(plan.fragment_labels, "config inputs.fragment_labels:")
        check_fragment_labels(plan.fragment_labels, plan.fragments)
        plan._check_datasets()
        plan._check_labels_wanted()
        if plan.train.get("enabled"):
            check_train_config(plan.train_options(), "config train")
            plan._check_mixture()
            if parse_model(plan.train["model"], "config train model").builtin:
                plan.check_model()  # nothing to import
        return plan

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON values (gtok.workflow.handoff writes it for the jobs)."""
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["h5ad_parts"] = [[*key, *rows] for key, rows in self.h5ad_parts.items()]
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "Plan":
        """A plan from `to_json`'s values; a ValueError when its fields are not this class's (a
        plan written by another version of gtok)."""
        names = {f.name for f in fields(cls)}
        if set(doc) != names:
            raise ValueError(f"fields {sorted(set(doc) ^ names)} differ from this gtok's plan")
        parts = {(sample, part): (start, stop) for sample, part, start, stop in doc["h5ad_parts"]}
        return cls(**{**doc, "h5ad_parts": parts})

    def check_model(self) -> None:
        """The training model checked against its config (gtok.modelspec); a brought class is imported.

        That costs seconds (torch, maybe transformers), so the Snakefile calls this in its main
        process only, where the dry run happens, not again in every job."""
        if self.train.get("enabled"):
            options = self.train_options()
            resolve_model(self.train["model"], options, options.get("seed", 0), "config train", embeds=self.evaluates())

    @property
    def model_label(self) -> str:
        """The trained model's name in the evaluation's files (umap_LABEL.png)."""
        return parse_model(self.train["model"]).label

    # -- paths -------------------------------------------------------------------------------------

    @property
    def index(self) -> str:
        return f"{self.results}/universe/universe.gtokidx"

    @property
    def manifest(self) -> str:
        return f"{self.results}/manifest.json"

    @property
    def train_dir(self) -> str:
        return f"{self.results}/train"

    @property
    def train_config(self) -> str:
        return f"{self.results}/train_config.yaml"

    def bed_shard(self, shard: str) -> str:
        return f"{self.results}/shards/bed/{shard}.gtok"

    def h5ad_shard(self, sample: str, part: str) -> str:
        return f"{self.results}/shards/h5ad/{sample}/{part}.gtok"

    def fragment_shard(self, sample: str, part: str) -> str:
        return f"{self.results}/shards/fragments/{sample}/{part}.gtok"

    def fragment_shard_paths(self) -> list[str]:
        return [self.fragment_shard(s, f"{k:04d}") for s in self.fragments for k in range(self.fragment_parts)]

    def fragment_inputs(self, sample: str) -> list[str]:
        """A fragments file, its barcode list and the label sheet: what its shards read."""
        entry = self.fragments[sample]
        return [p for p in (entry["path"], entry["barcodes"], self.fragment_labels) if p]

    def bed_shard_paths(self) -> list[str]:
        return [self.bed_shard(shard) for shard in self.bed_shards]

    def h5ad_shard_paths(self) -> list[str]:
        return [self.h5ad_shard(sample, part) for sample, part in self.h5ad_parts]

    def bed_files(self, shard: str) -> list[str]:
        return [row["path"] for row in self.bed_shards[shard]]

    def bed_labels(self, shard: str) -> list[str]:
        """The labels of one shard's files: a param, so editing a label reruns only its shard (the
        sample sheet itself is not an input; touching it must not rerun every shard)."""
        return [row.get("label") or "" for row in self.bed_shards[shard]] if self.label_sheet else []

    # -- datasets ----------------------------------------------------------------------------------

    def shard_datasets(self) -> dict[str, str]:
        """Each shard's dataset as its tokenize job records it: the BED inputs are one dataset
        (`bed_dataset`), each .h5ad and each fragments file one of its sample's name."""
        return {**{path: self.bed_dataset for path in self.bed_shard_paths()},
                **{self.h5ad_shard(s, part): s for s, part in self.h5ad_parts},
                **{self.fragment_shard(s, f"{k:04d}"): s for s in self.fragments for k in range(self.fragment_parts)}}

    def dataset_names(self) -> list[str]:
        """The datasets the manifest will list (after `inputs.datasets` renamed them), sorted."""
        return sorted({self.renamed_datasets.get(name, name) for name in self.shard_datasets().values()})

    def _check_datasets(self) -> None:
        """`inputs.datasets` renames datasets the inputs have, to usable names."""
        have = sorted(set(self.shard_datasets().values()))
        for old, new in self.renamed_datasets.items():
            if dataset_problem(old):
                raise GtokError(f"config inputs.datasets: {old!r}: {dataset_problem(old)}.")
            if old not in have:
                raise GtokError(f"config inputs.datasets: {old!r} is not a dataset of the inputs (they are "
                                f"{', '.join(map(repr, have))}); rename one of those.")
            problem = dataset_problem(new)
            if problem:
                raise GtokError(f"config inputs.datasets.{old}: {new!r}: {problem}.")

    def _check_mixture(self) -> None:
        """`train.data.mixture` draws from datasets the manifest will list, and an epoch of
        `samples_per_epoch` fills a batch on every training process (gtok.options.check_mixture)."""
        devices, nodes = self.train_world
        data = make_config(DataOptions, self.train.get("data"), "config train section 'data'")
        check_mixture(data, self.dataset_names(), devices * nodes, "config train")

    # -- job command lines -------------------------------------------------------------------------

    # A tokenize job's command is recorded by Snakemake as the rule's `options` param: its argv
    # without --threads (a param that depends on the job's threads is not recorded), so that any
    # change of what a shard holds (its files or rows, labels, dataset, names, selection) reruns
    # the shard, and a change of threads does not.

    def tokenize_bed_argv(self, shard: str, threads: int | None = None) -> list[str]:
        labels = ["--labels", self.label_sheet] if self.label_sheet else []
        return ["tokenize", "--quiet", *_threads(threads), "--universe", self.index, "--dataset", self.bed_dataset,
                "-o", self.bed_shard(shard), *labels, *self.bed_files(shard)]

    def h5ad_rows(self, sample: str, part: str) -> str:
        """A part's row range, START:STOP."""
        return "{}:{}".format(*self.h5ad_parts[(sample, part)])

    def cell_naming(self, sample: str) -> list[str]:
        """How the cells of a sample are named, `SAMPLE#BARCODE` (config/README.md, "Record names")."""
        return ["--sample", sample, "--name-format", self.name_format]

    def tokenize_h5ad_argv(self, sample: str, part: str, threads: int | None = None) -> list[str]:
        labels = ["--label-key", self.label_key] if self.label_key else []
        return ["tokenize", "--quiet", *_threads(threads), "--universe", self.index, "--dataset", sample,
                "-o", self.h5ad_shard(sample, part), "--rows", self.h5ad_rows(sample, part), *labels,
                *self.cell_naming(sample), self.h5ad[sample]]

    def fragment_selection(self, sample: str, part: str) -> list[str]:
        """Which barcodes of a fragments file one shard holds, as options."""
        barcodes = self.fragments[sample]["barcodes"]
        return ["--part", f"{int(part)}/{self.fragment_parts}", "--min-fragments", str(self.min_fragments),
                *(["--barcodes", barcodes] if barcodes else []),
                *(["--labels", self.fragment_labels] if self.fragment_labels else [])]

    def tokenize_fragments_argv(self, sample: str, part: str, threads: int | None = None) -> list[str]:
        return ["tokenize", "--quiet", *_threads(threads), "--universe", self.index, "--dataset", sample,
                "-o", self.fragment_shard(sample, part), *self.fragment_selection(sample, part),
                *self.cell_naming(sample), self.fragments[sample]["path"]]

    def index_argv(self) -> list[str]:
        return ["index", "--quiet", "--universe", self.universe, "-o", self.index]

    def manifest_argv(self) -> list[str]:
        """Shards without a split, then `--split NAME SHARD...` per split of the sample sheet, then
        `--dataset NAME SHARD...` per dataset that `inputs.datasets` renames: renaming reruns only
        the manifest and what follows, not the tokenization."""
        unsplit, by_split = self.h5ad_shard_paths() + self.fragment_shard_paths(), {}
        for shard, rows in self.bed_shards.items():
            split = rows[0].get("split") or None  # a shard's files share one split
            (by_split.setdefault(split, []) if split else unsplit).append(self.bed_shard(shard))
        args = ["manifest", "--quiet", "-o", self.manifest, *unsplit]
        for split, paths in sorted(by_split.items()):
            args += ["--split", split, *paths]
        renamed: dict[str, list[str]] = {}
        for path, name in self.shard_datasets().items():
            if name in self.renamed_datasets:
                renamed.setdefault(self.renamed_datasets[name], []).append(path)
        for name, paths in sorted(renamed.items()):
            args += ["--dataset", name, *paths]
        return args

    def train_argv(self) -> list[str]:
        return ["train", "--quiet", "--manifest", self.manifest, "--model", self.train["model"],
                "--out", self.train_dir, "--config", self.train_config, "--universe", self.universe]

    @property
    def eval_dir(self) -> str:
        return f"{self.results}/eval"

    def has_labels(self) -> bool:
        """Whether any input brings labels: a sample sheet's label column, or obs[label_key]."""
        return (self.label_sheet is not None or (self.label_key is not None and bool(self.h5ad))
                or bool(self.fragments and self.fragment_labels))

    def _check_labels_wanted(self) -> None:
        """A classifier without labels, or an evaluation asked for without labels or training, would
        fail (or silently not run) only after every shard was made: refuse it at the dry run."""
        sources = "a sample sheet's 'label' column, inputs.label_key or inputs.fragment_labels"
        if self.evaluate is True and not self.train.get("enabled"):
            raise GtokError("config evaluate.enabled: true, but train.enabled is false, and the evaluation scores the "
                            "model this run trains; enable training, or set evaluate.enabled to auto.")
        if not self.train.get("enabled") or self.has_labels():
            return
        if parse_model(self.train["model"], "config train model").text == "classifier":
            raise GtokError(f"config train.model: classifier learns to tell label classes apart, and no input brings "
                            f"labels ({sources}); add labels, or train region2vec or encoder.")
        if self.evaluate is True:
            raise GtokError(f"config evaluate.enabled: true scores the model by the labels of held-out records, and no "
                            f"input brings labels ({sources}); add labels, or set evaluate.enabled to auto.")

    def evaluates(self) -> bool:
        """Evaluation runs after training: `enabled: auto` (the default) when the data has labels."""
        if not self.train.get("enabled") or self.evaluate is False:
            return False
        return self.evaluate is True or self.has_labels()

    def evaluate_argv(self) -> list[str]:
        return ["evaluate", "--quiet", "--model", self.train_dir, "--manifest", self.manifest, "--out", self.eval_dir]

    @property
    def train_world(self) -> tuple[int, int]:
        """(devices per node, nodes) of the training job."""
        trainer = self.train.get("trainer") or {}
        return int(trainer.get("devices", 1)), int(trainer.get("num_nodes", 1))

    def _train_cpus(self) -> int:
        """CPUs of one training process: one, plus one per DataLoader worker."""
        workers = (self.train.get("data") or {}).get("num_workers", DataOptions.num_workers)
        return 1 + int(workers)

    def train_threads(self) -> int:
        """Cores the training job uses on this machine when it runs locally (all its processes)."""
        return self.train_world[0] * self._train_cpus()

    def _train_gpus(self) -> bool:
        return (self.train.get("trainer") or {}).get("accelerator") in ("gpu", "cuda")

    def _per_node(self) -> list[str]:
        """The training job's tasks (and GPUs) per node, as SLURM options."""
        devices = self.train_world[0]
        return [f"--ntasks-per-node={devices}", *([f"--gpus-per-node={devices}"] if self._train_gpus() else [])]

    def train_resources(self) -> dict[str, Any]:
        """The training job's shape as Snakemake resources.

        Several devices are one SLURM task each, started by `srun` inside the job (the plugin's
        `mpi` pattern: the job gets `--nodes`, `--ntasks` and, through `slurm_extra`,
        `--ntasks-per-node` and `--gpus-per-node`), so that Lightning sees the true world size.
        `cpus_per_task` is what the job asks for; a profile may set another (`set-resources`),
        so the job step takes what the job was given (gtok.workflow.jobs.train_job_command).
        """
        devices, nodes = self.train_world
        resources: dict[str, Any] = {"cpus_per_task": self._train_cpus()}
        if devices * nodes > 1:
            resources |= {"nodes": nodes, "tasks": devices * nodes, "mpi": "srun",
                          "slurm_extra": " ".join(self._per_node())}
        elif self._train_gpus():
            resources["gpu"] = devices
        return resources

    def train_srun(self) -> list[str]:
        """srun's options that start the training processes inside a SLURM job, one task per device
        ([] for a single process, which needs no srun). The rule uses them only inside a SLURM job;
        run locally, `gtok train` is one process and Lightning spawns the others. (The executor is
        not known yet when the Snakefile is parsed, so the choice is made where the job runs.)"""
        devices, nodes = self.train_world
        return [f"--nodes={nodes}", *self._per_node()] if devices * nodes > 1 else []

    def train_options(self) -> dict[str, Any]:
        """What goes into train_config.yaml: the `train` section less `enabled` and `model`, with
        keys sorted at every level, so that reordering config.yaml (the params trigger sees order)
        reruns nothing."""
        return _sorted_keys({k: v for k, v in self.train.items() if k not in ("enabled", "model")})

    def example_inputs(self) -> list[str]:
        """The inputs (and universe) of this run that come from the bundled example."""
        example = os.path.abspath(EXAMPLE) + os.sep
        used = [self.universe, *(p for rows in self.bed_shards.values() for p in (r["path"] for r in rows)),
                *self.h5ad.values(), *(p for s in self.fragments for p in self.fragment_inputs(s))]
        return sorted({p for p in used if os.path.abspath(p).startswith(example)})


def _row_ranges(samples: dict[str, str], step: int, count: Callable[[str], int]) -> dict[tuple[str, str], tuple[int, int]]:
    """(sample, part) -> (start, stop) rows, `step` rows a part."""
    parts = {}
    for sample, path in samples.items():
        n = count(path)
        for i, start in enumerate(range(0, n, step)):
            parts[(sample, f"{i:04d}")] = (start, min(start + step, n))
    return parts


def _sorted_keys(value):
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value, key=str)}  # YAML keys may be numbers
    return value


def _threads(threads: int | None) -> list[str]:
    """--threads for a job's argv; none in the command Snakemake records (Plan.tokenize_*_argv)."""
    return [] if threads is None else ["--threads", str(threads)]
