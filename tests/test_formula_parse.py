"""The formula language: what parses to what, errors with columns, and a parser fuzz."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
from fractions import Fraction
from unittest import mock

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symrnn.errors import FormulaError
from symrnn.formula import nodes as N
from symrnn.formula import parse_formula
from symrnn.formula.grammar import parser

h = N.Sym


def body(text):
    return parse_formula(text).body


# ------------------------------------------------------------------ readings


@pytest.mark.parametrize("latex, plain", [
    (r"h_{t-1}^\top", "h_{t-1}.T"),
    (r"h_{t-1}^{\mathsf T}", "h_{t-1}.T"),
    (r"\hat{y}_t - y_t", "yhat_t - y_t"),
    (r"\hat{y_3}", "yhat_3"),
    (r"\delta_{t+1} \odot (1 - h_{t+1}^2)", "delta_{t+1} * (1 - h_{t+1}^2)"),
    (r"\delta_t \circ h_t", "delta_t * h_t"),
    (r"W_{hh}^T \delta_t", "W_hh.T @ delta_t"),
    (r"W \cdot h_t", "W @ h_t"),
    (r"\tanh(a_t)", "tanh(a_t)"),
    (r"\sigma(z_t)", "sigmoid(z_t)"),
    (r"\mathrm{ReLU}(a_t)", "relu(a_t)"),
    (r"\mathrm{softmax}(z_t)", "softmax(z_t)"),
    (r"\operatorname{diag}(1-h_t^2)", "diag(1 - h_t^2)"),
    (r"\sum_{t=1}^{T} e_t", "sum_t e_t"),
    (r"\frac{1}{2} e_3", "1/2 * e_3"),
])
def test_latex_and_plain_twins_agree(latex, plain):
    left, right = body("dL/dV = " + latex), body("dL/dV = " + plain)
    if isinstance(right, N.Prod) and right.op == "hadamard" and isinstance(right.left, N.Prod):
        right = N.Prod("matmul", right.left, right.right)  # 1/2 * e_3 is a scalar multiple
    assert left == right


def test_left_hand_sides():
    assert parse_formula(r"\frac{\partial L_3}{\partial V} = h_3").claim == N.Claim(3, "V")
    assert parse_formula(r"\partial L_3 / \partial W = h_3").claim == N.Claim(3, "W")
    assert parse_formula("dL/dW_hh = h_3").claim == N.Claim(None, "W_hh")
    assert parse_formula(r"\frac{\partial \mathrm{L}}{\partial W_{hh}} = h_3").claim == \
        N.Claim(None, "W_hh")
    assert parse_formula("h_3").claim is None
    with pytest.raises(FormulaError, match="L_k with a number k"):
        parse_formula(r"\partial L_t / \partial W = h_3")


def test_definitions_and_sums():
    f = parse_formula(r"\delta_t = V^T e_t + W^T \delta_{t+1}; "
                      r"\frac{\partial L}{\partial W} = \sum_{k=1}^{t} \delta_k")
    assert f.definitions[0].base == "delta" and f.definitions[0].time == N.Time("t")
    assert f.body == N.Big("sum", "k", N.Time(None, 1), N.Time("t"), h("delta", N.Time("k")))
    g = parse_formula("delta_t = e_t\ndL/dW = prod_{j=2}^{T} W")
    assert len(g.definitions) == 1 and g.body.kind == "prod"


def test_reading_rules():
    assert body(r"f'(a_t)") == N.Call("f", h("a", N.Time("t")), derivative=True)
    assert body("h_t^2") == N.Square(h("h", N.Time("t")))
    assert body(r"\tanh^2(a_t)") == N.Square(N.Call("tanh", h("a", N.Time("t"))))
    assert body("Vh_3") == N.Prod("matmul", h("V"), h("h", N.Time(None, 3)))
    assert body(r"\frac12") == N.Prod("div", N.Num(Fraction(1)), N.Num(Fraction(2)))
    # all products share one precedence and group from the left; a sum's body is a term
    assert body(r"a_t \odot b_t c_t") == N.Prod(
        "matmul", N.Prod("hadamard", h("a", N.Time("t")), h("b", N.Time("t"))),
        h("c", N.Time("t")))
    assert isinstance(body(r"\sum_t e_t + e_1"), N.Add)


@pytest.mark.parametrize("text, column, expected", [
    ("dL/dW = (h_t", None, "unexpected end of formula"),
    ("dL/dW = h_t ++", 15, "unexpected end"),
    ("dL/dW = h_t # 3", 13, "unexpected character '#'"),
    ("dL/dW = h_t^x", 12, "unsupported superscript"),  # ^3 is a power (a vector's: wrong)
    (r"dL/dW = \sum_{q=1} h_t", 13, "unexpected index"),
    ("dL/dW = ) h_t", 9, "unexpected ')'"),
])
def test_parse_errors_name_column_and_expectation(text, column, expected):
    with pytest.raises(FormulaError, match="expected|unsupported") as info:
        parse_formula(text)
    assert expected in str(info.value)
    if column is not None:
        assert info.value.column == column


@pytest.mark.parametrize("text", [
    "__import__('os')",
    r"\input{/etc/passwd}",
    "exec('print(1)')",
    "lambda: 0",
    "h_1.__class__",
    "os.system('true')",
    "",
    "x" * 5000,
])
def test_unsafe_or_empty_strings_are_unparsable(text):
    with pytest.raises(FormulaError):
        parse_formula(text)


# ---------------------------------------------------------------------- fuzz

TOKENS = [
    "h_t", "h_{t-1}", "x_3", r"\hat{y}_t", r"\delta_{t+1}", "W_{hh}", "W", "U", "V", "b", "c",
    "^T", r"^\top", r"^{\mathsf T}", ".T", "^2", "^", "_", "_{", "{", "}", "(", ")", "[", "]",
    r"\cdot", r"\odot", r"\circ", "@", "*", "/", "+", "-", "=", ";", ",", "\n", r"\\",
    r"\frac", r"\frac12", r"\partial", "L", "L_3", "dL", "dW_hh", r"\tanh", r"\sigma",
    r"\mathrm{softmax}", r"\mathrm{ReLU}", r"\operatorname{diag}", "f'", "'", r"\sum",
    r"\sum_{t=1}^{T}", r"\sum_{k=1}^{t}", r"\prod_{j=k+1}^{t}", "sum_t", "1", "2", "0.5",
    r"\left(", r"\right)", r"\mathrm{", r"\input", r"\def", "__import__", "os", "'os'",
    "exec", "$", "%", "&", "~", "\\", " ", "T", "t", "k", "1e9", "\x00", "é",
    # issue 13's notation: fonts, d2l names, derivatives on the right, powers, nabla,
    # gate superscripts, let definitions, a declared mean, Jacobians
    r"\mathbf{W}", r"_\textrm{hh}", r"_{\text{hh}}", r"\boldsymbol{h}", r"\bm", r"\vec",
    r"\mathbf", r"\textrm{", r"\mathcal{L}", "W_hx", "W_qh", "b_q", r"\nabla", r"\nabla_W",
    r"\nabla_{W_{hh}}", r"\nabla_{", "let", "let dz_t", "let g", "dz_t", "^k", "^{t-k}",
    "^{T-i+1}", "^3", "^{-1}", "^{(f)}", "^f", r"\delta^{f}_t", r"\delta^{(i)}", r"\frac{1}{T}",
    "L =", r"\frac{\partial h_t}{\partial h_{t-1}}", r"\frac{\partial L}{\partial h_t}",
    r"\partial h_k", r"\partial c_t", "dh_t", "dL/dh_{t+1}", r"\prod_{k=j+1}^{t}", "h_j",
]

SEED_TEXTS = [
    r"\frac{\partial L_3}{\partial V} = - (\mathrm{y_3 - \hat{y_3}}) \mathrm{h_3} \mathrm{V}",
    r"\delta_t = V^T e_t + W^\top (\delta_{t+1} \odot (1 - h_{t+1}^2)); "
    r"\frac{\partial L}{\partial W} = \sum_{t=1}^{T} \delta_t h_{t-1}^T",
    "dL/dW_hh = sum_t (delta_t * (1 - h_t^2)) @ h_{t-1}.T",
    r"\frac{\partial L}{\partial \mathbf{W}_\textrm{hx}} = \sum_{t=1}^{T} "
    r"\frac{\partial L}{\partial \boldsymbol{h}_t} \mathbf{x}_t^\top",
    r"\prod_{k=j+1}^{t} \frac{\partial h_k}{\partial h_{k-1}} = \prod_{k=j+1}^{t} "
    r"\operatorname{diag}(1 - h_k^2) W_{hh}",
    r"L = \frac{1}{T}\sum_{t=1}^{T} L_t; let dz_t = \delta^{(f)}_t \odot f_t; "
    r"\nabla_{W_{hf}} L = \frac{1}{T} \sum_k (W^T)^{t-k} dz_k h_{k-1}^T",
]


@contextlib.contextmanager
def no_code_execution():
    """Fail loudly if parsing reaches eval, exec, sympify or parse_expr."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the formula parser must not evaluate user text")

    with mock.patch.object(builtins, "eval", forbidden), \
            mock.patch.object(builtins, "exec", forbidden), \
            mock.patch.object(sympy, "sympify", forbidden), \
            mock.patch("sympy.parsing.sympy_parser.parse_expr", forbidden):
        yield


