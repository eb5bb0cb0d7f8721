"""One line for data that fails its JSON schema (the config, a sample sheet's rows).

Snakemake's `validate` raises a WorkflowError that prints the whole schema and the whole data,
hundreds of lines for one misspelt key, with the key's path at the very end. The workflow turns it
into one line that names the key first, as its other config errors do.
"""

from __future__ import annotations

import re
from typing import Any


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
