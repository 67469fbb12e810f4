"""The package layout is the data flow, and imports point downstream only.

Stages, upstream first (a folder is one stage; so is each top-level module)::

    errors, version → ops → spec → engine → render → codegen → nn → checks
        → formula → regimes → testing → extend → report → cli → the package root

A module may import its own stage and the stages above it, never one below.
Every import counts, function-level ones included, and there is no
exceptions list.  Within a stage the module graph has no circle either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import symrnn

ROOT = Path(symrnn.__file__).parent

ORDER = [
    ("errors", "version"), ("ops",), ("spec",), ("engine",), ("render",), ("codegen",), ("nn",),
    ("checks",), ("formula",), ("regimes",), ("testing",), ("extend",), ("report",),
    ("cli",), ("__init__", "__main__"),
]
RANKS = {stage: rank for rank, stages in enumerate(ORDER) for stage in stages}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _stage(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return "__main__" if parts[1] == "__main__" else parts[1]


def _imports(path: Path):
    """(imported module, line) for every symrnn import in the file, at any depth."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("symrnn"):
            for alias in node.names:  # from pkg import submodule: the submodule
                sub = f"{node.module}.{alias.name}"
                yield (sub if sub in MODULES else node.module), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("symrnn"):
                    yield alias.name, node.lineno


def test_every_module_has_a_stage():
    missing = sorted({_stage(m) for m in MODULES} - RANKS.keys())
    assert not missing, f"stages missing from tests/test_layering.py ORDER: {missing}"


def test_imports_point_downstream():
    bad = []
    for module, path in MODULES.items():
        for target, line in _imports(path):
            if target == "symrnn" and _stage(module) != "__main__" and module != "symrnn":
                bad.append(f"{path.relative_to(ROOT)}:{line} imports the package root")
            elif RANKS[_stage(target)] > RANKS[_stage(module)]:
                bad.append(f"{path.relative_to(ROOT)}:{line} ({_stage(module)}) imports {target}")
    assert not bad, "upstream imports:\n" + "\n".join(bad)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
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


def test_no_import_circle_anywhere():
    graph = {m: {t for t, _ in _imports(p) if t != m} for m, p in MODULES.items()}
    circle = _cycle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_checker_finds_a_circle():
    """Test the test: a planted circle is reported."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_oracle_shares_nothing_with_the_engine():
    """The scalar oracle may read the spec and raise symrnn's errors, nothing else."""
    path = ROOT / "checks" / "oracle.py"
    imported = {t for t, _ in _imports(path)}
    assert imported <= {"symrnn.spec", "symrnn.errors"}, imported
