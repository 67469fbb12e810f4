"""Gradient regimes for every cell: does gating fix vanishing gradients?  Measured.

For a cell with states s_t (h_t; and c_t for LSTM, n = |states|·H values) the step
Jacobian J_t = ∂s_t/∂s_{t-1} is a block matrix.  LSTM's c-block is exactly diag(f_t)
(its gates read h_{t-1} only); a GRU's h-block is diag(u_t) plus the terms through
r, u and n.  For the many_to_one loss (at t = T only) and a lag n = T - k,

    ∂L/∂s_k = J_{k+1}ᵀ ⋯ J_Tᵀ ∂L/∂s_T,

and ‖∂L/∂h_k‖ (the h-block, as the generated code's ``delta`` holds it) changes by a
rate r per step of lag.  Per seed, over the lags n ≥ :data:`FIT_SKIP`·T (after the fast
modes have died out):

* measured: the least-squares slope of log‖∂L/∂h_{T-n}‖ on n, ∂L/∂h from the generated
  backward code (``loss_and_grad``), up to the first non-finite or exactly zero value (-inf
  when it reaches exactly 0 with no decay fitted before it);
* predicted (Jacobian): the top Lyapunov exponent of the adjoint product, a random unit
  vector pushed through J_Tᵀ, J_{T-1}ᵀ, … and renormalised, its mean log growth; J_t from
  the cell's own equations along the forward trajectory (:mod:`symrnn.regimes.stepper`),
  not from the generated code.  For Elman it estimates the same exponent as the spectral
  sweep's prediction (which pushes a basis forward, J_1, J_2, …; the two agree to the
  finite-T scatter);
* bound: the mean of log‖J_t‖₂ (‖∏ J‖ ≤ ∏ ‖J‖, Pascanu's bound along the trajectory);
* gate path: for a cell with a carry gate (forget f, update u), the decay of the carry
  alone, max_j mean_t log gate_{t,j} (the slowest unit of ∏_t diag(gate_t)); E[gate] is
  the mean gate value; 'at rest' is log gate at s = 0, x = 0, i.e. log σ(b) from the bias
  alone (b = 0, 1, 3: -0.693, -0.313, -0.049).

A row reports the medians over seeds.  Verdicts: a prediction is ``confirmed`` when
|measured - predicted| ≤ RTOL·|predicted| + ATOL (the sweep's tolerances) and the
measured rate respects the bound (≤ bound + ATOL), ``refuted`` otherwise, ``inconclusive``
when a number is not finite; a product of Jacobians that becomes exactly 0 (every unit
saturated in float64) predicts rate -inf, confirmed by any measured vanishing.  Regimes:
a rate below -ATOL is vanishing, above +ATOL exploding (an overflow is exploding too),
else stable.  The claim "gating fixes vanishing" is checked per row against the reference
row (the first, Elman tanh):
``confirmed`` when the row is stable while the reference vanishes, ``partly`` when it
still vanishes but more slowly (by more than RTOL·|reference| + ATOL per step, the
tolerance of a prediction), ``refuted`` when it decays as fast or faster, or explodes.

All cells share H, the inputs (x_t ~ N(0, s²)), the targets and the weight scale: every
recurrent matrix (W_hh, or W_h{g} for each gate g) is drawn from the family with spectral
radius ``scale``; input weights N(0, 1/D), head N(0, 1/H), biases zero except the carry
gate's bias, set as data (:func:`~symrnn.regimes.stepper.with_carry_bias`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from symrnn.engine.graph import network
from symrnn.errors import SpecError
from symrnn.regimes.families import make_recurrent
from symrnn.regimes.measure import fit_rate, log_norms
from symrnn.regimes.network import INPUT_SCALE, kernel, random_sequence, regime_spec
from symrnn.regimes.stepper import CellStep, Trajectory, with_carry_bias
from symrnn.regimes.sweep import ATOL, RTOL, Backend
from symrnn.spec import CELLS, Spec

__all__ = [
    "FIT_SKIP", "COMPARE_CELLS", "CARRY_BIASES", "COMPARE_T", "COMPARE_SEEDS", "COMPARE_SCALE",
    "MAX_T", "Case", "Sample", "CellRow", "CellResult", "cell_spec", "cell_params",
    "predictions", "measure_cell", "run_case", "compare_cells", "cell_sweep", "cases",
    "regime_of", "prediction_verdict", "claim", "cells_json", "work", "memory",
]

FIT_SKIP = 0.1
"""Fraction of the lags skipped before fitting (and before averaging the predictions)."""
COMPARE_CELLS = CELLS  # every cell the spec knows
CARRY_BIASES = (0.0, 1.0, 3.0)
COMPARE_T = 100
COMPARE_SEEDS = 3
COMPARE_SCALE = 1.0
MAX_T = 2000
"""The longest sequence measured (the Jacobians of every step are kept: T·n² values)."""

Progress = Callable[[Iterator], Iterator]


@dataclass(frozen=True)
class Case:
    """One row to measure: a cell, its carry gate's bias (None: none set), a weight scale."""

    cell: str
    carry_bias: float | None
    scale: float


