"""The id layout every vocabulary shares: regions first, then gtars' seven special tokens."""

from pathlib import Path

import pytest

from gtok.vocabulary import SPECIAL_TOKENS, Vocabulary


def test_special_tokens_follow_the_regions_in_gtars_order():
    v = Vocabulary(5, "ab" * 32)
    assert v.size == 12 and (v.unk_token_id, v.pad_token_id, v.mask_token_id, v.cls_token_id) == (5, 6, 7, 8)
    assert (v.eos_token_id, v.bos_token_id, v.sep_token_id) == (9, 10, 11)
    assert [v.special_name(i) for i in range(4, 12)] == [None, *SPECIAL_TOKENS]
    assert v.special_id("<sep>") == v.special_id("sep") == 11


def test_sizes_round_trip_and_impossible_sizes_are_refused():
    assert Vocabulary.of_size(Vocabulary(900).size) == Vocabulary(900)
    assert Vocabulary.holding(899).size == Vocabulary(900).size
    with pytest.raises(ValueError, match="cannot hold the 7 special tokens"):
        Vocabulary.of_size(6)
    with pytest.raises(ValueError):
        Vocabulary(-1)


def test_the_tokenizer_uses_the_layout_gtars_uses():
    """gtars is the oracle: its tokenizer's special ids and size for the same universe."""
    gtars_tokenizers = pytest.importorskip("gtars.tokenizers")
    from gtok.tokenizer import Tokenizer

    bed = Path(__file__).parent / "data" / "geniml" / "universe.uniq.bed"
    ours, theirs = Tokenizer.from_bed(bed), gtars_tokenizers.Tokenizer(str(bed))
    v = ours.vocabulary
    assert v.size == ours.vocab_size == theirs.vocab_size and v.fingerprint == ours.fingerprint
    names = ("unk", "pad", "mask", "cls", "eos", "bos", "sep")
    assert [v.special_id(n) for n in names] == [getattr(theirs, f"{n}_token_id") for n in names]
    assert [getattr(ours, f"{n}_token_id") for n in names] == [v.special_id(n) for n in names]


def test_a_model_vocabulary_with_another_layout_is_refused():
    from gtok.models import Vocab

    assert Vocab.of_size(12).n_regions == 5 and Vocab.of_size(12).sep_token_id == 11
    with pytest.raises(ValueError, match="not gtars' layout"):
        Vocab(12, pad_token_id=0, mask_token_id=7, unk_token_id=5, cls_token_id=8)
