"""The ahead-of-time compiled fragment kernels (gtok.kernels, built by `make setup`).

What is checked: with the module built, `gtok tokenize` of fragment files never imports numba
and writes the same shard, token for token, as numba's JIT (GTOK_KERNELS=jit) and as gtars, for
both token widths; the pure-Python type keys that pick an export agree with numba's own typeof
(a wrong key would call a compiled function on memory of another dtype); and arguments of types
no export was compiled for still run, through the JIT, with the right result.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import GENIML
from test_fragments import gtars_fragments, write_fragments

from gtok import kernels
from gtok.formats.shard import ShardReader
from gtok.kernels.__main__ import numba_key

UNIVERSE = GENIML / "universe.uniq.bed"
PACKAGE = Path(kernels.__file__).parent


@pytest.fixture(scope="module")
def built() -> None:
    """The module of the current sources, compiled as `make setup` does when it is missing."""
    if not kernels.built():
        subprocess.run([sys.executable, "-m", "gtok.kernels"], check=True, timeout=600)
    assert kernels.built()


def tokenize(path: Path, universe: Path, out: Path, mode: str) -> dict[str, list[int]]:
    """`gtok tokenize` in a fresh process; fails if numba was imported with the kernels built."""
    code = ("import sys; from gtok.cli import main; "
            f"rc = main(['tokenize', {str(path)!r}, '-u', {str(universe)!r}, '-o', {str(out)!r}, '-q']); "
            "assert rc == 0 and (sys.argv[1] == 'jit' or 'numba' not in sys.modules), 'numba was imported'")
    env = dict(os.environ, GTOK_KERNELS=mode)
    subprocess.run([sys.executable, "-c", code, mode], check=True, env=env, timeout=300)
    reader = ShardReader(str(out))
    return {name: tokens.tolist() for name, tokens in zip(reader.names, reader)}


def random_fragments(n: int, barcodes: int, seed: int = 5) -> list[tuple]:
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.integers(0, 240_000_000, n))
    chroms = rng.choice(["chr1", "chr2", "chrUn_unknown"], n)
    return [(c, int(s), int(s) + int(w), f"cell{int(b)}", 1)
            for c, s, w, b in zip(chroms, starts, rng.integers(50, 2000, n), rng.integers(0, barcodes, n))]


def test_compiled_kernels_give_the_jits_and_gtars_tokens_without_numba(tmp_path, built):
    path = write_fragments(tmp_path / "f.tsv.gz", random_fragments(20_000, 5_000))  # the barcode table grows
    aot = tokenize(path, UNIVERSE, tmp_path / "aot.gtok", "auto")
    assert aot == tokenize(path, UNIVERSE, tmp_path / "jit.gtok", "jit")
    assert aot == gtars_fragments(UNIVERSE, path)


def test_a_universe_of_uint32_tokens_gives_the_same_tokens(tmp_path, built):
    universe = tmp_path / "big.bed"  # over 65,536 regions: uint32 shards
    universe.write_text("".join(f"chr1\t{1000 * i}\t{1000 * i + 600}\n" for i in range(70_000)))
    path = write_fragments(tmp_path / "f.tsv", random_fragments(3_000, 50))
    aot = tokenize(path, universe, tmp_path / "aot.gtok", "auto")
    assert ShardReader(str(tmp_path / "aot.gtok")).dtype == np.dtype("<u4")
    assert aot == tokenize(path, universe, tmp_path / "jit.gtok", "jit")


VALUES = [
    np.zeros(3, np.int64), np.zeros(3, np.uint16), np.zeros((2, 3), np.float32), np.zeros((2, 3)).T,
    np.zeros(8)[::2], np.frombuffer(b"abcd", np.uint8), np.frombuffer(b"abcdefghi", np.int32, offset=1, count=2),
    5, True, np.uint64(3), np.int32(2), np.bool_(False), 1.5,
    (np.zeros(2, np.uint64), np.zeros(2, np.int64)), (1, 2, 3),
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_type_keys_are_numbas_types(value):
    import numba

    assert kernels.type_key(value) == numba_key(numba.typeof(value))


def test_arguments_of_other_types_run_through_the_jit(built):
    """_place was compiled for the shards' uint16 and uint32 tokens; int8 arrays must not reach
    those exports (a fresh process, so that the module is loaded whatever this one imported)."""
    code = ("import numpy as np; from gtok import kernels; from gtok.sources.fragments import records as fragments; "
            "assert isinstance(fragments._place, kernels.Kernel); "
            "out = np.zeros(6, np.int8); src = np.arange(1, 7, dtype=np.int8); idx = np.array([0, 3]); "
            "fragments._place(out, src, idx, np.array([3, 0]), np.array([3, 3])); "
            "assert out.tolist() == [4, 5, 6, 1, 2, 3], out")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_a_stale_module_is_not_used(monkeypatch):
    """Built from other kernel sources (another fingerprint), it would hold other code."""
    monkeypatch.setattr(kernels, "SOURCES", (*kernels.SOURCES, "build.py"))
    assert not kernels.built()


def test_compiled_kernels_release_the_gil(built):
    """As the JIT's nogil=True kernels do: gtok.pipeline parses on one thread while the main
    thread searches overlaps. A Python thread counts as fast while long kernel calls run as while
    the main thread sleeps (holding the GIL, the kernels let it count about 30 times slower)."""
    code = """
import threading, time, numpy as np
from gtok import kernels; from gtok.sources.fragments import records as fragments
assert isinstance(fragments._place, kernels.Kernel)
n = 1 << 26
out, src = np.zeros(n, np.uint32), np.frombuffer(np.ones(n, np.uint32).tobytes(), np.uint32)
one, k = np.zeros(1, np.int64), np.full(1, n, np.int64)
count, done = 0, False
def spin():
    global count
    while not done:
        count += 1
def rate(work):
    before, start = count, time.perf_counter()
    work()
    return (count - before) / (time.perf_counter() - start)
threading.Thread(target=spin, daemon=True).start()
idle = rate(lambda: time.sleep(1))
busy = rate(lambda: [fragments._place(out, src, one, one, k) for _ in range(10)])
done = True
print(busy / idle)
"""
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300)
    assert float(result.stdout) > 0.2, result.stdout