@dataclass(frozen=True)
class Sample:
    """One seed of a case: the measured curve and every rate."""

    seed: int
    log_grad_norms: tuple[float, ...]
    """log‖∂L/∂h_{T-n}‖ for n = 0..T (generated backward code)."""
    measured_rate: float
    fit_start: int
    fit_stop: int
    exploded_at: int | None
    underflow_at: int | None
    """First lag where ∂L/∂h_k is exactly 0 (None: never).  The fit stops there; if the
    lags before it show no decay (fewer than two, or a slope ≥ 0) the rate is -inf."""
    forward_overflow_at: int | None
    """First step t whose state s_t is inf/NaN (None: none)."""
    predicted_rate: float
    bound_rate: float
    gate_rate: float
    gate_mean: float
    rest_rate: float


@dataclass(frozen=True)
class CellRow:
    """One line of the comparison (medians over seeds); the JSON contract."""

    label: str
    cell: str
    gate: str
    """The carry gate ('f', 'u'; '' for none)."""
    carry_bias: float | None
    scale: float
    hidden_size: int
    T: int
    seeds: int
    rest_rate: float
    gate_mean: float
    gate_rate: float
    predicted_rate: float
    bound_rate: float
    measured_rate: float
    measured_min: float
    measured_max: float
    predicted_regime: str
    measured_regime: str
    verdict: str
    """The Jacobian prediction against the measurement."""
    gate_verdict: str
    """The gate-path prediction against the measurement ('' without a carry gate)."""
    claim: str = ""
    """'gating fixes vanishing' for this row against the reference row."""
    detail: str = ""


@dataclass(frozen=True)
class CellResult:
    row: CellRow
    samples: tuple[Sample, ...] = field(repr=False)

    def curve(self) -> np.ndarray:
        """Median over seeds of log‖∂L/∂h_{T-n}‖ - log‖∂L/∂h_T‖ per lag (NaN if any seed is)."""
        logs = np.array([s.log_grad_norms for s in self.samples], dtype=float)
        with np.errstate(invalid="ignore"):
            return np.median(logs - logs[:, :1], axis=0)


def cell_spec(spec: Spec, cell: str, hidden_size: int | None = None) -> Spec:
    """``spec`` with ``cell`` (tanh: the gated cells' only activation) as a regime spec."""
    activation = spec.activation if cell == spec.cell else "tanh"
    return regime_spec(spec.replace(cell=cell, activation=activation), hidden_size=hidden_size)


def cell_params(spec: Spec, family: str, scale: float, rng: np.random.Generator) -> dict:
    """Every parameter of ``spec``'s network, drawn by its shape (module docstring)."""
    net = network(spec)
    H, n_out = spec.hidden_size, spec.output_size
    params = {}
    for p in net.param_defs:
        if p.is_bias:
            params[p.name] = np.zeros(int(net.params[p.name].shape[0]))
        elif p.shape == ("H", "H"):
            params[p.name] = make_recurrent(family, H, scale, rng)
        elif p.shape == ("H", "D"):  # a stacked layer's input is the h below: H columns
            cols = int(net.params[p.name].shape[1])
            params[p.name] = rng.standard_normal((H, cols)) / np.sqrt(cols)
        else:
            params[p.name] = rng.standard_normal((n_out, H)) / np.sqrt(H)
    return params


