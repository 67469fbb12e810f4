"""Regime statements: the closed language, proofs, searched counterexamples, the CLI.

Every example statement gets its verdict; a wrong "theorem" is caught by the
cross-check search (a mutation); unparsable text names its column; and a printed
counterexample is re-measured from its seed, family and scale, through the library
and through the ``symrnn regimes`` line it prints, with the same classification.
"""

from __future__ import annotations

import json
import shlex
from fractions import Fraction

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from symrnn.cli import cli
from symrnn.errors import FormulaError, SpecError
from symrnn.regimes import claims
from symrnn.regimes.claim_search import measure_network
from symrnn.regimes.claims import Theorem, check_claim, theorem_for
from symrnn.regimes.network import regime_spec
from symrnn.regimes.statement import parse_statement
from symrnn.regimes.sweep import sweep
from symrnn.spec import Spec

TANH = regime_spec(Spec(), hidden_size=16)


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


# ------------------------------------------------------------------ the language


def test_statements_read_as_one_bound_and_one_regime():
    s = parse_statement("sigma_max(W) < 1/gamma -> vanishing")
    assert (s.premise.quantity, s.premise.op, s.premise.coefficient, s.premise.gamma_power) == \
        ("sigma_max", "<", Fraction(1), -1)
    assert s.conclusion.name == "vanishing"
    assert s.describe(0.25) == "σ_max(W) < 1/γ = 4 ⇒ vanishing"
    # the same condition, written differently; dividing by a positive quantity flips
    for text in ["gamma * sigma_max(W) < 1 -> vanishing", "1/sigma_max(W) > gamma => vanishing",
                 "γ·σ_max(W) < 1 → vanishing".replace("·", "*"),
                 r"\sigma_{max}(W_{hh}) < 1/\gamma implies vanishing"]:
        assert parse_statement(text).describe(1.0) == "σ_max(W) < 1/γ = 1 ⇒ vanishing", text
    assert parse_statement("exploding -> rho(W) >= 1.5").describe(1.0) == \
        "exploding ⇒ ρ(W) ≥ 1.5"


@pytest.mark.parametrize("text, column, words", [
    ("rho(W) < 1 -> vanishng", 15, "did you mean 'vanishing'"),
    ("rho(W) < 1 ->", 14, "ends early"),
    ("rho(Q) < 1 -> vanishing", 5, "expected W"),
    ("rho(W)^2 < 1 -> vanishing", 7, "unexpected '^'"),
    ("rho(W) * sigma_max(W) < 1 -> vanishing", 23, "exactly one of"),
    ("rho(W) < 0 -> vanishing", 8, "positive"),
    ("vanishing -> exploding", 1, "two regimes"),
    ("rho(W) < 1 -> sigma_max(W) < 2", 1, "two conditions"),
    ("rho(W) < 1 -> vanishing extra", 25, "expected the end"),
    ("__import__('os').system('true')", 1, "unexpected '__import__'"),
])
def test_unparsable_statement_names_the_column(text, column, words):
    with pytest.raises(FormulaError) as info:
        parse_statement(text)
    assert info.value.column == column, str(info.value)
    assert words in str(info.value)


def test_unparsable_statement_exits_2_with_the_column():
    code, out = run("regimes", "claim", "rho(W) < 1 -> vanishng")
    assert code == 2
    assert "at column 15" in out and "Traceback" not in out and len(out.splitlines()) == 1


# ------------------------------------------------------------------ proofs


@pytest.mark.parametrize("text, activation, theorem", [
    ("sigma_max(W) < 1/gamma -> vanishing", "tanh", "pascanu-sufficient"),
    ("sigma_max(W) < 1/gamma -> vanishing", "sigmoid", "pascanu-sufficient"),
    ("sigma_max(W) <= 0.5 -> vanishing", "tanh", "pascanu-sufficient"),
    ("sigma_max(W) < 4 -> vanishing", "sigmoid", "pascanu-sufficient"),
    ("exploding -> sigma_max(W) > 1/gamma", "tanh", "pascanu-necessary"),
    ("exploding -> sigma_max(W) >= 1/gamma", "relu", "pascanu-necessary"),
    ("exploding -> sigma_max(W) > 2", "sigmoid", "pascanu-necessary"),
    ("rho(W) < 1 -> vanishing", "identity", "gelfand-vanishing"),
    ("rho(W) > 1 -> exploding", "identity", "gelfand-exploding"),
    ("exploding -> rho(W) > 1", "identity", "gelfand-exploding"),
    # not theorems: just past the boundary of each
    ("sigma_max(W) <= 1/gamma -> vanishing", "tanh", None),
    ("sigma_max(W) < 1.01/gamma -> vanishing", "tanh", None),
    ("sigma_max(W) < 4 -> vanishing", "tanh", None),
    ("exploding -> sigma_max(W) > 1.01/gamma", "tanh", None),
    ("rho(W) < 1 -> vanishing", "tanh", None),
    ("rho(W) > 1 -> exploding", "tanh", None),
    ("rho(W) >= 1 -> exploding", "identity", None),
    ("vanishing -> sigma_max(W) < 1/gamma", "tanh", None),
])
def test_which_statements_a_theorem_proves(text, activation, theorem):
    found = theorem_for(text, TANH.replace(activation=activation))
    assert (None if found is None else found.name) == theorem


