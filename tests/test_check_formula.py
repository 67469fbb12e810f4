"""The formula checker: the seed notes' formulas, every diagnosis class, outputs, CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import symrnn
from symrnn.cli import cli
from symrnn.engine.rules import RULES, Rule
from symrnn.errors import FormulaError, SymrnnError
from symrnn.formula import SLIPS, check_formula
from symrnn.spec import Spec

SEED_V = r"\frac{\partial L_3}{\partial V} = - (\mathrm{y_3 - \hat{y_3}}) \mathrm{h_3}"
SEED_W = r"\frac{\partial L_3}{\partial V} = - (\mathrm{y_3 - \hat{y_3}}) \mathrm{h_3} \mathrm{V}"
CE = Spec(head="softmax", loss="cross_entropy")
DELTA = r"\delta_t = V^\top e_t + W^\top (\delta_{t+1} \odot (1 - h_{t+1}^2))"


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


# ------------------------------------------------------------- seed notes


def test_seed_dL3_dV_accepted_by_cli():
    code, out = run("check", SEED_V)
    assert code == 0, out
    assert "dL_3/dW_hy: CORRECT" in out
    assert "outer product" in out  # the reading rule is stated


def test_seed_dL3_dW_rejected_by_cli_with_reasons():
    code, out = run("check", SEED_W, "--wrt", "W")
    assert code == 1, out
    assert "dL_3/dW_hh: WRONG" in out
    assert "is not conformable" in out and "(2, 3)" in out  # vector case: the clashing shapes
    scalar = out.split("in the scalar case")[1]
    assert "tanh'(a_t)" in scalar and "missing" in scalar
    assert "recursion through h_2 and h_1 is missing" in scalar
    # the correct three-term BPTT sum is printed
    correct = out.split("correct:")[1].splitlines()[1]
    assert correct.count("@ h_{") == 3
    for k in (2, 1, 0):
        assert f"h_{{{k}}}.T" in correct


def test_seed_dL3_dW_scalar_spec_via_cli():
    code, out = run("check", SEED_W, "--wrt", "W_hh", "--hidden-size", "1",
                    "--input-size", "1", "--output-size", "1", "--json")
    assert code == 1
    verdict = json.loads(out)
    assert verdict["status"] == "wrong"
    assert {"activation_derivative", "local_only"} <= {d["class"] for d in verdict["diagnosis"]}
    assert verdict["counterexample"]["seed"] in verdict["seeds"]


def test_top_level_api_returns_verdict():
    verdict = symrnn.check_formula(SEED_V, symrnn.DEFAULT_SPEC)
    assert verdict.ok and bool(verdict)
    assert verdict.symbolic == "identical"


# ------------------------------------------------------- diagnosis classes


def diagnosed(formula, spec=None, **kw):
    verdict = check_formula(formula, spec, **kw)
    assert not verdict.ok, verdict.to_text()
    assert verdict.counterexample is not None
    return verdict.diagnosis_classes


def test_diagnosis_transpose():
    wrong = r"\delta_t = V^\top e_t + W (\delta_{t+1} \odot (1 - h_{t+1}^2)); " \
            r"\frac{\partial L}{\partial W} = \sum_{t=1}^{T} (\delta_t \odot (1-h_t^2)) h_{t-1}^T"
    assert diagnosed(wrong) == ("transpose",)


def test_diagnosis_sign_flip_in_softmax_cross_entropy_output_error():
    assert check_formula(r"e_t = \hat y_t - y_t; dL/dV = sum_t e_t h_t^T", CE).ok
    assert diagnosed(r"e_t = y_t - \hat y_t; dL/dV = sum_t e_t h_t^T", CE) == ("sign",)


def test_diagnosis_missing_activation_derivative():
    wrong = "delta_t = V.T @ e_t + W.T @ delta_{t+1}; dL/dW_hh = sum_t delta_t @ h_{t-1}.T"
    assert diagnosed(wrong) == ("activation_derivative",)


def test_diagnosis_local_term_only():
    wrong = r"dL/dW_hh = sum_t ((V^T e_t) \odot (1 - h_t^2)) h_{t-1}^T"
    assert diagnosed(wrong) == ("local_only",)


def test_diagnosis_off_by_one():
    wrong = DELTA + r"; dL/dW = \sum_t (\delta_t \odot (1 - h_t^2)) h_t^\top"
    assert diagnosed(wrong) == ("off_by_one",)


def test_diagnosis_constant_factor():
    assert diagnosed(r"dL/dW_hy = \frac{1}{T} \sum_t e_t h_t^T") == ("constant_factor",)
    verdict = check_formula(r"dL/dV = \frac12 \sum_t (\hat y_t - y_t) h_t^T")
    assert "1/2 times" in verdict.diagnosis[0][1]


def test_diagnosis_hadamard_for_matrix_product():
    wrong = (r"\delta_t = V^T e_t + (\operatorname{diag}(1-h_{t+1}^2) \odot W)^T \delta_{t+1};"
             r" dL/dW = \sum_t \operatorname{diag}(1-h_t^2) \delta_t h_{t-1}^T")
    assert diagnosed(wrong) == ("hadamard_matmul",)


def test_diagnosis_sum_range_truncation():
    full = (r"\frac{\partial L}{\partial W} = \sum_{t=1}^{T} \sum_{k=%s}^{t} \left(\left("
            r"\prod_{j=k+1}^{t} W^\top \operatorname{diag}(1 - h_j^2)\right) V^\top e_t "
            r"\odot (1 - h_k^2)\right) h_{k-1}^\top")
    assert check_formula(full % "1").ok
    assert diagnosed(full % "2") == ("sum_range",)
    assert diagnosed("dL/dW_hh = sum_{t=2}^{T} (delta_t * (1 - h_t^2)) @ h_{t-1}.T") == \
        ("sum_range",)


def test_every_diagnosis_class_has_a_test():
    tested = {"transpose", "sign", "activation_derivative", "local_only", "off_by_one",
              "constant_factor", "hadamard_matmul", "sum_range"}
    assert tested == set(SLIPS)


# ---------------------------------------------------------- correct variants


@pytest.mark.parametrize("formula", [
    "dL/dW_hh = sum_t (delta_t * (1 - h_t^2)) @ h_{t-1}.T",
    DELTA + r"; \frac{\partial L}{\partial W_{hh}} = \sum_{t=1}^{T} "
            r"\operatorname{diag}(1-h_t^2) \delta_t h_{t-1}^{\mathsf T}",
    r"\partial L / \partial U = \sum_t (\delta_t \odot f'(a_t)) x_t^T",
    r"dL/db = sum_t delta_t * (1 - tanh(a_t)^2)",
    r"dL/dh_0 = W^T (delta_1 \odot (1 - h_1^2))",
    r"dL/dc = \sum_{t=1}^{T} (\hat{y}_t - y_t)",
])
def test_correct_formulas_accepted(formula):
    verdict = check_formula(formula)
    assert verdict.ok, verdict.to_text()


def test_many_to_one_and_lstm_state_formula():
    m2o = Spec(topology="many_to_one")
    assert check_formula(r"dL/dV = (\hat y_T - y_T) h_T^T", m2o).ok
    assert check_formula(r"dL/dW_hy = sum_t e_t h_t^T", Spec(cell="lstm")).ok


def test_shape_error_names_both_shapes():
    verdict = check_formula(r"dL/dW_hh = sum_t delta_t \odot h_{t-1}^T", scalar_case=False)
    assert not verdict.ok
    assert "(3, 1)" in verdict.shape_error and "(1, 3)" in verdict.shape_error


def test_wrong_result_shape_reported():
    verdict = check_formula("dL/dW_hh = sum_t delta_t", scalar_case=False)
    assert "shape (3, 1)" in verdict.shape_error and "(3, 3)" in verdict.shape_error


def test_tester_catches_an_injected_wrong_rule(monkeypatch):
    """With a wrong tanh rule in the engine, a correct formula no longer matches it."""
    good = "dL/dW_hh = sum_t (delta_t * (1 - h_t^2)) @ h_{t-1}.T"
    assert check_formula(good).ok
    original = RULES["tanh"]
    monkeypatch.setitem(RULES, "tanh", Rule("tanh", "wrong", "wrong",
                                            lambda node, g, out: [(node.arg, g)]))
    assert RULES["tanh"] is not original
    assert not check_formula(good).ok


# ------------------------------------------------------------------ outputs


def test_json_and_latex_outputs():
    code, out = run("check", "dL/dW_hy = sum_t (y_t - yhat_t) @ h_t.T", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["diagnosis"][0]["class"] == "sign"
    assert {"seed", "entry", "formula_value", "true_value", "claimed", "true",
            "instance"} <= set(data["counterexample"])
    code, out = run("check", "dL/dW_hy = sum_t (y_t - yhat_t) @ h_t.T", "--latex")
    assert code == 1
    assert r"\frac{\partial L}{\partial W_{hy}}" in out and r"\item a sign flip" in out


@pytest.mark.parametrize("args", [
    ["check", "__import__('os')"],
    ["check", r"\input{/etc/passwd}"],
    ["check", "dL/dW_hh = (h_t"],
    ["check", "dL/dQ = h_1"],
    ["check", "dL/dW = sum_t delta_t", "--cell", "lstmm"],
    ["check", "h_1 @ h_1.T"],
])
def test_cli_exit_2_without_traceback(args):
    code, out = run(*args)
    assert code == 2, out
    assert "Traceback" not in out


def test_errors_are_formula_errors():
    with pytest.raises(FormulaError, match="free index t"):
        check_formula("dL/dW_hh = delta_t @ h_{t-1}.T")
    with pytest.raises(FormulaError, match="unknown parameter"):
        check_formula("dL/dQ = h_1")
    with pytest.raises(SymrnnError, match="does not exist"):
        check_formula("dL/dW_hh = h_7 @ h_1.T")


def test_gate_biases_are_parameters_not_steps():
    """b_i (LSTM) and b_n (GRU) use letters that are also time indices."""
    lstm = check_formula("dL/db_i = sum_t b_i", Spec(cell="lstm"), scalar_case=False)
    assert lstm.quantity == "dL/db_i" and not lstm.ok
    gru = check_formula("dL/db_n = b_n", Spec(cell="gru"), scalar_case=False)
    assert gru.quantity == "dL/db_n" and not gru.ok


def test_report_section_writes_worked_example(tmp_path):
    from symrnn.formula.report import formula_section

    text = formula_section(Spec(), tmp_path)
    assert "dL_3/dW_hy: CORRECT" in text and "dL_3/dW_hh: WRONG" in text
    assert "recursion through h_2 and h_1" in text
    data = json.loads((tmp_path / "formula_check.json").read_text())
    assert [v["status"] for v in data] == ["correct", "wrong"]
    assert r"\begin{aligned}" in (tmp_path / "formula_check.tex").read_text()


ATOMS = ["h_t", "h_{t-1}", "x_t", r"\hat{y}_t", "y_t", "e_t", r"\delta_t", r"\delta_{t+1}",
         "W", "U", "V", "b", "c", "^T", "^2", r"\odot", "@", "*", "+", "-", "(", ")",
         r"\sum_t", r"\sum_{k=1}^{t}", "h_k", "1", r"\frac12", "f'(a_t)", r"\tanh(a_t)",
         r"\operatorname{diag}(", "T", "/", ";", "="]


@settings(max_examples=150, deadline=None, database=None)
@given(st.sampled_from(["dL/dW_hh = ", "dL/dV = ", "dL_2/dU = ", "dL/db = ", "dL/dh_0 = ",
                        r"\delta_t = V^T e_t; dL/dW = "]),
       st.lists(st.sampled_from(ATOMS), min_size=1, max_size=8).map(" ".join))
def test_checker_fuzz_gives_verdict_or_symrnn_error(lhs, rhs):
    try:
        verdict = check_formula(lhs + rhs, instances=2, scalar_case=False)
    except SymrnnError:
        return
    assert verdict.status in ("correct", "wrong")


def test_activation_derivative_missing_locally_or_at_the_head():
    sig = Spec(activation="sigmoid")
    assert check_formula(r"dL/dW = sum_t (delta_t \odot \sigma'(a_t)) h_{t-1}^T", sig).ok
    verdict = check_formula(r"dL/dW = sum_t delta_t h_{t-1}^T", sig)
    assert verdict.diagnosis_classes == ("activation_derivative",)
    head = Spec(head="sigmoid")
    assert check_formula("dL/db_y = sum_t (yhat_t - y_t) * yhat_t * (1 - yhat_t)", head).ok
    verdict = check_formula("dL/db_y = sum_t (yhat_t - y_t)", head)
    assert verdict.diagnosis_classes == ("activation_derivative",)
    assert "head" in verdict.diagnosis[0][1]


def test_gated_cell_delta_is_the_hidden_state_adjoint():
    lstm = Spec(cell="lstm")
    assert check_formula("dL/db_o = sum_t delta_t * tanh(c_t) * o_t * (1 - o_t)", lstm).ok
    assert not check_formula("dL/db_o = sum_t delta_t * tanh(c_t) * o_t", lstm).ok