def _adjoint_growth(jacobians: np.ndarray, seed: int = 0) -> np.ndarray:
    """log growth per step of a random unit vector pushed through J_Tᵀ, J_{T-1}ᵀ, …;
    it stops early at an exactly zero (-inf) or non-finite (NaN) vector."""
    v = np.random.default_rng(seed).standard_normal(jacobians.shape[1])
    v /= np.linalg.norm(v)
    logs = []
    for J in jacobians[::-1]:
        v = J.T @ v
        size = float(np.linalg.norm(v))
        if not (size > 0 and math.isfinite(size)):
            logs.append(-math.inf if size == 0 else math.nan)
            break
        logs.append(math.log(size))
        v /= size
    return np.array(logs)


def _lyapunov(growth: np.ndarray, T: int, skip: int) -> float:
    if growth.size and growth[-1] == -math.inf:
        return -math.inf  # the product is exactly 0: every unit saturated (or off)
    return float(np.mean(growth[skip:])) if growth.size == T and T > skip else math.nan


def _bound(jacobians: np.ndarray) -> float:
    if not np.all(np.isfinite(jacobians)):
        return math.nan
    return float(np.mean(np.log(np.linalg.norm(jacobians, 2, axis=(1, 2)))))


def predictions(traj: Trajectory, rest: dict, skip: int) -> dict[str, float]:
    """The Jacobian, bound and gate-path rates over the steps that set lags ≥ ``skip``."""
    T = traj.jacobians.shape[0]
    window = slice(0, T - skip)  # J_t for t ≤ T - skip sets the slope at lags ≥ skip
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        growth = _adjoint_growth(traj.jacobians)
        gates = [g[window] for g in traj.gates.values()]
        gate_rate = max((float(np.max(np.mean(np.log(g), axis=0))) for g in gates),
                        default=math.nan)
        rest_rate = max((float(np.max(np.log(r))) for r in rest.values()), default=math.nan)
        return {
            "predicted_rate": _lyapunov(growth, T, skip),
            "bound_rate": _bound(traj.jacobians[window]),
            "gate_rate": gate_rate,
            "gate_mean": float(np.mean(gates)) if gates else math.nan,
            "rest_rate": rest_rate,
        }