def parse_or_formula_error(text: str) -> None:
    with no_code_execution():
        try:
            result = parse_formula(text)
        except FormulaError:
            return
    assert isinstance(result, N.Formula)
    nodes = [result.body, result.lhs, *(d.rhs for d in result.definitions)]
    while nodes:  # a finished formula holds formula nodes only (no \partial leftover)
        node = nodes.pop()
        if node is None:
            continue
        assert isinstance(node, N.Node), (text, node)
        nodes += [getattr(node, f.name) for f in dataclasses.fields(node)
                  if not isinstance(getattr(node, f.name), (str, int, N.Time, N.Exponent,
                                                            Fraction, type(None)))]


FUZZ = settings(max_examples=2_500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

parser()  # build the grammar once, outside the patched context


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join))
def test_fuzz_token_soup_spaced(text):
    parse_or_formula_error(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map("".join))
def test_fuzz_token_soup_glued(text):
    parse_or_formula_error(text)


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_fuzz_arbitrary_text(text):
    parse_or_formula_error(text)


@FUZZ
@given(st.sampled_from(SEED_TEXTS), st.integers(0, 200), st.integers(0, 8),
       st.text(alphabet=r"{}()[]_^\'.,;=+-*/@ Tt1hxW", max_size=4))
def test_fuzz_mutated_formulas(text, position, cut, insert):
    position %= len(text) + 1
    parse_or_formula_error(text[:position] + insert + text[position + cut:])
