"""The package's modules import each other without a circle, counting the imports inside functions
(which only postpone one): the layers stay layers (docs/architecture.md). Imports for type checkers
alone, and the `gtok` package itself (a facade of re-exports), are left out."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def import_graph() -> dict[str, set[str]]:
    """Module -> the gtok modules it imports anywhere in its code."""
    modules = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("gtok"):
                found |= {t for t in [node.module, *(f"{node.module}.{a.name}" for a in node.names)] if t in modules}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in modules}
        graph[name] = found - {name, "gtok"}
    del graph["gtok"]
    return graph


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from (n for part in node.orelse for n in [part, *_runtime_nodes(part)])
            continue
        yield node
        yield from _runtime_nodes(node)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while group[-1:] != [v]:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_in_a_circle():
    graph = import_graph()
    assert {"gtok.tokenizer", "gtok.loading", "gtok.pretrained", "gtok.models.geniml"} <= set(graph)
    assert circles(graph) == []


def test_the_circle_finder_finds_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def imported_names(module: str) -> set[str]:
    """`module.name` for every `from module import name` of a gtok module (TYPE_CHECKING left out)."""
    path = SRC.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return {f"{node.module}.{a.name}" for node in _runtime_nodes(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("gtok")
            for a in node.names}


def test_no_module_both_reads_an_input_kind_and_writes_a_shard():
    """gtok.sources read inputs and never touch the shard writer; gtok.build writes shards and parses
    no input itself: it takes the sources whole (gtok.sources and their protocol), never a kind's module."""
    graph = import_graph()
    sources = [m for m in graph if m == "gtok.sources" or m.startswith("gtok.sources.")]
    assert {"gtok.sources.bed", "gtok.sources.cells", "gtok.sources.fragments.records", "gtok.sources.parquet"} <= set(sources)
    writers = {"gtok.formats.shard.ShardWriter", "gtok.formats.shard.write_shard", "gtok.build"}
    assert {m: imported_names(m) & writers for m in sources} == {m: set() for m in sources}
    assert {m for m in graph["gtok.build"] if m.startswith("gtok.sources")} <= {"gtok.sources", "gtok.sources.base"}
