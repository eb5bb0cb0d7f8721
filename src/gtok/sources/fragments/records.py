"""Fragment files to one token document per barcode, in bounded memory: the fragments source of
`gtok tokenize` (`FragmentsSource`).

gtars' rule (docs/tokenization.md): every fragment, in file order, yields the ids of the universe
regions it overlaps (ordered by the region's start, end), or one `<unk>` when it overlaps none; a
barcode's document is the concatenation over its fragments.

A file is sorted by position, so each barcode's fragments are spread over all of it. Each block
of lines is tokenized by a compiled overlap search (gtok.universe.overlap_kernel, beside
`Universe.overlaps`), its tokens are grouped by barcode with a counting sort, and the block is
spilled to an unlinked temporary file beside the output. At the end, the documents are put
together a window of barcodes at a time from each block's slice, so memory grows with the number
of barcodes (and blocks), never with the number of fragments.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gtok.errors import GtokError, describe
from gtok.formats.shard import token_dtype
from gtok.kernels import kernel
from gtok.pipeline import prefetched
from gtok.sources.base import Batch, Source
from gtok.sources.fragments import FragmentOptions, column_name_like, first_data_lines, read_barcode_list, read_head
from gtok.sources.fragments.parser import Barcodes, Block, FragmentFile
from gtok.sources.samples import AS_THEY_ARE, CellNames
from gtok.sources.text import refuse_unless_utf8
from gtok.universe import overlap_kernel

if TYPE_CHECKING:
    from gtok.sources.labels import CellLabels
    from gtok.tokenizer import Tokenizer

#: Tokens put together at a time when the documents are assembled (bounds that step's memory).
WINDOW_TOKENS = 16_000_000


@dataclass
class _Spilled:
    """Where each block's barcode-sorted tokens are in the spill file."""

    offset: int  # in tokens
    codes: np.ndarray  # barcodes present in the block, increasing
    bounds: np.ndarray  # codes[i]'s tokens are at offset + bounds[i] up to offset + bounds[i + 1]


