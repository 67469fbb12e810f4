"""symrnn: machine-checked derivations of backpropagation through time."""

import symrnn.render.latex  # noqa: E402,F401  (registers _repr_latex_ on the engine's results)
from symrnn.codegen import compile
from symrnn.engine.derive import Derivation, derive, derive_recurrence, derive_unrolled
from symrnn.engine.graph import unroll
from symrnn.errors import FormulaError, MissingRuleError, ShapeError, SpecError, SymrnnError
from symrnn.formula import check_formula
from symrnn.spec import DEFAULT_SPEC, Spec, load_spec
from symrnn.version import __version__

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
