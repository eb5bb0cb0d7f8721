"""Label sheets: a TSV giving BED files, or the barcodes of fragment files, their labels
(`gtok tokenize --labels`)."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

from gtok.errors import GtokError
from gtok.formats.shard import record_name
from gtok.paths import input_file


def read_label_sheet(sheet: str, beds: Sequence[str]) -> dict[str, str | None]:
    """Each BED input's label, matched on the sheet's `path` column, else on `name` (file name
    without .bed/.bed.gz). Every input must be listed; an empty label means unlabeled."""
    key, by_key = _read_sheet(sheet, ("path", "name"))
    labels = {}
    for p in beds:
        k = _norm(p) if key == "path" else record_name(p)
        if k not in by_key:
            raise GtokError(f"{sheet}: no row for input {p} (matched on the '{key}' column).")
        labels[p] = by_key[k]
    return labels


def read_barcode_labels(sheet: str) -> dict[str, str | None]:
    """Labels of the cells of a fragments file, by barcode (the sheet's `name` or `barcode`
    column). Barcodes the sheet does not list are unlabeled."""
    return _read_sheet(sheet, ("barcode", "name"))[1]


def _read_sheet(sheet: str, keys: Sequence[str]) -> tuple[str, dict[str, str | None]]:
    """The sheet's key column (the first of `keys` it has) and its label per key. Two rows giving
    one key different labels are an error: neither can be trusted."""
    try:
        with open(input_file(sheet, "label sheet"), newline="") as fh:
            table = list(csv.DictReader(fh, delimiter="\t"))
    except OSError as exc:
        raise GtokError(f"{sheet}: cannot read the label sheet ({exc.strerror}).") from None
    columns = set(table[0]) if table else set()
    key = next((k for k in keys if k in columns), None)
    if "label" not in columns or key is None:
        wanted = " or ".join(repr(k) for k in keys)
        raise GtokError(f"{sheet}: the label sheet needs a 'label' column and a {wanted} column.")
    by_key: dict[str, tuple[str | None, int]] = {}
    for line, row in enumerate(table, start=2):  # line 1 is the header
        k = _norm(row[key]) if key == "path" else row[key]
        label = row["label"] or None
        if k in by_key and by_key[k][0] != label:
            earlier, first_line = by_key[k]
            raise GtokError(
                f"{sheet}, lines {first_line} and {line}: {key} {row[key]!r} has two labels, {earlier!r} and "
                f"{label!r}; keep one row per {key}."
            )
        by_key.setdefault(k, (label, line))
    return key, {k: label for k, (label, _) in by_key.items()}


def _norm(path: str) -> str:
    return os.path.realpath(path)
