"""Text, JSON and LaTeX renderings of the composed architectures, against strings and numbers.

Oracles: (1) strings typed here from the definitions of each architecture: a reverse layer's
adjoints run t = 1..T from δ_0 = 0 and its initial state is h_reverse_{T+1}; an encoder's
boundary δ_T is the decoder's initial-state gradient; zero later inputs leave dL/dW_xh its
t = 1 term; a decoder's sums run to T_out; (2) central finite differences of the loss of
the unrolled forward program against the printed recurrence run at a concrete T
(:func:`symrnn.render.recurrence.instantiate`), for every architecture; (3) central
finite differences of one step for the blocks the feedback document prints.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from sympy import MatrixSymbol

from symrnn.checks.evaluate import evaluate, run_forward
from symrnn.cli import cli
from symrnn.engine.derive import derive, derive_recurrence
from symrnn.engine.expr import T_SYMBOL, timed
from symrnn.engine.graph import network, unroll
from symrnn.render.describe import derivation_dict, recurrence_latex, recurrence_text
from symrnn.render.jacobians import Diag
from symrnn.render.latex.architectures import fed_back, head_jacobian
from symrnn.render.latex.document import derivation_to_latex
from symrnn.render.latex.sections import Context
from symrnn.render.printing import Notation, symbol_latex, text
from symrnn.render.recurrence import initial_state_name, instantiate, state_plans
from symrnn.spec import DEFAULT_SPEC

BIDIRECTIONAL = DEFAULT_SPEC.replace(bidirectional=True, num_layers=2, hidden_size=2)
FEEDBACK = DEFAULT_SPEC.replace(topology="one_to_many", feed="feedback")
ZEROS = DEFAULT_SPEC.replace(topology="one_to_many", feed="zeros")
ENCODER_DECODER = DEFAULT_SPEC.replace(topology="encoder_decoder")
TANH_PRIME = "(1 - {0}_{{{1}}} * {0}_{{{1}}})"


def _json(spec, T=None):
    return derivation_dict(derive(spec), T)


# ------------------------------------------------------------ bidirectional


def test_reverse_adjoints_run_forward_in_time_from_delta_0():
    data = _json(BIDIRECTIONAL)
    rec = data["recurrence"]
    assert rec["boundary"]["delta^{h_reverse}_{0}"] == "0"
    assert rec["boundary"]["delta^{h_l1_reverse}_{0}"] == "0"
    assert rec["boundary"]["delta^{h}_{T+1}"] == "0"
    assert "delta^{h_reverse}_{T+1}" not in rec["boundary"]
    assert rec["order"]["delta^{h_reverse}_{t}"] == "t = 1, 2, ..., T"
    assert rec["order"]["delta^{h}_{t}"] == "t = T, T-1, ..., 1"
    top_reverse = rec["adjoint"]["delta^{h_l1_reverse}_{t}"]
    assert top_reverse == ("W_hy_rev.T @ e_{t} + W_hh_l1_reverse.T @ (delta^{h_l1_reverse}_{t-1}"
                           f" * {TANH_PRIME.format('h_l1_reverse', 't-1')})")


def test_reverse_initial_state_gradient_is_at_T_plus_1():
    data = _json(BIDIRECTIONAL, T=2)
    expected = ("W_hh_reverse.T @ (delta^{h_reverse}_{T} * "
                f"{TANH_PRIME.format('h_reverse', 'T')})")
    assert data["gradients"]["h_reverse_{T+1}"] == expected
    assert "h_reverse_0" not in data["gradients"]
    assert data["gradients"]["h_0"].startswith("W_hh.T @ (delta^{h}_{1}")
    unrolled = data["unrolled"]["gradients"]
    assert unrolled["h_reverse_{T+1}"] == expected.replace("{T}", "{2}")
    text_out = recurrence_text(derive(BIDIRECTIONAL).recurrence)
    assert "reverse states t = 1, 2, ..., T" in text_out
    assert "dL/dh_reverse_{T+1} = " in text_out and "dL/dh_reverse_0" not in text_out


def test_cross_layer_term_reaches_both_lower_directions():
    adjoint = _json(BIDIRECTIONAL)["recurrence"]["adjoint"]
    lower = adjoint["delta^{h_reverse}_{t}"]
    assert "W_xh_rev_l1.T @ (delta^{h_l1}_{t}" in lower
    assert "W_xh_rev_l1_reverse.T @ (delta^{h_l1_reverse}_{t}" in lower
    assert "W_hh_reverse.T @ (delta^{h_reverse}_{t-1}" in lower
    assert "W_xh_l1.T @ (delta^{h_l1}_{t}" in adjoint["delta^{h}_{t}"]


def test_many_to_one_reverse_last_step_keeps_its_carry():
    spec = DEFAULT_SPEC.replace(bidirectional=True, topology="many_to_one")
    adjoint = _json(spec)["recurrence"]["adjoint"]
    assert adjoint["delta^{h_reverse}_{T}"] == (
        "W_hy_rev.T @ e_{T} + W_hh_reverse.T @ (delta^{h_reverse}_{T-1} * "
        f"{TANH_PRIME.format('h_reverse', 'T-1')})")
    assert adjoint["delta^{h}_{T}"] == "W_hy.T @ e_{T}"


def test_latex_names_of_the_new_suffixes():
    assert symbol_latex("h_reverse_{t}") == r"\overleftarrow{h}_{t}"
    assert symbol_latex("W_hh_l1_reverse") == r"{\overleftarrow{W}^{(2)}_{hh}}"
    assert symbol_latex("W_hy_rev") == r"W_{\overleftarrow{h}y}"
    assert symbol_latex("W_xh_rev_l1") == r"{W^{(2)}_{\overleftarrow{x}h}}"
    assert symbol_latex("delta^{h_l1_reverse}_{t-1}") == r"\delta^{\overleftarrow{h}^{(2)}}_{t-1}"
    assert symbol_latex("h_dec_{0}") == r"{h^{\mathrm{dec}}_{0}}"
    assert symbol_latex("delta^{c_dec}_{T_out+1}") == \
        r"\delta^{c^{\mathrm{dec}}}_{T_{\mathrm{out}}+1}"
    assert symbol_latex("W_hh_l1") == r"{W^{(2)}_{hh}}" and symbol_latex("W_hh") == "W_{hh}"
    latex_out = recurrence_latex(derive(BIDIRECTIONAL).recurrence)
    assert r"\delta^{\overleftarrow{h}}_{0} &= 0" in latex_out
    assert r"\frac{\partial L}{\partial \overleftarrow{h}_{T+1}}" in latex_out
    assert "_reverse" not in latex_out and "_rev" not in latex_out


# ------------------------------------------------------------ one_to_many


def test_zero_later_inputs_leave_the_first_step_of_the_input_weights():
    data = _json(ZEROS)
    assert data["gradients"]["W_xh"] == f"(delta_{{1}} * {TANH_PRIME.format('h', '1')}) @ x_{{1}}.T"
    assert data["gradients"]["W_hh"].startswith("sum_{t=1}^{T} ")
    assert data["recurrence"]["input"] == {"x_{t} (t >= 2)": "0"}
    latex_out = recurrence_latex(derive(ZEROS).recurrence)
    assert (r"\frac{\partial L}{\partial W_{xh}} &= \left(\delta_{1} \odot \left(\mathbf{1} - "
            r"h_{1} \odot h_{1}\right)\right) x_{1}^{\top}") in latex_out


def test_repeat_and_feedback_inputs():
    repeat = _json(DEFAULT_SPEC.replace(topology="one_to_many", feed="repeat"))
    assert repeat["gradients"]["W_xh"].endswith("@ x_{1}.T")
    assert repeat["gradients"]["W_xh"].startswith("sum_{t=1}^{T} ")
    data = _json(FEEDBACK)
    assert data["recurrence"]["input"] == {"x_{t} (t >= 2)": "yhat_{t-1}"}
    assert data["recurrence"]["output_error"]["e_{t}"] == (
        f"W_xh.T @ (delta_{{t+1}} * {TANH_PRIME.format('h', 't+1')}) + yhat_{{t}} - y_{{t}}")
    assert "x_t = yhat_{t-1}" not in recurrence_text(derive(ZEROS).recurrence)
    assert "x_{t} = yhat_{t-1}" in recurrence_text(derive(FEEDBACK).recurrence)


# ------------------------------------------------------------ encoder_decoder


def test_encoder_boundary_is_the_decoders_initial_state_gradient():
    data = _json(ENCODER_DECODER)
    rec = data["recurrence"]
    decoder_start = f"W_hh_dec.T @ (delta^{{h_dec}}_{{1}} * {TANH_PRIME.format('h_dec', '1')})"
    assert rec["boundary"]["delta^{h}_{T}"] == decoder_start
    assert rec["boundary"]["delta^{h_dec}_{T_out+1}"] == "0"
    assert "delta^{h}_{T+1}" not in rec["boundary"]
    assert rec["adjoint"]["delta^{h}_{t} (t < T)"] == (
        f"W_hh.T @ (delta^{{h}}_{{t+1}} * {TANH_PRIME.format('h', 't+1')})")
    assert rec["context"] == {"h_dec_0": "h_{T}"}
    assert "h_dec_0" not in data["gradients"] and "h_0" in data["gradients"]
    text_out = recurrence_text(derive(ENCODER_DECODER).recurrence)
    assert f"delta^{{h}}_{{T}} = {decoder_start}   (= dL/dh_dec_0" in text_out


def test_decoder_sums_run_to_T_out():
    grads = _json(ENCODER_DECODER)["gradients"]
    assert grads["W_hh_dec"].startswith("sum_{t=1}^{T_out} ")
    assert grads["W_hy"].startswith("sum_{t=1}^{T_out} ")
    assert grads["b_y"] == "sum_{t=1}^{T_out} e_{t}"
    assert grads["W_hh"].startswith("sum_{t=1}^{T} ")
    latex_out = recurrence_latex(derive(ENCODER_DECODER).recurrence)
    assert r"\sum_{t=1}^{T_{\mathrm{out}}}" in latex_out
    lstm = derive_recurrence(ENCODER_DECODER.replace(cell="lstm"))
    assert set(lstm.final) == {"h", "c"}
    assert text(lstm.final["c"]).endswith("* f_dec_{1}")


def test_unrolled_output_names_T_out():
    data = derivation_dict(derive(ENCODER_DECODER), 2)
    assert data["unrolled"]["T_out"] == 2
    assert "T_out" not in derivation_dict(derive(DEFAULT_SPEC), 2)["unrolled"]


def test_plain_specs_get_no_architecture_keys():
    rec = _json(DEFAULT_SPEC)["recurrence"]
    assert set(rec) == {"output_error", "adjoint", "boundary", "loss_steps", "initial_state"}
    assert rec["boundary"] == {"delta_{T+1}": "0"}
    assert "\nadjoint recurrence (t = T, T-1, ..., 1):\n" in \
        recurrence_text(derive(DEFAULT_SPEC).recurrence)


def test_cli_derive_prints_each_architecture():
    runner = CliRunner()
    out = runner.invoke(cli, ["derive", "--bidirectional", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["recurrence"]["boundary"]["delta^{h_reverse}_{0}"] == "0"
    out = runner.invoke(cli, ["derive", "--topology", "encoder_decoder", "--cell", "lstm",
                              "--T", "2"])
    assert out.exit_code == 0 and "unrolled gradients, T = 2, T_out = 2:" in out.output
    assert "delta^{c}_{T} = " in out.output


# ------------------------------------------------------------ against numbers


def _values(program, seed):
    rng = np.random.default_rng(seed)
    defined = {eq.lhs for eq in program.equations}
    env = {}
    for eq in program.equations:
        for sym in eq.rhs.atoms(MatrixSymbol):
            if sym not in defined and sym not in env:
                env[sym] = rng.normal(scale=0.6, size=tuple(int(d) for d in sym.shape))
    return env


def _loss(program, env) -> float:
    env = run_forward(program.equations, dict(env), "numpy")
    return sum(float(env[loss][0, 0]) for loss in program.losses)


def _run_adjoints(definitions: dict, env: dict) -> dict:
    """Evaluate the named adjoints in dependency order; forward values past either end
    (h_{T+1}, h_reverse_0), read only beside a zero adjoint, are taken as zeros."""
    env, pending = dict(env), dict(definitions)
    while pending:
        ready = [s for s, x in pending.items() if not x.atoms(MatrixSymbol) & pending.keys()]
        assert ready, f"circular adjoints: {list(pending)[:3]}"
        for sym in ready:
            expr = pending.pop(sym)
            for atom in expr.atoms(MatrixSymbol) - env.keys():
                env[atom] = np.zeros(tuple(int(d) for d in atom.shape))
            env[sym] = evaluate(expr, env, "numpy")
    return env


def _numeric_gradient(program, env, sym, eps=1e-6):
    out = np.zeros(tuple(int(d) for d in sym.shape))
    for idx in np.ndindex(out.shape):
        values = []
        for sign in (1, -1):
            moved = dict(env)
            moved[sym] = env[sym].copy()
            moved[sym][idx] += sign * eps
            values.append(_loss(program, moved))
        out[idx] = (values[0] - values[1]) / (2 * eps)
    return out


ARCHITECTURES = {
    "bidirectional_2layer": (BIDIRECTIONAL, None),
    "bidirectional_lstm_many_to_one": (DEFAULT_SPEC.replace(
        bidirectional=True, cell="lstm", topology="many_to_one"), None),
    "one_to_many_feedback_sigmoid": (FEEDBACK.replace(head="sigmoid"), None),
    "one_to_many_zeros_gru": (ZEROS.replace(cell="gru", num_layers=2), None),
    "one_to_many_repeat_bidirectional": (DEFAULT_SPEC.replace(
        topology="one_to_many", feed="repeat", bidirectional=True), None),
    "encoder_decoder_elman_T_out_4": (ENCODER_DECODER, 4),
    "encoder_decoder_lstm_T_out_2": (ENCODER_DECODER.replace(cell="lstm"), 2),
    "encoder_decoder_gru_2layer": (ENCODER_DECODER.replace(cell="gru", num_layers=2), None),
}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_printed_recurrence_equals_finite_differences(name):
    """Every gradient as the recurrence prints it (lines, boundaries, first steps, sums to
    T or T_out), run at T = 3, against central differences of the unrolled loss."""
    spec, T_out = ARCHITECTURES[name]
    T = 3
    program = unroll(spec, T, T_out)
    net = network(spec)
    env0 = _values(program, seed=7)
    definitions, gradients = instantiate(derive_recurrence(spec), T, T_out)
    env = _run_adjoints(definitions, run_forward(program.equations, dict(env0), "numpy"))
    targets = dict(program.params)
    targets |= {initial_state_name(net, s): sym for s, sym in program.initial_states.items()}
    assert set(gradients) == set(targets)
    for label, sym in targets.items():
        analytic = evaluate(gradients[label], env, "numpy") if gradients[label] is not None \
            else np.zeros(tuple(int(d) for d in sym.shape))
        np.testing.assert_allclose(analytic, _numeric_gradient(program, env0, sym),
                                   rtol=1e-5, atol=1e-7, err_msg=label)


def test_plans_say_where_each_state_starts():
    lstm = derive_recurrence(ENCODER_DECODER.replace(cell="lstm"))
    plans = state_plans(lstm)
    assert {s: p.role for s, p in plans.items()} == {
        "h": "encoder", "c": "encoder", "h_dec": "decoder", "c_dec": "decoder"}
    assert str(plans["c_dec"].boundary.symbol) == "delta^{c_dec}_{T_out+1}"
    assert plans["c"].boundary.expr == lstm.final["c"]
    reverse = state_plans(derive_recurrence(BIDIRECTIONAL))["h_reverse"]
    assert str(reverse.boundary.symbol) == "delta^{h_reverse}_{0}"


def _matrix(expr, env):
    if isinstance(expr, Diag):
        return np.diag(evaluate(expr.args[0], env, "numpy").ravel())
    return evaluate(expr, env, "numpy")


def _step_jacobian(f, x, eps=1e-6):
    cols = []
    for k in range(x.shape[0]):
        plus, minus = x.copy(), x.copy()
        plus[k, 0] += eps
        minus[k, 0] -= eps
        cols.append((f(plus) - f(minus)) / (2 * eps))
    return np.hstack(cols)


@pytest.mark.parametrize("head", ["identity", "sigmoid"])
def test_feedback_blocks_equal_finite_differences(head):
    """∂L/∂x_{t+1} = (∂h_{t+1}/∂x_{t+1})ᵀ δ_{t+1}, the head Jacobian, and e_t =
    Jᵀ(∂L_t/∂ŷ_t + ∂L/∂x_{t+1}) as the feedback document prints them, on random values."""
    spec = FEEDBACK.replace(head=head)
    c = Context(spec, derive_recurrence(spec), Notation())
    net, t = c.net, T_SYMBOL
    through, local = fed_back(c)
    rng = np.random.default_rng(5)
    step = net.layer_equations(net.layers[0], t + 1, net.previous(t + 1))
    head_eqs = net.head_equations(t)
    symbols = set().union(*(eq.rhs.atoms(MatrixSymbol) for eq in step + head_eqs))
    symbols |= {net.adjoint_symbol("h", t + 1), timed("y", t, net.sizes.O)}
    env = {s: rng.normal(scale=0.7, size=tuple(int(d) for d in s.shape)) for s in symbols}
    env = run_forward(step + head_eqs, env, "numpy")
    x_next, h_next = timed("x", t + 1, net.sizes.D), timed("h", t + 1, net.sizes.H)
    z, yhat = timed("z", t, net.sizes.O), timed("yhat", t, net.sizes.O)

    def h_of(x):
        return run_forward(step, {**env, x_next: x}, "numpy")[h_next]

    def yhat_of(value):
        (eq,) = [eq for eq in head_eqs if eq.lhs == yhat]
        return evaluate(eq.rhs, {**env, z: value}, "numpy")

    delta = env[net.adjoint_symbol("h", t + 1)]
    np.testing.assert_allclose(evaluate(through, env, "numpy"),
                               _step_jacobian(h_of, env[x_next]).T @ delta, rtol=1e-6, atol=1e-9)
    jac = _step_jacobian(yhat_of, env[z])
    np.testing.assert_allclose(_matrix(head_jacobian(net), env).T, jac, rtol=1e-6, atol=1e-9)
    error = evaluate(c.recurrence.output_error[1], env, "numpy")
    pushed = jac.T @ (evaluate(local, env, "numpy") + evaluate(through, env, "numpy"))
    np.testing.assert_allclose(error, pushed, rtol=1e-6, atol=1e-9)


COMPILED = {
    "bidirectional_lstm_torch": (DEFAULT_SPEC.replace(bidirectional=True, cell="lstm",
                                                      layout="torch"), Notation()),
    "bidirectional_3layer_many_to_one_ce": (DEFAULT_SPEC.replace(
        bidirectional=True, num_layers=3, topology="many_to_one", head="softmax",
        loss="cross_entropy"), Notation(aliases=True, hadamard=r"\circ")),
    "one_to_many_zeros_lstm_2layer": (ZEROS.replace(cell="lstm", num_layers=2), Notation()),
    "one_to_many_repeat_bidirectional_gru": (DEFAULT_SPEC.replace(
        topology="one_to_many", feed="repeat", cell="gru", bidirectional=True), Notation()),
    "one_to_many_feedback_gru_v1_symbolic": (FEEDBACK.replace(
        cell="gru_v1", hidden_size="H", input_size="D", output_size="D", bias=False),
        Notation()),
    "encoder_decoder_softmax_ce": (ENCODER_DECODER.replace(head="softmax",
                                                           loss="cross_entropy"),
                                   Notation(aliases=True)),
}


@pytest.mark.parametrize("name", COMPILED)
def test_architecture_documents_compile_without_overfull_boxes(name, tmp_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (run bash scripts/ensure-latex.sh)")
    spec, notation = COMPILED[name]
    tex = tmp_path / "doc.tex"
    tex.write_text(derivation_to_latex(spec, notation))
    result = subprocess.run(["pdflatex", "-halt-on-error", "-interaction=nonstopmode",
                             tex.name], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-2000:]
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log and "Undefined control sequence" not in log
