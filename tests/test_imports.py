"""No import cycle inside src/ple, read from the source (ast), not by importing it.

Every import statement counts, at module level or inside a function: an import deferred
into a function still makes the two modules depend on each other, and only hides the cycle
from the interpreter. Imports by name at run time (ple.methods' table, cli's subcommand
modules, ple/__init__'s lazy names) are not statements and are not seen.

Two graphs are checked: one of modules, and one of the package's parts, where a subpackage
(ple.evaluation, ple.compare, ...) is one node and each top-level module another, since two
parts that import each other are one part in two places even when no two modules do.
"""

from __future__ import annotations

import ast

from conftest import REPO

SRC = REPO / "src"


def modules() -> dict[str, ast.Module]:
    """Every module of ple by dotted name (a package by its own name), parsed."""
    found = {}
    for path in sorted((SRC / "ple").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return found


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """The ple modules a module imports. `from ple.x import y` imports module ple.x.y where
    that is a module, else ple.x (y is a name in it)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # ple imports absolutely; a relative import would need resolving to be seen here.
            assert node.level == 0, f"relative import of {node.module} (line {node.lineno})"
            found.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known
                         else node.module for a in node.names)
    return found & known


def graph() -> dict[str, set[str]]:
    trees = modules()
    return {name: imports(tree, set(trees)) - {name} for name, tree in trees.items()}


def part(module: str) -> str:
    """The part of ple a module belongs to: its subpackage, or itself at the top level."""
    return ".".join(module.split(".")[:2])


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, as the nodes along it back to the first, or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_walk_sees_function_level_and_from_imports():
    edges = graph()
    assert "ple.training" in edges["ple.cli"]  # module level
    assert "ple.evaluation.evaluate" in edges["ple.compare.orchestrate"]  # in a function
    assert "ple.tasks" in edges["ple.config"]  # `from ple import tasks`: the module


def test_no_module_imports_itself_back():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_no_part_of_ple_imports_itself_back():
    parts: dict[str, set[str]] = {}
    for module, targets in graph().items():
        parts.setdefault(part(module), set()).update(
            part(t) for t in targets if part(t) != part(module))
    cycle = find_cycle(parts)
    assert cycle is None, " -> ".join(cycle)


def test_evaluation_does_not_reach_into_the_annotation_tool():
    """`ple annotate` (people judging in a browser) builds on evaluation's pairs and
    rule (ple.evaluation.pairwise), not the other way round."""
    edges = graph()
    assert not [(m, t) for m in edges if m.startswith("ple.evaluation")
                for t in edges[m] if t.startswith("ple.annotate")]
