"""The config as the JSON schema checks it: nested `--config` values typed as a config file's, and
one line for data that fails the schema (the config, a sample sheet's rows).

Snakemake's `validate` raises a WorkflowError that prints the whole schema and the whole data,
hundreds of lines for one misspelt key, with the key's path at the very end. The workflow turns it
into one line that names the key first, as its other config errors do.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


def typed_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """`snakemake --config KEY=VALUE` overrides with their nested values typed.

    Snakemake types a top-level VALUE (int, float, bool) but reads a nested one, `shards='{
    files_per_shard: 2}'`, with YAML's BaseLoader, which leaves every scalar a string: the schema
    would then refuse the 2 that a config file gives as a number. Nested strings that read as a
    number, a boolean or null become one; every other string stays as it was written.
    """
    return {key: _typed(value) if isinstance(value, (dict, list)) else value for key, value in overrides.items()}


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    if not isinstance(value, str):
        return value
    for number in (int, float):  # float first would make 2 a 2.0; YAML reads 1e-3 as a string
        try:
            return number(value)
        except ValueError:
            pass
    try:
        scalar = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return scalar if scalar is None or isinstance(scalar, bool) else value


def schema_problem(error: BaseException, what: str) -> str:
    """`what KEY.PATH: the problem` from a failed Snakemake `validate` (for a table's row, `what,
    line N, column KEY: ...`): a WorkflowError raised while handling jsonschema's ValidationError
    (its context); the error's first line when there is none."""
    found: Any = error.__context__
    if not hasattr(found, "absolute_path"):
        return str(error).strip().splitlines()[0]
    path = ".".join(str(part) for part in found.absolute_path)
    row = re.search(r"validating row (\d+) of data frame", str(error))
    if row:  # line 1 is the header
        what = f"{what}, line {int(row[1]) + 2}{', column' if path else ''}"
    return f"{what}{' ' + path if path else ''}: {found.message}."
