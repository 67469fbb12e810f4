"""symrnn: machine-checked derivations of backpropagation through time.

The public names are imported on first use (``symrnn.derive``,
``from symrnn import Spec``), so ``import symrnn`` and ``symrnn --help`` load
neither SymPy, torch nor matplotlib.  Resolving an engine name also imports
:mod:`symrnn.render.latex`, which registers ``_repr_latex_`` on
:class:`Derivation`, :class:`Recurrence` and :class:`Unrolled` for notebooks
(the engine never imports its renderer; code that imports
``symrnn.engine.derive`` directly imports ``symrnn.render.latex`` for that).
"""

from __future__ import annotations

import importlib

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

_RENDERER = "symrnn.render.latex"


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'symrnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    if _LAZY[name].startswith("symrnn.engine."):
        importlib.import_module(_RENDERER)  # notebook rendering of the results
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
