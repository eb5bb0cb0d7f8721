"""Inference: one vector per record from a trained model, tokenizing in memory.

The model (a `gtok train` folder or checkpoint, or a geniml folder: gtok.inference.loading) brings its
universe and the tokenizer's fingerprint; a universe given explicitly must have that same fingerprint, so a vector
can never come from ids that mean other regions. Nothing is written to disk here (the universe is
parsed without its binary cache); the CLI writes only the requested output.

Records longer than the training `max_length` are cropped for the transformer models by gtok.crop's
deterministic form of training's random crop (evenly spaced tokens over the whole record), since
their cost grows with the square of the length. Batches are formed from records of similar length.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gtok.atomic import atomic_path, replaced_together
from gtok.crop import crop
from gtok.errors import GtokError, describe
from gtok.paths import has_magic, input_file, output_file
from gtok.sources.h5ad import DEFAULT_MODALITY
from gtok.tokenizer import pad_batch

if TYPE_CHECKING:
    from gtok.sources.bed import Intervals
    from gtok.sources.cells import CellOptions
    from gtok.tokenizer import Tokenizer


class Embedder:
    """A model (folder or checkpoint) with the tokenizer it was trained with, on one device."""

    def __init__(
        self,
        model: str | os.PathLike,
        universe: str | os.PathLike | None = None,
        device: str | None = None,
        batch_size: int = 64,
    ):
        import torch

        from gtok.inference.loading import load_model
        from gtok.tokenizer import Tokenizer
        from gtok.training.hardware import torch_device

        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise GtokError(f"batch_size must be a whole number of at least 1, not {batch_size!r}.")
        device = torch_device(device, "device")  # before the model is read
        loaded = load_model(model, universe)
        self.path = model
        self.tokenizer = Tokenizer.for_model(loaded.expected)
        self.vocab, self.name = loaded.vocab, loaded.name
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = loaded.model.to(self.device)
        self.data_options = loaded.data  # what training saw
        self.run = loaded.run  # which model this is (its run and step), for the evaluation's record
        positions = getattr(loaded.model, "max_positions", None)  # position embeddings: order matters
        self.max_length = _crop_length(self.data_options.get("max_length") if loaded.attends else None, positions)
        #: the model named in warnings when its vectors depend on token order (None: they do not)
        self.order_sensitive = None if positions is None else str(getattr(loaded.model, "model_spec", loaded.name))
        #: the orders all its training records' tokens came in, as its folder records them (None: not recorded)
        self.token_orders = trained_orders(self.data_options)
        self.batch_size = int(batch_size)

    def embed_docs(self, docs: Sequence[np.ndarray], progress: bool = False) -> np.ndarray:
        """float32 [len(docs), D] for token id arrays, in their order."""
        (vectors,) = self.embed_chunks([docs], len(docs), progress)  # run to its end: the bar closed
        return vectors

    def embed_chunks(self, chunks: Iterable[Sequence[np.ndarray]], total: int | None, progress: bool = False,
                     unit: str = "record") -> Iterator[np.ndarray]:
        """Each chunk's vectors (as embed_docs gives them), in order, under one progress bar over all
        `total` records (None: not known ahead): a caller that reads its records a chunk at a time
        shows one bar, not one restarting per chunk. A chunk with a vector that is not finite stops
        the embedding there, and the error counts those records among all embedded so far."""
        from tqdm import tqdm

        done = 0
        with tqdm(total=total, desc="embedding", unit=unit, disable=not progress, leave=False) as bar:
            for docs in chunks:
                vectors = self._embed(docs, bar)
                done += len(docs)
                self._refuse_non_finite(vectors, done, total, unit)
                yield vectors

    def _embed(self, docs: Sequence[np.ndarray], bar: Any) -> np.ndarray:
        """float32 [len(docs), D], batched by length, advancing `bar` by each batch's records."""
        if not len(docs):  # no records, but vectors of the model's width, to stack with others
            return np.zeros((0, self.dimensions), dtype=np.float32)
        order = np.argsort([-d.size for d in docs], kind="stable")
        out = None  # sized by the first batch's vectors: the model's width costs no extra forward
        for lo in range(0, len(docs), self.batch_size):
            idx = order[lo : lo + self.batch_size]
            vectors = self._vectors([docs[i] for i in idx])
            if out is None:
                out = np.empty((len(docs), vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors
            bar.update(idx.size)
        return out

    def _refuse_non_finite(self, vectors: np.ndarray, done: int, total: int | None, unit: str) -> None:
        """A diverged model gives vectors no analysis can use, which must not pass for embeddings:
        refused, with how many of the `done` records (`unit`s) embedded so far (of `total`, when
        known) are broken; the chunks before were finite, so these are all of them."""
        broken = int((~np.isfinite(vectors)).any(axis=1).sum())
        if broken:
            if done == total:
                among, stopped = f"the {total:,}", ""
            elif total is None:
                among, stopped = f"the first {done:,}", ", where embedding stopped"
            else:
                among, stopped = f"the first {done:,} of {total:,}", ", so the rest were not embedded"
            raise GtokError(f"{describe(self.path)}: its embeddings of {broken:,} of {among} {unit}s are not finite "
                            f"(NaN or infinite){stopped}; did its training diverge (see its metrics.csv)?")

    @functools.cached_property
    def dimensions(self) -> int:
        """The width of the model's vectors (from one record of `<unk>` alone)."""
        return self._vectors([np.array([self.tokenizer.unk_token_id])]).shape[1]

    def _vectors(self, docs: Sequence[np.ndarray]) -> np.ndarray:
        """One batch's vectors, cropped as in training, on the model's device."""
        import torch

        batch = pad_batch([crop(doc, self.max_length) for doc in docs], self.tokenizer.pad_token_id)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.device.type == "cuda"):
            return self.model.embed(batch).float().cpu().numpy()


def trained_orders(data: dict[str, Any]) -> tuple[str, ...] | None:
    """The orders (gtok.formats.metadata.TOKEN_ORDERS) a model's training records' tokens all came
    in, as its config.yaml's data records them (gtok train, from its shards' metadata); None for a
    folder that records none (an older gtok's, a model as published, a checkpoint given itself)."""
    from gtok.formats.metadata import TOKEN_ORDERS

    orders = data.get("token_orders")
    if not isinstance(orders, list) or not orders or not set(orders) <= set(TOKEN_ORDERS):
        return None
    return tuple(sorted(orders))


def _crop_length(trained: int | None, positions: int | None) -> int | None:
    """How many tokens of a record the model sees: what it was trained on, and never more than its
    position embeddings hold (a model not trained by gtok records no max_length)."""
    if positions is None:
        return trained
    return positions if trained is None else min(trained, positions)


def embed_regions(
    model: str | os.PathLike,
    sources: Sequence[Any],
    *,
    universe: str | os.PathLike | None = None,
    device: str | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """float32 [len(sources), D]: one vector per region set (BED path, DataFrame, region list...).
    A region set that shares no chromosome with the universe is warned about, as tokenize does:
    its vector would be that of `<unk>` alone; so are, in one warning, those that overlap no region,
    and, to a model with position embeddings, the in-memory ones in another order than its folder
    records it was trained in, or than either gtok trains in when it records none (warn_unsorted)."""
    from gtok.sources.bed import warn_foreign
    from gtok.tokenizer import to_intervals

    if isinstance(sources, (str, os.PathLike)) or type(sources).__module__.startswith(("pandas", "pyranges")):
        raise GtokError(f"embed_regions takes a list of region sets and gives one vector each, not one "
                        f"{type(sources).__name__}; for one region set pass [it].")
    embedder = Embedder(model, universe, device, batch_size)
    intervals = [to_intervals(s) for s in sources]
    names = [os.fspath(s) if isinstance(s, (str, os.PathLike)) else f"region set {i}" for i, s in enumerate(sources)]
    foreign = [embedder.tokenizer.universe.foreign_input(iv.chrom_names, name) for iv, name in zip(intervals, names)]
    warn_foreign(list(filter(None, foreign)))
    docs = [embedder.tokenizer.tokenize(iv) for iv in intervals]
    if embedder.order_sensitive:
        trained = embedder.token_orders
        warn_unsorted([n for s, iv, d, n in zip(sources, intervals, docs, names) if not isinstance(s, (str, os.PathLike))
                       and not set(token_orders(embedder.tokenizer, iv, d)) & set(trained or ("universe", "bed"))],
                      embedder.order_sensitive, trained)
    empty = unk_only(docs, embedder.tokenizer.unk_token_id) & np.equal(foreign, None)  # the foreign are warned of
    warn_unk_only(int(empty.sum()), [names[i] for i in np.flatnonzero(empty)[:3]], len(docs), "region sets")
    return embedder.embed_docs(docs, progress)


def token_orders(tokenizer: Tokenizer, regions: Intervals, tokens: np.ndarray) -> tuple[str, ...]:
    """The orders gtok trains a model in (gtok.formats.metadata.TOKEN_ORDERS) that a region set's
    `tokens` come in: its BED file's (the tokens of the set sorted as a file is read), "bed", and
    the universe's (ascending ids: cells whose var was the universe), "universe"."""
    return tuple(order for order, holds in (
        ("bed", np.array_equal(tokens, tokenizer.tokenize(regions.sorted_like_files()))),
        ("universe", bool(np.all(tokens[1:] >= tokens[:-1])))) if holds)


def warn_unsorted(names: Sequence[str], model: str, trained: tuple[str, ...] | None = None) -> None:
    """In-memory region sets keep their order (as gtars keeps a list's), where a BED file is sorted
    by chromosome name and start: to a model with position embeddings, a set whose tokens come in
    another order than its training data's embeds to another vector; one warning names the first
    few and the order to put them in: `trained`, as the model's folder records it, else the two
    gtok trains in, of which the right one is the model's training data's, which gtok cannot tell."""
    ways = {"bed": "a BED file's, by chromosome name as text (chr1, chr10, chr2) and start (a DataFrame: "
                   'df.sort_values(["chrom", "start"], kind="stable"))',
            "universe": "the universe's (the order of the token ids)"}
    if names and trained:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        warnings.warn(f"region sets not in the order {model} was trained in, as its model folder records: "
                      f"{len(names):,} ({shown}); it has position embeddings, so a vector depends on the order of the "
                      f"tokens: put them in {' or '.join(ways[order] for order in trained)}.", stacklevel=3)
    elif names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        warnings.warn(f"region sets in neither a BED file's order nor their universe's: {len(names):,} ({shown}); "
                      f"{model} has position embeddings, so a vector depends on the order of the tokens: put them in "
                      "the order the model was trained on, which its model folder does not record: trained on BED files, "
                      "a BED file's, by chromosome name as text (chr1, chr10, chr2) and start (a DataFrame: "
                      'df.sort_values(["chrom", "start"], kind="stable")); trained on cells whose var was its universe, '
                      "the universe's (the order of the token ids).",
                      stacklevel=3)


def unk_only(docs: Sequence[np.ndarray], unk_id: int) -> np.ndarray:
    """Which records are `<unk>` alone: they overlap no universe region."""
    return np.array([d.size == 1 and d[0] == unk_id for d in docs], dtype=bool)


def warn_unk_only(count: int, few: Sequence[str], total: int, what: str) -> None:
    """Records that overlap no universe region (an all-zero cell, a BED file between the universe's
    regions) are `<unk>` alone and all get one and the same vector, which an analysis would take
    for an embedding like the others (a cluster of their own): a warning counts them and names
    `few` of them."""
    if count:
        shown = ", ".join(few) + (", ..." if count > len(few) else "")
        warnings.warn(f"{what} overlapping no universe region: {count:,} of {total:,} ({shown}); each is embedded as "
                      "<unk> alone, all to one and the same vector; leave them out of the analysis.", stacklevel=3)


def embed_anndata(
    model: str | os.PathLike,
    adata: Any,
    *,
    universe: str | os.PathLike | None = None,
    device: str | None = None,
    batch_size: int = 64,
    progress: bool = False,
    layer: str | None = None,
    modality: str = DEFAULT_MODALITY,
    tile_width: int | None = None,
    chunk_rows: int = 2048,
) -> np.ndarray:
    """float32 [n_obs, D]: one vector per cell of an AnnData or MuData (or `.h5ad` / `.h5mu`
    path), in `obs` order; `layer`, `modality`, `tile_width`, `chunk_rows` as in
    gtok.sources.cells.iter_cell_tokens.

    A row chunk at a time (tokenized, embedded, dropped), so memory holds one chunk's tokens and
    the result, whatever the number of cells. Cells that overlap no universe region (all-zero
    rows) are `<unk>` alone: one warning counts them. A model with position embeddings warns
    when var is not in the order its folder records it was trained in, or, when it records none, in
    neither order gtok trains in (gtok.sources.cells.var_order_warning)."""
    from gtok.sources.cells import iter_cell_tokens

    embedder = Embedder(model, universe, device, batch_size)
    sensitive = embedder.order_sensitive
    cells = iter_cell_tokens(embedder.tokenizer, adata, chunk_rows=chunk_rows, layer=layer, modality=modality,
                             tile_width=tile_width,
                             order_sensitive=None if sensitive is None else (sensitive, os.fspath(model), embedder.token_orders))
    empty: list[str] = []  # the first few cells of no region
    count = 0  # and how many there are

    def docs() -> Iterator[list[np.ndarray]]:
        """Each chunk's token ids, once its cells of no region are counted."""
        nonlocal count
        for chunk in cells:
            chunk_docs = np.split(chunk.tokens, np.cumsum(chunk.lengths)[:-1]) if chunk.lengths.size else []
            found = np.flatnonzero(unk_only(chunk_docs, embedder.tokenizer.unk_token_id))
            count += found.size
            empty.extend(chunk.names[i] for i in found[: 3 - len(empty)])
            yield chunk_docs

    parts = list(embedder.embed_chunks(docs(), None, progress, unit="cell"))
    vectors = np.concatenate(parts) if parts else embedder.embed_docs([])  # no cells: no rows, of the model's width
    warn_unk_only(count, empty, len(vectors), "cells")
    return vectors


def write_obsm_copy(source: str, target: str | os.PathLike, key: str, vectors: np.ndarray, group: str = "/") -> None:
    """A copy of an .h5ad with `obsm[key]` set (of an .h5mu: `group` is the modality's, `mod/NAME`),
    written without loading the matrix (the file's bytes are copied, then the one array is added
    with h5py). An `obsm[key]` already there is replaced in the copy; the source is never written."""
    import shutil

    import h5py
    from anndata.io import write_elem

    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as f:
        obsm = f[group].require_group("obsm")
        if not obsm.attrs.get("encoding-type"):
            obsm.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
        if key in obsm:
            del obsm[key]
        write_elem(obsm, key, vectors)


def embed_to_files(
    model: str, inputs: Sequence[str], output: str, universe: str | None, device: str | None,
    batch_size: int, progress: bool, cells: CellOptions | None = None,
) -> Path:
    """`gtok embed`: BED files -> OUT.npy + OUT.names.txt, or one .h5ad (.h5mu) -> a copy with
    obsm['X_gtok'] (the modality's), its cells read as `cells` (--layer, --modality, --tile-width)
    say, as tokenize reads them."""
    from gtok.formats.shard import record_name
    from gtok.sources import input_kinds
    from gtok.sources.bed import refuse_shared_names
    from gtok.sources.cells import CellOptions
    from gtok.sources.h5ad import reading

    cells = cells or CellOptions()

    for path in inputs:
        input_file(path)
    kinds = input_kinds(inputs)  # told as tokenize tells them
    if kinds["fragments"]:
        raise GtokError(f"{kinds['fragments'][0]}: a fragments file holds many cells, and gtok embed gives one vector per BED "
                        "file; embed its cells from a cells x peaks .h5ad instead, or tokenize it per barcode with gtok tokenize.")
    if kinds["h5ad"]:
        suffix = Path(kinds["h5ad"][0]).suffix.lower()
        if len(inputs) != 1 or Path(output).suffix.lower() != suffix:
            raise GtokError(f"an .h5ad or .h5mu input must be the only input, and the output must end in {suffix} as it does.")
        mudata = suffix == ".h5mu"
        target = output_file(output, (suffix,), [*inputs, model], has_magic(b"\x89HDF"), f"embedded {suffix}")
        vectors = embed_anndata(model, inputs[0], universe=universe, device=device, batch_size=batch_size,
                                progress=progress, layer=cells.layer, modality=cells.modality, tile_width=cells.tile_width)
        with reading(inputs[0]), atomic_path(target) as tmp:
            write_obsm_copy(inputs[0], tmp, "X_gtok", vectors, f"mod/{cells.modality}" if mudata else "/")
        return target
    if cells != CellOptions():
        raise GtokError("--layer, --modality and --tile-width apply to an .h5ad or .h5mu input, and the inputs are BED files.")
    refuse_shared_names(inputs)  # a row of the .npy is known only by its name in .names.txt
    is_embedding = has_magic(b"\x93NUMPY")
    target = output_file(output, (".npy",), [*inputs, model], is_embedding, "embedding .npy")
    # the names beside an .npy of ours are ours too; any other file of that name is the user's
    names = output_file(output[: -len(".npy")] + ".names.txt", (".txt",), [*inputs, model],
                        lambda _: is_embedding(target), "names file of an embedding")
    vectors = embed_regions(model, inputs, universe=universe, device=device, batch_size=batch_size, progress=progress)
    # the old pair or the new, never a mix; each file written atomically too, so an error names it
    with replaced_together([names, target]) as (names_stage, stage):
        with atomic_path(names_stage) as tmp:
            tmp.write_text("".join(f"{record_name(p)}\n" for p in inputs))
        with atomic_path(stage) as tmp, open(tmp, "wb") as fh:
            np.save(fh, vectors)
    return target