@dataclass
class FragmentRecords:
    """Per-barcode token documents of one fragments file, held in a spill file until written."""

    unk: int  # the <unk> id
    search: tuple[np.ndarray, ...]  # Universe.search_arrays()
    barcodes: Barcodes
    spill: object
    dtype: np.dtype
    blocks: list[_Spilled] = field(default_factory=list)
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per barcode
    fragments: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per barcode
    n_tokens: int = 0
    on_universe: bool = False  # whether a fragment lies on a chromosome of the universe

    def add(self, block: Block) -> None:
        self.on_universe = self.on_universe or bool((block.chroms >= 0).any())
        tokens, counts = overlap_block(self.search, self.unk, block)
        n_codes = len(self.barcodes)
        grouped, per_code, frags = _group(block.barcodes, counts, tokens, n_codes)
        self._grow(n_codes)
        self.tokens[:n_codes] += per_code
        self.fragments[:n_codes] += frags
        present = np.flatnonzero(per_code)
        self.blocks.append(_Spilled(self.n_tokens, present, np.concatenate(([0], np.cumsum(per_code[present])))))
        self.spill.write(memoryview(grouped.astype(self.dtype, copy=False)).cast("B"))
        self.n_tokens += grouped.size

    def fragment_counts(self) -> np.ndarray:
        """Fragments per barcode, for every barcode numbered so far (seen or listed)."""
        self._grow(len(self.barcodes))
        return self.fragments

    def _grow(self, n: int) -> None:
        if self.tokens.size < n:
            self.tokens = np.concatenate((self.tokens, np.zeros(n - self.tokens.size, np.int64)))
            self.fragments = np.concatenate((self.fragments, np.zeros(n - self.fragments.size, np.int64)))

    def documents(self, codes: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(codes, concatenated tokens, lengths) of the barcodes `codes` (increasing), a window of
        about WINDOW_TOKENS tokens at a time (a larger document makes a window of its own)."""
        self.spill.flush()
        if not codes.size:
            return
        lengths = self.tokens[codes]
        window = (np.cumsum(lengths) - lengths) // WINDOW_TOKENS
        for part in np.split(np.arange(codes.size), np.flatnonzero(np.diff(window)) + 1):
            yield codes[part], self._window(codes[part], lengths[part]), lengths[part]

    def _window(self, codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        out = np.empty(int(lengths.sum()), self.dtype)
        base = np.cumsum(lengths) - lengths
        filled = np.zeros(codes.size, np.int64)
        lo, hi = int(codes[0]), int(codes[-1]) + 1
        for block in self.blocks:
            i0, i1 = np.searchsorted(block.codes, (lo, hi))
            if i0 == i1:
                continue
            first = int(block.bounds[i0])
            src = self._read(block.offset + first, int(block.bounds[i1]) - first)
            where = np.searchsorted(codes, block.codes[i0:i1])
            wanted = (where < codes.size) & (codes[np.minimum(where, codes.size - 1)] == block.codes[i0:i1])
            n = np.diff(block.bounds[i0 : i1 + 1])
            _place(out, src, (base[where] + filled[where])[wanted], (block.bounds[i0:i1] - first)[wanted], n[wanted])
            filled[where[wanted]] += n[wanted]
        return out

    def _read(self, start: int, count: int) -> np.ndarray:
        size = self.dtype.itemsize
        data = os.pread(self.spill.fileno(), count * size, start * size)
        return np.frombuffer(data, self.dtype)


def overlap_block(search: tuple[np.ndarray, ...], unk: int, block: Block) -> tuple[np.ndarray, np.ndarray]:
    """Every fragment's tokens (ids of the regions it overlaps, or `<unk>`), and their counts."""
    cap = 2 * block.chroms.size + 1024
    search_kernel = overlap_kernel()
    while True:
        tokens = np.empty(cap, np.int64)
        counts = np.empty(block.chroms.size, np.int64)
        n = search_kernel(block.chroms, block.starts, block.ends, *search, unk, tokens, counts)
        if n >= 0:
            return tokens[:n], counts
        cap *= 4


@kernel(nogil=True, cache=True)
def _group(barcodes, counts, tokens, n_codes):
    """Tokens in barcode order (file order within a barcode), tokens and fragments per barcode."""
    per_code = np.zeros(n_codes, np.int64)
    frags = np.zeros(n_codes, np.int64)
    for i in range(barcodes.size):
        per_code[barcodes[i]] += counts[i]
        frags[barcodes[i]] += 1
    at = np.cumsum(per_code) - per_code
    out = np.empty(tokens.size, tokens.dtype)
    t = 0
    for i in range(barcodes.size):
        b = barcodes[i]
        for j in range(counts[i]):
            out[at[b] + j] = tokens[t + j]
        at[b] += counts[i]
        t += counts[i]
    return out, per_code, frags


@kernel(nogil=True, cache=True)
def _place(out, src, dest, source, lengths):
    for k in range(dest.size):
        out[dest[k] : dest[k] + lengths[k]] = src[source[k] : source[k] + lengths[k]]


class FragmentsSource(Source):
    """One fragments file, a record per kept barcode (chosen by `options`), named by `names` (its
    sample's record names) and labelled by the label sheet `labels` reads (of `n_samples` fragment
    inputs; read once, before any record is written)."""

    kind = "fragments"

    def __init__(self, path: str, options: FragmentOptions | None = None, names: CellNames = AS_THEY_ARE,
                 labels: Callable[[], CellLabels] | None = None, n_samples: int = 1, progress: bool = False):
        self.path, self.options, self.names, self.progress = path, options or FragmentOptions(), names, progress
        self._sheet, self._n_samples = labels, n_samples
        self.labels: dict[str, str | None] | None = None  # by record name

    def check(self, tok: Tokenizer) -> None:
        """The file's text, before its first line is parsed: UTF-16 text would be refused line by
        line as bytes that are not UTF-8, when it is the whole file that needs converting."""
        head = read_head(self.path, 1 << 16)
        if head is not None:
            refuse_unless_utf8(head[0], describe(self.path), "fragments file")
        if self._sheet is not None:
            self.labels = self._sheet().of(self.names, self._n_samples)

    def batches(self, tok: Tokenizer, spill_dir: Path) -> Iterator[Batch]:
        path, options, names, labels = self.path, self.options, self.names, self.labels
        keep = names.own(read_barcode_list(options.barcodes)) if options.barcodes else None
        barcodes = Barcodes(keep, options.part)
        source = FragmentFile(path, list(tok.universe.chrom_names), barcodes)
        dtype = token_dtype(tok.vocab_size)
        with tempfile.TemporaryFile(dir=spill_dir, prefix=".gtok-fragments-") as spill, _bar(path, self.progress) as bar:
            records = FragmentRecords(tok.unk_token_id, tok.universe.search_arrays(), barcodes, spill, dtype)
            for block in prefetched(source.blocks()):  # parsing on a thread of its own
                records.add(block)
                bar.update(source.lines - bar.n)
            codes = _kept(records, source.fragments, options, keep, path)
            if codes.size and not records.on_universe:
                _warn_foreign(tok, path)
            labelled = 0
            for part, tokens, lengths in prefetched(records.documents(codes)):  # assembly beside the writes
                batch = names.names([barcodes.names[c] for c in part.tolist()])
                batch_labels = [labels.get(n) for n in batch] if labels is not None else None
                labelled += sum(label is not None for label in batch_labels or ())
                yield Batch(batch, tokens, lengths, batch_labels)
        if labels and codes.size and not labelled:
            warnings.warn(f"{describe(path)}: none of its {codes.size:,} cells has a label in the label sheet (matched "
                          f"on {'record names such as ' + repr(names.name('BARCODE')) if names.sample else 'barcodes'}).",
                          stacklevel=2)


def _kept(records: FragmentRecords, n_fragments: int, options: FragmentOptions, keep: Sequence[str] | None,
          path: str) -> np.ndarray:
    """The codes of the barcodes that become records. A file without fragments is an error; a part
    of a file (--part K/N) without a barcode that qualifies is an empty shard, since how many of a
    file's barcodes fall in each part is up to the hash, not the user."""
    if n_fragments == 0:
        raise GtokError(f"{describe(path)}: holds no fragments (the file is empty or has only comment lines).")
    fragments = records.fragment_counts()
    found = fragments > 0
    if keep is not None and len(records.barcodes):
        _report_matches(found, records.barcodes.names, keep, options.barcodes, path)
    codes = np.flatnonzero(found & (fragments >= options.min_fragments))
    k, n = options.part
    if codes.size or n > 1:
        if not codes.size:
            warnings.warn(f"{describe(path)}: part {k}/{n} holds no barcode with at least {options.min_fragments} "
                          "fragments; its shard has no records.", stacklevel=3)
        return codes
    raise GtokError(f"{describe(path)}: no barcode has at least {options.min_fragments} fragments; lower --min-fragments.")


def _warn_foreign(tok: Tokenizer, path: str) -> None:
    """No fragment on a chromosome of the universe: named by the first line's chromosome (the
    parser numbers only the universe's chromosomes)."""
    first = first_data_lines(path, 1, 1 << 16)
    chromosome = first[0].split(b"\t")[0].decode("utf-8", "replace") if first else "?"
    message = tok.universe.foreign_input([chromosome], describe(path))
    if message:
        warnings.warn(message, stacklevel=3)


def _report_matches(found: np.ndarray, names: list[str], keep: Sequence[str], barcodes: str, path: str) -> None:
    """Refuse a barcode list that matches no cell, and count those it lists without fragments. Its
    first name is not counted when it looks like a column name ('barcode', 'cell_id') and no
    fragment has it: a list saved with a header would report a missing cell (one that fragments
    have stays a cell, so no real barcode is dropped)."""
    listed = len(names)
    if not found.any():
        raise GtokError(
            f"{barcodes}: none of its {listed:,} barcodes occurs in {describe(path)}; "
            "is it the barcode list of another sample (or with another suffix such as -1)?"
        )
    if names[0] == keep[0] and not found[0] and column_name_like(keep[0]) and not barcodes.lower().endswith(".h5ad"):
        warnings.warn(f"{barcodes}: its first line {keep[0]!r} is read as a column name (no fragment of "
                      f"{describe(path)} has that barcode).", stacklevel=3)
        listed -= 1
    found = int(found.sum())
    if found < listed:
        warnings.warn(f"{found:,} of the {listed:,} barcodes of {barcodes} occur in {describe(path)}; "
                      f"{listed - found:,} have no fragments and get no record.", stacklevel=3)


def _bar(path: str, enabled: bool):
    """A progress bar of lines read (a no-op one when disabled, so callers need no checks)."""
    from tqdm import tqdm

    return tqdm(desc=os.path.basename(path), unit=" lines", unit_scale=True, disable=not enabled)
