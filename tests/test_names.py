"""Record names unique across shards (gtok.formats.names): hashed from the names tables, compared on a collision."""

from __future__ import annotations

import numpy as np
import pytest

from gtok.formats import names as names_module
from gtok.formats.names import UniqueNames, name_hashes
from gtok.formats.shard import ShardReader, write_shard


def thue_morse_pair(k: int) -> tuple[str, str]:
    """Two different names of 2**k letters whose polynomial hashes modulo 2**64 are equal for any odd base."""
    bits = [0]
    for _ in range(k):
        bits += [1 - b for b in bits]
    return "".join("ab"[b] for b in bits), "".join("ba"[b] for b in bits)


def shard(path, names) -> ShardReader:
    return ShardReader(write_shard(path, [(n, np.array([i % 5])) for i, n in enumerate(names)], 10, None))


def test_different_names_with_equal_hashes_are_not_refused(tmp_path):
    a, b = thue_morse_pair(10)
    first, second = name_hashes(np.array([0, len(a), 2 * len(a)]), np.frombuffer((a + b).encode(), np.uint8))
    assert first == second  # a real collision
    names = UniqueNames()
    names.add(shard(tmp_path / "x.gtok", [a, "c"]))
    names.add(shard(tmp_path / "y.gtok", [b]))
    assert names.problem() is None
    names.add(shard(tmp_path / "z.gtok", ["d", a]))
    assert names.problem().startswith(f"record name {a!r} is in both {tmp_path / 'x.gtok'} and {tmp_path / 'z.gtok'}")


@pytest.mark.parametrize("chunk", [1, 3, 1 << 16])
def test_chunked_hashes_are_the_hashes_of_the_whole_table(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(names_module, "CHUNK", chunk)
    reader = shard(tmp_path / "s.gtok", ["", "é", "a", "ab", "b", "a\0", "c" * 300, "a"])
    names = UniqueNames()
    names.add(reader)
    assert names._hashes[0].tolist() == name_hashes(*reader.name_table()).tolist()
    assert f"{tmp_path / 's.gtok'}: record name 'a' is used by records 2 and 7" in names.problem()


def test_names_of_gtars_files_and_empty_shards(tmp_path):
    from gtok.formats.gtars import export_gtars

    names = UniqueNames()
    names.add(shard(tmp_path / "empty.gtok", []))
    names.add(ShardReader(export_gtars(np.array([1, 2]), tmp_path / "s1.gtok")))
    assert names.problem() is None
    names.add(shard(tmp_path / "cells.gtok", ["s1"]))
    assert "record name 's1' is in both" in names.problem()
