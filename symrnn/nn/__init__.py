"""Drop-in ``torch.nn.RNN``, ``LSTM`` and ``GRU`` whose backward is the derived BPTT.

``symrnn.nn.LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
dropout=0.0, bidirectional=False)`` has torch's parameter names and shapes
(``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ``_reverse``),
loads a ``torch.nn.LSTM`` state_dict and back, and is called the same way:
``output, (h_n, c_n) = lstm(input, (h_0, c_0))`` (``RNN``/``GRU``: ``output, h_n``).

The forward and backward are a generated module (:func:`symrnn.compile` of the
bidirectional/stacked spec, layout 'torch': its layer functions and wiring,
``_run_stage``/``_back_stage``), compiled once per configuration and cached; an
``autograd.Function`` returns the gradients of the input, the initial states and every
parameter, so the module composes with any layers and loss.  ``backend``: 'auto' (the
generated NumPy functions on the CPU, on zero-copy views; torch's on a GPU), 'numpy',
'numba' (the compiled kernels, CPU; needs the ``numba`` extra) or 'torch'.  ``dropout``
between layers draws a Bernoulli mask with ``torch.rand`` (torch.nn's distribution, not its draws).
``GRU(reset="after")`` is torch's cell (and cuDNN's); ``reset="before"`` is Cho et
al.'s (symrnn's ``gru_v1``, no torch counterpart).  Packed sequences are not supported.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from symrnn.codegen import compile as compile_module
from symrnn.errors import SpecError
from symrnn.spec import Spec

__all__ = ["RNN", "LSTM", "GRU", "BACKENDS"]

BACKENDS = ("auto", "numpy", "numba", "torch")


@functools.lru_cache(maxsize=64)
def _module(cell: str, activation: str, input_size: int, hidden_size: int, num_layers: int,
            bias: bool, bidirectional: bool, backend: str):
    """The generated module of this configuration (its layer functions and wiring; the
    head it also has is not used here)."""
    spec = Spec(cell=cell, activation=activation, layout="torch", hidden_size=hidden_size,
                input_size=input_size, output_size=1, num_layers=num_layers, bias=bias,
                bidirectional=bidirectional)
    return compile_module(spec, backend, layered=True)


def _ours(name: str) -> str:
    """torch's parameter name → the generated module's (layer 0 carries no suffix)."""
    return name.replace("_l0", "")


class _Arrays:
    """Tensors in and out of one generated backend: NumPy views of CPU tensors (no copy),
    or the tensors themselves for the torch backend."""

    def __init__(self, numpy: bool):
        self.numpy = numpy

    def into(self, t):
        if t is None:
            return None
        return t.detach().contiguous().numpy() if self.numpy else t.contiguous()

    def out(self, a):
        return torch.from_numpy(np.ascontiguousarray(a)) if self.numpy else a

    def stack(self, arrays):
        return self.out(np.stack(arrays)) if self.numpy else torch.stack(arrays)


class _Stack(torch.autograd.Function):
    """(x, initial states…, weights…) → (output, final states…) through the generated layer
    functions; the states are the cell's (``CELL_STATES``: h, or h and c)."""

    @staticmethod
    def forward(ctx, owner, x, *tensors):
        backend = owner._backend_for(x)
        arrays = _Arrays(backend != "torch")
        mod = owner._compiled(backend)
        states, count = mod.CELL_STATES, len(mod.CELL_STATES)
        starts, weights = tensors[:count], tensors[count:]
        params = {n: arrays.into(w) for n, w in zip(owner._ours, weights, strict=True)}
        initial = owner._initial(states, [arrays.into(s) for s in starts])
        caches: dict = {}
        masks = owner._masks(x)
        masks = None if masks is None else [arrays.into(m) for m in masks]
        top = mod._run_stage(params, "", arrays.into(x), initial, caches, masks)
        ctx.owner, ctx.params, ctx.caches, ctx.masks = owner, params, caches, masks
        ctx.arrays, ctx.mod = arrays, mod
        finals = [arrays.stack([caches[d][s.upper() + "S"][-1] for d in owner._suffixes])
                  for s in states]
        return (arrays.out(top), *finals)

    @staticmethod
    def backward(ctx, grad_out, *grad_finals):
        owner, arrays, states = ctx.owner, ctx.arrays, ctx.mod.CELL_STATES
        final = {d: {s: arrays.into(g[k]) for s, g in zip(states, grad_finals, strict=True)}
                 for k, d in enumerate(owner._suffixes)}
        grads: dict = {}
        dx = ctx.mod._back_stage(ctx.params, "", arrays.into(grad_out), ctx.caches, grads,
                                 final, ctx.masks, input_grad=ctx.needs_input_grad[1])
        d_starts = [arrays.stack([grads[s + d + "_0"] for d in owner._suffixes])
                    if ctx.needs_input_grad[2 + i] else None for i, s in enumerate(states)]
        return (None, None if dx is None else arrays.out(dx), *d_starts,
                *(arrays.out(grads[n]) for n in owner._ours))


