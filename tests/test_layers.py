"""The layer order: no difusi module imports one of a higher layer, lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import difusi

PACKAGE = Path(difusi.__file__).parent

# Lowest first. A module belongs to the first layer holding its name or a package above it.
LAYERS = [
    ("difusi.errors", "difusi.io", "difusi.config", "difusi.corpus", "difusi.distributed"),
    ("difusi.model",),
    ("difusi.diffusion", "difusi.autoregressive"),
    ("difusi.generation",),
    ("difusi.data",),
    ("difusi.evaluation",),
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


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) for every difusi import anywhere in `source` (a module of `package`), function
    bodies included, relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            found.append((node.lineno, ".".join([*base, *([node.module] if node.module else [])])))
    return [(line, name) for line, name in found if name == "difusi" or name.startswith("difusi.")]


MODULES = sorted(PACKAGE.rglob("*.py"))


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


def test_lazy_and_relative_imports_are_seen():
    source = "import torch\n\ndef f():\n    from difusi.evaluation import metrics\n    from ..generation import x\n"
    assert imported_modules(source, "difusi.model") == [(4, "difusi.evaluation"), (5, "difusi.generation")]
