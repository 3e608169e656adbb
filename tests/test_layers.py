"""The layer order: no difusi module imports one of a higher layer, and no modules import each other in a
circle, lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import difusi

PACKAGE = Path(difusi.__file__).parent

# Lowest first. A module belongs to the first layer holding its name or a package above it.
LAYERS = [
    ("difusi.errors", "difusi.io", "difusi.config", "difusi.distributed"),
    ("difusi.synthetic.corpus",),  # the one way to general text, below the tokenizer that learns from it
    ("difusi.model",),
    ("difusi.diffusion", "difusi.autoregressive"),
    ("difusi.generation", "difusi.scoring"),
    ("difusi.data",),
    ("difusi.synthetic",),
    ("difusi.evaluation",),
    ("difusi.benchmarks",),
    ("difusi.tuning",),
    ("difusi.demo", "difusi.chat", "difusi.serving"),
    ("difusi.cli", "difusi.__main__", "difusi"),  # the package root is the public API
]


def layer(module: str) -> int:
    for rank, names in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in names if name != "difusi"):
            return rank
    if module == "difusi":
        return len(LAYERS) - 1
    raise AssertionError(f"{module} is in no layer; add it to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(PACKAGE.rglob("*.py"))
NAMES = {module_name(path) for path in MODULES}


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) for every difusi import anywhere in `source` (a module of `package`), function
    bodies included, relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            # `from package import submodule` imports the submodule
            targets = {f"{module}.{a.name}" if f"{module}.{a.name}" in NAMES else module for a in node.names}
            found += [(node.lineno, target) for target in sorted(targets)]
    return [(line, name) for line, name in found if name == "difusi" or name.startswith("difusi.")]


@pytest.mark.parametrize("path", MODULES, ids=[module_name(path) for path in MODULES])
def test_no_module_imports_a_higher_layer(path):
    name = module_name(path)
    own = layer(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    upward = [
        f"line {line}: {name} (layer {layer(name)} > {own})"
        for line, name in imported_modules(path.read_text(), package)
        if layer(name) > own
    ]
    assert not upward, f"{module_name(path)} reaches up: " + "; ".join(upward)


def import_graph() -> dict[str, set[str]]:
    """Module -> the difusi modules it imports."""
    graph = {}
    for path in MODULES:
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {imported for _, imported in imported_modules(path.read_text(), package)} & NAMES - {
            name
        }
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle of `graph` found by a depth-first search, each as the path that closes it."""
    found, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph[module]):
            if target in path:
                found.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return found


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_a_circle_is_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c", "a"]]


def test_lazy_and_relative_imports_are_seen():
    source = "import torch\n\ndef f():\n    from difusi.evaluation import metrics\n    from ..generation import x\n"
    assert imported_modules(source, "difusi.model") == [
        (4, "difusi.evaluation.metrics"),
        (5, "difusi.generation"),
    ]
