"""Report section: the seed notes' BPTT formulas, checked (a worked example).

The notes (Elman cell, tanh, identity head, least squares) write
∂L_3/∂V = −(y_3 − ŷ_3) h_3, which is right when read as an outer product,
and, under "What is ∂L_3/∂W", ∂L_3/∂V = −(y_3 − ŷ_3) h_3 V, which is not the
gradient with respect to W.  The section checks both on the notes' model with
the report spec's sizes and writes ``formula_check.txt``, ``.json``, ``.tex``.
"""

from __future__ import annotations

import json
from pathlib import Path

from symrnn.formula.check import check_formula
from symrnn.spec import Spec

__all__ = ["SEED_FORMULAS", "formula_section"]

SEED_FORMULAS = (
    (r"\frac{\partial L_3}{\partial V} = - (\mathrm{y_3 - \hat{y_3}}) \mathrm{h_3}", None),
    (r"\frac{\partial L_3}{\partial V} = - (\mathrm{y_3 - \hat{y_3}}) \mathrm{h_3} \mathrm{V}",
     "W"),
)
"""(formula as written in the notes, parameter it is checked against)."""


def notes_spec(spec: Spec) -> Spec:
    """The notes' model with the sizes of ``spec`` (sizes must be concrete)."""
    sizes = {k: getattr(spec, k) for k in ("hidden_size", "input_size", "output_size")}
    if not spec.is_concrete:
        sizes = {"hidden_size": 3, "input_size": 2, "output_size": 2}
    return Spec(cell="elman", activation="tanh", head="identity", loss="mse", **sizes)


def formula_section(spec: Spec, out: Path) -> str:
    model = notes_spec(spec)
    verdicts = [check_formula(text, model, wrt=wrt) for text, wrt in SEED_FORMULAS]
    body = "\n\n".join(v.to_text() for v in verdicts)
    (out / "formula_check.txt").write_text(body + "\n")
    (out / "formula_check.json").write_text(
        json.dumps([v.to_dict() for v in verdicts], indent=2) + "\n")
    (out / "formula_check.tex").write_text("\n\n".join(v.to_latex() for v in verdicts) + "\n")
    intro = ("Worked example: the seed notes' formulas, checked with "
             "`symrnn check` (Elman tanh, identity head, MSE).")
    return "## Checking hand-derived formulas\n\n" + intro + "\n\n```\n" + body + "\n```"
