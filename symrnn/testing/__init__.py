"""pytest helpers: assert that a formula or a NumPy BPTT function is the right gradient.

``assert_gradient_matches(fn_or_formula, spec, wrt="W_hh")`` raises
``AssertionError`` whose message is the verdict's text: the counterexample
(instance seed, entry, both values), the diagnosis and the correct gradient.
Any cell and architecture the engine derives (elman, lstm, gru, gru_v1, stacked,
bidirectional).  A function is called as its :class:`Conventions` declare (layouts,
integer inputs, zero h_0, batches and means, truncation, clipping, updates, float32,
stacked gate weights in any gate order; see :mod:`symrnn.formula.conventions`); with
``wrt=None`` every gradient it returns is checked.
``symrnn.testing.strategies`` holds hypothesis strategies for specs (imported
on first use, so hypothesis is needed only by those who use it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from symrnn.formula.check import check_formula
from symrnn.formula.conventions import Conventions
from symrnn.formula.function import check_function, returned_gradients
from symrnn.formula.verdict import Verdict
from symrnn.spec import Spec

__all__ = ["Conventions", "assert_gradient_matches", "strategies"]


def assert_gradient_matches(fn_or_formula: str | Callable, spec: Spec, *, wrt: str | None = None,
                            T: int | None = None, conventions: Conventions | None = None,
                            instances: int = 3, seed: int = 0) -> Verdict:
    """Check a formula (text) or a function; raise AssertionError when it is wrong."""
    if isinstance(fn_or_formula, str):
        verdict = check_formula(fn_or_formula, spec, wrt=wrt, T=T, instances=instances,
                                seed=seed)
    elif callable(fn_or_formula):
        verdicts = [check_function(fn_or_formula, spec, wrt=name, conventions=conventions,
                                   T=T or 3, instances=instances, seed=seed)
                    for name in ([wrt] if wrt is not None else
                                 returned_gradients(spec, conventions))]
        wrong = [v for v in verdicts if not v.ok]
        if wrong:
            raise AssertionError("gradient mismatch\n" + "\n".join(v.to_text() for v in wrong))
        return verdicts[-1]
    else:
        raise TypeError("expected a formula string or a callable, got "
                        f"{type(fn_or_formula).__name__}")
    if not verdict.ok:
        raise AssertionError("gradient mismatch\n" + verdict.to_text())
    return verdict


def __getattr__(name: str):
    if name == "strategies":
        return importlib.import_module("symrnn.testing.strategies")
    raise AttributeError(f"module 'symrnn.testing' has no attribute {name!r}")