def test_no_theorem_for_a_gated_cell():
    lstm = regime_spec(Spec(cell="lstm"), hidden_size=8)
    assert theorem_for("sigma_max(W) < 1/gamma -> vanishing", lstm) is None


# -------------------------------------------------------- verdicts on the examples


def test_pascanu_sufficient_condition_is_proved_and_cross_checked():
    verdict = check_claim("sigma_max(W) < 1/gamma -> vanishing")
    assert verdict.status == "proved" and verdict.ok
    text = verdict.to_text()
    assert "proved (sufficient condition, Pascanu, Mikolov, Bengio 2013, §2.1)" in text
    assert verdict.search.premise_held > 0 and verdict.counterexample is None
    assert verdict.search.conclusion_held == verdict.search.premise_held


def test_necessary_condition_for_exploding_is_proved():
    verdict = check_claim("exploding -> sigma_max(W) > 1/gamma", Spec(activation="sigmoid"))
    assert verdict.status == "proved", verdict.to_text()
    assert "necessary condition" in verdict.to_text() and "1/γ = 4" in verdict.reading
    assert verdict.search.premise_held > 0  # the cross-check saw exploding networks


def test_rho_below_one_for_tanh_is_supported_not_proved():
    verdict = check_claim("rho(W) < 1 -> vanishing")
    assert verdict.status == "supported" and verdict.theorem is None
    assert "supported by the search, not proved" in verdict.to_text()
    linear = check_claim("rho(W) < 1 -> vanishing", Spec(activation="identity"))
    assert linear.status == "proved" and "Gelfand" in linear.to_text()


def test_rho_above_one_implies_exploding_is_refuted_by_a_saturating_tanh_network():
    verdict = check_claim("rho(W) > 1 -> exploding", families=["saturating"])
    assert verdict.status == "refuted" and not verdict.ok
    cx = verdict.counterexample
    assert cx.family == "saturating" and cx.input_scale == 10.0
    assert cx.rho > 1 and cx.regime == "vanishing" and cx.measured_rate < -0.02
    text = verdict.to_text()
    for part in ["counterexample:", f"seed {cx.seed}", "family saturating",
                 f"radius (scale) {cx.radius!r}", "‖∂L/∂h_0‖", "vanishing", "reproduce"]:
        assert part in text, part


def test_first_counterexample_over_every_family():
    verdict = check_claim("rho(W) > 1 -> exploding")
    assert verdict.status == "refuted"
    assert verdict.counterexample.rho > 1 and verdict.counterexample.regime == "vanishing"


def test_a_wrong_theorem_is_caught_by_the_cross_check(monkeypatch):
    """Mutation: register a bogus theorem 'ρ(W) > 1 ⇒ exploding' for tanh; the search behind
    every proof finds a counterexample and the verdict is 'inconsistent', not 'proved'."""
    bogus = Theorem("bogus", "nobody", "trust me",
                    lambda s, g: s.bound.quantity == "rho" and s.regime.name == "exploding")
    monkeypatch.setattr(claims, "THEOREMS", (bogus, *claims.THEOREMS))
    verdict = check_claim("rho(W) > 1 -> exploding")
    assert verdict.theorem is bogus
    assert verdict.status == "inconsistent" and not verdict.ok
    assert "INCONSISTENT with the theorem" in verdict.to_text()


def test_a_gated_cell_is_searched_and_says_what_w_means():
    verdict = check_claim("rho(W) > 1 -> exploding", Spec(cell="gru"), hidden_size=8, T=60)
    assert verdict.theorem is None and verdict.status == "refuted"
    assert "W is every recurrent matrix (W_hr, W_hu, W_hn)" in verdict.to_text()
    cx = verdict.counterexample
    again = measure_network(Spec(**verdict.spec), cx.family, cx.radius, cx.seed, cx.T)
    assert again == cx


