"""Checking hand-derived gradient formulas: parse, lower, compare, diagnose.

``check_formula(text, spec, wrt=..., T=...)`` → :class:`Verdict`;
``parse_formula(text)`` → :class:`~symrnn.formula.nodes.Formula`;
``check_function(fn, spec, conventions)`` checks a user's NumPy BPTT.
"""

from symrnn.formula.check import check_formula
from symrnn.formula.diagnose import SLIPS
from symrnn.formula.parse import parse_formula
from symrnn.formula.verdict import Counterexample, Verdict

__all__ = ["SLIPS", "Counterexample", "Verdict", "check_formula", "parse_formula"]
