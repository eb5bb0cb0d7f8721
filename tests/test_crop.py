"""One crop for training and inference (gtok.crop): a too-long record keeps tokens from the whole
genome, at training time (random, ordered) and at inference time (evenly spaced), alike."""

import numpy as np
import pytest

from gtok.crop import crop, kept_positions
from gtok.data.plan import crop_positions

#: A genome-sorted record: 30% of its tokens on chr1, 50% on chr2, 20% on chr3.
SHARES = np.array([0.3, 0.5, 0.2])
LENGTH, MAX_LENGTH = 10_000, 512
CHROMOSOME = np.repeat(np.arange(3), (SHARES * LENGTH).astype(int))


def chromosome_shares(positions: np.ndarray) -> np.ndarray:
    return np.bincount(CHROMOSOME[positions], minlength=3) / positions.size


def test_training_and_inference_crops_sample_the_same_genome_wide_distribution():
    inference = chromosome_shares(kept_positions(LENGTH, MAX_LENGTH))
    training = np.array([chromosome_shares(crop_positions(7, epoch, 3, LENGTH, MAX_LENGTH, False))
                         for epoch in range(200)])
    assert np.abs(inference - SHARES).max() < 2 / MAX_LENGTH  # evenly spaced: exact up to rounding
    assert np.abs(training.mean(axis=0) - SHARES).max() < 0.01  # random: right on average ...
    assert np.abs(training - SHARES).max() < 0.1  # ... and never far in one crop
    assert np.abs(chromosome_shares(np.arange(MAX_LENGTH)) - SHARES).max() > 0.5  # what the first tokens would give


@pytest.mark.parametrize("length", [1, 2, 511, 512, 513, 1_000, 100_000])
def test_a_crop_keeps_max_length_distinct_positions_in_order(length):
    for keys in (None, np.random.default_rng(length).integers(0, 2**63, length, dtype=np.uint64)):
        kept = kept_positions(length, MAX_LENGTH, keys)
        assert kept.size == min(length, MAX_LENGTH) and np.all(np.diff(kept) > 0)
        assert kept[0] >= 0 and kept[-1] < length
    spread = kept_positions(length, MAX_LENGTH)
    assert length <= MAX_LENGTH or (spread[0], spread[-1]) == (0, length - 1)  # both ends of the record


def test_the_inference_crop_is_the_same_on_every_call_and_keeps_short_records_whole():
    doc = np.arange(5_000) * 3
    assert np.array_equal(crop(doc, 100), crop(doc.copy(), 100)) and crop(doc, None) is doc
    assert np.array_equal(crop(doc[:100], 100), doc[:100])


def test_training_crop_shuffles_only_when_asked():
    ordered = crop_positions(0, 1, 2, 2_000, 64, False)
    shuffled = crop_positions(0, 1, 2, 2_000, 64, True)
    assert np.all(np.diff(ordered) > 0) and sorted(shuffled.tolist()) == ordered.tolist()
    assert not np.array_equal(shuffled, ordered)
