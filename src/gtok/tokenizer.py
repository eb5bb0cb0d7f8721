"""The tokenizer: regions in, universe token ids out, identical to gtars' default tokenizer.

Rules (see docs/tokenization.md): each query region yields the ids of every universe region it
overlaps by >= 1 bp, ordered by the universe region's (start, end); query results are
concatenated in query order; a document with no match at all is exactly `[<unk>]`. A BED *file*
is first stably sorted by (chromosome as bytes, start), as gtars does; in-memory inputs keep their
order. torch is imported only by the `encode*` methods, never by tokenizing to numpy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gtok.crop import crop
from gtok.errors import GtokError
from gtok.sources.bed import Intervals, coordinate_columns, read_sorted
from gtok.sources.h5ad import DEFAULT_MODALITY
from gtok.universe import Universe
from gtok.vocabulary import SPECIAL_TOKENS, Vocabulary

if TYPE_CHECKING:
    import torch

__all__ = ["SPECIAL_TOKENS", "Tokenizer"]


class Tokenizer:
    """Tokenize BED files, DataFrames, PyRanges, tuple lists or AnnData against a universe."""

    def __init__(self, universe: Universe):
        self.universe = universe
        layout = Vocabulary(len(universe))
        (self.unk_token_id, self.pad_token_id, self.mask_token_id, self.cls_token_id, self.eos_token_id,
         self.bos_token_id, self.sep_token_id) = (layout.special_id(t) for t in SPECIAL_TOKENS)
        self._fingerprint: str | None = None

    @classmethod
    def from_bed(cls, path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> "Tokenizer":
        return cls(Universe.from_bed(path, cache_dir=cache_dir))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, universe: str | os.PathLike | None = None) -> "Tokenizer":
        """The tokenizer of a trained model (a `gtok train` folder or checkpoint, a geniml folder),
        from the universe it carries (or `universe`), checked against the vocabulary it learned
        (gtok.inference.loading); without torch when the folder has its config.yaml."""
        from gtok.inference.loading import expected_vocabulary

        return cls.for_model(expected_vocabulary(path, universe))

    @classmethod
    def for_model(cls, expected: Any) -> "Tokenizer":
        """The tokenizer of `expected.universe` (a gtok.inference.loading.Expected), refused unless it has the
        vocabulary the model was trained on. The universe is parsed without its binary cache: a
        model is used where nothing but its output may be written."""
        from gtok.inference.loading import check_tokenizer

        tok = cls.from_bed(expected.universe, cache_dir="off")
        check_tokenizer(tok, expected)
        return tok

    @property
    def vocabulary(self) -> Vocabulary:
        """The id layout and the universe's fingerprint (computed once, on first use)."""
        return Vocabulary(len(self.universe), self.fingerprint)

    @property
    def vocab_size(self) -> int:
        return Vocabulary(len(self.universe)).size

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = self.universe.fingerprint
        return self._fingerprint

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(regions={len(self.universe)}, vocab_size={self.vocab_size})"

    # -- numpy ----------------------------------------------------------------------------------

    def tokenize(self, source: Any) -> np.ndarray:
        """Token ids (int64) of one document: a BED path, DataFrame, PyRanges, tuple list or Intervals."""
        _, ids = self.universe.overlaps(to_intervals(source))
        return ids if ids.size else np.array([self.unk_token_id], dtype=np.int64)

    def tokenize_many(self, docs: Sequence[Intervals]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize several documents in one vectorized pass: (concatenated ids, lengths)."""
        if not docs:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        sizes = np.array([len(d) for d in docs], dtype=np.int64)
        merged = concat_intervals(docs)
        q, ids = self.universe.overlaps(merged)
        doc_of_query = np.repeat(np.arange(len(docs)), sizes)
        return self.group(doc_of_query[q], ids, len(docs))

    def group(self, doc: np.ndarray, ids: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
        """Turn (document, id) pairs sorted by document into (ids, lengths)."""
        return self.fill_empty(ids.astype(np.int64, copy=False), np.bincount(doc, minlength=n_docs))

    def fill_empty(self, ids: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Give every document without a match its `[<unk>]`."""
        lengths = lengths.astype(np.int64, copy=False)
        empty = lengths == 0
        if not empty.any():
            return ids, lengths
        ids = np.insert(ids, (np.cumsum(lengths) - lengths)[empty], self.unk_token_id)
        return ids, np.maximum(lengths, 1)

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Region strings (`chr:start-end`) or special token names for ids."""
        layout = Vocabulary(len(self.universe))
        return [layout.special_name(i) or self.universe.region_names([i])[0] for i in map(int, ids)]

    # -- torch ----------------------------------------------------------------------------------

    def encode(self, source: Any, return_tensors: str | None = "pt"):
        """One document as a 1-D LongTensor, or a list of ints with `return_tensors=None`."""
        ids = self.tokenize(source)
        if return_tensors is None:
            return ids.tolist()
        if return_tensors != "pt":
            raise ValueError("return_tensors must be 'pt' or None")
        import torch

        return torch.from_numpy(ids)

    def encode_batch(self, sources: Sequence[Any], max_length: int | None = None) -> dict[str, "torch.Tensor"]:
        """A padded batch: `input_ids` and `attention_mask`, both LongTensor[B, T].

        With `max_length`, a longer document keeps `max_length` tokens spread evenly over the whole
        document (gtok.crop, as `gtok embed` crops), not its first ones: a genome-sorted document's
        first tokens are all on chr1.
        """
        return pad_batch([crop(self.tokenize(s), max_length) for s in sources], self.pad_token_id)

    def encode_anndata(self, adata: Any, chunk_rows: int = 4096, *, layer: str | None = None, modality: str = DEFAULT_MODALITY,
                       tile_width: int | None = None) -> list["torch.Tensor"]:
        """One LongTensor per cell, in `obs` order, from an AnnData, a MuData or an `.h5ad` /
        `.h5mu` path (`layer`, `modality`, `tile_width`: as gtok.sources.cells.iter_cell_tokens)."""
        import torch

        from gtok.sources.cells import iter_cell_tokens

        out: list[torch.Tensor] = []
        for chunk in iter_cell_tokens(self, adata, chunk_rows=chunk_rows, layer=layer, modality=modality,
                                      tile_width=tile_width):
            ids = torch.from_numpy(chunk.tokens.astype(np.int64, copy=False))
            out.extend(torch.split(ids, chunk.lengths.tolist()))
        return out


def pad_batch(docs: Sequence[np.ndarray], pad_id: int) -> dict[str, "torch.Tensor"]:
    """Right-pad 1-D id arrays into `input_ids` / `attention_mask` LongTensors."""
    import torch

    lengths = np.array([d.size for d in docs], dtype=np.int64)
    width = int(lengths.max(initial=0))
    ids = np.full((len(docs), width), pad_id, dtype=np.int64)
    mask = np.arange(width) < lengths[:, None]
    if len(docs):
        ids[mask] = np.concatenate([d[:n] for d, n in zip(docs, lengths)])
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask.astype(np.int64))}


def to_intervals(source: Any) -> Intervals:
    """Normalise any supported input to Intervals; only a BED path is re-sorted (as gtars does)."""
    if isinstance(source, Intervals):
        return source
    if isinstance(source, (str, os.PathLike)):
        return read_sorted(source)
    module = type(source).__module__
    if module.startswith("pyranges"):
        df = source.df
        return Intervals.from_columns(df["Chromosome"], df["Start"], df["End"], "the PyRanges")
    if module.startswith("pandas"):
        return _frame_intervals(source)
    if isinstance(source, (list, tuple)):
        if not source:
            return Intervals((), np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64))
        chroms, starts, ends = zip(*((r[0], r[1], r[2]) for r in source))
        return Intervals.from_columns(chroms, starts, ends, "the region list")
    raise TypeError(f"cannot tokenize a {type(source).__name__}; give a BED path, DataFrame, PyRanges or list of tuples")


def _frame_intervals(df: Any) -> Intervals:
    """A DataFrame's regions, from its columns named chrom, start and end (or another name of
    each: gtok.sources.bed.coordinate_columns), in any case and place; a frame without any such name
    (a BED file read with header=None) from its first three columns, as BED orders them."""
    found = coordinate_columns(df.columns, "the DataFrame")
    if found == (None, None, None):
        if df.shape[1] < 3:
            raise GtokError("a DataFrame of regions needs three columns: chrom, start and end.")
        return Intervals.from_columns(df.iloc[:, 0], df.iloc[:, 1], df.iloc[:, 2], "the DataFrame",
                                      column_names=tuple(str(c) for c in df.columns[1:3]))
    missing = [what for what, column in zip(("chrom", "start", "end"), found) if column is None]
    if missing:
        raise GtokError(f"the DataFrame has no {' or '.join(missing)} column (its columns: "
                        f"{', '.join(map(repr, map(str, df.columns)))}); name its coordinates chrom, start and end.")
    chrom, start, end = found
    return Intervals.from_columns(df[chrom], df[start], df[end], "the DataFrame",
                                  column_names=(str(start), str(end)))


def concat_intervals(docs: Sequence[Intervals]) -> Intervals:
    """Concatenate interval sets that each have their own chromosome table."""
    names = sorted({n for d in docs for n in d.chrom_names})
    code = {n: i for i, n in enumerate(names)}
    codes = [np.array([code[n] for n in d.chrom_names], dtype=np.int32)[d.codes] if len(d) else d.codes for d in docs]
    return Intervals(
        tuple(names),
        np.concatenate(codes).astype(np.int32),
        np.concatenate([d.starts for d in docs]),
        np.concatenate([d.ends for d in docs]),
    )
