"""Checking hand-derived gradient formulas: parse, lower, compare, diagnose.

``check_formula(text, spec, wrt=..., T=...)`` → :class:`Verdict`;
``parse_formula(text)`` → :class:`~symrnn.formula.nodes.Formula`;
``check_function(fn, spec, conventions=Conventions(...))`` checks a user's NumPy BPTT
(:mod:`symrnn.formula.conventions`: how it is called and what it returns).
"""

from symrnn.formula.check import check_formula
from symrnn.formula.conventions import Conventions
from symrnn.formula.diagnose import SLIPS
from symrnn.formula.function import check_function
from symrnn.formula.parse import parse_formula
from symrnn.formula.verdict import Counterexample, Verdict

__all__ = ["SLIPS", "Conventions", "Counterexample", "Verdict", "check_formula",
           "check_function", "parse_formula"]
