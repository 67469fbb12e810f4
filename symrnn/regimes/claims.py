"""Check a regime statement: by proof where a theorem applies, else by searching networks.

A statement (:mod:`symrnn.regimes.statement`) links a condition on W and a regime:
``sigma_max(W) < 1/gamma -> vanishing``.  Notation as in :mod:`symrnn.regimes.spectrum`:
h_t = f(W h_{t-1} + W_xh x_t + b_h), J_t = ∂h_t/∂h_{t-1} = diag(f'(a_t)) W,
γ = sup |f'| (1 for tanh, 1/4 for sigmoid).  *Vanishing*: ‖∂h_t/∂h_k‖ → 0
exponentially in t − k; *exploding*: it grows exponentially.

1. **Proof.**  :data:`THEOREMS` lists what is proved once and for all, each with the
   statements it decides:

   * Pascanu, Mikolov, Bengio 2013, §2.1: ‖J_t‖₂ ≤ γ σ_max, so
     ‖∂h_t/∂h_k‖₂ ≤ (γ σ_max)^{t−k}.  A condition that forces σ_max < 1/γ implies
     vanishing (a *sufficient* condition); exploding implies σ_max > 1/γ (a
     *necessary* condition: with γσ_max ≤ 1 the product stays ≤ 1).
   * For a linear RNN (f the identity) ∂h_t/∂h_k = W^{t−k}, and Gelfand's formula
     ρ = lim ‖W^n‖^{1/n} decides both ways: vanishing ⇔ ρ < 1, exploding ⇔ ρ > 1.

2. **Search.**  Otherwise :func:`~symrnn.regimes.claim_search.search` measures
   networks from the weight families (orthogonal, gaussian, nonnormal, saturating)
   at radii around the statement's threshold, exactly as ``symrnn regimes`` does,
   and returns the first counterexample: family, radius (the scale), seed, the
   measured norms and classification, and the ``symrnn regimes`` line that
   re-measures it.

Statuses: ``proved``; ``refuted`` (a counterexample); ``supported`` (no
counterexample, and some networks met the premise: evidence, not proof);
``untested`` (no network met the premise).  A proved statement is cross-checked
by the same search; a counterexample to it would be a bug, reported as
``inconsistent``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from symrnn.engine.graph import network
from symrnn.ops import elementwise
from symrnn.regimes.claim_search import (
    CLAIM_SEEDS,
    CLAIM_T,
    Network,
    Search,
    search,
    search_families,
)
from symrnn.regimes.gated import cell_spec
from symrnn.regimes.network import kernel, regime_spec, spectral
from symrnn.regimes.statement import Bound, Regime, Statement, parse_statement
from symrnn.regimes.sweep import ATOL, Backend
from symrnn.spec import DEFAULT_SPEC, Spec

__all__ = ["CLAIM_HIDDEN", "THEOREMS", "Theorem", "ClaimVerdict", "check_claim", "theorem_for"]

CLAIM_HIDDEN = 16
"""H of the searched networks unless the spec names one (small: the search is many runs)."""


# ------------------------------------------------------------------- theorems


def _forces(bound: Bound, gamma: Fraction, below: bool, limit: Fraction) -> bool:
    """The condition forces its quantity strictly below (or above) ``limit``."""
    t = bound.coefficient * gamma ** bound.gamma_power
    if below:
        return bound.upper and (t <= limit if bound.op == "<" else t < limit)
    return not bound.upper and (t >= limit if bound.op == ">" else t > limit)


def _follows(bound: Bound, gamma: Fraction, below: bool, limit: Fraction) -> bool:
    """The condition follows from its quantity being strictly below (above) ``limit``."""
    t = bound.coefficient * gamma ** bound.gamma_power
    return bound.upper and t >= limit if below else not bound.upper and t <= limit


def _shape(s: Statement, quantity: str, regime: str, regime_first: bool) -> bool:
    bound = s.bound
    return (bound.quantity == quantity and s.regime.name == regime
            and isinstance(s.premise, Regime) == regime_first)


@dataclass(frozen=True)
class Theorem:
    name: str
    citation: str
    argument: str
    decides: Callable[[Statement, Fraction], bool]
    linear_only: bool = False


_PASCANU_BOUND = ("∂h_t/∂h_k = ∏_{i=k+1}^{t} diag(f'(a_i)) W and ‖diag(f'(a_i))‖₂ ≤ γ, so "
                  "‖∂h_t/∂h_k‖₂ ≤ (γ·σ_max(W))^{t−k} for every input sequence")
_GELFAND = ("f is the identity, so ∂h_t/∂h_k = W^{t−k}, and Gelfand's formula "
            "ρ(W) = lim_n ‖W^n‖^{1/n} makes ‖W^n‖ shrink exponentially exactly when ρ(W) < 1 "
            "and grow exponentially exactly when ρ(W) > 1")

THEOREMS = (
    Theorem("pascanu-sufficient", "sufficient condition, Pascanu, Mikolov, Bengio 2013, §2.1",
            _PASCANU_BOUND + "; the premise gives γ·σ_max(W) < 1, so the product vanishes",
            lambda s, g: _shape(s, "sigma_max", "vanishing", False)
            and _forces(s.premise, g, True, 1 / g)),
    Theorem("pascanu-necessary", "necessary condition, Pascanu, Mikolov, Bengio 2013, §2.1",
            _PASCANU_BOUND + "; with γ·σ_max(W) ≤ 1 it stays ≤ 1 and cannot explode, so "
            "exploding needs σ_max(W) > 1/γ, which gives the conclusion",
            lambda s, g: _shape(s, "sigma_max", "exploding", True)
            and _follows(s.conclusion, g, False, 1 / g)),
    Theorem("gelfand-vanishing", "a linear RNN: Gelfand's spectral-radius formula", _GELFAND,
            lambda s, g: (_shape(s, "rho", "vanishing", False)
                          and _forces(s.premise, g, True, Fraction(1)))
            or (_shape(s, "rho", "vanishing", True)
                and _follows(s.conclusion, g, True, Fraction(1))), linear_only=True),
    Theorem("gelfand-exploding", "a linear RNN: Gelfand's spectral-radius formula", _GELFAND,
            lambda s, g: (_shape(s, "rho", "exploding", False)
                          and _forces(s.premise, g, False, Fraction(1)))
            or (_shape(s, "rho", "exploding", True)
                and _follows(s.conclusion, g, False, Fraction(1))), linear_only=True),
)


def _gamma(spec: Spec) -> Fraction:
    """γ = sup |f'| of the spec's activation, exactly (1, 1/4)."""
    return Fraction(str(elementwise(spec.activation).gamma))


def theorem_for(statement: str | Statement, spec: Spec) -> Theorem | None:
    """The theorem of :data:`THEOREMS` that proves ``statement`` for ``spec``'s cell, if any."""
    statement = parse_statement(statement) if isinstance(statement, str) else statement
    gamma = _gamma(spec)
    if not spectral(spec):
        return None  # a gated or stacked state Jacobian is not diag(f') W
    linear = spec.activation == "identity"
    return next((t for t in THEOREMS if (linear or not t.linear_only)
                 and t.decides(statement, gamma)), None)


