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
* Composed networks (``bidirectional``, topology ``one_to_many`` with feed zeros or
  repeat, ``encoder_decoder``; see :func:`composed`) call the module's ``loss_and_grad``
  and compare every parameter, every free initial state (``{state}_0``) and ``x``:
  autograd on :func:`_composed_loss`, which runs each layer over the whole sequence per
  direction (the reverse one from t = T down, from h_reverse_0) and feeds the next layer
  and the head [h_t; h_reverse_t] (notes layout: W_x{g} and W_x{g}_rev joined as
  columns; W_hy and W_hy_rev likewise), an encoder_decoder's decoder (``_dec``) starting
  from the encoder's last states and reading y0, y_1..y_{T_out−1}; ``torch.nn`` for the
  torch layout (``bidirectional=True``, torch's names weight_ih_l1_reverse ...; two
  modules for encoder_decoder); finite differences of the module's forward.  No
  deltas are compared there, and truncation and clipping are refused.
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
           "reference_grads", "torch_nn_grads", "codegen_section", "composed",
           "composed_state_names", "composed_reference_grads", "composed_torch_nn_grads"]

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
    T_out: int | None = None
    """encoder_decoder: the decoder's steps (T is the encoder's)."""

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
                **({} if self.T_out is None else {"T_out": self.T_out}),
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
    return _gates_at(spec, p, _suffix(layer))


def _gates_at(spec: Spec, p: dict, sfx: str) -> dict[str, _Gate]:
    """Per-gate views of the parameters named with suffix ``sfx`` ('', ``_l1``,
    ``_reverse``, ``_l1_reverse``, ``_dec``, ``_dec_l1``).  An upper bidirectional layer
    reads [h; h_reverse]: torch's weight_ih is already 2H wide; in the notes layout the
    gate's W_x{g}{sfx} (forward half) and W_x{g}_rev{sfx} (reverse half) are joined."""
    letters = REFERENCE_CELLS[spec.cell].gates
    if spec.layout == "torch":
        blocks = [p[n + sfx].chunk(len(letters)) if n + sfx in p else (None,) * len(letters)
                  for n in _STACKS]
        return {g: _Gate(*parts) for g, *parts in zip(letters, *blocks, strict=True)}
    return {g: _Gate(_columns(p, f"W_x{g}{sfx}", f"W_x{g}_rev{sfx}"), p[f"W_h{g}{sfx}"],
                     p.get(f"b_{g}{sfx}"), p.get(f"b_h{g}{sfx}")) for g in letters}


def _columns(p: dict, name: str, rev: str):
    """W or [W, W_rev] (the columns multiplying [h; h_reverse]) where W_rev exists."""
    return p[name] if rev not in p else torch.cat([p[name], p[rev]], dim=1)


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


# ------------------------------------------------------------------ composed architectures


def composed(spec: Spec) -> bool:
    """Bidirectional, one_to_many or encoder_decoder: the generated module composes layer
    functions (``loss_and_grad(params, x, y, *states, y0=None, input_grad=False)``)."""
    return spec.bidirectional or spec.topology in ("one_to_many", "encoder_decoder")


def _directions(spec: Spec) -> tuple[str, ...]:
    return ("", "_reverse") if spec.bidirectional else ("",)


def composed_state_names(spec: Spec) -> tuple[str, ...]:
    """The free initial states of a composed network, layer by layer, forward then reverse:
    h, c, h_reverse, c_reverse, h_l1, ... (the encoder's for encoder_decoder)."""
    own = REFERENCE_CELLS[spec.cell].states
    return tuple(s + _suffix(layer) + d for layer in range(spec.num_layers)
                 for d in _directions(spec) for s in own)


def _sequence(spec: Spec, x, T: int) -> list:
    """The input at each step: x_1..x_T, or one_to_many's x, then zeros or x again."""
    if spec.topology != "one_to_many":
        return list(x.unbind(1))
    later = x if spec.feed == "repeat" else torch.zeros_like(x)
    return [x] + [later] * (T - 1)


def _run_direction(spec: Spec, p: dict, sfx: str, xs: list, init: tuple, reverse: bool):
    """One recurrence over the whole sequence (t = T..1 when ``reverse``): h_t at every
    position in time order, and the last states reached."""
    cell, act = REFERENCE_CELLS[spec.cell], elementwise(spec.activation).torch_impl
    gates, outs, state = _gates_at(spec, p, sfx), [None] * len(xs), init
    for t in (reversed(range(len(xs))) if reverse else range(len(xs))):
        state = cell.step(act, gates, state, xs[t])
        outs[t] = state[0]
    return outs, state


