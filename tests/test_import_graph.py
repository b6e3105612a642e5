"""The library's modules import each other without circles, counting the imports hidden inside
functions (a lazy import that only dodges a circle at load time is still a circle: two modules
that cannot be read, tested or moved apart)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "judgeeye"


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every plain module (packages' ``__init__`` files are left out:
    importing ``a.b.c`` runs ``a/b/__init__.py`` whichever module asks, so an edge to a package is
    no dependency of one module on another)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            out[".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)] = path
    return out


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n in known)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_of_the_library_imports_itself_in_a_circle() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert "judgeeye.review.rounds" in graph["judgeeye.review.queue"]  # the graph sees real imports
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])
