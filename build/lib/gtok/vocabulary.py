"""The token id layout of every gtok (and gtars) vocabulary, in one place.

Ids `0 .. n_regions - 1` are the universe's regions in universe order; the special tokens follow
them in gtars' order `<unk>, <pad>, <mask>, <cls>, <eos>, <bos>, <sep>`. A vocabulary is therefore
known from its size alone; its fingerprint names the universe whose regions it holds. Modules that
need an id, the region count or the size ask a `Vocabulary` instead of counting special tokens.
Plain Python: the numpy-only core (shards, statistics, the tokenizer) uses it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The special tokens, in id order after the regions (gtars' order).
SPECIAL_TOKENS = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", "<sep>")


@dataclass(frozen=True)
class Vocabulary:
    """`n_regions` universe regions, then `SPECIAL_TOKENS`; `fingerprint` identifies the universe
    (None for data that carries none, such as gtars' token files)."""

    n_regions: int
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        if self.n_regions < 0:
            raise ValueError(f"a vocabulary cannot have {self.n_regions} regions")

    @classmethod
    def of_size(cls, size: int, fingerprint: str | None = None) -> "Vocabulary":
        """The vocabulary of `size` tokens (regions and special tokens together)."""
        if size < len(SPECIAL_TOKENS):
            raise ValueError(f"a vocabulary of {size} tokens cannot hold the {len(SPECIAL_TOKENS)} special tokens")
        return cls(size - len(SPECIAL_TOKENS), fingerprint)

    @classmethod
    def holding(cls, max_region_id: int, fingerprint: str | None = None) -> "Vocabulary":
        """The smallest vocabulary whose regions include id `max_region_id` (data that records no size)."""
        return cls(max_region_id + 1, fingerprint)

    @property
    def size(self) -> int:
        return self.n_regions + len(SPECIAL_TOKENS)

    def special_id(self, token: str) -> int:
        """The id of a special token, by its name with or without brackets (`"pad"` or `"<pad>"`)."""
        name = token if token.startswith("<") else f"<{token}>"
        return self.n_regions + SPECIAL_TOKENS.index(name)

    @property
    def unk_token_id(self) -> int:
        return self.n_regions

    @property
    def pad_token_id(self) -> int:
        return self.special_id("pad")

    @property
    def mask_token_id(self) -> int:
        return self.special_id("mask")

    @property
    def cls_token_id(self) -> int:
        return self.special_id("cls")

    @property
    def eos_token_id(self) -> int:
        return self.special_id("eos")

    @property
    def bos_token_id(self) -> int:
        return self.special_id("bos")

    @property
    def sep_token_id(self) -> int:
        return self.special_id("sep")

    def special_name(self, token_id: int) -> str | None:
        """The special token's name for an id, or None for a region."""
        return SPECIAL_TOKENS[token_id - self.n_regions] if token_id >= self.n_regions else None
