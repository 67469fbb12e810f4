"""symrnn: machine-checked derivations of backpropagation through time.

The public names are imported on first use (``symrnn.derive``,
``from symrnn import Spec``), so ``import symrnn`` and ``symrnn --help`` load
neither SymPy, torch nor matplotlib.  When the engine's
``symrnn.engine.derive`` is first imported, by any route,
:mod:`symrnn.render.latex` is imported right after it and registers
``_repr_latex_`` on :class:`Derivation`, :class:`Recurrence` and
:class:`Unrolled` (the engine never imports its renderer).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

from symrnn.errors import FormulaError, MissingRuleError, ShapeError, SpecError, SymrnnError
from symrnn.version import __version__

_LAZY = {
    "DEFAULT_SPEC": "symrnn.spec",
    "Spec": "symrnn.spec",
    "load_spec": "symrnn.spec",
    "compile": "symrnn.codegen",
    "Derivation": "symrnn.engine.derive",
    "derive": "symrnn.engine.derive",
    "derive_recurrence": "symrnn.engine.derive",
    "derive_unrolled": "symrnn.engine.derive",
    "unroll": "symrnn.engine.graph",
    "check_formula": "symrnn.formula",
}

__all__ = [
    "DEFAULT_SPEC",
    "Derivation",
    "FormulaError",
    "MissingRuleError",
    "ShapeError",
    "Spec",
    "SpecError",
    "SymrnnError",
    "__version__",
    "compile",
    "check_formula",
    "derive",
    "derive_recurrence",
    "derive_unrolled",
    "load_spec",
    "unroll",
]

_ENGINE = "symrnn.engine.derive"
_RENDERER = "symrnn.render.latex"


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'symrnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _RegisterReprLatex(importlib.abc.MetaPathFinder):
    """Import the LaTeX renderer right after the engine's derive module (one shot)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _ENGINE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            importlib.import_module(_RENDERER)

        loader.exec_module = exec_then_register
        return spec


if _ENGINE in sys.modules:  # pragma: no cover - imported before the package root finished
    importlib.import_module(_RENDERER)
elif not any(isinstance(f, _RegisterReprLatex) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterReprLatex())
