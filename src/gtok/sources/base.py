"""What every input kind gives `gtok tokenize`: a Source, checked before any work, that yields its
records as batches (gtok.sources chooses one per input by its kind).

A source reads its input and tokenizes it; it never writes a shard. gtok.build opens the shard,
asks each source for its batches and writes them, so all a new kind needs is a module in
gtok.sources with a Source and its options.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from gtok.tokenizer import Tokenizer


class Batch(NamedTuple):
    """Records as `ShardWriter.add_batch` takes them: names, concatenated ids, lengths, labels."""

    names: list[str]
    tokens: np.ndarray  # integer ids (int32, int64 or the shard's dtype), all records concatenated
    lengths: np.ndarray  # int64, one per record
    labels: list[str | None] | None


class Source:
    """One input (or, for BED files, the collection of them) of a shard.

    `check(tok)` runs once the universe is loaded and before any record is written: it reads what
    the source needs besides its input (a label sheet) and refuses what does not fit. `batches`
    then yields the records; `spill_dir` is where temporary spills go (beside the output, not
    $TMPDIR, which on a cluster node may be small)."""

    kind: ClassVar[str]
    #: The orders its records' tokens come in (gtok.formats.metadata.TOKEN_ORDERS), known once its
    #: batches are read; None when in neither or not known. The shard records them (token_orders).
    token_orders: tuple[str, ...] | None = None

    def check(self, tok: Tokenizer) -> None:
        """Refuse, in one line, what would fail later (default: nothing to read beforehand)."""

    def batches(self, tok: Tokenizer, spill_dir: Path) -> Iterator[Batch]:
        raise NotImplementedError


def progress_bar(items, enabled: bool, **kwargs):
    """A tqdm bar when asked for; tqdm is imported only then (it costs 40 ms of start-up)."""
    if not enabled:
        return items  # None stays None: no bar to update
    from tqdm import tqdm

    return tqdm(items, **kwargs)
