"""Which tokens a record longer than `max_length` keeps: one rule for training and inference.

Attention costs grow with the square of a record's length, so the transformer models see at most
`max_length` tokens of a record. Records are genome-sorted, so the first `max_length` tokens would
be chr1 only: a crop must be spread over the whole record. Training keeps a random, ordered subset
(Atacformer's crop; the keys come from `gtok.data.plan`, a pure function of seed, epoch and record);
inference keeps its deterministic form, evenly spaced positions, the same on every call. Both keep
the record's order, and on average both keep each part of the genome in its share of the record.
Plain numpy, so the tokenizer's inference path uses it without the training code.
"""

from __future__ import annotations

import numpy as np


def check_max_length(max_length: int | None) -> None:
    """None (no crop) or a whole number of at least 1: a crop to nothing leaves a model nothing to attend to."""
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer))
                                   or max_length < 1):
        raise ValueError(f"max_length must be None or a whole number of at least 1, not {max_length!r}.")


def kept_positions(length: int, max_length: int | None, keys: np.ndarray | None = None) -> np.ndarray:
    """Positions (ascending) a `length`-token record keeps: all of them when it fits; else the
    `max_length` with the smallest random `keys` (training), or evenly spaced ones without keys."""
    if max_length is None or length <= max_length:
        return np.arange(length, dtype=np.int64)
    if keys is None:  # steps of more than one position, so the rounded positions are distinct
        return np.linspace(0, length - 1, max_length).round().astype(np.int64)
    return np.sort(np.argpartition(keys, max_length - 1)[:max_length]).astype(np.int64)


def crop(doc: np.ndarray, max_length: int | None) -> np.ndarray:
    """The deterministic (inference) crop of a token array; the array itself when it fits."""
    check_max_length(max_length)
    if max_length is None or doc.size <= max_length:
        return doc
    return doc[kept_positions(doc.size, max_length)]
