"""LaTeX documents of the gated cells (LSTM, GRU, GRU v1): contents, numbers, stability.

Oracles: (1) strings typed here from the cells' definitions (the notes' per-gate names,
torch's stacking order, the LSTM cell-state block diag(f_t), the GRU direct path
diag(u_t)); (2) central finite differences of one forward step for every Jacobian block
the documents print; (3) a second process with another hash seed for stability.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sympy import MatAdd, MatMul, MatrixSymbol, Transpose
from sympy.matrices.expressions.special import Identity

import symrnn.engine.rules as rules
from symrnn.checks.evaluate import evaluate, run_forward
from symrnn.engine.derive import derive
from symrnn.engine.expr import T_SYMBOL, hadamard, timed
from symrnn.engine.graph import network
from symrnn.engine.rules import Rule
from symrnn.errors import SpecError
from symrnn.render.jacobians import (
    Diag,
    coefficient,
    direct_part,
    expand_last_loss,
    expandable,
    step_jacobians,
    within_step_jacobians,
)
from symrnn.render.latex.document import STANDARD_DOCUMENTS, derivation_to_latex
from symrnn.render.latex.rows import equation_rows, tex_width
from symrnn.render.printing import Notation, latex
from symrnn.spec import DEFAULT_SPEC

GATED = ("lstm", "gru", "gru_v1")
FOLDER = Path(__file__).resolve().parent.parent / "derivations"


@pytest.fixture(scope="module")
def docs() -> dict[str, str]:
    return {cell: derivation_to_latex(DEFAULT_SPEC.replace(cell=cell)) for cell in GATED}


def test_every_gated_cell_has_a_standard_document():
    cells = {d.spec.cell for d in STANDARD_DOCUMENTS}
    assert set(GATED) <= cells
    for cell in GATED:
        (doc,) = [d for d in STANDARD_DOCUMENTS if d.name == f"{cell}_mse"]
        assert doc.spec == DEFAULT_SPEC.replace(cell=cell)
        assert (FOLDER / f"{doc.name}.tex").is_file()


LSTM_FORWARD = [
    r"i_{t} &= \sigma\left(W_{hi} h_{t-1} + W_{xi} x_{t} + b_{i}\right)",
    r"f_{t} &= \sigma\left(W_{hf} h_{t-1} + W_{xf} x_{t} + b_{f}\right)",
    r"g_{t} &= \tanh\left(W_{hg} h_{t-1} + W_{xg} x_{t} + b_{g}\right)",
    r"o_{t} &= \sigma\left(W_{ho} h_{t-1} + W_{xo} x_{t} + b_{o}\right)",
    r"c_{t} &= f_{t} \odot c_{t-1} + i_{t} \odot g_{t}",
    r"h_{t} &= o_{t} \odot \tanh\left(c_{t}\right)",
]
GRU_FORWARD = {
    "gru": r"n_{t} &= \tanh\left(W_{xn} x_{t} + b_{n} + r_{t} \odot \left(W_{hn} h_{t-1} "
           r"+ b_{hn}\right)\right)",
    "gru_v1": r"n_{t} &= \tanh\left(W_{hn} \left(r_{t} \odot h_{t-1}\right) + W_{xn} x_{t} "
              r"+ b_{n}\right)",
}


def test_forward_equations_use_the_notes_gate_names(docs):
    for row in LSTM_FORWARD:
        assert row in docs["lstm"]
    for cell, row in GRU_FORWARD.items():
        assert row in docs[cell]
        assert (r"h_{t} &= \left(\mathbf{1} - u_{t}\right) \odot n_{t} + u_{t} \odot h_{t-1}"
                in docs[cell])


def test_torch_table_maps_gates_to_stacked_rows(docs):
    lstm = docs["lstm"]
    assert (r"\texttt{weight\_ih} $12\times 2$ & \texttt{weight\_hh} $12\times 3$ & "
            r"\texttt{bias\_ih} $12\times 1$") in lstm
    for g, rows in zip("ifgo", ["[0:H]", "[H:2H]", "[2H:3H]", "[3H:4H]"], strict=True):
        row = rf"\texttt{{{rows}}} & ${g}_{{t}}$ & $W_{{x{g}}}$ & $W_{{h{g}}}$ & $b_{{{g}}}$"
        assert row in lstm
    assert r"\texttt{bias\_hh} has no parameter here" in lstm
    gru = docs["gru"]
    assert r"\texttt{[2H:3H]} & $n_{t}$ & $W_{xn}$ & $W_{hn}$ & $b_{n}$ & $b_{hn}$" in gru
    assert r"\texttt{[0:H]} & $r_{t}$ & $W_{xr}$ & $W_{hr}$ & $b_{r}$ & $\mathbf{0}$" in gru
    assert "calls the gate $u_t$ here $z_t$" in gru
    torch = derivation_to_latex(DEFAULT_SPEC.replace(cell="lstm", layout="torch"))
    assert r"\texttt{[H:2H]} & $f_{t}$ & $W_{xf}$ & $W_{hf}$ & $b_{xf}$ & $b_{hf}$" in torch


def test_rule_applications_follow_the_engine(docs):
    rec_steps = [s for s in derive(DEFAULT_SPEC.replace(cell="lstm")).recurrence.steps
                 if str(s.target).endswith("_{t}")]
    lstm = docs["lstm"]
    assert r"\section{The derivation of one step, rule by rule}" in lstm
    assert lstm.count(r"\triangleright\ ") == len(rec_steps)
    assert (r"\overline{c}_{t} &= \delta^{c}_{t} + \delta^{h}_{t} \odot o_{t} \odot "
            r"\left(\mathbf{1} - \tanh\left(c_{t}\right) \odot \tanh\left(c_{t}\right)\right)"
            in lstm)
    assert r"\overline{f}_{t} &\mathrel{+}= \overline{c}_{t} \odot c_{t-1}" in lstm
    assert r"\bar A = \bar G \odot \operatorname{sigmoid}'" in lstm


def test_rolled_recurrence_for_every_state(docs):
    lstm = docs["lstm"]
    for row in (r"\delta^{h}_{t} &= W_{hy}^{\top} e_{t} + W_{ho}^{\top}", r"\delta^{c}_{t} &= ",
                r"\delta^{h}_{T+1} &= 0", r"\delta^{c}_{T+1} &= 0",
                r"\frac{\partial L}{\partial c_{0}} &= ", r"\frac{\partial L}{\partial W_{hf}}"):
        assert row in lstm
    assert r"\delta_{t} &= W_{hy}^{\top} e_{t} + \delta_{t+1} \odot u_{t+1}" in docs["gru"]


def test_jacobians_and_the_additive_cell_state_path(docs):
    lstm = docs["lstm"]
    assert (r"\frac{\partial \left(h_{t}, c_{t}\right)}{\partial \left(h_{t-1}, c_{t-1}\right)}"
            in lstm)
    assert (r"\frac{\partial c_{t}}{\partial c_{t-1}} &= \operatorname{diag}\left(f_{t}\right)"
            in lstm)
    assert (r"\prod_{j=t-k+1}^{t} \operatorname{diag}\left(f_{j}\right) = \operatorname{diag}"
            r"\left(f_{t} \odot f_{t-1} \odot \cdots \odot f_{t-k+1}\right)") in lstm
    assert (r"&= \operatorname{diag}\left(f_{t}\right) + \frac{\partial c_{t}}{\partial h_{t-1}}"
            in lstm)
    assert "does not vanish" in lstm and "held fixed" in lstm
    for cell in ("gru", "gru_v1"):
        assert (r"\frac{\partial h_{t}}{\partial h_{t-1}} &= "
                r"\operatorname{diag}\left(u_{t}\right) + ") in docs[cell]
        assert r"\prod_{j=t-k+1}^{t} \operatorname{diag}\left(u_{j}\right)" in docs[cell]
    elman = derivation_to_latex(DEFAULT_SPEC)
    assert "this cell has no direct path" in elman
    assert (r"\frac{\partial h_{t}}{\partial h_{t-1}} &= "
            r"\operatorname{diag}\left(\mathbf{1} - ") in elman


def test_elman_only_sections_are_left_out(docs):
    for doc in docs.values():
        assert r"\section{$\partial L_{3}/\partial W_{hh}$" not in doc
        assert r"\section{The gradient bound and the regimes}" not in doc
        assert r"\section{Truncated BPTT with $(k_1, k_2)$}" in doc


def test_a_wrong_rule_changes_the_gated_document(monkeypatch, docs):
    right = rules.RULES["sigmoid"]

    def wrong(node, g, out):  # σ' taken as σ instead of σ(1 − σ)
        return [(node.arg, hadamard(g, out))]

    monkeypatch.setitem(rules.RULES, "sigmoid", Rule("sigmoid", "wrong", right.latex, wrong))
    doc = derivation_to_latex(DEFAULT_SPEC.replace(cell="lstm"))
    assert doc != docs["lstm"]
    sigmoid_prime = r"\operatorname{diag}\left(f_{t} \odot \left(\mathbf{1} - f_{t}\right)\right)"
    assert sigmoid_prime in docs["lstm"] and sigmoid_prime not in doc


# ------------------------------------------------------------ Jacobians against numbers


def _num(expr, env):
    if isinstance(expr, Diag):
        return np.diag(evaluate(expr.args[0], env, "numpy").ravel())
    if isinstance(expr, MatAdd):
        return sum(_num(a, env) for a in expr.args)
    if isinstance(expr, MatMul):
        coeff, mats = expr.as_coeff_matrices()
        out = float(coeff) * _num(mats[0], env)
        for m in mats[1:]:
            out = out @ _num(m, env)
        return out
    return evaluate(expr, env, "numpy")


def _step(spec, seed):
    net = network(spec)
    rng = np.random.default_rng(seed)
    eqs = net.step_equations(T_SYMBOL, net.state_symbols(T_SYMBOL - 1), head=False)
    env = {}
    for sym in [*net.params.values(), *net.state_symbols(T_SYMBOL - 1).values(),
                timed("x", T_SYMBOL, net.sizes.D)]:
        env[sym] = rng.normal(scale=0.7, size=tuple(int(d) for d in sym.shape))
    return net, eqs, env


def _numeric_block(net, eqs, env, out_sym, in_sym, eps=1e-6):
    cols = []
    for k in range(in_sym.shape[0]):
        vals = []
        for sign in (1, -1):
            env2 = dict(env)
            env2[in_sym] = env[in_sym].copy()
            env2[in_sym][k, 0] += sign * eps
            vals.append(run_forward(eqs, env2, "numpy")[out_sym])
        cols.append((vals[0] - vals[1]) / (2 * eps))
    return np.hstack(cols)


@pytest.mark.parametrize("cell", ["elman", *GATED])
@pytest.mark.parametrize("layout", ["notes", "torch"])
def test_step_jacobians_equal_finite_differences(cell, layout):
    spec = DEFAULT_SPEC.replace(cell=cell, layout=layout)
    net, eqs, env = _step(spec, seed=3)
    env = run_forward(eqs, env, "numpy")
    now, prev = net.state_symbols(T_SYMBOL), net.state_symbols(T_SYMBOL - 1)
    for (s, p), block in step_jacobians(spec).items():
        numeric = _numeric_block(net, eqs, env, now[s], prev[p])
        analytic = np.zeros_like(numeric) if block is None else _num(block, env)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=f"{s},{p}")


def test_within_step_jacobian_of_lstm_equals_finite_differences():
    spec = DEFAULT_SPEC.replace(cell="lstm")
    net, eqs, env = _step(spec, seed=4)
    env = run_forward(eqs, env, "numpy")
    (((s, p), block),) = within_step_jacobians(spec).items()
    assert (s, p) == ("h", "c")
    now = net.state_symbols(T_SYMBOL)
    (h_eq,) = [eq for eq in eqs if eq.lhs == now["h"]]
    numeric = []
    for k in range(3):
        vals = []
        for sign in (1, -1):
            env2 = dict(env)
            env2[now["c"]] = env[now["c"]].copy()
            env2[now["c"]][k, 0] += sign * 1e-6
            vals.append(evaluate(h_eq.rhs, env2, "numpy"))
        numeric.append((vals[0] - vals[1]) / 2e-6)
    np.testing.assert_allclose(_num(block, env), np.hstack(numeric), rtol=1e-6, atol=1e-8)
    assert within_step_jacobians(DEFAULT_SPEC) == {}


def test_direct_parts_are_the_gates():
    f_t = timed("f", T_SYMBOL, 3)
    u_t = timed("u", T_SYMBOL, 3)
    lstm = DEFAULT_SPEC.replace(cell="lstm")
    blocks = step_jacobians(lstm)
    assert blocks[("c", "c")] == Diag(f_t)
    assert direct_part(blocks[("c", "c")], network(lstm).params) == Diag(f_t)
    assert direct_part(blocks[("h", "h")], network(lstm).params) is None
    for cell in ("gru", "gru_v1"):
        spec = DEFAULT_SPEC.replace(cell=cell)
        assert direct_part(step_jacobians(spec)[("h", "h")], network(spec).params) == Diag(u_t)
    elman = step_jacobians(DEFAULT_SPEC)[("h", "h")]
    assert direct_part(elman, network(DEFAULT_SPEC).params) is None


# ------------------------------------------------------------ errors


def test_unsupported_pieces_fail_with_a_clear_message(monkeypatch):
    d = timed("delta", 1, 3)
    assert coefficient(hadamard(d, timed("f", 1, 3)), d) == Diag(timed("f", 1, 3))
    assert coefficient(timed("f", 1, 3), d) is None
    assert coefficient(d, d) == Identity(3)
    with pytest.raises(SpecError, match="cannot read a Jacobian off"):
        coefficient(Transpose(d.T * MatrixSymbol("W", 3, 3)), d)
    assert not expandable(DEFAULT_SPEC.replace(cell="gru")) and expandable(DEFAULT_SPEC)
    with pytest.raises(SpecError, match="needs a one-state cell whose carry is one product"):
        expand_last_loss(DEFAULT_SPEC.replace(cell="lstm"))

    import symrnn.render.latex.gates as gates

    def refuse(spec):
        raise SpecError("no Jacobian for this carry")

    monkeypatch.setattr(gates, "step_jacobians", refuse)
    with pytest.raises(SpecError, match=r"cannot write the LaTeX document of cell 'lstm' "
                                        r"\(jacobian section\): no Jacobian for this carry"):
        derivation_to_latex(DEFAULT_SPEC.replace(cell="lstm"))


# ------------------------------------------------------------ layout on the page


def test_long_sums_are_broken_after_whole_terms():
    spec = DEFAULT_SPEC.replace(cell="lstm")
    carry = derive(spec).recurrence.carry["h"]
    rows = equation_rows(r"\delta^{h}_{t}", carry, latex)
    assert len(rows) > 1 and rows[0].startswith(r"\delta^{h}_{t} &= ")
    assert all(r.startswith(r"&\quad") or r.startswith(r"&\qquad") for r in rows[1:])
    assert all(tex_width(r) <= 40 for r in rows)
    assert equation_rows("a", None, latex) == ["a &= 0"]
    assert tex_width(r"\frac{\partial L}{\partial W}") < tex_width(r"\partial L \partial W")


# ------------------------------------------------------------ stability, compilation


def test_same_spec_same_text_in_another_process(docs):
    code = ("import sys; from symrnn.spec import DEFAULT_SPEC; "
            "from symrnn.render.latex.document import derivation_to_latex; "
            "sys.stdout.write(derivation_to_latex(DEFAULT_SPEC.replace(cell='lstm')))")
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, timeout=120).stdout
        assert out == docs["lstm"]
    assert derivation_to_latex(DEFAULT_SPEC.replace(cell="lstm")) == docs["lstm"]


VARIANTS = {
    "lstm": (DEFAULT_SPEC.replace(cell="lstm", layout="torch", topology="many_to_one",
                                  head="softmax", loss="cross_entropy"), (2, 2)),
    "gru": (DEFAULT_SPEC.replace(cell="gru", hidden_size="H", input_size="D",
                                 output_size="O", bias=False), (2, 2)),
    "gru_v1": (DEFAULT_SPEC.replace(cell="gru_v1", layout="torch"), (2, 2)),
}


@pytest.mark.parametrize("cell", GATED)
def test_variants_compile_without_overfull_boxes(cell, tmp_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (run bash scripts/ensure-latex.sh)")
    spec, tbptt = VARIANTS[cell]
    tex = tmp_path / f"{cell}.tex"
    tex.write_text(derivation_to_latex(spec, Notation(aliases=True, hadamard=r"\circ"),
                                       tbptt=tbptt))
    subprocess.run(["pdflatex", "-halt-on-error", "-interaction=nonstopmode", tex.name],
                   cwd=tmp_path, capture_output=True, check=True, timeout=120)
    log = (tmp_path / f"{cell}.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log


@pytest.mark.parametrize("cell", ["elman", "lstm"])
def test_stacked_documents_name_layers_as_superscripts(cell):
    """Layer 2 of a stack prints as W^{(2)}_{hh}, h^{(2)}_t: no raw _l1 suffix in math."""
    text = derivation_to_latex(DEFAULT_SPEC.replace(cell=cell, num_layers=2))
    math = re.findall(r"\$[^$]*\$", text) + re.findall(r"\\begin\{align\*\}.*?\\end\{align\*\}",
                                                       text, flags=re.S)
    assert math and not any(re.search(r"(?<!\\texttt\{)\b[a-zA-Z]+_l1", m) for m in math)
    assert "^{(2)}" in text
