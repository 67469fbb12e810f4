"""The search behind a regime statement: weight families, measured networks, counterexamples.

Networks are drawn from :data:`SEARCH_FAMILIES`: the W families of
:mod:`symrnn.regimes.families` with inputs x_t ~ N(0, 1), and *saturating*:
orthogonal W with inputs x_t ~ N(0, :data:`SATURATING_INPUT_SCALE`²), which pins
tanh units at ±1.  Radii sit around each threshold t of the statement
(t × :data:`RADIUS_FACTORS`), ``seeds`` seeds each.  Every network is measured exactly
as ``symrnn regimes`` measures it: :func:`~symrnn.regimes.sweep.sweep` for a
one-matrix cell; :func:`~symrnn.regimes.gated.run_case` for a gated (or stacked)
cell, where W is every recurrent matrix and ρ(W), σ_max(W) are their largest.  A
network decides a regime only when it is measured vanishing or exploding (a
marginal, transient or non-finite one decides nothing).  :func:`search` returns
the first network, in family and radius order, where the premise holds and the
conclusion fails, with its seed, family, radius, measured norms and the
``symrnn regimes`` line that re-measures it (:meth:`Network.reproduce`,
:func:`measure_network`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from symrnn.engine.graph import network
from symrnn.errors import SpecError, suggest
from symrnn.ops import elementwise
from symrnn.regimes.gated import Case, cell_params, regime_of, run_case
from symrnn.regimes.network import kernel, spectral
from symrnn.regimes.statement import Bound, Regime, Statement
from symrnn.regimes.sweep import Backend, sweep
from symrnn.spec import DEFAULT_SPEC, Spec

__all__ = ["SATURATING_INPUT_SCALE", "SEARCH_FAMILIES", "RADIUS_FACTORS", "CLAIM_T",
           "CLAIM_SEEDS", "SearchFamily", "Network", "Search", "search", "search_radii",
           "search_families", "measure_network"]

SATURATING_INPUT_SCALE = 10.0
RADIUS_FACTORS = (0.25, 0.5, 0.9, 0.99, 1.01, 1.1, 1.5, 2.0, 3.0)
"""Radii searched: each threshold t of the statement times these."""
FALLBACK_RADII = (0.5, 0.9, 1.1, 1.5, 2.0, 3.0)
MAX_RADIUS = 100.0
CLAIM_T = 100
CLAIM_SEEDS = 2


@dataclass(frozen=True)
class SearchFamily:
    name: str
    matrices: str
    """The W family of :data:`~symrnn.regimes.families.FAMILIES`."""
    input_scale: float = 1.0

    def describe(self) -> str:
        inputs = f"inputs x_t ~ N(0, {self.input_scale:g}²)"
        return (self.name + f" ({inputs})" if self.name == self.matrices else
                f"{self.name} ({self.matrices} W, {inputs})")


SEARCH_FAMILIES = (SearchFamily("orthogonal", "orthogonal"), SearchFamily("gaussian", "gaussian"),
                   SearchFamily("nonnormal", "nonnormal"),
                   SearchFamily("saturating", "orthogonal", SATURATING_INPUT_SCALE))


# ------------------------------------------------------------------- networks


@dataclass(frozen=True)
class Network:
    """One searched network and what was measured on it."""

    family: str
    matrices: str
    radius: float
    seed: int
    input_scale: float
    T: int
    rho: float
    sigma_max: float
    gamma: float
    measured_rate: float
    log_norm_last: float
    """log‖∂L/∂h_T‖ (lag 0)."""
    log_norm_first: float
    """log‖∂L/∂h_0‖ (lag T)."""
    regime: str
    """The measured classification (vanishing, exploding, marginal/stable, …)."""
    detail: str = ""
    spec: dict = field(default_factory=dict)
    one_matrix: bool = True
    """Measured by the spectral sweep (one W_hh); False: by the gated cells' table."""

    def reproduce(self) -> str:
        """The ``symrnn regimes`` command whose row of seed ``seed`` is this network."""
        flags = _spec_flags(self.spec)
        biases = "" if self.one_matrix else " --carry-biases 0"
        return (f"symrnn regimes {flags} --family {self.matrices} --radii {self.radius!r} "
                f"--seeds {self.seed + 1} --T {self.T} --input-scale {self.input_scale:g}"
                f"{biases}")

    def to_dict(self) -> dict:
        return {k: _clean(v) for k, v in asdict(self).items()} | {"reproduce": self.reproduce()}

    def _row(self) -> str:
        if self.one_matrix:
            return f"the row of seed {self.seed}"
        if self.seed == 0:
            return "its one row"
        return f"the row's median over seeds 0..{self.seed}; measure_network gives seed {self.seed}"

    def text(self) -> str:
        family = next((f for f in SEARCH_FAMILIES if f.name == self.family), None)
        what = family.describe() if family else self.family
        norms = (f"‖∂L/∂h_T‖ = {_exp(self.log_norm_last)}, ‖∂L/∂h_0‖ = "
                 f"{_exp(self.log_norm_first)} (lag {self.T})")
        return "\n".join([
            f"family {what}, radius (scale) {self.radius!r}, seed {self.seed}, "
            f"H={self.spec.get('hidden_size')}, T={self.T}",
            f"ρ(W) = {self.rho:.6g}, σ_max(W) = {self.sigma_max:.6g}, "
            f"γ·σ_max(W) = {self.gamma * self.sigma_max:.6g}",
            f"{norms}; measured rate {self.measured_rate:+.4g} per step: {self.regime}"
            + (f" ({self.detail})" if self.detail else ""),
            f"reproduce ({self._row()}): {self.reproduce()}",
        ])


