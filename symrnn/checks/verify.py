"""Verification of generated gradients, shaped like ``torch.autograd.gradcheck``.

``verify(spec, backend, *, T=7, batch=5, dtype="float64", ...)`` compiles the
generated module for ``spec`` (any cell: elman, lstm, gru, gru_v1; either layout; any
``num_layers``) and checks its gradients (every parameter, every initial state h_0 (c_0,
h_l1_0, ...), ``delta``, ``delta_{state}`` and the input gradient ``x``) against up to
three oracles on random data:

* ``autograd`` — an independent torch forward pass written here from the textbook
  equations of each cell (:data:`REFERENCE_CELLS`; not from the derivation nor from
  :mod:`symrnn.engine`), differentiated by ``torch.autograd``.  A stack of
  ``num_layers`` runs the step layer by layer: layer l (names suffixed ``_l{l}`` for
  l ≥ 1) reads layer l−1's h_t, the head reads the top layer's.  For truncated BPTT
  (k1, k2) it uses the matching detach pattern: for each chunk of k1 steps ending at e,
  the forward restarts from every state at max(0, e−k2) detached and only that chunk's
  losses are backpropagated.  Clipping is applied to the reference gradients with the
  same formula.  ``delta_s[:, t-1]`` is ∂L/∂s_t with the states at t (every layer's,
  after the whole step t) as the variables: through step t+1, and for the top layer's
  h_t (``delta``) the head at t; the other states are ``delta_{state}``.
* ``torch.nn`` — for the torch layout of elman (tanh, relu), lstm and gru:
  ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (``num_layers`` = the spec's) loaded with the
  same weight_ih, weight_hh, bias_ih, bias_hh (as weight_ih_l0, ...; weight_ih_l1 ...
  as themselves), initial states stacked to (num_layers, B, H), the same head and loss,
  differentiated by autograd (same detach pattern and clipping); parameters, initial
  states and ``x`` are compared.
* ``finite_differences`` — central differences of the generated forward,
  always in float64 (float32 differences measure rounding, not gradients):
  entrywise when the parameter has at most ``entrywise_max`` entries,
  otherwise along a random direction v, comparing (L(θ+εv) − L(θ−εv))/2ε
  with ⟨g, v⟩.  Skipped under truncation or clipping, where the returned
  "gradient" is by design not ∂L/∂θ.

Random data (shapes from the module's ``PARAM_SHAPES``): parameters N(0, 0.6²), each
H×H recurrent block of every layer (W_hh, W_h*, the row blocks of weight_hh, and their
``_l{l}``) rescaled to spectral norm 0.9, inputs N(0, 1), every initial state of every
layer N(0, 0.5²), targets matched to the head.

The error of a parameter is max_i |generated_i − reference_i| divided by
max(max_i |reference_i|, 1e-3 · the largest reference entry over all
parameters): a relative error that stays meaningful for all-zero gradients.  For finite
differences the divisor is also at least their resolution over the tolerance, the
resolution being the rounding error of a central difference, 10·ε·max(|L|, 1)/h
(h = 1e-5): below it the numerical estimate cannot tell two gradients apart.
float64 is the default because the comparison is then limited by the maths,
not by rounding; float32 has its own looser table.  A failure raises
:class:`VerificationError` naming the parameter, the entry and both values
(``raise_exception=False`` returns the report instead).  An inf or NaN in a
gradient is reported as such ("non-finite gradient dL/dW_hh[0, 1] ...:
generated=nan"), never as a relative error computed from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from symrnn.errors import SymrnnError
from symrnn.ops import elementwise
from symrnn.spec import Spec, check_T

__all__ = ["TOLERANCES", "REFERENCE_CELLS", "Check", "Report", "VerificationError", "verify",
           "reference_grads", "torch_nn_grads", "codegen_section"]

TOLERANCES: dict[str, dict[str, float]] = {
    "float64": {"autograd": 1e-10, "torch.nn": 1e-10, "finite_differences": 1e-6},
    "float32": {"autograd": 1e-4, "torch.nn": 1e-4, "finite_differences": 1e-6},
}
"""Largest relative error allowed, by dtype of the generated code and oracle."""

_EPS = 1e-5
"""Central-difference step: truncation ~ε²·L''', rounding ~1e-16·|L|/ε."""

_STACKS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
"""torch.nn's stacked parameters (``weight_ih_l0`` ...): gates' row blocks, torch's order."""


def _suffix(layer: int) -> str:
    """The names of layer ``layer``: '' for layer 0, ``_l1``, ``_l2``, ... above."""
    return "" if layer == 0 else f"_l{layer}"


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


@dataclass(frozen=True)
class _Gate:
    """One gate's pre-activation W_x x + b_x + W_h h + b_h (absent biases: None)."""

    Wx: torch.Tensor
    Wh: torch.Tensor
    bx: torch.Tensor | None
    bh: torch.Tensor | None

    def input(self, x_t):
        return _affine(x_t, self.Wx, self.bx)

    def recurrent(self, h):
        return _affine(h, self.Wh, self.bh)

    def __call__(self, x_t, h):
        return self.input(x_t) + self.recurrent(h)


def _affine(v, W, b):
    out = v @ W.T
    return out if b is None else out + b


def _elman(act, g: dict[str, _Gate], state, x_t):
    """h_t = f(W_xh x_t + W_hh h_{t-1} + biases)."""
    (h,) = state
    return (act(g["h"](x_t, h)),)


def _lstm(act, g: dict[str, _Gate], state, x_t):
    """Hochreiter & Schmidhuber without peepholes: c_t = f c_{t-1} + i g, h_t = o tanh(c_t)."""
    h, c = state
    i, f, o = (torch.sigmoid(g[k](x_t, h)) for k in "ifo")
    c = f * c + i * torch.tanh(g["g"](x_t, h))
    return o * torch.tanh(c), c


def _gru(act, g: dict[str, _Gate], state, x_t):
    """torch.nn.GRU: n = tanh(W_xn x + b_xn + r ⊙ (W_hn h + b_hn)), h_t = (1−u) n + u h."""
    (h,) = state
    r, u = (torch.sigmoid(g[k](x_t, h)) for k in "ru")
    n = torch.tanh(g["n"].input(x_t) + r * g["n"].recurrent(h))
    return ((1 - u) * n + u * h,)


def _gru_v1(act, g: dict[str, _Gate], state, x_t):
    """Cho et al. 2014: n = tanh(W_xn x + W_hn (r ⊙ h) + biases), h_t = (1−u) n + u h."""
    (h,) = state
    r, u = (torch.sigmoid(g[k](x_t, h)) for k in "ru")
    n = torch.tanh(g["n"](x_t, r * h))
    return ((1 - u) * n + u * h,)


def _nn_rnn(spec: Spec):
    if spec.activation not in ("tanh", "relu"):
        return None
    return torch.nn.RNN, {"nonlinearity": spec.activation}


@dataclass(frozen=True)
class ReferenceCell:
    """A cell's textbook step, independent of the engine's cell definitions."""

    gates: str
    """Gate letters in torch's row order (GRU: r, z = u, n); per-gate names W_x{g}, W_h{g},
    b_{g} (notes) or b_x{g}/b_h{g}; torch layout: row blocks of the stacked tensors."""
    states: tuple[str, ...]
    step: Callable
    """(activation, gates, states at t−1, x_t) → states at t."""
    nn: Callable[[Spec], tuple[type, dict] | None]
    """The torch.nn module with the same equations and its arguments, or None."""


REFERENCE_CELLS: dict[str, ReferenceCell] = {
    "elman": ReferenceCell("h", ("h",), _elman, _nn_rnn),
    "lstm": ReferenceCell("ifgo", ("h", "c"), _lstm, lambda spec: (torch.nn.LSTM, {})),
    "gru": ReferenceCell("run", ("h",), _gru, lambda spec: (torch.nn.GRU, {})),
    "gru_v1": ReferenceCell("run", ("h",), _gru_v1, lambda spec: None),
}


def _state_names(spec: Spec) -> tuple[str, ...]:
    """Every layer's states, layer by layer (the module's STATES): h, c, h_l1, c_l1, ..."""
    own = REFERENCE_CELLS[spec.cell].states
    return tuple(s + _suffix(layer) for layer in range(spec.num_layers) for s in own)


def _readout(spec: Spec) -> int:
    """Where the top layer's h (the one the head reads) sits in :func:`_state_names`."""
    return len(REFERENCE_CELLS[spec.cell].states) * (spec.num_layers - 1)


def _gates(spec: Spec, p: dict, layer: int = 0) -> dict[str, _Gate]:
    """Per-gate views of layer ``layer``'s parameters (either layout)."""
    letters, sfx = REFERENCE_CELLS[spec.cell].gates, _suffix(layer)
    if spec.layout == "torch":
        blocks = [p[n + sfx].chunk(len(letters)) if n + sfx in p else (None,) * len(letters)
                  for n in _STACKS]
        return {g: _Gate(*parts) for g, *parts in zip(letters, *blocks, strict=True)}
    return {g: _Gate(p[f"W_x{g}{sfx}"], p[f"W_h{g}{sfx}"], p.get(f"b_{g}{sfx}"),
                     p.get(f"b_h{g}{sfx}")) for g in letters}


def _stack(spec: Spec, p: dict) -> Callable:
    """The step of the whole stack: (states at t−1, every layer's, flat; x_t) → states at
    t, layer l reading layer l−1's new h_t."""
    cell, act = REFERENCE_CELLS[spec.cell], elementwise(spec.activation).torch_impl
    layers, n = [_gates(spec, p, k) for k in range(spec.num_layers)], len(cell.states)

    def step(state: tuple, x_t) -> tuple:
        out: list = []
        for k, gates in enumerate(layers):
            new = cell.step(act, gates, state[k * n:(k + 1) * n], x_t)
            out += new
            x_t = new[0]
        return tuple(out)

    return step


_HEADS = {"identity": lambda z: z, "sigmoid": torch.sigmoid,
          "softmax": lambda z: torch.softmax(z, dim=-1)}


def _step_loss(spec: Spec, head: dict, h, y_t):
    z = _affine(h, head["W_hy"], head.get("b_y"))
    if spec.loss == "cross_entropy":
        return -(y_t * torch.log_softmax(z, dim=-1)).sum()
    yhat = _HEADS[spec.head](z)
    return 0.5 * ((yhat - y_t) ** 2).sum()


def _target(spec: Spec, y, t: int, T: int):
    if spec.topology == "many_to_one":
        return y if t == T else None
    return y[:, t - 1]


def _windows(T: int, tbptt) -> list[tuple[int, int, int]]:
    """(start, stop, first): losses of steps start..stop, backpropagated to step first."""
    if tbptt is None:
        return [(1, T, 1)]
    k1, k2 = tbptt
    return [(s, min(s + k1 - 1, T), max(min(s + k1 - 1, T) - k2 + 1, 1))
            for s in range(1, T + 1, k1)]


def _truncated(spec: Spec, head: dict, y, T: int, tbptt, leaves0: tuple, before, run) -> float:
    """Backpropagate each window's losses; the total loss.

    ``run(init, first, stop)`` gives h_t for t = first..stop from the states ``init`` at
    first−1: the initial-state leaves for first = 1, else ``before(first − 1)`` detached.
    """
    total = 0.0
    for start, stop, first in _windows(T, tbptt):
        init = leaves0 if first == 1 else tuple(s.detach().clone() for s in before(first - 1))
        loss = 0
        for t, h in enumerate(run(init, first, stop), first):
            target = _target(spec, y, t, T)
            if t >= start and target is not None:
                loss = loss + _step_loss(spec, head, h, target)
        if torch.is_tensor(loss):
            loss.backward()
            total += float(loss.detach())
    return total


def _leaf(value):
    return value.detach().clone().requires_grad_(True)


def _grad(leaf) -> np.ndarray:
    return (leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)).numpy()


def _initial(spec: Spec, states0, B: int) -> tuple:
    """Every initial state as a tensor: ``states0`` is h_0 or a tuple; missing ones are 0."""
    given = tuple(states0) if isinstance(states0, (tuple, list)) else (states0,)
    names = _state_names(spec)
    zeros = torch.zeros((B, spec.hidden_size), dtype=torch.float64)
    return tuple(given[k] if k < len(given) and given[k] is not None else zeros
                 for k in range(len(names)))


def _finish(spec: Spec, params: dict, s0: tuple, x, clip, clip_value) -> dict:
    """Clipped parameter gradients, then dL/ds_0 for every state and dL/dx (unclipped)."""
    grads = _clip({k: _grad(v) for k, v in params.items()}, clip, clip_value)
    for name, leaf in zip(_state_names(spec), s0, strict=True):
        grads[f"{name}_0"] = _grad(leaf)
    grads["x"] = _grad(x)
    return grads


def _deltas(spec: Spec, record: list, B: int, T: int) -> dict[str, np.ndarray]:
    """delta (B, T, H) = ∂L/∂h_t of the top layer, delta_s = ∂L/∂s_t for every other
    state s (delta_c, delta_h of a lower layer, delta_c_l1, ...), summed over the windows."""
    out = {}
    for k, name in enumerate(_state_names(spec)):
        d = np.zeros((B, T, spec.hidden_size))
        for t, state in record:
            if state[k].grad is not None:
                d[:, t - 1] += state[k].grad.numpy()
        out["delta" if k == _readout(spec) else f"delta_{name}"] = d
    return out


def reference_grads(spec: Spec, params: dict, x, y, h0, *, tbptt=None, clip=None,
                    clip_value=None) -> tuple[float, dict]:
    """Loss and gradients by torch.autograd on the textbook step (float64 tensors in,
    numpy out).  ``h0``: the initial h_0, or a tuple of every initial state of every
    layer (h_0, c_0, h_l1_0, ...)."""
    T, B = x.shape[1], x.shape[0]
    p = {k: _leaf(v) for k, v in params.items()}
    s0 = tuple(_leaf(s) for s in _initial(spec, h0, B))
    x = _leaf(x)
    with torch.no_grad():  # the states the truncated windows restart from
        path, step = [s0], _stack(spec, p)
        for t in range(1, T + 1):
            path.append(step(path[-1], x[:, t - 1]))
    record: list = []

    def run(state, first, stop):
        step, hs = _stack(spec, p), []
        for t in range(first, stop + 1):  # clones: the states at t as the variables of delta
            state = tuple(s.clone() for s in step(state, x[:, t - 1]))
            for s in state:
                s.retain_grad()
            record.append((t, state))
            hs.append(state[_readout(spec)])
        return hs

    total = _truncated(spec, p, y, T, tbptt, s0, path.__getitem__, run)
    return total, {**_finish(spec, p, s0, x, clip, clip_value), **_deltas(spec, record, B, T)}


def _nn_names(spec: Spec, params: dict) -> dict[str, str]:
    """The module's stacked parameters → torch.nn's names: weight_ih → weight_ih_l0, ...,
    weight_ih_l1 → weight_ih_l1 (layers ≥ 1 already carry torch's names)."""
    return {n + _suffix(k): f"{n}_l{k}" for k in range(spec.num_layers) for n in _STACKS
            if n + _suffix(k) in params}


def _nn_module(spec: Spec, params: dict):
    """torch.nn.RNN/LSTM/GRU holding ``params`` (torch layout), or None where none matches."""
    made = REFERENCE_CELLS[spec.cell].nn(spec) if spec.layout == "torch" else None
    if made is None:
        return None
    cls, kwargs = made
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # its random init: overwritten
        rnn = cls(spec.input_size, spec.hidden_size, num_layers=spec.num_layers,
                  bias=spec.bias, batch_first=True, dtype=torch.float64, **kwargs)
        for ours, theirs in _nn_names(spec, params).items():
            getattr(rnn, theirs).copy_(params[ours])
    return rnn


def _nn_call(rnn, n: int, x, init: tuple):
    """``rnn`` over ``x`` from the flat per-layer states ``init`` (h, c, h_l1, c_l1, ...;
    ``n`` per layer): its top-layer outputs and the last states, flat again."""
    packed = tuple(torch.stack(init[k::n]) for k in range(n))  # (L, B, H) per cell state
    out, last = rnn(x, packed if n > 1 else packed[0])
    last = last if isinstance(last, tuple) else (last,)
    return out, tuple(last[k][layer] for layer in range(rnn.num_layers) for k in range(n))


def torch_nn_grads(spec: Spec, params: dict, x, y, h0, *, tbptt=None, clip=None,
                   clip_value=None) -> tuple[float, dict] | None:
    """Loss and gradients of torch.nn.RNN/LSTM/GRU with the same weights, the same head
    and loss (torch layout only; None for gru_v1, the notes layout, other activations)."""
    rnn = _nn_module(spec, params)
    if rnn is None:
        return None
    head = {k: _leaf(params[k]) for k in ("W_hy", "b_y") if k in params}
    s0 = tuple(_leaf(s) for s in _initial(spec, h0, x.shape[0]))
    x = _leaf(x)
    n = len(REFERENCE_CELLS[spec.cell].states)

    def call(init, lo, hi):  # x_t for t = lo+1..hi
        return _nn_call(rnn, n, x[:, lo:hi], init)

    def before(t):
        with torch.no_grad():
            return call(s0, 0, t)[1]

    total = _truncated(spec, head, y, x.shape[1], tbptt, s0, before,
                       lambda init, first, stop: call(init, first - 1, stop)[0].unbind(1))
    names = _nn_names(spec, params)
    leaves = {k: head[k] if k in head else getattr(rnn, names[k]) for k in params}
    return total, _finish(spec, leaves, s0, x, clip, clip_value)


def _clip(grads: dict, clip, clip_value) -> dict:
    if clip is not None:
        norm = np.sqrt(sum(float((g * g).sum()) for g in grads.values()))
        if norm > clip:
            grads = {k: g * (clip / norm) for k, g in grads.items()}
    if clip_value is not None:
        grads = {k: np.clip(g, -clip_value, clip_value) for k, g in grads.items()}
    return grads


# ------------------------------------------------------------------ checking


def _recurrent(spec: Spec, shapes: dict) -> list[str]:
    """The parameters multiplying h_{t-1} in every layer: W_h{g} (notes) or weight_hh
    (torch), and their ``_l{l}``."""
    own = ["weight_hh", *(f"W_h{g}" for g in REFERENCE_CELLS[spec.cell].gates)]
    names = [n + _suffix(k) for k in range(spec.num_layers) for n in own]
    return [n for n in names if n in shapes]


def _contract(w: np.ndarray, H: int, norm: float = 0.9) -> np.ndarray:
    """Each H×H row block rescaled to spectral norm ``norm``."""
    blocks = [b * (norm / max(float(np.linalg.norm(b, 2)), 1e-12))
              for b in np.split(w, w.shape[0] // H)]
    return np.concatenate(blocks)


def _targets(spec: Spec, rng, B: int, T: int) -> np.ndarray:
    O = spec.output_size  # noqa: E741
    y_shape = (B, T, O) if spec.topology == "many_to_many" else (B, O)
    if spec.loss == "cross_entropy":
        return np.eye(O)[rng.integers(0, O, size=y_shape[:-1])]
    if spec.head in ("sigmoid", "softmax"):
        return rng.uniform(size=y_shape)
    return rng.normal(size=y_shape)


def _data(spec: Spec, shapes: dict, T: int, B: int, seed: int):
    """Parameters (from ``shapes``), x, y and every initial state of every layer (a tuple)."""
    rng = np.random.default_rng(seed)
    H = spec.hidden_size
    params = {k: rng.normal(scale=0.6, size=s) for k, s in shapes.items()}
    # contracting recurrent blocks (spectral norm 0.9) keep L(θ) well conditioned at large
    # T, so that finite differences measure the gradient rather than its blow-up
    for name in _recurrent(spec, shapes):
        params[name] = _contract(params[name], H)
    x = rng.normal(size=(B, T, spec.input_size))
    states0 = tuple(rng.normal(scale=0.5, size=(B, H)) for _ in _state_names(spec))
    return params, x, _targets(spec, rng, B, T), states0


def _relative(gen: np.ndarray, ref: np.ndarray, floor: float):
    diff = np.abs(gen - ref)
    index = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    scale = max(float(np.abs(ref).max()) if ref.size else 0.0, floor, 1e-300)
    return float(diff.max()) / scale, tuple(int(i) for i in index)


def _finite_max(a: np.ndarray) -> float:
    a = np.abs(np.asarray(a, dtype=np.float64))
    return float(a[np.isfinite(a)].max(initial=0.0))


def _compare(oracle: str, gen: dict, ref: dict, tol: float,
             resolution: float = 0.0) -> list[Check]:
    """``resolution``: the smallest absolute difference the oracle can tell apart (finite
    differences: their rounding error); no scale goes below resolution / tol."""
    floor = max(1e-3 * max(_finite_max(r) for r in ref.values()), resolution / tol)
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


def _run(module: ModuleType, backend: str, params, x, y, states0, dtype: str):
    conv = {k: _to_backend(backend, v, dtype) for k, v in params.items()}
    loss, cache = module.forward(conv, _to_backend(backend, x, dtype),
                                 _to_backend(backend, y, dtype),
                                 *(_to_backend(backend, s, dtype) for s in states0))
    grads = module.backward(conv, cache, input_grad=True)
    return float(loss), {k: _numpy(v) for k, v in grads.items()}


def _fd_estimate(shifted, value: np.ndarray, grad, entrywise_max: int, rng):
    """(numerical, analytical): entrywise central differences, or along one direction."""
    if value.size <= entrywise_max:
        num = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            step = np.zeros_like(value)
            step[i] = _EPS
            num[i] = (shifted(value + step) - shifted(value - step)) / (2 * _EPS)
        return num, grad
    v = rng.normal(size=value.shape)
    num = (shifted(value + _EPS * v) - shifted(value - _EPS * v)) / (2 * _EPS)
    return np.array([num]), np.array([float((grad * v).sum())])


def _finite_differences(module, backend, spec, params, x, y, states0, grads,
                        entrywise_max: int, seed: int, tol: float) -> list[Check]:
    state_names = [f"{s}_0" for s in _state_names(spec)]
    inputs = {**params, **dict(zip(state_names, states0, strict=True))}

    def loss_at(name, value):
        given = {**inputs, name: value}
        conv = {k: _to_backend(backend, given[k], "float64") for k in params}
        loss, _ = module.forward(conv, _to_backend(backend, x, "float64"),
                                 _to_backend(backend, y, "float64"),
                                 *(_to_backend(backend, given[s], "float64")
                                   for s in state_names))
        return float(loss)

    rng = np.random.default_rng(seed + 1)
    numerical, analytical = {}, {}
    for name, value in inputs.items():
        numerical[name], analytical[name] = _fd_estimate(
            lambda v, name=name: loss_at(name, v), value, grads[name], entrywise_max, rng)
    # a central difference of L in float64 carries a rounding error of about ε·|L|/h
    loss = abs(loss_at(next(iter(params)), params[next(iter(params))]))
    resolution = 10 * np.finfo(np.float64).eps * max(loss, 1.0) / _EPS
    return _compare("finite_differences", analytical, numerical, tol, resolution)


def _reference_checks(spec: Spec, params, x, y, states0, grads, tol: dict, options: dict,
                      ) -> list[Check]:
    """The generated gradients against autograd and, where one matches, torch.nn."""
    t64 = {k: torch.as_tensor(v) for k, v in params.items()}
    args = (t64, torch.as_tensor(x), torch.as_tensor(y),
            tuple(torch.as_tensor(s) for s in states0))
    _, ref = reference_grads(spec, *args, **options)
    checks = _compare("autograd", grads, ref, tol["autograd"])
    nn = torch_nn_grads(spec, *args, **options)
    if nn is not None:
        checks += _compare("torch.nn", grads, nn[1], tol["torch.nn"])
    return checks


def verify(spec: Spec, backend: str = "numpy", *, T: int = 7, batch: int = 5,
           dtype: str = "float64", seed: int = 0, tbptt: tuple[int, int] | None = None,
           clip: float | None = None, clip_value: float | None = None,
           finite_differences: bool = True, entrywise_max: int = 32,
           module: ModuleType | None = None, raise_exception: bool = True) -> Report:
    """Check the generated gradients of ``spec`` against autograd, torch.nn (torch layout)
    and finite differences."""
    from symrnn.codegen import compile as compile_module

    T = check_T(T)
    if dtype not in TOLERANCES:
        raise SymrnnError(f"dtype: expected one of {', '.join(TOLERANCES)}, got {dtype!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise SymrnnError(f"batch: expected a positive integer, got {batch!r}")
    if module is None:
        module = compile_module(spec, backend, tbptt, clip, clip_value=clip_value)
    params, x, y, states0 = _data(spec, module.PARAM_SHAPES, T, batch, seed)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # reported below
        _, grads = _run(module, backend, params, x, y, states0, dtype)
    tol = TOLERANCES[dtype]
    options = {"tbptt": tbptt, "clip": clip, "clip_value": clip_value}
    checks = _reference_checks(spec, params, x, y, states0, grads, tol, options)
    if finite_differences and tbptt is None and clip is None and clip_value is None:
        if dtype != "float64":
            _, grads = _run(module, backend, params, x, y, states0, "float64")
        checks += _finite_differences(module, backend, spec, params, x, y, states0, grads,
                                      entrywise_max, seed, tol["finite_differences"])
    return _conclude(Report(spec, backend, T, batch, dtype, tuple(checks)), raise_exception)


def _conclude(report: Report, raise_exception: bool) -> Report:
    if raise_exception and not report.ok:
        worst = max(report.failures, key=lambda c: c.error / c.tolerance)
        if report.nonfinite:
            worst = report.nonfinite[0]
        raise VerificationError(worst.message(report.T))
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
