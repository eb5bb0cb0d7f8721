"""The inputs of `gtok tokenize`, one module per kind, each with its reading, its options and their
checks, yielding record batches through one protocol (gtok.sources.base.Source):

| kind | module | a record per |
|---|---|---|
| bed | gtok.sources.bed | file |
| h5ad (and .h5mu) | gtok.sources.cells (gathering tokens), gtok.sources.h5ad (the h5py reader) | cell |
| fragments | gtok.sources.fragments (what makes one, options), .parser, .records (the source) | barcode |
| parquet | gtok.sources.parquet | row (tokens already) |

This module tells inputs apart (`input_kinds`), checks the options against them (an option for a
kind with no input of that kind is refused in one line) and opens one source per input
(`open_sources`); the kind modules are imported only for inputs of their kind, so a BED-only run
imports neither h5py, pyarrow nor numba. gtok.sources.labels and gtok.sources.samples are the
label sheets and the cell names that several kinds share.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gtok.errors import GtokError
from gtok.sources.fragments import FragmentOptions, is_fragments
from gtok.sources.h5ad import DEFAULT_MODALITY
from gtok.sources.samples import cell_names

if TYPE_CHECKING:
    from gtok.sources.base import Source

#: The kinds, in the order a shard's metadata counts its inputs (open_sources gives the order its records are written in).
KINDS = ("bed", "h5ad", "fragments", "parquet")


@dataclass(frozen=True)
class Options:
    """What `gtok tokenize` is told about its inputs, flag by flag; `open_sources` hands each kind
    its own part and refuses one given for a kind that has no input."""

    rows: str | None = None  # --rows START:STOP, .h5ad
    label_key: str | None = None  # --label-key, .h5ad
    labels_sheet: str | None = None  # --labels, BED and fragment files
    chunk_rows: int = 2048  # --chunk-rows, .h5ad
    threads: int | None = None  # --threads, BED files
    fragments: FragmentOptions | None = None  # --barcodes, --min-fragments, --part
    modality: str = DEFAULT_MODALITY  # --modality, .h5mu
    tile_width: int | None = None  # --tile-width, .h5ad
    layer: str | None = None  # --layer, .h5ad
    samples: Sequence[str] | None = None  # --sample, fragment and .h5ad inputs
    name_format: str | None = None  # --name-format, fragment and .h5ad inputs
    progress: bool = True


def input_kinds(inputs: Sequence[str]) -> dict[str, list[str]]:
    """The inputs by kind: h5ad (also .h5mu) and parquet by their names (in any case), then text
    files: fragments (by name, else by content: gtok.sources.fragments.is_fragments), bed (the rest)."""
    kinds: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for p in inputs:
        name = p.lower()
        kind = "h5ad" if name.endswith((".h5ad", ".h5mu")) else "parquet" if name.endswith(".parquet") else None
        kinds[kind or ("fragments" if is_fragments(p) else "bed")].append(p)
    return kinds


def open_sources(inputs: Sequence[str], kinds: dict[str, list[str]], options: Options) -> list[Source]:
    """A source per input (one for all BED files, tokenized together), in the order their records
    are written: BED files, .h5ad files, parquet files, fragment files. The options are checked
    first, in one line each; nothing is read but what telling the kinds apart needed."""
    beds, h5ads, frags, parquets = (kinds[k] for k in ("bed", "h5ad", "fragments", "parquet"))
    cell_options = _check_options(kinds, options)
    if options.samples is not None and not (h5ads or frags):
        raise GtokError("--sample names the cells of fragment and .h5ad inputs; there are none.")
    names = cell_names([p for p in inputs if p in h5ads or p in frags], options.samples, options.name_format)
    sources: list[Source] = []
    if beds:
        from gtok.sources.bed import BedFiles

        sources.append(BedFiles(beds, options.labels_sheet, options.threads, options.progress))
    if h5ads:
        from gtok.sources.cells import H5adSource

        sources += [H5adSource(path, cell_options, names[path], options.progress) for path in h5ads]
    if parquets:
        from gtok.sources.parquet import ParquetSource

        sources += [ParquetSource(path) for path in parquets]
    if frags:
        from gtok.sources.fragments.records import FragmentsSource
        from gtok.sources.labels import read_barcode_labels

        sheet = functools.partial(read_barcode_labels, options.labels_sheet) if options.labels_sheet else None
        labels = functools.cache(sheet) if sheet else None  # read once, by the first fragments source's check
        sources += [FragmentsSource(path, options.fragments or FragmentOptions(), names[path], labels, len(frags),
                                    options.progress) for path in frags]
    return sources


def _check_options(kinds: dict[str, list[str]], options: Options):
    """Each option against the kinds of the inputs; returns the .h5ad inputs' options (their row
    range parsed)."""
    beds, h5ads, frags = kinds["bed"], kinds["h5ad"], kinds["fragments"]
    if options.rows is not None and (len(h5ads) != 1 or beds or frags):
        raise GtokError("--rows needs exactly one .h5ad input and no other inputs.")
    if options.label_key and not h5ads:
        raise GtokError("--label-key applies to .h5ad inputs; use --labels SHEET.tsv for BED and fragment files.")
    if options.layer and not h5ads:
        raise GtokError("--layer applies to .h5ad and .h5mu inputs.")
    if options.tile_width is not None and not h5ads:
        raise GtokError("--tile-width applies to .h5ad and .h5mu inputs (tile matrices).")
    if options.modality != DEFAULT_MODALITY and not h5ads:  # (a MuData file may be named .h5ad too)
        raise GtokError("--modality applies to .h5mu inputs (MuData files).")
    if options.labels_sheet and not (beds or frags):
        raise GtokError("--labels applies to BED and fragment inputs; use --label-key COLUMN for .h5ad files.")
    if options.labels_sheet and beds and frags:
        raise GtokError("--labels with both BED and fragment inputs is ambiguous; tokenize them into separate shards.")
    if options.fragments is not None and options.fragments != FragmentOptions() and not frags:
        raise GtokError("--barcodes, --min-fragments and --part apply to fragment files (.tsv.gz, .tsv.bgz, .tsv).")
    if not h5ads:
        return None
    from gtok.sources.cells import CellOptions

    return CellOptions.of(options.rows, options.label_key, options.chunk_rows, options.modality, options.tile_width,
                          options.layer)
