"""The package layering of ``dino_lib``: imports point one way, from a package only to packages below it.

The graph is computed from the source with ``ast``: module-level imports, imports inside functions (lazy imports)
and string imports (a string constant that is a ``dino_lib.<module>`` path, as handed to ``importlib``). Entry points
(``__main__`` modules, the command-line front door, the notebook helper and the launcher) may call into anything;
nothing in the library may import them.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import dino_lib

PACKAGE_ROOT = Path(dino_lib.__file__).resolve().parent

# The one declaration of the order, lowest first. A node may import only from nodes in strictly lower layers.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("utils",),
    ("config",),
    ("runtime",),
    ("data",),
    ("models", "losses"),
    ("train", "features"),
    ("eval", "propagation", "hierarchical", "attention"),
    ("metrics",),
    ("viz",),
)
# Modules that only call in: they may import any node, and no node may import them.
ENTRY_MODULES = (
    "dino_lib",
    "dino_lib.cli",
    "dino_lib.notebook",
    "dino_lib.launch",
    "dino_lib.sample_data",
    "dino_lib.distributed",  # a re-export of the runtime kept for old imports
)

LAYER_OF = {node: rank for rank, nodes in enumerate(LAYERS) for node in nodes}
STRING_IMPORT = re.compile(r"dino_lib(\.\w+)+(:\w+)?")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_entry(module: str) -> bool:
    return module in ENTRY_MODULES or module.endswith(".__main__")


def node_of(module: str) -> str:
    """The package-level node of a dotted module: ``dino_lib.train.loop`` -> ``train``."""
    return module.split(".")[1]


def imported_modules(path: Path, this: str | None = None) -> set[str]:
    """Every ``dino_lib`` module a file imports: at module level, inside functions, or by string."""
    this = this or module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and STRING_IMPORT.fullmatch(node.value):
            found.add(node.value.split(":")[0])
    return {name for name in found if name.startswith("dino_lib.")}


def resolve(name: str) -> str | None:
    """The module a dotted import name refers to (``from a.b import c`` may name a function c), or None."""
    parts = name.split(".")
    while parts:
        candidate = PACKAGE_ROOT.parent.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return None


def import_edges() -> dict[tuple[str, str], list[str]]:
    """(importer node, imported node) -> the files behind the edge; entry modules appear under their own name."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        this = module_name(path)
        source = this if is_entry(this) else node_of(this)
        for name in imported_modules(path):
            target = resolve(name)
            if target is None or target == this:
                continue
            target_node = target if is_entry(target) else node_of(target)
            if target_node != source:
                edges[(source, target_node)].append(str(path.relative_to(PACKAGE_ROOT.parent)))
    return edges


def find_cycle(edges: dict[tuple[str, str], list[str]]) -> list[str] | None:
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node], _ = 2, stack.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_every_library_node_has_a_layer():
    nodes = {node_of(module_name(p)) for p in PACKAGE_ROOT.rglob("*.py") if not is_entry(module_name(p))}
    missing = sorted(nodes - set(LAYER_OF))
    assert not missing, f"packages or top-level modules without a layer in LAYERS: {missing}"


def test_package_import_graph_has_no_cycle():
    cycle = find_cycle(import_edges())
    assert cycle is None, "package import cycle: " + " -> ".join(cycle)


def test_imports_point_down_the_layers():
    wrong = []
    for (source, target), files in sorted(import_edges().items()):
        if is_entry(target) and not is_entry(source):
            wrong.append(f"{source} imports the entry point {target} ({', '.join(sorted(set(files)))})")
        elif not is_entry(source) and not is_entry(target) and LAYER_OF.get(target, -1) >= LAYER_OF.get(source, -1):
            wrong.append(f"{source} -> {target} ({', '.join(sorted(set(files)))})")
    assert not wrong, "imports against the declared layer order:\n" + "\n".join(wrong)


def test_the_graph_sees_lazy_and_string_imports(tmp_path):
    """The scanner itself: a lazy import and an importlib string are both edges."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from ..models import vit\n"
        "def f():\n    from dino_lib.viz import video\n    return 'dino_lib.eval.knn:weighted_knn'\n"
    )
    names = imported_modules(probe, this="dino_lib.utils.probe")
    assert {
        "dino_lib.models",
        "dino_lib.models.vit",
        "dino_lib.viz",
        "dino_lib.viz.video",
        "dino_lib.eval.knn",
    } <= names
    assert resolve("dino_lib.viz.video.write_video") == "dino_lib.viz.video"
