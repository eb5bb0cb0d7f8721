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
    assert {"gtok.tokenizer", "gtok.inference.loading", "gtok.pretrained", "gtok.models.geniml"} <= set(graph)
    assert circles(graph) == []


def test_the_circle_finder_finds_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# -- the torch boundary -------------------------------------------------------------------------------

TORCH = {"torch", "lightning", "transformers", "torchmetrics"}
# The torch layer: the packages that train, run and evaluate models (and the CLI's model commands).
# Everything else is the numpy core (universe, input kinds, tokenizing, formats, manifest, workflow
# plan), usable where torch is absent or unwanted (docs/architecture.md).
TORCH_LAYER = ("gtok.data", "gtok.models", "gtok.training", "gtok.inference", "gtok.evaluation", "gtok.cli.model")
# The core's only doors into the torch layer, each a function that hands out tensors or a model's
# vocabulary (docs/architecture.md); `gtok.cli` dispatches to the model commands.
DOORS = {
    ("gtok.tokenizer", "encode"), ("gtok.tokenizer", "encode_anndata"), ("gtok.tokenizer", "pad_batch"),
    ("gtok.tokenizer", "from_pretrained"), ("gtok.tokenizer", "for_model"), ("gtok.cli", None),
}


def in_torch_layer(module: str) -> bool:
    return any(module == top or module.startswith(top + ".") for top in TORCH_LAYER)


def crossings(module: str, path: Path) -> set[tuple[str | None, str]]:
    """(function or None for module level, what it imports) for each import of torch or the torch layer."""
    found = set()

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                names = ([a.name for a in child.names] if isinstance(child, ast.Import)
                         else [child.module or ""] + [f"{child.module}.{a.name}" for a in child.names])
                for name in names:
                    if name.split(".")[0] in TORCH or in_torch_layer(name):
                        found.add((function, name))
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            visit(child, inner)

    visit(ast.parse(path.read_text()), None)
    return found


def test_the_core_reaches_torch_only_through_its_doors():
    graph = import_graph()
    core = sorted(name for name in graph if not in_torch_layer(name))
    assert {"gtok.universe", "gtok.tokenizer", "gtok.build", "gtok.formats.shard", "gtok.formats.manifest"} <= set(core)
    crossing = {}
    for name in core:
        path = SRC / (name.replace(".", "/") + ".py")
        path = path if path.is_file() else SRC / name.replace(".", "/") / "__init__.py"
        for function, imported in crossings(name, path):
            if (name, function) not in DOORS and (name, None) not in DOORS:
                crossing.setdefault(f"{name}:{function or '<module>'}", set()).add(imported)
    assert crossing == {}


def test_the_core_imports_and_tokenizes_where_torch_cannot_be_imported(tmp_path):
    """Every core module imported, and a BED file tokenized into a shard, with torch's packages unimportable."""
    import subprocess
    import sys

    bed = tmp_path / "a.bed"
    bed.write_text("chr1\t10\t20\nchr1\t30\t40\n")
    script = f"""
import importlib, pkgutil, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {sorted(TORCH)!r}:
            raise ImportError("torch is not installed here")
sys.meta_path.insert(0, Refuse())
import gtok
for info in pkgutil.walk_packages(gtok.__path__, "gtok."):
    if not any(info.name == t or info.name.startswith(t + ".") for t in {TORCH_LAYER!r}) and not info.name.endswith("__main__"):
        importlib.import_module(info.name)
from gtok.build import tokenize_to_shard
from gtok.formats.shard import ShardReader
tokenize_to_shard([{str(bed)!r}], {str(bed)!r}, {str(tmp_path / "a.gtok")!r}, progress=False)
print(ShardReader({str(tmp_path / "a.gtok")!r}).tokens.tolist())
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["[0,", "1]"]


def test_the_top_level_names_of_the_torch_layer_load_on_first_use():
    import subprocess
    import sys

    code = ("import sys, gtok; assert 'torch' not in sys.modules; "
            "from gtok.inference import embed, loading; "
            "assert (gtok.embed_anndata, gtok.embed_regions, gtok.Embedder, gtok.load_model) == "
            "(embed.embed_anndata, embed.embed_regions, embed.Embedder, loading.load_model)")
    subprocess.run([sys.executable, "-c", code], check=True)


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