def _spec_flags(spec: dict) -> str:
    base = DEFAULT_SPEC.to_dict()
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in spec.items()
             if k in ("cell", "activation", "head", "loss", "input_size", "output_size",
                      "num_layers") and v != base[k]]
    if not spec.get("bias", True):
        flags.append("--no-bias")
    return " ".join([f"--hidden-size {spec.get('hidden_size')}", *flags])


def _exp(log_value: float) -> str:
    if not math.isfinite(log_value):
        return {math.inf: "inf", -math.inf: "0"}.get(log_value, "nan")
    if abs(log_value) < 700:
        return f"{math.exp(log_value):.3g}"
    return f"1e{log_value / math.log(10):.1f}"


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _one_matrix(spec: Spec, family: SearchFamily, radii, seeds: int, T: int,  # noqa: N803
                backend: Backend) -> list[Network]:
    runs = sweep(spec, family.matrices, radii, seeds, T, input_scale=family.input_scale,
                 backend=backend)
    gamma = float(elementwise(spec.activation).gamma)
    logs = [r.measurement.log_grad_norms for r in runs]
    return [Network(family.name, family.matrices, r.row.radius, r.row.seed,
                    family.input_scale, T, r.analysis.rho, r.analysis.sigma_max, gamma,
                    r.row.measured_rate, log[0], log[-1],
                    r.row.measured_regime if r.row.verdict != "inconclusive" else "non-finite",
                    r.row.detail, spec.to_dict())
            for r, log in zip(runs, logs, strict=True)]


def _gated(spec: Spec, family: SearchFamily, radii, seeds: int, T: int,  # noqa: N803
           backend: Backend) -> list[Network]:
    gamma = float(elementwise(spec.activation).gamma)
    out = []
    for radius in radii:
        result = run_case(spec, Case(spec.cell, 0.0, float(radius)), seeds, T,
                          family=family.matrices, input_scale=family.input_scale,
                          backend=backend)
        for s in result.samples:
            params = cell_params(spec, family.matrices, float(radius),
                                 np.random.default_rng((s.seed, 1)))
            rho, sigma = _recurrent_spectrum(spec, params)
            out.append(Network(family.name, family.matrices, float(radius), s.seed,
                               family.input_scale, T, rho, sigma, gamma, s.measured_rate,
                               s.log_grad_norms[0], s.log_grad_norms[-1],
                               regime_of(s.measured_rate, s.exploded_at is not None),
                               "", spec.to_dict(), one_matrix=False))
    return out