# ------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class ClaimVerdict:
    statement: str
    reading: str
    """The statement with γ and the thresholds filled in."""
    status: str
    """proved, supported, refuted, untested or inconsistent (module docstring)."""
    spec: dict
    gamma: float
    theorem: Theorem | None = None
    search: Search | None = None
    T: int = CLAIM_T
    seeds: int = CLAIM_SEEDS
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in ("proved", "supported")

    @property
    def counterexample(self) -> Network | None:
        return None if self.search is None else self.search.counterexample

    def to_dict(self) -> dict:
        s = self.search
        return {
            "statement": self.statement, "reading": self.reading, "status": self.status,
            "spec": self.spec, "gamma": self.gamma, "T": self.T, "seeds": self.seeds,
            "proof": None if self.theorem is None else {
                "theorem": self.theorem.name, "citation": self.theorem.citation,
                "argument": self.theorem.argument},
            "search": None if s is None else {
                "searched": s.searched, "premise_held": s.premise_held,
                "conclusion_held": s.conclusion_held, "radii": list(s.radii),
                "families": [f.describe() for f in search_families(s.families)]},
            "counterexample": None if self.counterexample is None
            else self.counterexample.to_dict(),
            "notes": list(self.notes),
        }

    def to_text(self) -> str:
        spec = self.spec
        lines = [f"{self.statement}: {self.status.upper()} ({spec['cell']} {spec['activation']}, "
                 f"γ = {self.gamma:g})", f"  reading: {self.reading}"]
        if self.theorem is not None:
            lines.append(f"  proved ({self.theorem.citation}): {self.theorem.argument}.")
        else:
            lines.append("  no theorem applies; searched weight families for a counterexample")
        if self.counterexample is not None:
            head = "counterexample" if self.theorem is None else \
                "INCONSISTENT with the theorem (a bug, please report): counterexample"
            lines.append(f"  {head}:")
            lines += [f"    {line}" for line in self.counterexample.text().splitlines()]
        if self.search is not None:
            check = "cross-check: " if self.theorem is not None else ""
            lines.append(f"  {check}{self.search.text()}")
        if self.status == "supported":
            lines.append("  supported by the search, not proved")
        if self.status == "untested":
            lines.append("  untested: no searched network met the premise")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _status(theorem: Theorem | None, found: Search | None) -> str:
    if found is not None and found.counterexample is not None:
        return "inconsistent" if theorem is not None else "refuted"
    if theorem is not None:
        return "proved"
    return "supported" if found is not None and found.premise_held else "untested"