def _run_stage(spec: Spec, p: dict, stage: str, xs: list, init: dict) -> tuple[list, dict]:
    """Every layer of the encoder (``stage`` '') or decoder ('_dec') over ``xs``, layer by
    layer; layer l's input at t is layer l−1's [h_t; h_reverse_t].  ``init``: states by
    name without the stage (h, c_l1_reverse, ...); returns the top outputs and the last
    states under the same names."""
    own, last = REFERENCE_CELLS[spec.cell].states, {}
    for layer in range(spec.num_layers):
        per_direction = []
        for d in _directions(spec):
            names = [s + _suffix(layer) + d for s in own]
            outs, final = _run_direction(spec, p, stage + _suffix(layer) + d, xs,
                                         tuple(init[n] for n in names), d == "_reverse")
            last.update(zip(names, final, strict=True))
            per_direction.append(outs)
        xs = [torch.cat(hs, dim=-1) for hs in zip(*per_direction, strict=True)]
    return xs, last


def _fed_back_loss(spec: Spec, p: dict, x, y, s0: dict):
    """one_to_many with feedback: x_1 = x, x_{t+1} = ŷ_t; every layer steps once per t."""
    cell, act = REFERENCE_CELLS[spec.cell], elementwise(spec.activation).torch_impl
    head = {"W_hy": p["W_hy"], "b_y": p.get("b_y")}
    state = {k: tuple(s0[s + _suffix(k)] for s in cell.states) for k in range(spec.num_layers)}
    inp, loss = x, 0
    for t in range(y.shape[1]):
        for k in range(spec.num_layers):
            state[k] = cell.step(act, _gates_at(spec, p, _suffix(k)), state[k], inp)
            inp = state[k][0]
        loss = loss + _step_loss(spec, head, inp, y[:, t])
        z = _affine(inp, head["W_hy"], head.get("b_y"))
        inp = _HEADS[spec.head](z)
    return loss


def _composed_loss(spec: Spec, p: dict, x, y, s0: dict, y0):
    """L of the composed network (the textbook definition), as a torch scalar."""
    if spec.feed == "feedback":
        return _fed_back_loss(spec, p, x, y, s0)
    T = y.shape[1] if spec.topology == "one_to_many" else x.shape[1]
    top, last = _run_stage(spec, p, "", _sequence(spec, x, T), s0)
    if spec.topology == "encoder_decoder":  # teacher forcing from y_0 = y0
        start = y0 if y0 is not None else torch.zeros_like(y[:, 0])
        top, _ = _run_stage(spec, p, "_dec", [start, *y.unbind(1)[:-1]], last)
    head = {"W_hy": _columns(p, "W_hy", "W_hy_rev"), "b_y": p.get("b_y")}
    loss = 0
    for t in range(1, len(top) + 1):
        target = _target(spec, y, t, len(top))
        if target is not None:
            loss = loss + _step_loss(spec, head, top[t - 1], target)
    return loss


def composed_reference_grads(spec: Spec, params: dict, x, y, states0: dict, y0=None,
                             ) -> tuple[float, dict]:
    """Loss and gradients (every parameter, ``{state}_0`` for every free initial state,
    ``x``) by torch.autograd on :func:`_composed_loss` (float64 tensors in, numpy out)."""
    p = {k: _leaf(v) for k, v in params.items()}
    s0 = {k: _leaf(v) for k, v in states0.items()}
    x = _leaf(x)
    loss = _composed_loss(spec, p, x, y, s0, y0)
    loss.backward()
    grads = {k: _grad(v) for k, v in p.items()}
    grads.update({f"{k}_0": _grad(v) for k, v in s0.items()})
    grads["x"] = _grad(x)
    return float(loss.detach()), grads


def _composed_nn(spec: Spec, params: dict, stage: str, width: int):
    """torch.nn.RNN/LSTM/GRU (bidirectional as the spec) holding the stage's parameters
    (torch's names: weight_ih_l0, weight_ih_l0_reverse, weight_ih_l1, ...), and the map
    ours → theirs; None where torch.nn has no such module."""
    made = REFERENCE_CELLS[spec.cell].nn(spec) if spec.layout == "torch" else None
    if made is None:
        return None
    cls, kwargs = made
    names = {n + stage + _suffix(k) + d: f"{n}_l{k}{d}" for k in range(spec.num_layers)
             for d in _directions(spec) for n in _STACKS
             if n + stage + _suffix(k) + d in params}
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # its random init: overwritten
        rnn = cls(width, spec.hidden_size, num_layers=spec.num_layers, bias=spec.bias,
                  batch_first=True, bidirectional=spec.bidirectional, dtype=torch.float64,
                  **kwargs)
        for ours, theirs in names.items():
            getattr(rnn, theirs).copy_(params[ours])
    return rnn, names


