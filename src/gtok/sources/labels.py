"""Label sheets: a TSV giving BED files, or the cells of fragment files, their labels
(`gtok tokenize --labels`), and reading such sheets in the encodings spreadsheets write."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

from gtok.errors import GtokError
from gtok.formats.shard import record_name
from gtok.paths import input_file
from gtok.sources.samples import CellNames
from gtok.sources.text import decode_text, encoding_of


def read_label_sheet(sheet: str, beds: Sequence[str]) -> dict[str, str | None]:
    """Each BED input's label, matched on the sheet's `path` column, else on `name` (file name
    without .bed/.bed.gz). Every input must be listed; an empty label means unlabeled."""
    (key,), by_key = _read_sheet(sheet, (("path",), ("name",)))
    labels = {}
    for p in beds:
        k = _norm(p) if key == "path" else record_name(p)
        if k not in by_key:
            raise GtokError(f"{sheet}: no row for input {p} (matched on the '{key}' column).")
        labels[p] = by_key[k]
    return labels


@dataclass(frozen=True)
class CellLabels:
    """A label sheet of cells, keyed by its `sample` and `barcode` columns, its `barcode` column
    alone, or its `name` column (whole record names such as `sample#barcode`)."""

    sheet: str
    key: tuple[str, ...]
    labels: dict

    def of(self, names: CellNames, n_samples: int) -> dict[str, str | None]:
        """The labels of one input's cells, by record name. A sheet keyed by barcode alone cannot
        tell the samples of one call apart, and a sheet with samples needs inputs that have one."""
        if self.key == ("sample", "barcode"):
            if names.sample is None:
                raise GtokError(f"{self.sheet}: the label sheet has a 'sample' column, but the cells have no sample "
                                "name; give --sample NAME.")
            return {names.name(b): label for (s, b), label in self.labels.items() if s == names.sample}
        if self.key == ("barcode",):
            if n_samples > 1:
                raise GtokError(f"{self.sheet}: the label sheet matches cells by 'barcode' alone, but {n_samples} samples "
                                "are tokenized and barcodes repeat across samples; add a 'sample' column (or give "
                                "whole record names in a 'name' column).")
            return {names.name(b): label for b, label in self.labels.items()}
        return self.labels


def read_barcode_labels(sheet: str) -> CellLabels:
    """Labels of the cells of fragment files: by the sheet's `sample` and `barcode` columns, else
    by `barcode`, else by `name` (the record name). Cells the sheet does not list are unlabeled."""
    key, labels = _read_sheet(sheet, (("sample", "barcode"), ("barcode",), ("name",)))
    return CellLabels(sheet, key, labels)


def read_sheet(sheet: str, what: str) -> tuple[list[str], list[dict[str, str]]]:
    """The column names and rows of a tab-separated sheet with a header line.

    Spreadsheets save text in several encodings: a byte-order mark tells UTF-8 (Excel's "CSV
    UTF-8"), UTF-16 and UTF-32 apart, and without one they show as zero bytes beside every ASCII
    character (one in UTF-16, three in UTF-32); anything else must be UTF-8 (Latin-1 cannot be told from other 8-bit encodings, so
    it is refused with the line of its first non-UTF-8 byte)."""
    try:
        raw = input_file(sheet, what).read_bytes()
    except OSError as exc:
        raise GtokError(f"{sheet}: cannot read the {what} ({os.strerror(exc.errno).lower()}).") from None
    text = decode_text(raw, sheet, what)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t", restval="")
    rows = list(reader)
    if not reader.fieldnames:
        raise GtokError(f"{sheet}: the {what} is empty; it needs a header line of tab-separated column names.")
    _refuse_repeated_columns(reader.fieldnames, sheet, what)
    long = next((i for i, row in enumerate(rows) if None in row), None)
    if long is not None:  # csv files the extra fields under None: a tab inside a value would cut it short unsaid
        raise GtokError(f"{sheet}, line {long + 2}: {len(rows[long][None])} more field(s) than the header's "
                        f"{len(reader.fieldnames)} columns ({rows[long][None]!r}); is there a tab inside a value? "
                        "Give every row the header's columns.")
    return list(reader.fieldnames), rows


def _refuse_repeated_columns(header: Sequence[str], sheet: str, what: str) -> None:
    """csv reads the last of two columns of one name and drops the first unsaid (a second 'label'
    would relabel every row). Empty names (a header's trailing tabs) are nobody's column."""
    first: dict[str, int] = {}
    for number, column in enumerate(header, start=1):
        if column and column in first:
            raise GtokError(f"{sheet}: the {what}'s header names column {column!r} twice (columns {first[column]} and "
                            f"{number}); rename or remove one of them.")
        first.setdefault(column, number)


def sheet_header(sheet: str, what: str) -> list[str]:
    """A sheet's column names, from its first 64 KiB only (a sheet of a million cells is not read
    to check its columns; the job that reads it whole reports any bad byte)."""
    try:
        with open(input_file(sheet, what), "rb") as fh:
            head = fh.read(1 << 16)
    except OSError as exc:
        raise GtokError(f"{sheet}: cannot read the {what} ({os.strerror(exc.errno).lower()}).") from None
    return next(csv.reader(io.StringIO(head.decode(encoding_of(head), "replace")), delimiter="\t"), [])


def _read_sheet(sheet: str, choices: Sequence[tuple[str, ...]]) -> tuple[tuple[str, ...], dict]:
    """The sheet's key columns (the first of `choices` it has) and its label per key (the value,
    or the tuple of values of several columns). Two rows giving one key different labels are an
    error: neither can be trusted."""
    header, table = read_sheet(sheet, "label sheet")
    key = next((k for k in choices if set(k) <= set(header)), None)
    if "label" not in header or key is None:
        wanted = ", ".join(" + ".join(map(repr, k)) for k in choices[:-1]) + " or " + " + ".join(map(repr, choices[-1]))
        raise GtokError(f"{sheet}: the label sheet needs a 'label' column and a {wanted} column "
                        f"(its columns: {', '.join(map(repr, header))}).")
    if not table:
        raise GtokError(f"{sheet}: the label sheet has a header but no rows; add one row per {' and '.join(key)}.")
    by_key: dict = {}
    for line, row in enumerate(table, start=2):  # line 1 is the header
        values = tuple(_norm(row[c]) if c == "path" else row[c] for c in key)
        k = values if len(key) > 1 else values[0]
        label = row["label"] or None
        if k in by_key and by_key[k][0] != label:
            earlier, first_line = by_key[k]
            shown = ", ".join(f"{c} {row[c]!r}" for c in key)
            raise GtokError(
                f"{sheet}, lines {first_line} and {line}: {shown} has two labels, {earlier!r} and {label!r}; keep one "
                f"row per {' and '.join(key)}."
            )
        by_key.setdefault(k, (label, line))
    return key, {k: label for k, (label, _) in by_key.items()}


def _norm(path: str) -> str:
    return os.path.realpath(path)
