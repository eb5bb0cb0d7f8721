"""Helpers: the input files, their shards, and the workflow's targets.

Everything here runs once per Snakemake process, while the Snakefile is parsed: the BED globs are
expanded (or the sample sheet read) once, shard membership is computed once into dicts, and the
rules' input functions are dict lookups. That keeps the DAG of 100,000 BED files quick to build
(see bench/README.md, "Workflow DAG at scale").
"""

import csv
import glob
import hashlib
import math
import os
from functools import cache

from snakemake.exceptions import WorkflowError

def refuse_braces(path: str, what: str) -> None:
    """Snakemake reads `{...}` in a file name as a wildcard, whatever the rule: say so, by name."""
    if "{" in path or "}" in path:
        raise WorkflowError(f"{what} {path}: Snakemake cannot use file names with braces {{ }}; rename the file.")


R = config["results"]
UNIVERSE = config["universe"]
HOW_TO_CONFIGURE = (
    "edit config/config.yaml or pass --configfile (config/README.md); `make run` runs the bundled example"
)
refuse_braces(UNIVERSE, "config universe:")
if not os.path.isfile(UNIVERSE):
    raise WorkflowError(f"config universe: {UNIVERSE}: no such file; {HOW_TO_CONFIGURE}.")
GTOK_ENV = "../../envs/gtok.yaml"
BED_SHARD = f"{R}/shards/bed/{{shard}}.gtok"
H5AD_SHARD = f"{R}/shards/h5ad/{{sample}}/{{part}}.gtok"
MANIFEST = f"{R}/manifest.json"
TRAIN_CONFIG = f"{R}/train_config.yaml"
TRAIN_DIR = f"{R}/train"

# The `gtok` command line of each job is a param computed from the wildcards alone (not from
# `input`/`output`), because Snakemake records only such params: any change to it (a file added
# to a shard, another row range, another model) then reruns exactly the jobs whose command changed.

# Every job loads the universe through gtok's binary cache (keyed by content, so it cannot go
# stale); the `universe` rule fills it once before the tokenization jobs fan out. A GTOK_CACHE_DIR
# already set by the user (e.g. node-local scratch) wins.
os.environ.setdefault("GTOK_CACHE_DIR", f"{R}/.cache")


# -- BED files and their shards ------------------------------------------------------------------


def shard_buckets(keys: list[str], per_shard: int) -> list[int]:
    """Assign each key to one of n = ceil(len(keys) / per_shard) buckets by linear hashing.

    A key's bucket is its 64-bit hash modulo 2**(L+1), or modulo 2**L when that lands at or past
    n, where 2**L <= n < 2**(L+1). Why not `hash % n`: that moves almost every file whenever n
    changes. With linear hashing, adding files changes n only once every `per_shard` files, and
    then exactly one bucket (n - 2**L) splits in two; every other file keeps its bucket. So
    adding files reruns only the shards they land in, plus at most one split shard per
    `per_shard` files added. Buckets average `per_shard` files: the ones already split hold about
    half the share of the others, so sizes range over about per_shard/2 .. 2*per_shard.
    """
    n = max(1, math.ceil(len(keys) / per_shard))
    level = n.bit_length() - 1
    wide, narrow = (2 << level) - 1, (1 << level) - 1
    buckets = []
    for key in keys:
        h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
        b = h & wide
        buckets.append(b if b < n else h & narrow)
    return buckets


