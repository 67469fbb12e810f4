"""The operation table: one row per elementwise function, read by every stage.

softplus is the row added to show it: one entry in ``symrnn/ops.py`` and
this test; the spec, the rule table, both code printers, the evaluators, the
LaTeX printer and the regimes pick it up with no other change.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
import torch

from symrnn import Spec, derive
from symrnn.checks.verify import verify
from symrnn.codegen.printer import NUMPY, TORCH
from symrnn.engine.rules import RULES
from symrnn.ops import ACTIVATIONS, ELEMENTWISE, derivative_text
from symrnn.render.describe import recurrence_text
from symrnn.render.latex.document import derivation_to_latex
from symrnn.spec import ACTIVATIONS as SPEC_ACTIVATIONS

# f(a) written here, independently of the table, for SymPy to differentiate
TEXTBOOK = {
    "tanh": sympy.tanh,
    "sigmoid": lambda a: 1 / (1 + sympy.exp(-a)),
    "relu": lambda a: sympy.Max(0, a),
    "identity": lambda a: a,
    "softplus": lambda a: sympy.log(1 + sympy.exp(a)),
    "exp": sympy.exp,
}


class _Scalar:
    """The table's derivative algebra on SymPy scalars."""

    one = staticmethod(lambda y: sympy.Integer(1))
    sub = staticmethod(lambda a, b: a - b)
    mul = staticmethod(lambda a, b: a * b)
    neg = staticmethod(lambda a: -a)
    apply = staticmethod(lambda name, y: TEXTBOOK[name](y) if name != "step"
                         else sympy.Heaviside(y, 0))


@pytest.mark.parametrize("name", sorted(set(TEXTBOOK) - {"relu"}))
def test_derivative_from_output_is_the_derivative(name):
    a = sympy.Symbol("a", real=True)
    f = TEXTBOOK[name](a)
    from_output = ELEMENTWISE[name].derivative(f, _Scalar)
    for value in map(sympy.Rational, ("-5/2", "-3/10", "7/10", "31/10")):
        difference = (from_output - sympy.diff(f, a)).subs(a, value)
        assert abs(sympy.N(difference, 50)) < 1e-40


def test_relu_derivative_is_the_step_of_the_output():
    a = sympy.Symbol("a", real=True)
    for value in (-1.5, 2.0):
        y = max(0.0, value)
        slope = ELEMENTWISE["relu"].derivative(sympy.Float(y), _Scalar)
        assert slope == sympy.diff(sympy.Max(0, a), a).subs(a, value)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_every_row_is_read_by_every_stage(name):
    row = ELEMENTWISE[name]
    assert name in RULES
    assert NUMPY.table[name][0] == row.numpy and TORCH.table[name][0] == row.torch
    x = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(row.numpy_impl(x), row.torch_impl(torch.from_numpy(x)).numpy(),
                               rtol=1e-12, atol=1e-15)
    if name in TEXTBOOK:
        exact = [float(TEXTBOOK[name](sympy.Float(v))) for v in x]
        np.testing.assert_allclose(row.numpy_impl(x), exact, rtol=1e-12, atol=1e-15)
    assert (name in ACTIVATIONS) == row.activation


def test_the_spec_reads_its_activations_from_the_table():
    assert SPEC_ACTIVATIONS is ACTIVATIONS
    assert "softplus" in ACTIVATIONS and "step" not in ACTIVATIONS


def test_softplus_through_the_pipeline():
    spec = Spec(activation="softplus", hidden_size=3, input_size=2, output_size=2)
    assert derivative_text("softplus") == "1 - exp(-h)"
    text = recurrence_text(derive(spec).recurrence)
    assert "1 - exp(-h_{t+1})" in text
    assert r"\operatorname{softplus}" in derivation_to_latex(spec)
    for backend in ("numpy", "torch"):
        report = verify(spec, backend=backend, T=4, batch=2)
        assert report.ok, report
