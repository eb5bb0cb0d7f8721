"""Building the binary files: inputs tokenized into one shard (`gtok tokenize`), all or nothing,
and a universe into its index (`gtok index`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from gtok import __version__
from gtok.errors import GtokError
from gtok.formats.metadata import ShardMeta, check_dataset, universe_record
from gtok.formats.shard import MAGIC, ShardWriter, record_name
from gtok.inputs.bed import read_bed
from gtok.inputs.fragments import FragmentOptions, is_fragments
from gtok.inputs.h5ad import DEFAULT_MODALITY
from gtok.inputs.labels import read_label_sheet
from gtok.inputs.samples import AS_THEY_ARE, CellNames, cell_names
from gtok.paths import has_magic, input_file, output_file
from gtok.pipeline import prefetched
from gtok.tokenizer import Tokenizer
from gtok.universe import Universe

#: BED files are tokenized together in batches of about this many regions (one vectorized call).
BATCH_REGIONS = 2_000_000


def tokenize_to_shard(
    inputs: Sequence[str],
    universe: str,
    output: str,
    rows: str | None = None,
    label_key: str | None = None,
    labels_sheet: str | None = None,
    chunk_rows: int = 2048,
    cache: bool = True,
    progress: bool = True,
    threads: int | None = None,
    fragments: FragmentOptions | None = None,
    modality: str = DEFAULT_MODALITY,
    tile_width: int | None = None,
    layer: str | None = None,
    samples: Sequence[str] | None = None,
    name_format: str | None = None,
    dataset: str | None = None,
) -> Path:
    """Tokenize every input into the shard `output`; on any error nothing is written there.

    Inputs are told apart by name, and text files by content (`input_kinds`): `.h5ad` and `.h5mu`
    files (a record per cell; of an `.h5mu`, the cells of `modality`, from `layer` instead of X
    when given; `tile_width` for tile matrices whose var has starts only), fragment files (a record
    per barcode, chosen by `fragments`), `.parquet` token documents (copied), and BED files (a
    record each). `threads` read BED files side by side (default: the CPUs this process may use,
    its affinity, which a SLURM job or `taskset` limits; never all the machine's cores).

    Cells are named by `samples`, one per cell input (fragment and .h5ad files, in their order),
    with `name_format` (default `{sample}#{barcode}`); without samples, a single cell input keeps
    its barcodes or obs names and several are named by their file names (gtok.inputs.samples).
    The shard's metadata records `dataset` (default: `default_dataset`) and the universe file."""
    if dataset is not None:
        check_dataset(dataset, "--dataset")
    for path in inputs:
        input_file(path)
    input_file(universe, "universe")
    kinds = input_kinds(inputs)
    row_range = _check_options(kinds, rows, label_key, labels_sheet, fragments, layer)
    if samples is not None and not (kinds["h5ad"] or kinds["fragments"]):
        raise GtokError("--sample names the cells of fragment and .h5ad inputs; there are none.")
    cells = cell_names([p for p in inputs if p in kinds["h5ad"] or p in kinds["fragments"]], samples, name_format)
    sources = [*inputs, universe, *([labels_sheet] if labels_sheet else [])]
    target = output_file(output, (".gtok",), sources, has_magic(MAGIC), "gtok shard")
    dataset = dataset if dataset is not None else default_dataset(kinds, output, samples)
    tok = Tokenizer.from_bed(universe, cache_dir=None if cache else "off")
    meta = ShardMeta(dataset, universe_record(universe, tok.fingerprint), __version__,
                     {kind: len(paths) for kind, paths in kinds.items() if paths})
    with ShardWriter(target, tok.vocab_size, tok.fingerprint, meta) as writer:
        labels = read_label_sheet(labels_sheet, kinds["bed"]) if labels_sheet and kinds["bed"] else None
        cell_labels = _cell_labels(labels_sheet, kinds["fragments"], cells) if labels_sheet and kinds["fragments"] else {}
        foreign: list[str] = []
        for batch in _bed_batches(kinds["bed"], progress, threads or len(os.sched_getaffinity(0))):
            names = [record_name(p) for p, _ in batch]
            tokens, lengths = tok.tokenize_many([iv for _, iv in batch])
            writer.add_batch(names, tokens, lengths, [labels[p] for p, _ in batch] if labels else None)
            foreign += filter(None, (tok.universe.foreign_input(iv.chrom_names, p) for p, iv in batch))
        _warn_foreign(foreign)
        for path in kinds["h5ad"]:
            write_cells(writer, tok, path, row_range, label_key, chunk_rows, progress, modality, tile_width, layer, cells[path])
        for path in kinds["parquet"]:
            _copy_parquet(writer, tok, path)
        if kinds["fragments"]:
            _write_fragments(writer, tok, kinds["fragments"], fragments or FragmentOptions(), cell_labels, progress, cells)
    return Path(output)


def input_kinds(inputs: Sequence[str]) -> dict[str, list[str]]:
    """The inputs by kind: h5ad (also .h5mu) and parquet by their names (in any case), then text
    files: fragments (by name, else by content: gtok.inputs.fragments.is_fragments), bed (the rest)."""
    kinds: dict[str, list[str]] = {"bed": [], "h5ad": [], "fragments": [], "parquet": []}
    for p in inputs:
        name = p.lower()
        kind = "h5ad" if name.endswith((".h5ad", ".h5mu")) else "parquet" if name.endswith(".parquet") else None
        kinds[kind or ("fragments" if is_fragments(p) else "bed")].append(p)
    return kinds


def default_dataset(kinds: dict[str, list[str]], output: str, samples: Sequence[str] | None = None) -> str:
    """The dataset of a shard when `--dataset` names none: the sample when one `--sample` names
    the only input; the input's name when it is one .h5ad (or .h5mu), fragments or parquet file
    (its file name without the suffix), else the shard's own name without `.gtok` (BED files: one
    shard of files is one collection)."""
    others = [p for kind in ("h5ad", "fragments", "parquet") for p in kinds[kind]]
    if samples is not None and len(samples) == 1 and len(others) == 1 and not kinds["bed"]:
        name = samples[0]
    elif len(others) == 1 and not kinds["bed"]:
        name = os.path.basename(others[0])
        suffix = next((s for s in (".tsv.gz", ".tsv.bgz", ".tsv", ".h5ad", ".h5mu", ".parquet") if name.lower().endswith(s)), "")
        name = name[: len(name) - len(suffix)]
    else:
        name = Path(output).name.removesuffix(".gtok")
    return check_dataset(name, "the dataset name taken from the input's file name (give --dataset)")


def _warn_foreign(messages: list[str], shown: int = 3) -> None:
    """A warning per BED file that shares no chromosome with the universe, the first few of them,
    and then one with the count (a collection of thousands named `1` instead of `chr1`)."""
    for message in messages[:shown]:
        warnings.warn(message, stacklevel=3)
    if len(messages) > shown:
        warnings.warn(f"{len(messages) - shown:,} more BED files share no chromosome with the universe either.", stacklevel=3)


def _copy_parquet(writer, tok, path: str) -> None:
    """A parquet of token documents (gtok export-parquet, geniml) holds tokens already: its records
    are copied, checked against this universe's vocabulary; an empty list is a document without a
    match, `[<unk>]`, as everywhere else (a 0-token record would crash training)."""
    from gtok.formats.parquet import read_parquet_records

    for batch in read_parquet_records(path, tok.vocab_size, tok.fingerprint):
        writer.add_batch(batch.names, *tok.fill_empty(batch.tokens, batch.lengths), batch.labels)


def _cell_labels(sheet: str, paths: Sequence[str], names: dict[str, CellNames]) -> dict[str, dict]:
    """Each fragments input's labels by record name, read (and checked) before any work."""
    from gtok.inputs.labels import read_barcode_labels

    cells = read_barcode_labels(sheet)
    return {path: cells.of(names[path], len(paths)) for path in paths}


def _write_fragments(writer, tok, paths, options, labels: dict[str, dict], progress, names: dict[str, CellNames]) -> None:
    from gtok.fragments import write_fragments

    for path in paths:
        write_fragments(writer, tok, path, options, labels.get(path), progress, names[path])


def _check_options(kinds, rows, label_key, labels_sheet, fragments, layer) -> tuple[int, int] | None:
    beds, h5ads, frags = kinds["bed"], kinds["h5ad"], kinds["fragments"]
    if rows is not None and (len(h5ads) != 1 or beds or frags):
        raise GtokError("--rows needs exactly one .h5ad input and no other inputs.")
    if label_key and not h5ads:
        raise GtokError("--label-key applies to .h5ad inputs; use --labels SHEET.tsv for BED and fragment files.")
    if layer and not h5ads:
        raise GtokError("--layer applies to .h5ad and .h5mu inputs.")
    if labels_sheet and not (beds or frags):
        raise GtokError("--labels applies to BED and fragment inputs; use --label-key COLUMN for .h5ad files.")
    if labels_sheet and beds and frags:
        raise GtokError("--labels with both BED and fragment inputs is ambiguous; tokenize them into separate shards.")
    if fragments is not None and fragments != FragmentOptions() and not frags:
        raise GtokError("--barcodes, --min-fragments and --part apply to fragment files (.tsv.gz, .tsv.bgz, .tsv).")
    if rows is None:
        return None
    try:
        start, stop = (int(x) for x in rows.split(":"))
    except ValueError:
        raise GtokError(f"--rows {rows!r}: expected START:STOP, two integers like 0:50000.") from None
    if not 0 <= start <= stop:
        raise GtokError(f"--rows {rows!r}: need 0 <= START <= STOP.")
    return start, stop


def _bed_batches(paths: Sequence[str], progress: bool, threads: int) -> Iterator[list]:
    """Parsed files grouped so that each group is tokenized in one vectorized call."""
    batch, size = [], 0
    parsed = _ordered_map(_read_sorted, paths, threads)
    for path, iv in _progress(zip(paths, parsed), progress and len(paths) > 1, total=len(paths), desc="BED files", unit="file"):
        batch.append((path, iv))
        size += len(iv)
        if size >= BATCH_REGIONS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _read_sorted(path: str):
    return read_bed(path).sorted_like_files()


def _ordered_map(fn, items: Sequence, workers: int, window: int = 64) -> Iterator:
    """fn over items on `workers` threads (numpy releases the GIL while parsing), in order, with
    at most `window` results waiting, so memory stays bounded however many files there are."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    if workers == 1 or len(items) < 2:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def write_cells(writer, tok, path, row_range=None, label_key=None, chunk_rows=2048, progress=False, modality=DEFAULT_MODALITY,
                tile_width=None, layer=None, names: CellNames = AS_THEY_ARE) -> None:
    """Tokenize the cells of one .h5ad into `writer`; the next chunk is read and tokenized on a
    thread while this one is written, since both release the GIL for most of their time."""
    from gtok.cells import iter_cell_tokens

    bar = _progress(None, progress, desc=os.path.basename(path), unit="cell")
    chunks = iter_cell_tokens(tok, path, rows=row_range, chunk_rows=chunk_rows, label_key=label_key, modality=modality,
                              tile_width=tile_width, spill_dir=str(Path(writer.path).parent), layer=layer)  # not $TMPDIR
    for chunk in prefetched(chunks):
        writer.add_batch(names.names(chunk.names), chunk.tokens, chunk.lengths, chunk.labels)
        if bar is not None:
            bar.update(len(chunk.names))


def _progress(items, enabled: bool, **kwargs):
    """A tqdm bar when asked for; tqdm is imported only then (it costs 40 ms of start-up)."""
    if not enabled:
        return items  # None stays None: no bar to update
    from tqdm import tqdm

    return tqdm(items, **kwargs)


def build_index(universe: str, output: str) -> Universe:
    """Parse a universe BED and write its index file (`gtok.formats.index`)."""
    import hashlib

    from gtok.formats.index import MAGIC as INDEX_MAGIC
    from gtok.formats.index import SUFFIX, write_index
    from gtok.inputs.bed import read_bytes

    raw = read_bytes(universe, "universe BED")
    target = output_file(output, (SUFFIX,), [universe], has_magic(INDEX_MAGIC), "universe index")
    loaded = Universe.from_text(raw, universe)
    write_index(target, list(loaded.chrom_names), loaded.index_arrays(), loaded.fingerprint, hashlib.sha256(raw).hexdigest(),
                source=universe)
    return loaded
