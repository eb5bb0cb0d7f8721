"""The compiled kernels of fragment parsing and overlap, ahead of time, so a small file starts fast.

Why: numba's just-in-time path costs about 2 s per process even with its on-disk cache (importing
numba, then setting up its compiler to load a cached kernel), which dominates `gtok tokenize` of a
small fragments file and every short SLURM shard job. `python -m gtok.kernels` (run by `make
setup`) compiles every kernel with numba.pycc into one extension module in this package,
`gtok/kernels/_kernels_<fingerprint>.so`, plus a table of the argument types each export was compiled for.
A process that finds it never imports numba; the module is only read, so it works from a
read-only install and in a fresh job on any node of the same architecture (pycc compiles for a
generic CPU).

Safety: an export is called only when its arguments' types (dtype, dimensions, layout,
writeability) are exactly those it was compiled for, since a compiled function given
another dtype reads memory wrongly. Anything else, and any process without the module (never
built, or built from other kernel sources or another numba: the fingerprint differs), runs the
same Python functions through numba's JIT, as before. GTOK_KERNELS=jit forces the JIT.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent  # the built module and its table go here
#: The files (in gtok/) whose kernels are compiled; any change to them makes a built module stale.
SOURCES = ("sources/fragments/parser.py", "sources/fragments/records.py", "universe.py", "kernels/__init__.py", "kernels/__main__.py")
_AOT: tuple[Any, dict[str, dict[tuple, str]]] | None | bool = False  # False: not looked up yet


def fingerprint() -> str:
    """Of the kernel sources, numba and numpy: a module built from anything else is not used."""
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((HERE.parent / name).read_bytes())
    for package in ("numba", "numpy"):
        digest.update(importlib.metadata.version(package).encode())
    return digest.hexdigest()[:16]


def module_name() -> str:
    return f"_kernels_{fingerprint()}"


def _load() -> tuple[Any, dict[str, dict[tuple, str]]] | None:
    """The built module and its table {kernel: {argument types: export}}, or None."""
    global _AOT
    if _AOT is False:
        _AOT = None
        name = module_name()
        table = HERE / f"{name}.json"
        if os.environ.get("GTOK_KERNELS", "auto") != "jit" and table.exists():
            try:
                module = importlib.import_module(f"gtok.kernels.{name}")
                exports = json.loads(table.read_text())
                _AOT = module, {k: {_tuple(key): export for key, export in v} for k, v in exports.items()}
            except (ImportError, OSError, ValueError):
                _AOT = None  # unreadable or built for another platform: the JIT works regardless
    return _AOT


def _tuple(key: list) -> tuple:
    """A type key read back from JSON (lists) as the tuples type_key makes."""
    return tuple(_tuple(k) if isinstance(k, list) else k for k in key)


def type_key(value: Any) -> tuple | str | None:
    """The numba type of an argument, as numba's typeof would give it, in plain Python (cheap, and
    without importing numba); None for a kind of value no kernel is compiled for."""
    if isinstance(value, np.ndarray):
        flags = value.flags
        layout = "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"
        return ("array", value.dtype.name, value.ndim, layout, bool(flags.writeable))  # numba ignores alignment
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, np.generic):
        return value.dtype.name
    if isinstance(value, tuple):
        keys = tuple(type_key(v) for v in value)
        return None if None in keys else ("tuple", *keys)
    return None


class Kernel:
    """A kernel whose calls go to its ahead-of-time export when the argument types match one, and
    to numba's JIT otherwise (compiled on first such call, with the other kernels it calls)."""

    def __init__(self, fn: Callable, options: dict, module: Any, exports: dict[tuple, str]):
        self.py_func, self.options, self._module, self._exports = fn, options, module, exports
        self._jit: Callable | None = None

    def __call__(self, *args: Any) -> Any:
        export = self._exports.get(tuple(type_key(a) for a in args))
        if export is not None:
            return getattr(self._module, export)(*args)
        return self.jit()(*args)

    def jit(self) -> Callable:
        """The numba dispatcher of this function, its calls to other kernels bound to theirs."""
        if self._jit is None:
            import numba

            fn = self.py_func
            scope = dict(fn.__globals__)
            for name in fn.__code__.co_names:  # the kernels it calls (none calls itself or another in a cycle)
                if isinstance(scope.get(name), Kernel) and scope[name] is not self:
                    scope[name] = scope[name].jit()
            clone = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
            clone.__qualname__, clone.__module__ = fn.__qualname__, fn.__module__
            self._jit = numba.njit(**self.options)(clone)
            scope[fn.__name__] = self._jit  # a recursive kernel calls itself
        return self._jit


def kernel(**options: Any) -> Callable[[Callable], Any]:
    """numba.njit(**options), or a Kernel backed by the ahead-of-time module when it is built."""

    def wrap(fn: Callable) -> Any:
        aot = _load()
        if aot is None:
            import numba

            return numba.njit(**options)(fn)
        module, table = aot
        return Kernel(fn, options, module, table.get(qualified(fn), {}))

    return wrap


def qualified(fn: Callable) -> str:
    """How the table names a kernel."""
    return f"{fn.__module__}.{fn.__qualname__}"


def built() -> bool:
    """Whether the module of the current kernel sources is there (its table is written last)."""
    return (HERE / f"{module_name()}.json").exists()