def test_untested_when_no_network_meets_the_premise():
    verdict = check_claim("sigma_max(W) < 1 -> exploding", families=["nonnormal"])
    # a non-normal W has σ_max ≥ its shear 2: the premise never holds
    assert verdict.status == "untested" and verdict.search.premise_held == 0
    assert not verdict.ok


# ------------------------------------------------------------- reproducibility


def test_counterexample_reproduces_from_seed_family_and_scale():
    verdict = check_claim("rho(W) > 1 -> exploding", families=["saturating"])
    cx = verdict.counterexample
    spec = Spec(**verdict.spec)
    # the library, from the printed numbers
    again = measure_network(spec, cx.family, cx.radius, cx.seed, cx.T)
    assert again == cx
    # the spectral sweep itself, independently of the claims module
    run_ = sweep(spec, cx.matrices, [cx.radius], cx.seed + 1, cx.T,
                 input_scale=cx.input_scale)[cx.seed]
    assert run_.row.measured_regime == cx.regime
    assert run_.analysis.rho == cx.rho and run_.row.measured_rate == cx.measured_rate


def test_printed_regimes_command_gives_the_same_classification(tmp_path):
    code, out = run("regimes", "claim", "rho(W) > 1 -> exploding", "--families", "saturating",
                    "--json")
    assert code == 1, out
    cx = json.loads(out)["counterexample"]
    argv = shlex.split(cx["reproduce"])
    assert argv[:2] == ["symrnn", "regimes"]
    rows_file = tmp_path / "rows.json"
    result = CliRunner().invoke(cli, [*argv[1:], "--json", str(rows_file)])
    assert result.exit_code == 0, result.output
    row = json.loads(rows_file.read_text())["rows"][cx["seed"]]
    assert row["seed"] == cx["seed"] and row["radius"] == cx["radius"]
    assert row["measured_regime"] == cx["regime"] == "vanishing"
    assert row["measured_rate"] == cx["measured_rate"] and row["rho"] == cx["rho"]


# ---------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("text, code, status", [
    ("sigma_max(W) < 1/gamma -> vanishing", 0, "PROVED"),
    ("exploding -> sigma_max(W) > 1/gamma", 0, "PROVED"),
    ("rho(W) > 1 -> exploding", 1, "REFUTED"),
])
def test_cli_exit_codes(text, code, status):
    got, out = run("regimes", "claim", text, "--T", "60")
    assert got == code, out
    assert f"{text}: {status}" in out


def test_cli_json_and_options():
    code, out = run("regimes", "claim", "rho(W) < 1 -> vanishing", "--activation", "identity",
                    "--json", "--seeds", "1", "--T", "50")
    assert code == 0, out
    data = json.loads(out)
    assert data["status"] == "proved" and data["proof"]["theorem"] == "gelfand-vanishing"
    assert data["T"] == 50 and data["seeds"] == 1 and data["spec"]["activation"] == "identity"
    code, out = run("regimes", "claim", "rho(W) < 1 -> vanishing", "--families", "saturatin")
    assert code == 2 and "did you mean 'saturating'" in out
    code, out = run("regimes", "claim", "rho(W) < 1 -> vanishing", "--seeds", "5000")
    assert code == 2 and "--max-seeds" in out


def test_regimes_without_subcommand_still_sweeps():
    code, out = run("regimes", "--T", "10", "--seeds", "1", "--radii", "0.9")
    assert code == 0 and "measured regime" in out
    code, out = run("regimes", "clam")
    assert code == 2 and "no such command 'clam'" in out


def test_search_families_rejects_unknown_names():
    with pytest.raises(SpecError, match="unknown search family"):
        check_claim("rho(W) > 1 -> exploding", families=["gausian"])


# ------------------------------------------------------------------ grammar fuzz

_PIECES = ["rho(W)", "sigma_max(W)", "gamma", "1", "0.5", "4", "*", "/", "(", ")", "<", "<=",
           ">", ">=", "->", "vanishing", "exploding", " ", "W", "_", "^", "x"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=12).map("".join) | st.text(max_size=40))
def test_grammar_fuzz_parses_or_raises_formula_error(text):
    try:
        statement = parse_statement(text)
    except FormulaError as err:
        assert err.column is None or 1 <= err.column <= len(text) + 1
        return
    assert statement.bound.threshold(1.0) > 0
    assert statement.regime.name in ("vanishing", "exploding")
