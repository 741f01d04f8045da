"""The package's layout as rules: imports flow one way along the layers, and nothing imports in a
circle.

Every module under ``src/mcresolve`` is parsed with :mod:`ast` (nothing is imported); its imports
(module level, function-local, relative, and the type-only ones under ``if TYPE_CHECKING:``) form
the graph. The layers are data below: moving a module or adding a package means editing
:data:`LAYERS`, and ``docs/architecture.md`` describes the same order.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "mcresolve"

#: The library's layers, lowest first: a module may import its own layer and the ones before it,
#: never a later one. A name is a module or a package (the package covers its submodules); the
#: longest matching name wins, so a module placed apart from its package is listed by name.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "vocabulary",
        (
            "mcresolve.arguments",  # argument checks shared by every public constructor
            "mcresolve.endpoint",
            "mcresolve.errors",
            "mcresolve.lifecycle",
            "mcresolve.timing",
            "mcresolve.tasks",
        ),
    ),
    ("consul", ("mcresolve.consul",)),
    ("sources", ("mcresolve.sources",)),
    ("balancer", ("mcresolve.balancer",)),
    ("pool", ("mcresolve.pool",)),
    # The metrics exporter reads a pool from outside, like the other integrations.
    ("integrations", ("mcresolve.minio", "mcresolve.http", "mcresolve.pool.metrics")),
    # A process of its own that forwards local ports through pools (uses the HTTP classifier).
    ("sidecar", ("mcresolve.sidecar",)),
    ("entry points", ("mcresolve", "mcresolve.cli", "mcresolve.demo")),
)

#: Beside the layers: may import any layer of the library; the library never imports it.
BESIDE: tuple[str, ...] = ("mcresolve.testing",)

#: Layers that may import what is :data:`BESIDE` (the demo runs the emulator and the storage
#: harness).
MAY_IMPORT_BESIDE: frozenset[str] = frozenset({"mcresolve.demo"})

#: Backward imports known today, each with the change that removes it. An entry here is a debt,
#: not a rule: remove it with the import.
KNOWN_BACKWARD: frozenset[tuple[str, str]] = frozenset(
    {
        # Type-only: CallFailed carries the planner's AttemptRecord/VerdictLike.
        ("mcresolve.errors", "mcresolve.pool.planner"),
    }
)


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    imported: str
    line: int
    type_only: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    inside.update(id(n) for n in ast.walk(child))
    return inside


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    type_only = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                targets.append(submodule if submodule in modules else module)
        for target in targets:
            if target == ROOT or target.startswith(ROOT + "."):
                yield Import(name, target, node.lineno, id(node) in type_only)


@functools.cache
def all_imports() -> tuple[Import, ...]:
    modules = all_modules()
    return tuple(imp for name, path in modules.items() for imp in imports_of(name, path, modules))


def owner(module: str, names: tuple[str, ...]) -> str | None:
    """The longest of ``names`` that is ``module`` or a package containing it (the root package
    stands for its ``__init__`` only)."""
    matches = [n for n in names if module == n or (n != ROOT and module.startswith(n + "."))]
    return max(matches, key=len, default=None)


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (length of the matching name, layer index)
    for index, (_, names) in enumerate(LAYERS):
        match = owner(module, names)
        if match is not None and (best is None or len(match) > best[0]):
            best = (len(match), index)
    return None if best is None else best[1]


def is_beside(module: str) -> bool:
    return owner(module, BESIDE) is not None


def unit_of(module: str) -> str:
    """The package (``mcresolve.consul``) or top-level module a module belongs to."""
    parts = module.split(".")
    return ".".join(parts[:2])


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), or a self-loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


# ------------------------------------------------------------------------------------------


def test_every_module_has_a_place() -> None:
    """A new module or package must be placed in a layer (or beside them) before it lands."""
    unplaced = [m for m in all_modules() if layer_of(m) is None and not is_beside(m)]
    assert unplaced == []


def test_the_graph_is_read() -> None:
    """The parser sees the imports it must see (a broken parser would pass the other tests)."""
    found = {(i.importer, i.imported) for i in all_imports()}
    assert ("mcresolve.sources.dns", "mcresolve.timing") in found  # module level
    assert ("mcresolve.testing.consul.datacenter", "mcresolve.testing.consul.http_api") in found
    assert len(found) > 200


def test_no_module_imports_in_a_circle() -> None:
    """Run-time imports (module level and function-local) form no cycle between modules."""
    edges: dict[str, set[str]] = {}
    for imp in all_imports():
        if not imp.type_only and imp.imported != imp.importer:
            edges.setdefault(imp.importer, set()).add(imp.imported)
    assert find_cycles(edges) == []


def test_no_package_imports_in_a_circle() -> None:
    """Between packages (``mcresolve.consul``, ``mcresolve.sources``, ...) and top-level modules,
    counting run-time imports; the top-level ``mcresolve`` (which re-exports) is left out."""
    edges: dict[str, set[str]] = {}
    for imp in all_imports():
        if imp.type_only or ROOT in (imp.importer, imp.imported):
            continue
        a, b = unit_of(imp.importer), unit_of(imp.imported)
        if a != b:
            edges.setdefault(a, set()).add(b)
    assert find_cycles(edges) == []


def test_no_backward_imports() -> None:
    """No module imports a later layer, including type-only imports (a type is a dependency)."""
    backward = set()
    for imp in all_imports():
        if is_beside(imp.importer):
            continue
        if is_beside(imp.imported):
            if owner(imp.importer, tuple(MAY_IMPORT_BESIDE)) is None:
                backward.add((imp.importer, imp.imported))
            continue
        here, there = layer_of(imp.importer), layer_of(imp.imported)
        assert here is not None and there is not None, imp
        if there > here:
            backward.add((imp.importer, imp.imported))
    assert backward <= KNOWN_BACKWARD, sorted(backward - KNOWN_BACKWARD)


def test_the_library_never_imports_the_test_beds() -> None:
    offenders = sorted(
        (imp.importer, imp.imported)
        for imp in all_imports()
        if owner(imp.importer, tuple(MAY_IMPORT_BESIDE)) is None
        and not is_beside(imp.importer)
        and is_beside(imp.imported)
    )
    assert offenders == []


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"a"}}, [["a"]]),
    ],
)
def test_find_cycles(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert find_cycles(edges) == expected


def test_layer_lookup_takes_the_longest_name() -> None:
    assert layer_of("mcresolve") == len(LAYERS) - 1
    assert layer_of("mcresolve.sources.target") == 2
    assert layer_of("mcresolve.consul.registration") == 1
    assert layer_of("mcresolve.pool.metrics") == layer_of("mcresolve.http")
    assert layer_of("mcresolve.pool.events") == layer_of("mcresolve.pool.planner")
    assert layer_of("mcresolve.nonexistent") is None


#: What may sit directly in ``src/mcresolve`` beside the packages: the shared vocabulary and the
#: entry points.
TOP_LEVEL: frozenset[str] = frozenset(
    {
        "__init__",
        "arguments",  # the argument checks every public constructor shares (TypeError/ValueError)
        "endpoint",
        "errors",
        "lifecycle",
        "timing",
        "tasks",
        "cli",
    }
)


def test_top_level_holds_only_the_vocabulary_and_the_entry_points() -> None:
    flat = {p.stem for p in (SRC / ROOT).glob("*.py")}
    assert flat - TOP_LEVEL == set()