def measure_cell(module, params: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log‖∂L/∂h_{T-n}‖ for n = 0..T from the generated ``loss_and_grad``."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        _, grads = module.loss_and_grad(params, x, y)
    delta = np.asarray(grads["delta"])[0]  # (T, H): ∂L/∂h_t, t = 1..T
    by_lag = np.vstack([delta[::-1], np.asarray(grads["h_0"])[0][None, :]])
    return log_norms(by_lag)


def _sample(step: CellStep, module, params: dict, x, y, seed: int) -> Sample:
    T = x.shape[1]
    skip = int(FIT_SKIP * T)
    logs = measure_cell(module, params, x, y)
    slope, _, stop = fit_rate(logs, skip)
    zero = np.flatnonzero(logs == -np.inf)
    if stop < len(logs) and logs[stop] == -np.inf and not slope < 0:
        slope = -math.inf  # exactly 0 (units saturated) with no decay fitted before it
    bad = np.flatnonzero(np.isnan(logs) | (logs == np.inf))
    traj = step.run(params, x[0])
    overflow = np.flatnonzero(~np.all(np.isfinite(traj.states), axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = predictions(traj, step.at_rest(params), skip)
    return Sample(seed=seed, log_grad_norms=tuple(float(v) for v in logs), measured_rate=slope,
                  fit_start=skip, fit_stop=stop, exploded_at=int(bad[0]) if bad.size else None,
                  underflow_at=int(zero[0]) if zero.size else None,
                  forward_overflow_at=int(overflow[0]) if overflow.size else None, **rates)


def _label(spec: Spec, step: CellStep, case: Case, scale_in_label: bool) -> str:
    # a plain recurrence (no carry gate) applies the spec's activation: name it
    name = spec.cell if step.carries else f"{spec.cell} {spec.activation}"
    gates = [c for c in step.carries if c.bias is not None]
    if gates and case.carry_bias is not None:
        name += f" {gates[0].bias}={case.carry_bias:g}"
    return name + (f" scale {case.scale:g}" if scale_in_label else "")


def run_case(base: Spec, case: Case, seeds: int, T: int, *, family: str = "orthogonal",
             input_scale: float = INPUT_SCALE, backend: Backend = kernel,
             scale_in_label: bool = False) -> CellResult:
    """Measure and predict one case over ``seeds`` seeds; the row has no claim yet."""
    spec = cell_spec(base, case.cell, base.hidden_size)
    step = CellStep(spec)
    module = backend(spec)
    samples = []
    for seed in range(seeds):
        x, y = random_sequence(spec, T, np.random.default_rng(seed), input_scale=input_scale)
        params = cell_params(spec, family, case.scale, np.random.default_rng((seed, 1)))
        params = with_carry_bias(params, step.carries, case.carry_bias)
        samples.append(_sample(step, module, params, x, y, seed))
    label = _label(spec, step, case, scale_in_label)
    gate = ",".join(c.gate for c in step.carries)
    return CellResult(_row(label, spec, case, gate, T, samples), tuple(samples))


def regime_of(rate: float, exploded: bool = False) -> str:
    if exploded or rate > ATOL:
        return "exploding"
    if rate < -ATOL:
        return "vanishing"
    return "non-finite" if math.isnan(rate) else "stable"


def prediction_verdict(measured: float, predicted: float, bound: float = math.inf) -> str:
    """confirmed / refuted / inconclusive, by the rule in the module docstring."""
    if predicted == -math.inf and not math.isnan(measured):
        return "confirmed" if regime_of(measured) == "vanishing" else "refuted"
    if not (math.isfinite(measured) and math.isfinite(predicted)):
        return "inconclusive"
    close = abs(measured - predicted) <= RTOL * abs(predicted) + ATOL
    return "confirmed" if close and not measured > bound + ATOL else "refuted"


def _median(samples: Sequence[Sample], name: str) -> float:
    values = np.array([getattr(s, name) for s in samples], dtype=float)
    return float(np.median(values)) if not np.all(np.isnan(values)) else math.nan


def _row(label: str, spec: Spec, case: Case, gate: str, T: int,
         samples: Sequence[Sample]) -> CellRow:
    med = {n: _median(samples, n) for n in ("rest_rate", "gate_mean", "gate_rate",
                                            "predicted_rate", "bound_rate", "measured_rate")}
    measured = [s.measured_rate for s in samples]
    exploded = [s.exploded_at for s in samples if s.exploded_at is not None]
    forward = [s.forward_overflow_at for s in samples if s.forward_overflow_at is not None]
    zero = [s.underflow_at for s in samples if s.underflow_at is not None]
    detail = "; ".join(filter(None, [
        zero and f"∂L/∂h is exactly 0 from lag {min(zero)} in {len(zero)}/{len(samples)} seeds",
        exploded and f"∂L/∂h overflows at lag {min(exploded)} in {len(exploded)}/"
                     f"{len(samples)} seeds",
        forward and f"the forward pass overflows at step t={min(forward)} in {len(forward)}/"
                    f"{len(samples)} seeds (nothing to fit)"]))
    return CellRow(
        label=label, cell=spec.cell, gate=gate, carry_bias=case.carry_bias if gate else None,
        scale=case.scale, hidden_size=spec.hidden_size, T=T, seeds=len(samples), **med,
        measured_min=float(np.min(measured)), measured_max=float(np.max(measured)),
        predicted_regime=regime_of(med["predicted_rate"]),
        measured_regime=regime_of(med["measured_rate"], len(exploded) > len(samples) / 2),
        verdict=prediction_verdict(med["measured_rate"], med["predicted_rate"],
                                   med["bound_rate"]),
        gate_verdict=prediction_verdict(med["measured_rate"], med["gate_rate"]) if gate else "",
        detail=detail,
    )


def claim(rate: float, reference: float) -> str:
    """'gating fixes vanishing' for a row's measured rate against the reference's."""
    if math.isnan(rate) or math.isnan(reference) or math.inf in (rate, reference):
        return "inconclusive: a rate is not finite"
    if rate == -math.inf:
        return "refuted: the gradient becomes exactly 0"
    if reference >= -ATOL:
        return "n/a: the reference does not vanish"
    if regime_of(rate) == "stable":
        return "confirmed: stable"
    if regime_of(rate) == "exploding":
        return "refuted: exploding"
    tol = RTOL * abs(reference) + ATOL
    if reference == -math.inf:
        return "partly: a finite decay against a gradient that becomes exactly 0"
    if rate > reference + tol:
        return f"partly: {reference / rate:.3g}x slower decay"
    if rate < reference - tol:
        return f"refuted: {rate / reference:.3g}x faster decay"
    return "refuted: decays as fast"


def cases(base: Spec, cells: Iterable[str], carry_biases: Iterable[float],
          scales: Iterable[float]) -> list[Case]:
    """Every cell × scale, and × carry bias for the cells that have a carry gate."""
    out = []
    biases = tuple(carry_biases)
    for scale in scales:
        for cell in cells:
            carries = CellStep(cell_spec(base, cell, base.hidden_size)).carries
            for bias in (biases if any(c.bias for c in carries) else (None,)):
                out.append(Case(cell, None if bias is None else float(bias), float(scale)))
    return out


def _run(base: Spec, jobs: list[Case], seeds: int, T: int, progress: Progress | None,
         **kw) -> list[CellResult]:
    if T > MAX_T:
        raise SpecError(f"gated regimes measure T ≤ {MAX_T}, got T={T}")
    return [run_case(base, case, seeds, T, **kw)
            for case in (progress(iter(jobs)) if progress else jobs)]


def compare_cells(base: Spec, *, cells: Sequence[str] = COMPARE_CELLS,
                  carry_biases: Sequence[float] = CARRY_BIASES, scale: float = COMPARE_SCALE,
                  seeds: int = COMPARE_SEEDS, T: int = COMPARE_T, family: str = "orthogonal",
                  input_scale: float = INPUT_SCALE, backend: Backend = kernel,
                  progress: Progress | None = None) -> list[CellResult]:
    """Every cell at the same H, inputs and weight scale; claims against the first row."""
    jobs = cases(base, cells, carry_biases, (scale,))
    results = _run(base, jobs, seeds, T, progress, family=family, input_scale=input_scale,
                   backend=backend)
    reference = results[0].row.measured_rate
    return [CellResult(replace_row(r.row, claim=claim(r.row.measured_rate, reference)
                                   if i else "reference"), r.samples)
            for i, r in enumerate(results)]


def cell_sweep(spec: Spec, radii: Sequence[float], *, carry_biases: Sequence[float] = (0.0,),
               seeds: int = COMPARE_SEEDS, T: int = COMPARE_T, family: str = "orthogonal",
               input_scale: float = INPUT_SCALE, backend: Backend = kernel,
               progress: Progress | None = None) -> list[CellResult]:
    """One cell over weight scales (× carry biases): the sweep of a gated cell."""
    jobs = cases(spec, (spec.cell,), carry_biases, radii)
    return _run(spec, jobs, seeds, T, progress, family=family, input_scale=input_scale,
                backend=backend, scale_in_label=True)


def replace_row(row: CellRow, **changes) -> CellRow:
    return CellRow(**{**asdict(row), **changes})


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def cells_json(results: Iterable[CellResult], **meta) -> dict:
    """``{"rows": [...], **meta}``; non-finite floats as null / "inf" / "-inf"."""
    return {**meta, "rows": [{k: _clean(v) for k, v in asdict(r.row).items()}
                             for r in results]}


def _state_size(spec: Spec) -> int:
    return int(spec.hidden_size) * len(network(spec).states)


def work(specs: Iterable[Spec], T: int, runs_per_spec: int) -> float:
    """Floating-point work: per run and step 2n + 1 evaluated columns (~8 n²·(2n+1) for the
    gates' products) and an n×n SVD (~20 n³), n the state size."""
    return float(sum(runs_per_spec * T * 40.0 * _state_size(s) ** 3 for s in specs))


def memory(specs: Iterable[Spec], T: int) -> float:
    """Peak bytes: one run's Jacobians (T·n²) and its evaluated columns (~20·n·(2n+1))."""
    n = max(_state_size(s) for s in specs)
    return 8.0 * (2 * T * n * n + 20 * n * (2 * n + 1))
