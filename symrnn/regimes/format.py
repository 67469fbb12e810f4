"""Plain-text tables for regime analyses and sweeps (no computation here).

Rates are log-norm change per step of lag n = T - k; a sweep table has one
line per radius, with rates averaged over seeds (± their standard deviation)
and the verdicts counted.  Numbers have bounded width (``.4f`` below 10⁶,
``.3g`` beyond); inf, −inf and NaN are printed as such, with their count
among the seeds and the reason (``Row.detail``) after the table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from symrnn.regimes.gated import CellResult
from symrnn.regimes.spectrum import MARGINAL_BAND, Analysis
from symrnn.regimes.sweep import ATOL, RTOL, Run

__all__ = ["analysis_text", "sweep_table", "clip_table", "sweep_header", "activation_table",
           "cells_table", "cells_header", "cells_summary"]


def _num(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if not math.isfinite(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}" if abs(x) < 1e6 else f"{x:.3g}"


def analysis_text(a: Analysis) -> str:
    """The spectrum of W_hh, Pascanu's conditions and the predicted regime."""
    eig = sorted(a.eigenvalues, key=abs, reverse=True)[:3]
    lines = [
        f"W_hh: H={len(a.singular_values)}, ρ={_num(a.rho)}, σ_max={_num(a.sigma_max)}, "
        f"activation {a.activation} (γ={a.gamma:g}), γ·σ_max={_num(a.gamma * a.sigma_max)}",
        "largest |eigenvalues|: " + ", ".join(f"{v.real:.4f}{v.imag:+.4f}j" for v in eig),
    ]
    for c in a.conditions:
        lines.append(f"  [{'x' if c.holds else ' '}] {c.name}: {c.text}")
    lines.append(f"predicted regime: {a.regime} (marginal band |q - 1| ≤ {MARGINAL_BAND})")
    lines.append(f"rate bound log(γσ_max) = {_num(a.bound_rate)}, log ρ = {_num(a.linear_rate)}")
    if a.nonnormal:
        lines.append(f"non-normal: ‖W^k‖ peaks at lag {a.peak_lag} (gain {a.peak_gain:.3g})")
    return "\n".join(lines)


def sweep_header(spec, family: str, T: int, seeds: int, input_scale: float) -> str:
    kind = "linear" if spec.activation == "identity" else spec.activation
    return (
        f"gradient regimes: family {family}, Elman {kind}, H={spec.hidden_size}, "
        f"D={spec.input_size}, O={spec.output_size}, T={T}, {seeds} seed(s), "
        f"inputs N(0, {input_scale:g}²), loss at t=T only (many_to_one)\n"
        "rates: slope of log‖∂L/∂h_k‖ per step of lag T-k (generated backward code); "
        "bound: log(γσ_max); "
        f"predicted: {'log ρ' if kind == 'linear' else 'largest Lyapunov exponent'}; "
        f"confirmed when |measured - predicted| ≤ {RTOL:g}·|predicted| + {ATOL:g}"
    )


def _by_radius(runs: Sequence[Run]) -> dict[float, list[Run]]:
    groups: dict[float, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.row.radius, []).append(run)
    return groups


def _mean_sd(values: list[float]) -> str:
    """mean ± sd of the finite values; the non-finite ones named and counted."""
    v = np.array(values, dtype=float)
    finite = v[np.isfinite(v)]
    parts = []
    if finite.size:
        mean, sd = float(np.mean(finite)), float(np.std(finite))
        if abs(mean) < 1e6 and sd < 1e6:
            parts.append(f"{mean:+.4f} ± {sd:.4f}")
        else:
            parts.append(f"{mean:+.3g} ± {sd:.3g}")
    for label, mask in (("-inf", v == -np.inf), ("inf", v == np.inf), ("nan", np.isnan(v))):
        n = int(np.sum(mask))
        if n == v.size:
            return label
        if n:
            parts.append(f"({n}/{v.size} {label})")
    return " ".join(parts)


def _table(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r).rstrip() for r in [header, *lines])


def _reasons(rows, most: int = 3) -> str:
    """The seeds' ``detail`` s grouped by kind (numbers aside), one example each."""
    kinds: dict[str, list] = {}
    for r in rows:
        if r.detail:
            kinds.setdefault(re.sub(r"[-+]?\d[\d.e+x]*", "#", r.detail), []).append(r)
    if not kinds:
        return ""
    if len(rows) == 1:
        return rows[0].detail
    items = sorted(kinds.values(), key=lambda v: -len(v))
    parts = []
    for group in items[:most]:
        seeds = ",".join(str(r.seed) for r in group)
        example = f" (e.g. seed {group[0].seed})" if len(group) > 1 else ""
        parts.append(f"seed{'s' if len(group) > 1 else ''} {seeds}{example}: {group[0].detail}")
    if len(items) > most:
        parts.append(f"{len(items) - most} more kind(s) of reason, see --json")
    return "; ".join(parts)


