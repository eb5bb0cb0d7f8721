"""Building the binary files: inputs tokenized into one shard (`gtok tokenize`), all or nothing,
and a universe into its index (`gtok index`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from gtok import __version__
from gtok.errors import GtokError, describe
from gtok.formats.index import MAGIC as INDEX_MAGIC
from gtok.formats.index import SUFFIX, write_index
from gtok.formats.metadata import ShardMeta, check_dataset, common_orders, universe_record
from gtok.formats.shard import MAGIC, ShardWriter
from gtok.paths import has_magic, input_file, output_file
from gtok.sources import Options, input_kinds, open_sources
from gtok.sources.base import Source
from gtok.tokenizer import Tokenizer
from gtok.universe import Universe, universe_text


def tokenize_to_shard(inputs: Sequence[str], universe: str, output: str, cache: bool = True, dataset: str | None = None,
                      **options: Any) -> Path:
    """Tokenize every input into the shard `output`; on any error nothing is written there.

    Inputs are told apart by name, and text files by content (gtok.sources.input_kinds): `.h5ad`
    and `.h5mu` files (a record per cell), fragment files (a record per barcode), `.parquet` token
    documents (copied), and BED files (a record each); each kind is a source of gtok.sources.
    `options` are those of gtok.sources.Options, `gtok tokenize`'s flags: `rows`, `label_key`,
    `chunk_rows`, `modality`, `tile_width` and `layer` for .h5ad files, `labels_sheet` for BED and
    fragment files, `threads` for BED files, `fragments` (a FragmentOptions) for fragment files,
    `samples` and `name_format` to name cells, and `progress`; each is refused, in one line and
    before any work, when no input is of its kind.

    The shard's metadata records `dataset` (default: `default_dataset`), the universe file, and the
    order the records' tokens came in, when every source knows it (Source.token_orders)."""
    if dataset is not None:
        check_dataset(dataset, "--dataset")
    for path in inputs:
        input_file(path)
    input_file(universe, "universe")
    opts = Options(**options)
    kinds = input_kinds(inputs)
    sources = open_sources(inputs, kinds, opts)
    given = [*inputs, universe, *([opts.labels_sheet] if opts.labels_sheet else [])]
    target = output_file(output, (".gtok",), given, has_magic(MAGIC), "gtok shard")
    dataset = dataset if dataset is not None else default_dataset(kinds, output, opts.samples)
    tok = Tokenizer.from_bed(universe, cache_dir=None if cache else "off")
    recorded = universe_record(universe, tok.fingerprint).relative_to(os.path.dirname(os.path.abspath(target)))
    meta = ShardMeta(dataset, recorded, __version__,
                     {kind: len(paths) for kind, paths in kinds.items() if paths})
    with ShardWriter(target, tok.vocab_size, tok.fingerprint, meta) as writer:
        for source in sources:  # everything a source reads besides its input, before any record is written
            source.check(tok)
        names: set[str] = set()
        for source in sources:
            write_source(writer, tok, source, names)
        writer.meta = replace(meta, token_orders=common_orders(source.token_orders for source in sources))
    return Path(output)


def write_source(writer: ShardWriter, tok: Tokenizer, source: Source, names: set[str]) -> None:
    """Every record of `source` into `writer`; spills go beside the output (not $TMPDIR). `names`:
    the record names written so far, which a new record may not repeat (check_names)."""
    for batch in source.batches(tok, Path(writer.path).parent):
        check_names(batch.names, names, writer.path)
        writer.add_batch(*batch)


def check_names(new: Sequence[str], seen: set[str], output: str | os.PathLike) -> None:
    """Record names are unique in a shard (splits, evaluation and embeddings tell records apart by
    name; `gtok manifest` would refuse the shard later), not empty, and fit one line (`gtok dump` writes one
    record a line, export-gtars a file per name): refused in one line naming the name. Checked as
    the records come, so a failure leaves no shard."""
    joined = "\0".join(new)
    if "" in new:
        raise GtokError(f"{describe(output)}: a record's name is empty, and records are found by name (splits, labels, "
                        "embeddings, export-gtars' files): give every cell, row or file a name.")
    if "\t" in joined or "\n" in joined or "\r" in joined:
        bad = next(n for n in new if "\t" in n or "\n" in n or "\r" in n)
        raise GtokError(f"{describe(output)}: the record name {bad!r} holds a tab or a line break; record names are "
                        "written one a line: rename the input (or its cells or rows).")
    batch = set(new)
    if len(batch) == len(new) and seen.isdisjoint(batch):
        seen.update(batch)
        return
    earlier: set[str] = set()
    for twice in new:
        if twice in seen or twice in earlier:
            break
        earlier.add(twice)
    raise GtokError(f"{describe(output)}: two records would both be named {twice!r}; record names must be unique "
                    "(splits and embeddings tell records apart by name): name the inputs apart (for cells, --sample "
                    "gives each input's barcodes a prefix), or tokenize them into separate shards.")


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


def build_index(universe: str, output: str) -> Universe:
    """Parse a universe BED and write its index file (`gtok.formats.index`)."""
    raw = universe_text(universe)
    target = output_file(output, (SUFFIX,), [universe], has_magic(INDEX_MAGIC), "universe index")
    loaded = Universe.from_text(raw, universe)
    write_index(target, list(loaded.chrom_names), loaded.index_arrays(), loaded.fingerprint, hashlib.sha256(raw).hexdigest(),
                source=universe)
    return loaded