def read_sample_sheet(sheet: str) -> list[dict]:
    """Rows of the BED sample sheet: `path`, optional `label` and `split` columns."""
    try:
        with open(sheet, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except OSError as exc:
        raise WorkflowError(f"{sheet}: cannot read the BED sample sheet ({exc.strerror}).") from None
    if not rows or "path" not in rows[0]:
        raise WorkflowError(f"{sheet}: the BED sample sheet needs a header with a 'path' column and at least one row.")
    for i, row in enumerate(rows, start=2):
        if not row["path"]:
            raise WorkflowError(f"{sheet}, line {i}: empty 'path'.")
        split = row.get("split") or ""
        if split and not split.replace("_", "").isalnum():
            raise WorkflowError(f"{sheet}, line {i}: split {split!r} must be letters, digits or '_'.")
    return rows


def bed_inputs() -> tuple[list[dict], str | None]:
    """BED inputs as rows with `path` (and `label`, `split` from a sheet), plus the label sheet."""
    spec = config["inputs"]["bed"]
    if isinstance(spec, str):
        rows = read_sample_sheet(spec)
        return rows, spec if "label" in rows[0] else None
    paths = set()
    for pattern in spec:
        matches = glob.glob(pattern, recursive=True)
        if not matches:
            raise WorkflowError(f"config inputs.bed: the pattern {pattern!r} matches no file.")
        paths.update(matches)
    return [{"path": p} for p in sorted(paths)], None


def group_bed_shards(rows: list[dict], per_shard: int) -> dict[str, list[dict]]:
    """Shard id -> its rows. Rows of different splits never share a shard; ids are
    `SPLIT-NNNN`, or `NNNN` without a split column. Hash keys are the normalised paths."""
    by_split: dict[str, list[dict]] = {}
    seen = set()
    for row in rows:
        row["path"] = os.path.normpath(row["path"])
        refuse_braces(row["path"], "BED input")
        if row["path"] in seen:
            raise WorkflowError(f"BED input {row['path']} is listed twice.")
        seen.add(row["path"])
        by_split.setdefault(row.get("split") or "", []).append(row)
    shards: dict[str, list[dict]] = {}
    for split, members in sorted(by_split.items()):
        prefix = f"{split}-" if split else ""
        for row, b in zip(members, shard_buckets([r["path"] for r in members], per_shard)):
            shards.setdefault(f"{prefix}{b:04d}", []).append(row)
    return dict(sorted(shards.items()))


_BED_ROWS, LABEL_SHEET = bed_inputs() if config["inputs"]["bed"] else ([], None)
BED_SHARDS = group_bed_shards(_BED_ROWS, config["shards"]["files_per_shard"])


def bed_shard_files(wildcards) -> list[str]:
    return [row["path"] for row in BED_SHARDS[wildcards.shard]]


def bed_shard_labels(wildcards) -> list[str]:
    """The labels of one shard's files: a param, so editing a label reruns only its shard (the
    sample sheet itself is not an input; touching it must not rerun every shard)."""
    return [row.get("label") or "" for row in BED_SHARDS[wildcards.shard]] if LABEL_SHEET else []


def tokenize_bed_argv(wildcards) -> list[str]:
    labels = ["--labels", LABEL_SHEET] if LABEL_SHEET else []
    output = BED_SHARD.format(shard=wildcards.shard)
    return ["tokenize", "--quiet", "--universe", UNIVERSE, "-o", output, *labels, *bed_shard_files(wildcards)]


# -- h5ad files and their row ranges -------------------------------------------------------------


@cache
def n_obs(path: str) -> int:
    """Rows of an .h5ad, from the length of its obs index: reads a few bytes, not the matrix."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            obs = f["obs"]
            if isinstance(obs, h5py.Dataset):  # anndata < 0.7 stored obs as one record array
                return int(obs.shape[0])
            return int(obs[obs.attrs.get("_index", "_index")].shape[0])
    except (OSError, KeyError) as exc:
        raise WorkflowError(f"{path}: cannot read the number of cells from this .h5ad ({exc}).") from None


def h5ad_samples() -> dict[str, str]:
    """Sample name (file name without .h5ad) -> path."""
    samples: dict[str, str] = {}
    for path in config["inputs"]["h5ad"]:
        refuse_braces(path, "inputs.h5ad")
        name = os.path.basename(path).removesuffix(".h5ad")
        if name in samples:
            raise WorkflowError(f"inputs.h5ad: {samples[name]} and {path} have the same file name {name!r}.")
        samples[name] = path
    return samples


H5AD = h5ad_samples()


def h5ad_parts() -> dict[tuple[str, str], tuple[int, int]]:
    """(sample, part) -> (start, stop) rows, `cells_per_shard` rows a part."""
    step = config["shards"]["cells_per_shard"]
    parts = {}
    for sample, path in H5AD.items():
        n = n_obs(path)
        for i, start in enumerate(range(0, n, step)):
            parts[(sample, f"{i:04d}")] = (start, min(start + step, n))
    return parts


H5AD_PARTS = h5ad_parts()


def tokenize_h5ad_argv(wildcards) -> list[str]:
    start, stop = H5AD_PARTS[(wildcards.sample, wildcards.part)]
    key = config["inputs"]["label_key"]
    labels = ["--label-key", key] if key else []
    output = H5AD_SHARD.format(sample=wildcards.sample, part=wildcards.part)
    rows = f"{start}:{stop}"
    return ["tokenize", "--quiet", "--universe", UNIVERSE, "-o", output, "--rows", rows, *labels, H5AD[wildcards.sample]]


# -- training ------------------------------------------------------------------------------------


def check_train_options() -> None:
    """Reject a misspelt or mistyped training option now, not after hours of tokenization."""
    from gtok.errors import GtokError
    from gtok.options import check_train_config

    try:
        check_train_config(train_options(), "config train")
    except GtokError as exc:
        raise WorkflowError(str(exc)) from None


def train_options() -> dict:
    """What goes into train_config.yaml: the `train` section less `enabled` and `model`, with keys
    sorted at every level, so that reordering config.yaml (the params trigger sees order) reruns
    nothing."""
    return _sorted_keys({k: v for k, v in config["train"].items() if k not in ("enabled", "model")})


def _sorted_keys(value):
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    return value


if config["train"]["enabled"]:
    check_train_options()


def train_argv(wildcards) -> list[str]:
    return [
        "train", "--quiet", "--manifest", MANIFEST, "--model", config["train"]["model"],
        "--out", TRAIN_DIR, "--config", TRAIN_CONFIG, "--universe", UNIVERSE,
    ]


def manifest_argv(wildcards) -> list[str]:
    """Shards without a split, then `--split NAME SHARD...` per split of the sample sheet."""
    unsplit, by_split = list(h5ad_shard_paths()), {}
    for shard, rows in BED_SHARDS.items():
        split = rows[0].get("split") or None  # a shard's files share one split
        (by_split.setdefault(split, []) if split else unsplit).append(BED_SHARD.format(shard=shard))
    args = ["manifest", "--quiet", "-o", MANIFEST, *unsplit]
    for split, paths in sorted(by_split.items()):
        args += ["--split", split, *paths]
    return args


# -- targets -------------------------------------------------------------------------------------


def bed_shard_paths() -> list[str]:
    return [BED_SHARD.format(shard=shard) for shard in BED_SHARDS]


def h5ad_shard_paths() -> list[str]:
    return [H5AD_SHARD.format(sample=sample, part=part) for sample, part in H5AD_PARTS]


if not BED_SHARDS and not H5AD_PARTS:
    raise WorkflowError(f"config: inputs.bed and inputs.h5ad select no input at all; {HOW_TO_CONFIGURE}.")


def example_inputs() -> list[str]:
    """The inputs (and universe) of this run that come from the bundled example."""
    example = os.path.abspath("resources/example") + os.sep
    used = [UNIVERSE, *(r["path"] for r in _BED_ROWS), *H5AD.values()]
    return sorted({p for p in used if os.path.abspath(p).startswith(example)})


def final_outputs() -> list[str]:
    """The targets of `all`, the default target: the manifest, the stats, and training when enabled."""
    targets = [*rules.manifest.output, *rules.stats.output]
    if config["train"]["enabled"]:
        targets += rules.train.output
    return targets