def check_claim(statement: str | Statement, spec: Spec | None = None, *, T: int = CLAIM_T,  # noqa: N803
                seeds: int = CLAIM_SEEDS, hidden_size: int | None = None,
                cross_check: bool = True, families=None,
                backend: Backend = kernel) -> ClaimVerdict:
    """Prove or search ``statement`` for ``spec``'s cell (module docstring).

    The networks are ``spec`` made a regime spec (many_to_one) with ``hidden_size``
    (default :data:`CLAIM_HIDDEN`), measured over ``T`` steps, ``seeds`` seeds per
    family and radius.  ``cross_check=False`` skips the search behind a proof.
    """
    parsed = parse_statement(statement) if isinstance(statement, str) else statement
    base = DEFAULT_SPEC if spec is None else spec
    rspec = regime_spec(base, hidden_size=hidden_size or CLAIM_HIDDEN)
    if not spectral(rspec):
        rspec = cell_spec(rspec, rspec.cell, rspec.hidden_size)
    gamma = _gamma(rspec)
    theorem = theorem_for(parsed, rspec)
    found = None
    if theorem is None or cross_check:
        found = search(parsed, rspec, T=T, seeds=seeds, families=families, backend=backend)
    return ClaimVerdict(parsed.source, parsed.describe(float(gamma)), _status(theorem, found),
                        rspec.to_dict(), float(gamma), theorem, found, T, seeds,
                        _notes(rspec, found))


def _notes(spec: Spec, found: Search | None) -> tuple[str, ...]:
    notes = []
    if found is not None:
        notes.append(f"a network is vanishing or exploding when its fitted rate of "
                     f"log‖∂L/∂h_k‖ is below -{ATOL:g} or above {ATOL:g} per step, or it "
                     "overflows (as symrnn regimes measures it)")
    if not spectral(spec):
        names = [p.name for p in network(spec).param_defs if p.shape == ("H", "H")]
        notes.append(f"W is every recurrent matrix ({', '.join(names)}), each drawn at the "
                     "radius; ρ(W) and σ_max(W) are the largest over them; no theorem is "
                     "used, the state Jacobian is not diag(f')W")
    return tuple(notes)