def _pack(spec: Spec, states: dict):
    """torch.nn's initial state: (L·directions, B, H) per cell state, h then c."""
    own = REFERENCE_CELLS[spec.cell].states
    packed = tuple(torch.stack([states[s + _suffix(k) + d] for k in range(spec.num_layers)
                                for d in _directions(spec)]) for s in own)
    return packed if len(own) > 1 else packed[0]


def composed_torch_nn_grads(spec: Spec, params: dict, x, y, states0: dict, y0=None,
                            ) -> tuple[float, dict] | None:
    """Loss and gradients of torch.nn.RNN/LSTM/GRU(num_layers, bidirectional) with the
    same weights (two modules, encoder and decoder, for encoder_decoder), the same head
    and loss; torch layout only, None where no torch.nn module matches."""
    enc = _composed_nn(spec, params, "", spec.input_size)
    dec = (_composed_nn(spec, params, "_dec", spec.output_size)
           if spec.topology == "encoder_decoder" else None)
    if enc is None:
        return None
    head = {k: _leaf(params[k]) for k in ("W_hy", "W_hy_rev", "b_y") if k in params}
    s0 = {k: _leaf(v) for k, v in states0.items()}
    x = _leaf(x)
    T = y.shape[1] if spec.topology == "one_to_many" else x.shape[1]
    out, last = enc[0](torch.stack(_sequence(spec, x, T), dim=1), _pack(spec, s0))
    if dec is not None:
        start = y0 if y0 is not None else torch.zeros_like(y[:, 0])
        out, _ = dec[0](torch.cat([start[:, None], y[:, :-1]], dim=1), last)
    W = _columns(head, "W_hy", "W_hy_rev")  # noqa: N806
    total = 0
    for t in range(1, out.shape[1] + 1):
        target = _target(spec, y, t, out.shape[1])
        if target is not None:
            total = total + _step_loss(spec, {"W_hy": W, "b_y": head.get("b_y")},
                                       out[:, t - 1], target)
    total.backward()
    owner = {**{k: getattr(enc[0], v) for k, v in enc[1].items()},
             **({k: getattr(dec[0], v) for k, v in dec[1].items()} if dec else {}), **head}
    grads = {k: _grad(owner[k]) for k in params}
    grads.update({f"{k}_0": _grad(v) for k, v in s0.items()})
    grads["x"] = _grad(x)
    return float(total.detach()), grads


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
    return _random_targets(spec, rng, (B, T, O) if spec.topology == "many_to_many" else (B, O))


def _random_targets(spec: Spec, rng, y_shape: tuple) -> np.ndarray:
    O = spec.output_size  # noqa: E741
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
        if name not in gen:
            raise VerificationError(f"the generated gradients lack dL/d{name}")
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
                        entrywise_max: int, seed: int, tol: float, state_names=None,
                        extra: dict | None = None) -> list[Check]:
    """``state_names``: the names of ``states0`` (default: the single network's);
    ``extra``: keyword arguments of the module's forward (a composed network's y0)."""
    state_names = [f"{s}_0" for s in (state_names or _state_names(spec))]
    inputs = {**params, **dict(zip(state_names, states0, strict=True))}

    def loss_at(name, value):
        given = {**inputs, name: value}
        conv = {k: _to_backend(backend, given[k], "float64") for k in params}
        loss, _ = module.forward(conv, _to_backend(backend, x, "float64"),
                                 _to_backend(backend, y, "float64"),
                                 *(_to_backend(backend, given[s], "float64")
                                   for s in state_names), **(extra or {}))
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


# ------------------------------------------------------------------ checking composed


def _composed_recurrent(spec: Spec, shapes: dict) -> list[str]:
    """Every parameter multiplying a previous h: weight_hh…, W_h{g}… (any suffix)."""
    letters = REFERENCE_CELLS[spec.cell].gates
    return [n for n in shapes if n.startswith("weight_hh")
            or (n[:3] == "W_h" and n[3:4] in letters and n[4:5] in ("", "_"))]


def _composed_data(spec: Spec, module: ModuleType, T: int, T_out: int, B: int, seed: int):
    """Parameters, x, y, the free initial states (in the module's STATES order) and y0."""
    names = composed_state_names(spec)
    if tuple(module.STATES) != names:
        raise VerificationError(f"generated module's STATES {tuple(module.STATES)} differ "
                                f"from the reference's {names}")
    rng = np.random.default_rng(seed)
    H, D, O = spec.hidden_size, spec.input_size, spec.output_size  # noqa: E741,N806
    shapes = module.PARAM_SHAPES
    params = {k: rng.normal(scale=0.6, size=s) for k, s in shapes.items()}
    for name in _composed_recurrent(spec, shapes):
        params[name] = _contract(params[name], H)
    if spec.topology == "one_to_many":
        x, y_shape = rng.normal(size=(B, D)), (B, T, O)
    elif spec.topology == "encoder_decoder":
        x, y_shape = rng.normal(size=(B, T, D)), (B, T_out, O)
    else:
        x = rng.normal(size=(B, T, D))
        y_shape = (B, O) if spec.topology == "many_to_one" else (B, T, O)
    states0 = tuple(rng.normal(scale=0.5, size=(B, H)) for _ in names)
    y = _random_targets(spec, rng, y_shape)
    y0 = _random_targets(spec, rng, (B, O)) if spec.topology == "encoder_decoder" else None
    return params, x, y, states0, y0


