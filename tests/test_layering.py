"""Imports point downstream only: spec → cells → graph → derive → (latex | codegen) → ..."""

from __future__ import annotations

import ast
from pathlib import Path

import symrnn

ROOT = Path(symrnn.__file__).parent

# Lower rank = further upstream.  A module may import only ranks <= its own.
RANKS = {
    "errors": 0, "version": 0, "spec": 1, "ops": 2, "expr": 2, "cells": 3, "printing": 4,
    "graph": 5, "rules": 6, "derive": 7, "evaluate": 8, "describe": 9, "oracle": 9,
    "jacobians": 10, "latex": 10, "latex_sections": 10, "latex_bptt": 10, "codegen": 10,
    "verify": 11, "formula": 11, "testing": 12, "regimes": 12, "report": 13, "cli": 14,
    "__init__": 15, "__main__": 15,
}
# Notebook rendering: Derivation._repr_latex_ calls the LaTeX writer lazily.
ALLOWED = {("derive", "latex")}


def _stage(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("symrnn"):
            if node.module == "symrnn":  # from symrnn import expr: the submodule
                for alias in node.names:
                    yield f"symrnn.{alias.name}", node.lineno
            else:
                yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("symrnn"):
                    yield alias.name, node.lineno


def test_every_module_has_a_stage():
    for path in ROOT.rglob("*.py"):
        stage = path.relative_to(ROOT).parts[0].removesuffix(".py")
        assert stage in RANKS, f"{path} has no stage in tests/test_layering.py"


def test_imports_point_downstream():
    bad = []
    for path in ROOT.rglob("*.py"):
        stage = path.relative_to(ROOT).parts[0].removesuffix(".py")
        for module, line in _imports(path):
            target = _stage(module)
            if target == "__init__" and stage != "__init__":
                bad.append(f"{path.name}:{line} imports the package root")
            elif RANKS[target] > RANKS[stage] and (stage, target) not in ALLOWED:
                bad.append(f"{path.relative_to(ROOT)}:{line} ({stage}) imports {module}")
    assert not bad, "upstream imports:\n" + "\n".join(bad)