def _avg(values) -> float:
    """The mean, or a middle value when the mean overflows (values near the float64 limit)."""
    v = np.asarray(values, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.mean(v))
    if math.isfinite(mean) or not np.all(np.isfinite(v)):
        return mean
    return float(np.sort(v)[len(v) // 2])


def _most(values: list[str]) -> str:
    return max(set(values), key=values.count)


def sweep_table(runs: Sequence[Run]) -> str:
    """One line per radius: spectrum, predicted and measured rate and regime, verdicts."""
    header = ["radius", "rho", "sigma_max", "gamma*sigma", "predicted regime", "bound",
              "predicted rate", "measured rate", "measured regime", "verdict"]
    nonnormal = any(r.analysis.nonnormal for r in runs)
    if nonnormal:
        header += ["peak lag pred/meas", "transient gain"]
    lines, reasons = [], []
    for radius, group in _by_radius(runs).items():
        rows = [r.row for r in group]
        ok = sum(r.verdict == "confirmed" for r in rows)
        unsure = sum(r.verdict == "inconclusive" for r in rows)
        exploded = [r.exploded_at for r in rows if r.exploded_at is not None]
        regime = _most([r.measured_regime for r in rows])
        if exploded:
            regime += f" (overflow at lag {min(exploded)} in {len(exploded)}/{len(rows)})"
        if any(r.measurement.forward_overflow for r in group):
            regime += " (forward pass overflowed)"
        reason = _reasons(rows)
        if reason:
            reasons.append(f"  radius {radius:g}: {reason}")
        counted = f"{ok}/{len(rows)} confirmed" + (f", {unsure} inconclusive" if unsure else "")
        line = [
            f"{radius:g}", _num(_avg([r.rho for r in rows])),
            _num(_avg([r.sigma_max for r in rows])),
            _num(_avg([r.sigma_max * group[0].analysis.gamma for r in rows])),
            _most([r.predicted_regime for r in rows]),
            _num(_avg([r.bound_rate for r in rows])),
            _mean_sd([r.predicted_rate for r in rows]), _mean_sd([r.measured_rate for r in rows]),
            regime, counted,
        ]
        if nonnormal:
            with np.errstate(over="ignore", invalid="ignore"):
                gain = float(np.mean([r.transient_gain for r in rows]))
            line += [
                f"{rows[0].predicted_peak_lag}/"
                + ",".join(str(r.measured_peak_lag) for r in rows),
                f"{gain:.3g}",
            ]
        lines.append(line)
    table = _table(header, lines)
    if reasons:
        table += "\nwhy:\n" + "\n".join(reasons)
    return table


def clip_table(runs: Sequence[Run], threshold: float) -> str:
    """‖∇_θ L‖ before and after clipping at ``threshold``, per radius (mean over seeds)."""
    header = ["radius", "measured regime", "‖∇θ L‖ (mean)", f"clipped at {threshold:g}",
              "scaled by"]
    lines = []
    for radius, group in _by_radius(runs).items():
        norms = [r.row.grad_norm for r in group]
        clipped = [r.row.clipped_norm for r in group]
        with np.errstate(over="ignore", invalid="ignore"):
            raw = float(np.mean(norms))
            after = float(np.mean(clipped))
        if math.isfinite(raw):
            cells = [f"{raw:.4g}", f"{after:.4g}", f"{after / raw:.3g}" if raw > 0 else "n/a"]
        else:
            cells = ["overflow", f"{after:.4g}", "clipping cannot undo inf/NaN"]
        lines.append([f"{radius:g}", _most([r.row.measured_regime for r in group]), *cells])
    note = ("gradient-norm clipping rescales g ← g·min(1, G/‖g‖): direction kept, "
            "norm capped; it tames exploding gradients and does nothing for vanishing ones")
    return _table(header, lines) + "\n" + note


def activation_table(runs: Sequence[Run]) -> str:
    """One line per run, labelled by activation (the runs share W_hh and inputs)."""
    header = ["activation", "gamma", "gamma*sigma", "predicted regime", "bound log(γσ)",
              "predicted rate", "measured rate", "verdict"]
    lines = [[r.row.activation, f"{r.analysis.gamma:g}",
              _num(r.analysis.gamma * r.row.sigma_max), r.row.predicted_regime,
              _num(r.row.bound_rate), _num(r.row.predicted_rate), _num(r.row.measured_rate),
              r.row.verdict] for r in runs]
    return _table(header, lines)


def _rate(x: float, missing: str = "nan") -> str:
    """A rate per step of lag, signed; ``missing`` for NaN ('-': it does not apply)."""
    if isinstance(x, float) and math.isnan(x):
        return missing
    return _num(x, 3) if not math.isfinite(x) else f"{x:+.3f}"


def _decade(rate: float) -> str:
    """Lags over which ‖∂L/∂h_k‖ falls 10x (vanishing rows only)."""
    return f"{math.log(10) / -rate:.0f}" if math.isfinite(rate) and rate < -ATOL else "-"


CELLS_HEADER = ["cell", "gate at rest", "E[gate]", "gate path", "predicted", "bound",
                "measured [seed range]", "lags per 10x", "regime", "verdict", "gate path verdict",
                "gating fixes vanishing?"]


def _cells_line(result: CellResult) -> list[str]:
    r = result.row
    spread = f"{_rate(r.measured_rate)} [{_rate(r.measured_min)}, {_rate(r.measured_max)}]"
    gate = "nan" if r.gate else "-"  # a NaN gate value, or no carry gate at all
    mean = gate if math.isnan(r.gate_mean) else f"{r.gate_mean:.3f}"
    return [r.label, _rate(r.rest_rate, gate), mean, _rate(r.gate_rate, gate),
            _rate(r.predicted_rate),
            _rate(r.bound_rate), spread, _decade(r.measured_rate), r.measured_regime,
            r.verdict, r.gate_verdict or "-", r.claim or "-"]


def cells_table(results: Sequence[CellResult], markdown: bool = False) -> str:
    """One line per row of the comparison (medians over seeds); Markdown with ``markdown``."""
    header = list(CELLS_HEADER)
    lines = [_cells_line(r) for r in results]
    if not any(r.row.claim for r in results):  # a sweep of one cell: no reference row
        header, lines = header[:-1], [line[:-1] for line in lines]
    notes = [f"  {r.row.label}: {r.row.detail}" for r in results if r.row.detail]
    if not markdown:
        return "\n".join([_table(header, lines), *notes])
    rows = [header, ["---"] * len(header), *lines]
    table = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join([table, *(["", *(f"-{n[1:]}" for n in notes)] if notes else [])])


def cells_header(results: Sequence[CellResult], family: str, input_scale: float) -> str:
    r = results[0].row
    scales = sorted({res.row.scale for res in results})
    scale = f"{scales[0]:g}" if len(scales) == 1 else "as labelled"
    return (
        f"gradient decay per cell: H={r.hidden_size}, T={r.T}, {r.seeds} seed(s), every "
        f"recurrent matrix {family} with spectral radius {scale}, "
        f"inputs x_t ~ N(0, {input_scale:g}²), many_to_one loss at t = T\n"
        "rates: d log‖∂L/∂h_k‖ per step of lag T-k, medians over seeds; measured: generated "
        "backward code; predicted: top Lyapunov exponent of the state Jacobians' adjoint "
        "product; bound: mean log‖J_t‖₂; gate path: max_j mean_t log gate_tj (the carry "
        "alone); gate at rest: log gate(s=0, x=0) = log σ(b); "
        f"confirmed when |measured - predicted| ≤ {RTOL:g}·|predicted| + {ATOL:g}"
    )


def _bias_effects(results: Sequence[CellResult]) -> list[str]:
    """Per cell with a carry gate: measured rate against the bias, and whether it is monotone."""
    by_cell: dict[tuple[str, float], list] = {}
    for res in results:
        r = res.row
        if r.carry_bias is not None:
            by_cell.setdefault((r.cell, r.scale), []).append(r)
    out = []
    for (cell, _), rows in by_cell.items():
        if len(rows) < 2:
            continue
        rows = sorted(rows, key=lambda r: r.carry_bias)
        rates = [r.measured_rate for r in rows]
        monotone = all(b >= a for a, b in zip(rates, rates[1:], strict=False))
        biases = " -> ".join(f"{r.carry_bias:g}" for r in rows)
        trend = "slower decay with larger bias" if monotone else "NOT monotone in the bias"
        scale = f" at scale {rows[0].scale:g}" if len({k[1] for k in by_cell}) > 1 else ""
        out.append(f"{cell}{scale}: bias of gate {rows[0].gate} {biases}: measured "
                   f"{' -> '.join(_rate(v) for v in rates)} per step ({trend})")
    return out


_CLAIMS = {"confirmed": " (stable)", "partly": " (slower decay, still vanishing)",
           "refuted": " (decays as fast or faster, or explodes)"}


def cells_summary(results: Sequence[CellResult]) -> str:
    """The claim 'gating fixes vanishing', row by row, and the carry-bias effect."""
    reference = results[0].row
    lines = []
    if reference.claim == "reference":
        groups: dict[str, list[str]] = {}
        for res in results[1:]:
            groups.setdefault(res.row.claim.split(":")[0], []).append(res.row.label)
        parts = [f"{kind}{_CLAIMS.get(kind, '')} for {', '.join(labels)}"
                 for kind, labels in groups.items()]
        lines.append(f"claim 'gating fixes vanishing' against {reference.label} "
                     f"(measured {_rate(reference.measured_rate)}/step, "
                     f"{reference.measured_regime}): " + ("; ".join(parts) or "no other rows"))
    lines += _bias_effects(results)
    return "\n".join(lines)
