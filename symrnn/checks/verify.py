"""Verification of generated gradients, shaped like ``torch.autograd.gradcheck``.

``verify(spec, backend, *, T=7, batch=5, dtype="float64", ...)`` compiles the
generated module for ``spec`` and checks its gradients (every parameter,
h_0, ``delta`` and the input gradient ``x``) against two oracles on random data:

* ``autograd`` — an independent torch forward pass written from the spec
  (not from the derivation), differentiated by ``torch.autograd``.  For
  truncated BPTT (k1, k2) it uses the matching detach pattern: for each chunk
  of k1 steps ending at e, the forward restarts from h_{max(0, e−k2)}
  detached and only that chunk's losses are backpropagated.  Clipping is
  applied to the reference gradients with the same formula.
* ``finite_differences`` — central differences of the generated forward,
  always in float64 (float32 differences measure rounding, not gradients):
  entrywise when the parameter has at most ``entrywise_max`` entries,
  otherwise along a random direction v, comparing (L(θ+εv) − L(θ−εv))/2ε
  with ⟨g, v⟩.  Skipped under truncation or clipping, where the returned
  "gradient" is by design not ∂L/∂θ.

Random data: parameters N(0, 0.6²) with W_hh rescaled to spectral norm 0.9,
inputs N(0, 1), h_0 N(0, 0.5²), targets matched to the head.

The error of a parameter is max_i |generated_i − reference_i| divided by
max(max_i |reference_i|, 1e-3 · the largest reference entry over all
parameters): a relative error that stays meaningful for all-zero gradients.
float64 is the default because the comparison is then limited by the maths,
not by rounding; float32 has its own looser table.  A failure raises
:class:`VerificationError` naming the parameter, the entry and both values
(``raise_exception=False`` returns the report instead).  An inf or NaN in a
gradient is reported as such ("non-finite gradient dL/dW_hh[0, 1] ...:
generated=nan"), never as a relative error computed from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from symrnn.errors import SymrnnError
from symrnn.ops import elementwise
from symrnn.spec import Spec, check_T

__all__ = ["TOLERANCES", "Check", "Report", "VerificationError", "verify", "reference_grads",
           "codegen_section"]

TOLERANCES: dict[str, dict[str, float]] = {
    "float64": {"autograd": 1e-10, "finite_differences": 1e-6},
    "float32": {"autograd": 1e-4, "finite_differences": 1e-6},
}
"""Largest relative error allowed, by dtype of the generated code and oracle."""

_EPS = 1e-5
"""Central-difference step: truncation ~ε²·L''', rounding ~1e-16·|L|/ε."""


class VerificationError(SymrnnError, AssertionError):
    """Generated gradients disagree with an oracle."""


@dataclass(frozen=True)
class Check:
    """One gradient compared with one oracle."""

    oracle: str
    name: str
    error: float
    index: tuple[int, ...]
    reference: float
    generated: float
    tolerance: float
    nonfinite: str | None = None
    """'generated' or 'reference' when that side has an inf/NaN (at ``index``)."""

    @property
    def ok(self) -> bool:
        return self.nonfinite is None and bool(self.error <= self.tolerance)

    def message(self, T: int) -> str:
        entry = ", ".join(map(str, self.index))
        label = "numerical" if self.oracle == "finite_differences" else "reference"
        if self.nonfinite == "generated":
            return (f"non-finite gradient dL/d{self.name}[{entry}] (T={T}, {self.oracle}): "
                    f"generated={self.generated!r}, {label}={self.reference:.12g} "
                    "(overflow or NaN in the generated code)")
        if self.nonfinite == "reference":
            return (f"non-finite {label} gradient dL/d{self.name}[{entry}] (T={T}, "
                    f"{self.oracle}): {label}={self.reference!r}, "
                    f"generated={self.generated!r}; nothing to compare")
        return (f"gradient mismatch for dL/d{self.name}[{entry}] (T={T}, {self.oracle}): "
                f"{label}={self.reference:.12g}, generated={self.generated:.12g}, "
                f"relative error {self.error:.3g} > {self.tolerance:g}")


@dataclass(frozen=True)
class Report:
    spec: Spec
    backend: str
    T: int
    batch: int
    dtype: str
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)

    @property
    def nonfinite(self) -> tuple[Check, ...]:
        """The checks with an inf/NaN gradient (generated or reference)."""
        return tuple(c for c in self.checks if c.nonfinite is not None)

    def worst(self) -> dict[str, dict[str, float]]:
        """oracle → parameter → largest relative error (inf for a non-finite gradient)."""
        out: dict[str, dict[str, float]] = {}
        for c in self.checks:
            slot = out.setdefault(c.oracle, {})
            slot[c.name] = max(slot.get(c.name, 0.0), c.error)
        return out

    def to_dict(self) -> dict:
        return {"spec": self.spec.to_dict(), "backend": self.backend, "T": self.T,
                "batch": self.batch, "dtype": self.dtype, "ok": self.ok,
                "max_relative_error": {o: {k: (v if math.isfinite(v) else "non-finite")
                                           for k, v in errs.items()}
                                       for o, errs in self.worst().items()},
                "failures": [c.message(self.T) for c in self.failures]}


# ------------------------------------------------------------------ reference


def _step(spec: Spec, p: dict, h, x_t):
    a = h @ p["W_hh"].T + x_t @ p["W_xh"].T
    if spec.bias:
        a = a + p["b_h"]
    return elementwise(spec.activation).torch_impl(a)


def _step_loss(spec: Spec, p: dict, h, y_t):
    z = h @ p["W_hy"].T + (p["b_y"] if spec.bias else 0)
    if spec.loss == "cross_entropy":
        return -(y_t * torch.log_softmax(z, dim=-1)).sum()
    yhat = {"identity": z, "sigmoid": torch.sigmoid(z),
            "softmax": torch.softmax(z, dim=-1)}[spec.head]
    return 0.5 * ((yhat - y_t) ** 2).sum()


def _target(spec: Spec, y, t: int, T: int):
    if spec.topology == "many_to_one":
        return y if t == T else None
    return y[:, t - 1]


def reference_grads(spec: Spec, params: dict, x, y, h0, *, tbptt=None, clip=None,
                    clip_value=None) -> tuple[float, dict]:
    """Loss and gradients by torch.autograd (float64 tensors in, numpy out)."""
    T = x.shape[1]
    p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    h_0 = h0.detach().clone().requires_grad_(True)
    x = x.detach().clone().requires_grad_(True)
    if tbptt is None:
        windows = [(1, T, 1)]
    else:
        k1, k2 = tbptt
        windows = [(s, min(s + k1 - 1, T), max(min(s + k1 - 1, T) - k2 + 1, 1))
                   for s in range(1, T + 1, k1)]
    with torch.no_grad():
        states = [h0.detach()]
        for t in range(1, T + 1):
            states.append(_step(spec, p, states[-1], x[:, t - 1]))
    total = 0.0
    deltas = []
    for start, stop, first in windows:
        h = h_0 if first == 1 else states[first - 1].clone()
        loss = 0
        for t in range(first, stop + 1):
            h = _step(spec, p, h, x[:, t - 1])
            h.retain_grad()
            deltas.append((t, h))
            target = _target(spec, y, t, T)
            if t >= start and target is not None:
                loss = loss + _step_loss(spec, p, h, target)
        if torch.is_tensor(loss):
            loss.backward()
            total += float(loss.detach())
    grads = {k: (v.grad if v.grad is not None else torch.zeros_like(v)).numpy()
             for k, v in p.items()}
    grads = _clip(grads, clip, clip_value)
    grads["h_0"] = (h_0.grad if h_0.grad is not None else torch.zeros_like(h_0)).numpy()
    delta = np.zeros((x.shape[0], T, h0.shape[1]))
    for t, h in deltas:
        if h.grad is not None:
            delta[:, t - 1] += h.grad.numpy()
    grads["delta"] = delta
    grads["x"] = (x.grad if x.grad is not None else torch.zeros_like(x)).numpy()
    return total, grads


def _clip(grads: dict, clip, clip_value) -> dict:
    if clip is not None:
        norm = np.sqrt(sum(float((g * g).sum()) for g in grads.values()))
        if norm > clip:
            grads = {k: g * (clip / norm) for k, g in grads.items()}
    if clip_value is not None:
        grads = {k: np.clip(g, -clip_value, clip_value) for k, g in grads.items()}
    return grads


# ------------------------------------------------------------------ checking


def _data(spec: Spec, shapes: dict, T: int, B: int, seed: int):
    rng = np.random.default_rng(seed)
    H, D, O = spec.hidden_size, spec.input_size, spec.output_size  # noqa: E741
    params = {k: rng.normal(scale=0.6, size=s) for k, s in shapes.items()}
    # a contracting W_hh (spectral norm 0.9) keeps L(θ) well conditioned at large T,
    # so that finite differences measure the gradient rather than its blow-up
    params["W_hh"] *= 0.9 / max(float(np.linalg.norm(params["W_hh"], 2)), 1e-12)
    x = rng.normal(size=(B, T, D))
    h0 = rng.normal(scale=0.5, size=(B, H))
    y_shape = (B, T, O) if spec.topology == "many_to_many" else (B, O)
    if spec.loss == "cross_entropy":
        y = rng.integers(0, O, size=y_shape[:-1])
        y = np.eye(O)[y]
    elif spec.head in ("sigmoid", "softmax"):
        y = rng.uniform(size=y_shape)
    else:
        y = rng.normal(size=y_shape)
    return params, x, y, h0


def _relative(gen: np.ndarray, ref: np.ndarray, floor: float):
    diff = np.abs(gen - ref)
    index = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    scale = max(float(np.abs(ref).max()) if ref.size else 0.0, floor, 1e-300)
    return float(diff.max()) / scale, tuple(int(i) for i in index)


def _finite_max(a: np.ndarray) -> float:
    a = np.abs(np.asarray(a, dtype=np.float64))
    return float(a[np.isfinite(a)].max(initial=0.0))


def _compare(oracle: str, gen: dict, ref: dict, tol: float) -> list[Check]:
    floor = 1e-3 * max(_finite_max(r) for r in ref.values())
    checks = []
    for name in ref:
        g, r = np.asarray(gen[name], dtype=np.float64), np.asarray(ref[name])
        if g.shape != r.shape:
            raise VerificationError(
                f"gradient for {name}: expected shape {r.shape}, got {g.shape}")
        for side, values in (("generated", g), ("reference", r)):
            bad = np.argwhere(~np.isfinite(values))
            if bad.size:
                index = tuple(int(i) for i in bad[0])
                checks.append(Check(oracle, name, math.inf, index, float(r[index]),
                                    float(g[index]), tol, nonfinite=side))
                break
        else:
            err, index = _relative(g, r, floor)
            checks.append(Check(oracle, name, err, index, float(r[index]), float(g[index]),
                                tol))
    return checks


def _to_backend(backend: str, value, dtype: str):
    if backend == "torch":
        return torch.as_tensor(value, dtype=getattr(torch, dtype))
    return np.asarray(value, dtype=dtype)


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)


def _run(module: ModuleType, backend: str, params, x, y, h0, dtype: str):
    conv = {k: _to_backend(backend, v, dtype) for k, v in params.items()}
    loss, cache = module.forward(conv, _to_backend(backend, x, dtype),
                                 _to_backend(backend, y, dtype), _to_backend(backend, h0, dtype))
    grads = module.backward(conv, cache, input_grad=True)
    return float(loss), {k: _numpy(v) for k, v in grads.items()}


def _finite_differences(module, backend, params, x, y, h0, grads, entrywise_max: int,
                        seed: int, tol: float) -> list[Check]:
    def loss_at(p, h):
        conv = {k: _to_backend(backend, v, "float64") for k, v in p.items()}
        loss, _ = module.forward(conv, _to_backend(backend, x, "float64"),
                                 _to_backend(backend, y, "float64"),
                                 _to_backend(backend, h, "float64"))
        return float(loss)

    rng = np.random.default_rng(seed + 1)
    numerical, analytical = {}, {}
    for name in [*params, "h_0"]:
        value = h0 if name == "h_0" else params[name]

        def shifted(v, name=name):
            return loss_at(params, v) if name == "h_0" else loss_at({**params, name: v}, h0)

        if value.size <= entrywise_max:
            num = np.zeros_like(value)
            for i in np.ndindex(value.shape):
                step = np.zeros_like(value)
                step[i] = _EPS
                num[i] = (shifted(value + step) - shifted(value - step)) / (2 * _EPS)
            numerical[name], analytical[name] = num, grads[name]
        else:
            v = rng.normal(size=value.shape)
            num = (shifted(value + _EPS * v) - shifted(value - _EPS * v)) / (2 * _EPS)
            numerical[name] = np.array([num])
            analytical[name] = np.array([float((grads[name] * v).sum())])
    return _compare("finite_differences", analytical, numerical, tol)


def verify(spec: Spec, backend: str = "numpy", *, T: int = 7, batch: int = 5,
           dtype: str = "float64", seed: int = 0, tbptt: tuple[int, int] | None = None,
           clip: float | None = None, clip_value: float | None = None,
           finite_differences: bool = True, entrywise_max: int = 32,
           module: ModuleType | None = None, raise_exception: bool = True) -> Report:
    """Check the generated gradients of ``spec`` against autograd and finite differences."""
    from symrnn.codegen import compile as compile_module

    T = check_T(T)
    if dtype not in TOLERANCES:
        raise SymrnnError(f"dtype: expected one of {', '.join(TOLERANCES)}, got {dtype!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise SymrnnError(f"batch: expected a positive integer, got {batch!r}")
    if module is None:
        module = compile_module(spec, backend, tbptt, clip, clip_value=clip_value)
    params, x, y, h0 = _data(spec, module.PARAM_SHAPES, T, batch, seed)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # reported below
        loss, grads = _run(module, backend, params, x, y, h0, dtype)
    t64 = {k: torch.as_tensor(v) for k, v in params.items()}
    _, ref = reference_grads(spec, t64, torch.as_tensor(x), torch.as_tensor(y),
                             torch.as_tensor(h0), tbptt=tbptt, clip=clip, clip_value=clip_value)
    tol = TOLERANCES[dtype]
    checks = _compare("autograd", grads, ref, tol["autograd"])
    if finite_differences and tbptt is None and clip is None and clip_value is None:
        if dtype != "float64":
            _, grads = _run(module, backend, params, x, y, h0, "float64")
        checks += _finite_differences(module, backend, params, x, y, h0, grads, entrywise_max,
                                      seed, tol["finite_differences"])
    report = Report(spec, backend, T, batch, dtype, tuple(checks))
    if raise_exception and not report.ok:
        worst = max(report.failures, key=lambda c: c.error / c.tolerance)
        if report.nonfinite:
            worst = report.nonfinite[0]
        raise VerificationError(worst.message(T))
    return report


def codegen_section(spec: Spec, out: Path) -> str:
    """Report section: generated modules for the spec, their verification, the training demo."""
    from symrnn.codegen import generate
    from symrnn.codegen.demo import training_section

    lines = ["## Code generation", ""]
    try:
        for backend in ("numpy", "torch"):
            (out / f"bptt_{backend}.py").write_text(generate(spec, backend))
            report = verify(spec, backend, T=20, batch=3, raise_exception=False)
            worst = {o: max(e.values()) for o, e in report.worst().items()}
            lines.append(f"- `bptt_{backend}.py`: verify T=20, batch 3, float64: "
                         + ("ok" if report.ok else "FAILED") + "; largest relative error "
                         + ", ".join(f"{o} {v:.1e}" for o, v in worst.items()))
    except SymrnnError as err:
        lines.append(f"- generated modules skipped for this spec: {err}")
    return "\n".join(lines) + "\n\n" + training_section(spec, out)