class _RNNBase(torch.nn.Module):
    """torch.nn.RNNBase's constructor, parameters and call, symrnn's gradients."""

    _cell = "elman"
    _gates = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None,
                 activation: str = "tanh", backend: str = "auto"):
        super().__init__()
        if backend not in BACKENDS:
            raise SpecError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, "
                            f"got {backend!r}")
        self.backend = backend
        if not 0.0 <= float(dropout) < 1.0:
            raise SpecError(f"dropout must be in [0, 1), got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self._activation = bidirectional, activation
        directions = ("", "_reverse") if bidirectional else ("",)
        self._suffixes = tuple(("" if k == 0 else f"_l{k}") + d for k in range(num_layers)
                               for d in directions)
        shapes = self._compiled().PARAM_SHAPES  # a bad configuration: a SpecError, now
        factory = {"device": device, "dtype": dtype}
        self._names = []
        for k in range(num_layers):
            for d in directions:
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    name = f"{kind}_l{k}{d}"
                    if _ours(name) in shapes:
                        value = torch.empty(shapes[_ours(name)], **factory)
                        self.register_parameter(name, torch.nn.Parameter(value))
                        self._names.append(name)
        self._ours = tuple(_ours(n) for n in self._names)
        self.reset_parameters()

    def _compiled(self, backend: str = "torch"):
        return _module(self._cell, self._activation, self.input_size, self.hidden_size,
                       self.num_layers, self.bias, self.bidirectional, backend)

    def _backend_for(self, x) -> str:
        """The generated backend that runs on ``x``: 'auto' is NumPy's functions on the CPU
        (fewer calls per step than torch's), torch's on a GPU.  'numba' (opt-in: its
        kernels compile on the first call of each configuration, then load from disk)
        runs on the CPU only."""
        if self.backend == "auto":
            return "numpy" if x.device.type == "cpu" else "torch"
        if self.backend == "numba" and x.device.type != "cpu":
            raise SpecError(f"backend 'numba' runs on the CPU; the input is on {x.device}")
        return self.backend

    def reset_parameters(self) -> None:
        """U(−1/√H, 1/√H) for every parameter, as torch.nn does."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for name in self._names:
                getattr(self, name).uniform_(-bound, bound)

    def _initial(self, states, starts) -> dict:
        """{state + suffix: its (B, H) start} for the given starts (None: zeros)."""
        return {s + suffix: start[k] for s, start in zip(states, starts, strict=True)
                if start is not None for k, suffix in enumerate(self._suffixes)}

    def _masks(self, x):
        if not (self.training and self.dropout > 0 and self.num_layers > 1):
            return None
        width = self.hidden_size * (2 if self.bidirectional else 1)
        keep = 1.0 - self.dropout
        return [(torch.rand(x.shape[0], x.shape[1], width, device=x.device, dtype=x.dtype)
                 < keep).to(x.dtype) / keep for _ in range(self.num_layers - 1)]

    def forward(self, input, hx=None):  # noqa: A002 - torch's argument name
        x = input if self.batch_first else input.transpose(0, 1)
        count = len(self._compiled().CELL_STATES)
        starts = (hx if isinstance(hx, tuple) else (hx,)) if hx is not None else (None,) * count
        if len(starts) != count:
            raise SpecError(f"hx: expected {count} tensors (one per state of the "
                            f"{type(self).__name__} cell), got {len(starts)}")
        weights = [getattr(self, n) for n in self._names]
        out, *finals = _Stack.apply(self, x.contiguous(), *starts, *weights)
        out = out if self.batch_first else out.transpose(0, 1)
        return out, (tuple(finals) if count > 1 else finals[0])


class RNN(_RNNBase):
    """torch.nn.RNN: h_t = tanh or relu(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None,
                 backend: str = "auto"):
        if nonlinearity not in ("tanh", "relu"):
            raise SpecError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, activation=nonlinearity,
                         backend=backend)


class LSTM(_RNNBase):
    """torch.nn.LSTM: gates i, f, g, o; forward returns (output, (h_n, c_n))."""

    _cell = "lstm"


class GRU(_RNNBase):
    """torch.nn.GRU (reset="after", torch's) or Cho et al.'s GRU (reset="before")."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, reset: str = "after",
                 backend: str = "auto"):
        if reset not in ("after", "before"):
            raise SpecError(f"reset must be 'after' (torch's) or 'before' (Cho et al.'s), "
                            f"got {reset!r}")
        self._cell = "gru" if reset == "after" else "gru_v1"
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, backend=backend)
