"""The config as the JSON schema checks it: nested `--config` values typed as a config file's, and
one line for data that fails the schema (the config, a sample sheet's rows).

Snakemake's `validate` raises a WorkflowError that prints the whole schema and the whole data,
hundreds of lines for one misspelt key, with the key's path at the very end. The workflow turns it
into one line that names the key first, as its other config errors do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml


def typed_overrides(overrides: dict[str, Any], schema: str | os.PathLike | dict[str, Any]) -> dict[str, Any]:
    """`snakemake --config KEY=VALUE` overrides with their nested values typed as `schema` expects.

    Snakemake types a top-level VALUE (int, float, bool) but reads a nested one, `shards='{
    files_per_shard: 2}'`, with YAML's BaseLoader, which leaves every scalar a string (and drops
    the quotes of a "2024" meant as one): the schema would then refuse the 2 that a config file
    gives as a number. A nested string becomes the number, boolean or null it spells where the
    schema does not take a string there (or does not say: the training sections, which gtok.options
    checks, take numbers); where it takes one, the string stays. `schema`: the config's JSON schema
    (or the path of its YAML).
    """
    if not isinstance(schema, dict):
        schema = yaml.safe_load(Path(schema).read_text())
    return {key: _typed(value, _child(schema, key)) if isinstance(value, (dict, list)) else value
            for key, value in overrides.items()}


def _typed(value: Any, schema: dict[str, Any] | None) -> Any:
    if isinstance(value, dict):
        return {key: _typed(item, _child(schema, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item, _items(schema)) for item in value]
    if not isinstance(value, str) or _takes_string(schema, value):
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


def _alternatives(schema: dict[str, Any] | None) -> list[dict[str, Any]]:
    """`schema` and the alternatives it offers (oneOf, anyOf)."""
    if not isinstance(schema, dict):
        return []
    return [schema, *(alt for key in ("oneOf", "anyOf") for alt in schema.get(key, []) if isinstance(alt, dict))]


def _child(schema: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    for alt in _alternatives(schema):
        if key in alt.get("properties", {}):
            return alt["properties"][key]
        if isinstance(alt.get("additionalProperties"), dict):
            return alt["additionalProperties"]
    return None


def _items(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    return next((alt["items"] for alt in _alternatives(schema) if isinstance(alt.get("items"), dict)), None)


def _takes_string(schema: dict[str, Any] | None, value: str) -> bool:
    """Whether `schema` accepts `value` as a string (an unknown schema: no)."""
    for alt in _alternatives(schema):
        if "enum" in alt:
            if value in alt["enum"]:
                return True
            continue
        kinds = alt.get("type")
        if kinds == "string" or (isinstance(kinds, list) and "string" in kinds):
            return True
    return False


def schema_problem(error: BaseException, what: str) -> str:
    """`what KEY.PATH: the problem` from a failed Snakemake `validate` (for a table's row, `what,
    line N, column KEY: ...`): a WorkflowError raised while handling jsonschema's ValidationError
    (its context); the error's first line when there is none."""
    found: Any = error.__context__
    if not hasattr(found, "absolute_path"):
        return str(error).strip().splitlines()[0]
    found = _closest(found)
    path = ".".join(str(part) for part in found.absolute_path)
    row = re.search(r"validating row (\d+) of data frame", str(error))
    if row:  # line 1 is the header
        what = f"{what}, line {int(row[1]) + 2}{', column' if path else ''}"
    return f"{what}{' ' + path if path else ''}: {_message(found)}."


def _closest(error: Any) -> Any:
    """The alternative a value of several allowed shapes (oneOf) came closest to: jsonschema says
    only that it "is not valid under any of the given schemas", which names neither the shapes nor
    the one mistake (a misspelt key of an entry, a file of the wrong suffix)."""
    from jsonschema.exceptions import best_match

    return best_match([error]) if error.context else error


def _message(error: Any) -> str:
    """The schema's own words (its `errorMessage`) for a value that fails a `pattern` (the regular
    expression means little to whoever wrote the config) or fits none of a key's shapes."""
    said = error.schema.get("errorMessage") if error.validator in ("pattern", "oneOf") else None
    return f"{error.instance!r} {said}" if said else error.message
