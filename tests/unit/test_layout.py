"""The package's dependencies point down: the layout docs/development.md describes, kept."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import digitpipe

PACKAGE = Path(digitpipe.__file__).parent


def imports() -> dict[str, set[str]]:
    """Each first-level part of the package (a subpackage or a module) and the parts it imports."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("digitpipe.") and (target := name.split(".")[1]) != part:
                    found[part].add(target)
    return found


def test_no_two_parts_of_the_package_import_each_other_even_through_others():
    graph = imports()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    cycles = sorted(part for part in list(graph) if reaches(part, part, {part}))
    assert cycles == [], cycles


def test_the_model_and_the_data_know_nothing_of_training_tracking_or_the_opt_in_machinery():
    graph = imports()
    for leaf in ("models", "data"):
        assert not graph[leaf] & {"training", "steps", "distributed", "tracking", "evaluation"}, leaf
    assert graph["config"] <= {"models", "errors", "environment"}, graph["config"]