def _recurrent_spectrum(spec: Spec, params: dict) -> tuple[float, float]:
    """(max ρ, max σ_max) over the recurrent (H, H) matrices of the cell's definition."""
    square = [np.asarray(params[p.name]) for p in network(spec).param_defs
              if p.shape == ("H", "H")]
    rho = max(float(np.max(np.abs(np.linalg.eigvals(W)))) for W in square)
    return rho, max(float(np.linalg.norm(W, 2)) for W in square)


def search_families(names=None) -> tuple[SearchFamily, ...]:
    """The :data:`SEARCH_FAMILIES` named (all of them for None), in their order."""
    if names is None:
        return SEARCH_FAMILIES
    known = [f.name for f in SEARCH_FAMILIES]
    for name in names:
        if name not in known:
            raise SpecError(f"unknown search family {name!r}{suggest(name, known)} "
                            f"(allowed: {', '.join(known)})")
    return tuple(f for f in SEARCH_FAMILIES if f.name in names)


def measure_network(spec: Spec, family: str, radius: float, seed: int, T: int = CLAIM_T,
                    *, backend: Backend = kernel) -> Network:
    """Re-measure one network from its printed family, radius (scale) and seed."""
    (found,) = search_families([family])
    networks = _measurer(spec)(spec, found, (float(radius),), seed + 1, T, backend)
    return networks[seed]


def _measurer(spec: Spec):
    return _one_matrix if spectral(spec) else _gated


# ------------------------------------------------------------------- search


@dataclass(frozen=True)
class Search:
    """What the search over networks found."""

    searched: int = 0
    premise_held: int = 0
    conclusion_held: int = 0
    counterexample: Network | None = None
    radii: tuple[float, ...] = ()
    families: tuple[str, ...] = ()

    def text(self) -> str:
        undecided = self.premise_held - self.conclusion_held - (self.counterexample is not None)
        return (f"searched {self.searched} networks ({', '.join(self.families)}; radii "
                f"{', '.join(f'{r:g}' for r in self.radii)}): {self.premise_held} met the "
                f"premise, the conclusion held in {self.conclusion_held}"
                + (f", {undecided} decided nothing (marginal or non-finite)" if undecided else ""))


def _holds(atom: Bound | Regime, net: Network) -> bool | None:
    """Whether ``atom`` holds on the network (None: the measurement does not decide)."""
    if isinstance(atom, Bound):
        return atom.holds(net.rho if atom.quantity == "rho" else net.sigma_max, net.gamma)
    if net.regime == atom.name:
        return True
    return False if net.regime in ("vanishing", "exploding") else None


def search_radii(statement: Statement, gamma: float) -> tuple[float, ...]:
    """Radii around the statement's threshold (:data:`RADIUS_FACTORS`)."""
    t = statement.bound.threshold(gamma)
    radii = sorted({round(t * f, 6) for f in RADIUS_FACTORS if 0 < t * f <= MAX_RADIUS})
    return tuple(radii) or FALLBACK_RADII


def search(statement: Statement, spec: Spec, *, T: int = CLAIM_T, seeds: int = CLAIM_SEEDS,  # noqa: N803
           families=None, backend: Backend = kernel) -> Search:
    """Networks of each search family (``families``: names, default all), in order, until
    the first counterexample."""
    gamma = float(elementwise(spec.activation).gamma)
    radii = search_radii(statement, gamma)
    chosen = search_families(families)
    names = tuple(f.name for f in chosen)
    counts = {"searched": 0, "premise_held": 0, "conclusion_held": 0}
    for family in chosen:
        for net in _measurer(spec)(spec, family, radii, seeds, T, backend):
            counts["searched"] += 1
            if not _holds(statement.premise, net):
                continue
            counts["premise_held"] += 1
            conclusion = _holds(statement.conclusion, net)
            if conclusion is False:
                return Search(**counts, counterexample=net, radii=radii, families=names)
            counts["conclusion_held"] += bool(conclusion)
    return Search(**counts, radii=radii, families=names)