def _composed_run(module: ModuleType, backend: str, params, x, y, states0, y0, dtype: str):
    conv = {k: _to_backend(backend, v, dtype) for k, v in params.items()}
    try:
        loss, grads = module.loss_and_grad(
            conv, _to_backend(backend, x, dtype), _to_backend(backend, y, dtype),
            *(_to_backend(backend, s, dtype) for s in states0),
            y0=None if y0 is None else _to_backend(backend, y0, dtype), input_grad=True)
    except (ValueError, IndexError, KeyError, RuntimeError) as err:  # a generated-code bug
        raise VerificationError(f"the generated loss_and_grad failed on the random data: "
                                f"{type(err).__name__}: {err}") from err
    return float(loss), {k: _numpy(v) for k, v in grads.items()}


def _composed_checks(spec: Spec, backend: str, module: ModuleType, T: int, T_out: int,
                     batch: int, dtype: str, seed: int, finite_differences: bool,
                     entrywise_max: int) -> list[Check]:
    params, x, y, states0, y0 = _composed_data(spec, module, T, T_out, batch, seed)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # reported below
        _, grads = _composed_run(module, backend, params, x, y, states0, y0, dtype)
    tol = TOLERANCES[dtype]
    names = composed_state_names(spec)
    t64 = {k: torch.as_tensor(v) for k, v in params.items()}
    args = (t64, torch.as_tensor(x), torch.as_tensor(y),
            {n: torch.as_tensor(s) for n, s in zip(names, states0, strict=True)},
            None if y0 is None else torch.as_tensor(y0))
    checks = _compare("autograd", grads, composed_reference_grads(spec, *args)[1],
                      tol["autograd"])
    nn = composed_torch_nn_grads(spec, *args)
    if nn is not None:
        checks += _compare("torch.nn", grads, nn[1], tol["torch.nn"])
    if finite_differences:
        if dtype != "float64":
            _, grads = _composed_run(module, backend, params, x, y, states0, y0, "float64")
        checks += _finite_differences(module, backend, spec, params, x, y, states0, grads,
                                      entrywise_max, seed, tol["finite_differences"],
                                      state_names=names,
                                      extra={"y0": None if y0 is None else
                                             _to_backend(backend, y0, "float64")})
    return checks


def verify(spec: Spec, backend: str = "numpy", *, T: int = 7, batch: int = 5,
           dtype: str = "float64", seed: int = 0, tbptt: tuple[int, int] | None = None,
           clip: float | None = None, clip_value: float | None = None,
           finite_differences: bool = True, entrywise_max: int = 32,
           module: ModuleType | None = None, raise_exception: bool = True,
           T_out: int | None = None) -> Report:  # noqa: N803
    """Check the generated gradients of ``spec`` against autograd, torch.nn (torch layout)
    and finite differences.  ``T``: the input steps (one_to_many: the output steps);
    ``T_out``: encoder_decoder's output steps (default max(1, T // 2))."""
    from symrnn.codegen import compile as compile_module

    T = check_T(T)
    if dtype not in TOLERANCES:
        raise SymrnnError(f"dtype: expected one of {', '.join(TOLERANCES)}, got {dtype!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise SymrnnError(f"batch: expected a positive integer, got {batch!r}")
    if module is None:
        module = compile_module(spec, backend, tbptt, clip, clip_value=clip_value)
    if composed(spec):
        if tbptt is not None or clip is not None or clip_value is not None:
            raise SymrnnError("truncated BPTT and clipping are not verified for "
                              "bidirectional, one_to_many or encoder_decoder networks "
                              "(generated clipping is tested in "
                              "tests/test_codegen_architectures.py)")
        T_out = None if spec.topology != "encoder_decoder" else check_T(  # noqa: N806
            max(1, T // 2) if T_out is None else T_out)
        checks = _composed_checks(spec, backend, module, T, T_out, batch, dtype, seed,
                                  finite_differences, entrywise_max)
        return _conclude(Report(spec, backend, T, batch, dtype, tuple(checks), T_out),
                         raise_exception)
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
