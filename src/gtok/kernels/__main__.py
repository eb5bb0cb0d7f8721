"""`python -m gtok.kernels` (run by `make setup`): compile the fragment kernels ahead of time.

Each kernel is compiled, through numba's JIT, for the argument types that real runs give it (by
tokenizing small generated fragment files), and numba.pycc then exports every such signature
into one extension module, with a table of their type keys (gtok.kernels.type_key). A separate
module from gtok.kernels, which the kernels' own modules import, so that no import circle forms.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gtok.kernels import HERE, built, module_name, qualified


def numba_key(t: Any) -> tuple | str | None:
    """type_key's counterpart for a numba type (used when building the table)."""
    from numba.core import types as nt

    if isinstance(t, nt.Array):
        return ("array", np.dtype(str(t.dtype)).name, t.ndim, t.layout, bool(t.mutable))
    if isinstance(t, nt.Boolean):
        return "bool"
    if isinstance(t, (nt.Integer, nt.Float)):
        return np.dtype(t.name).name
    if isinstance(t, nt.BaseTuple):
        keys = tuple(numba_key(v) for v in t.types)
        return None if None in keys else ("tuple", *keys)
    return None


def _exercise(folder: Path) -> None:
    """Tokenize small generated fragment files through the JIT, so that every kernel is compiled
    for the argument types real runs give it: both token widths (a universe of up to 65,536
    tokens gives uint16 shards, a larger one uint32), a barcode list, a part of a file, and more
    barcodes than the parser's first table holds (it grows)."""
    from gtok.build import tokenize_to_shard
    from gtok.sources.fragments import FragmentOptions
    from gtok.sources.fragments.parser import Table

    fragments = folder / "f.tsv"
    lines = Table().values.size + 1000
    fragments.write_text("".join(f"chr1\t{100 * i}\t{100 * i + 150}\tBC{i % (lines // 2)}\t1\n" for i in range(lines)))
    (folder / "keep.txt").write_text("BC1\nBC2\n")
    for regions in (100, 70_000):
        universe = folder / f"u{regions}.bed"
        universe.write_text("".join(f"chr{1 + i % 2}\t{50 * i}\t{50 * i + 40}\n" for i in range(regions)))
        for options in (FragmentOptions(), FragmentOptions(barcodes=str(folder / "keep.txt")),
                        FragmentOptions(part=(1, 2))):
            tokenize_to_shard([str(fragments)], str(universe), str(folder / "out.gtok"), fragments=options,
                              progress=False)


def build(output: Path = HERE) -> Path:
    """Compile every kernel for the types _exercise gave it; returns the module's path."""
    os.environ["GTOK_KERNELS"] = "jit"
    from numba.core.registry import CPUDispatcher
    from numba.pycc import CC

    from gtok import universe
    from gtok.sources.fragments import parser as fragment_parser
    from gtok.sources.fragments import records as fragments

    with tempfile.TemporaryDirectory(prefix="gtok-kernels-") as scratch:
        _exercise(Path(scratch))
    name = module_name()
    cc, table = CC(name), {}
    cc.output_dir = str(output)
    for module in (fragment_parser, fragments, universe):  # universe's overlap kernel: compiled by _exercise
        for dispatcher in vars(module).values():
            if isinstance(dispatcher, CPUDispatcher) and dispatcher.py_func.__module__ == module.__name__:
                table[qualified(dispatcher.py_func)] = _export(cc, dispatcher)
    with tempfile.TemporaryDirectory(prefix="gtok-kernels-build-") as scratch, _releasing_the_gil():
        cc.output_dir = scratch
        cc.compile()
        built = next(Path(scratch).glob(f"{name}*"))
        os.replace(built, output / built.name)  # the table last: without it the module is never used
    (output / f"{name}.json.tmp").write_text(json.dumps(table))
    os.replace(output / f"{name}.json.tmp", output / f"{name}.json")
    return output / built.name


@contextlib.contextmanager
def _releasing_the_gil() -> Iterator[None]:
    """pycc's Python wrappers hold the GIL, which would serialize the parser thread and the
    overlap search (gtok.pipeline runs them side by side); every kernel is `nogil=True` under
    the JIT, so compile the exports with the same release of the GIL (pycc has no option for it)."""
    from numba.pycc import compiler

    plain = compiler.Flags

    class Flags(plain):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.release_gil = True

    compiler.Flags = Flags
    try:
        yield
    finally:
        compiler.Flags = plain


def _export(cc: Any, dispatcher: Any) -> list[tuple[Any, str]]:
    """Add an export per signature the dispatcher was compiled for; [(type key, export name)]."""
    from numba.core.types import unliteral

    rows = []
    for i, (args, overload) in enumerate(dispatcher.overloads.items()):
        key = tuple(numba_key(t) for t in args)
        if None in key:
            continue
        export = f"{dispatcher.py_func.__name__.lstrip('_')}_{i}"
        signature = overload.signature  # without literal types (a constant status): pycc cannot type those
        cc.export(export, unliteral(signature.return_type)(*map(unliteral, signature.args)))(dispatcher.py_func)
        rows.append((key, export))
    return rows


def main() -> int:
    """Build the module unless it is up to date (so `make setup` may run this every time). A
    failure to compile (no C compiler, say) is reported, not fatal: the JIT still works."""
    if built():
        print(f"the compiled fragment kernels are up to date ({module_name()})")
        return 0
    for old in HERE.glob("_kernels_*"):  # modules of earlier sources: never used again
        old.unlink()
    try:
        path = build()
    except Exception as exc:  # noqa: BLE001 - pycc fails in many ways (compiler, linker, distutils)
        print(f"gtok.kernels: could not compile the fragment kernels ({type(exc).__name__}: {exc}); fragment files "
              "will be read through numba's JIT, about 2 s more per process.", file=sys.stderr)
        return 0
    print(f"compiled the fragment kernels into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
