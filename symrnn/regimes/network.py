"""A concrete network for regime measurements (any cell), and the generated kernel.

Parameters use the column-vector math shapes of the generated code (and of
``torch.nn.RNN``): W_hh (H, H), W_xh (H, D), b_h (H,), W_hy (O, H), b_y (O,); a gated
cell has W_h{g} (H, H), W_x{g} (H, D) and b_{g} (H,) per gate g.
Inputs are batch-first: x (B, T, D); many_to_one targets y (B, O).

Measurements always use the many_to_one topology (the loss sits at t = T
only), so ∂L/∂h_k depends on the lag T - k alone.  Random inputs are
x_t ~ N(0, s²) with s = ``input_scale`` (default :data:`INPUT_SCALE`);
random W_xh ~ N(0, 1/D), W_hy ~ N(0, 1/H), biases zero, targets N(0, 1).
"""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np

from symrnn.engine.graph import network
from symrnn.errors import SpecError, SymrnnError
from symrnn.ops import NUMPY_ALGEBRA, elementwise
from symrnn.spec import DEFAULT_SPEC, Spec

__all__ = [
    "INPUT_SCALE",
    "DEFAULT_HIDDEN",
    "default_hidden",
    "PARAM_NAMES",
    "regime_spec",
    "spectral",
    "random_params",
    "random_sequence",
    "trajectory",
    "kernel",
]

INPUT_SCALE = 1.0
DEFAULT_HIDDEN = 32
"""H used when the spec keeps the library default size (3 is too small for regimes)."""
PARAM_NAMES = ("W_hh", "W_xh", "b_h", "W_hy", "b_y")


def regime_spec(spec: Spec, *, hidden_size: int | None = None, input_size: int | None = None,
                output_size: int | None = None) -> Spec:
    """``spec`` made concrete, many_to_one and per-gate named (layout 'notes'); any cell.

    The regime is a property of one recurrence: a bidirectional network's two directions
    are the same recurrence with their own weights, an encoder–decoder's stages two of
    them, so one forward recurrence (with the spec's layers) is what is measured.

    Cells other than Elman are measured by :mod:`symrnn.regimes.gated`; the spectral
    sweep (:mod:`symrnn.regimes.sweep`) needs :func:`spectral`.
    """
    changes = {"topology": "many_to_one", "layout": "notes", "bidirectional": False,
               "feed": "zeros"}
    for name, value in (("hidden_size", hidden_size), ("input_size", input_size),
                        ("output_size", output_size)):
        if value is not None:
            changes[name] = int(value)
    out = spec.replace(**changes)
    if not out.is_concrete:
        raise SpecError(
            "gradient regimes need integer sizes, got "
            f"H={out.hidden_size}, D={out.input_size}, O={out.output_size}"
        )
    return out


def spectral(spec: Spec) -> bool:
    """Whether Pascanu's analysis of one matrix applies: a single state and W_hh."""
    net = network(spec)
    return len(net.states) == 1 and "W_hh" in net.params


def default_hidden(spec: Spec) -> int:
    """The spec's H when the user chose one, else :data:`DEFAULT_HIDDEN`."""
    H = spec.hidden_size
    if isinstance(H, int) and H != DEFAULT_SPEC.hidden_size:
        return H
    return DEFAULT_HIDDEN


def random_params(spec: Spec, W_hh: np.ndarray, rng: np.random.Generator) -> dict:
    """Every parameter of ``spec``: the given W_hh, the rest drawn as documented above."""
    H, D, n_out = spec.hidden_size, spec.input_size, spec.output_size
    if W_hh.shape != (H, H):
        raise SpecError(f"W_hh must have shape ({H}, {H}), got {W_hh.shape}")
    params = {
        "W_hh": np.asarray(W_hh, dtype=float),
        "W_xh": rng.standard_normal((H, D)) / np.sqrt(D),
        "W_hy": rng.standard_normal((n_out, H)) / np.sqrt(H),
    }
    if spec.bias:
        params["b_h"] = np.zeros(H)
        params["b_y"] = np.zeros(n_out)
    return params


def random_sequence(spec: Spec, T: int, rng: np.random.Generator, *,
                    input_scale: float = INPUT_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """One sequence (B = 1): x of shape (1, T, D) and a many_to_one target."""
    x = input_scale * rng.standard_normal((1, T, spec.input_size))
    if spec.loss == "cross_entropy":
        y = np.zeros((1, spec.output_size))
        y[0, rng.integers(spec.output_size)] = 1.0
    else:
        y = rng.standard_normal((1, spec.output_size))
    return x, y


def trajectory(spec: Spec, params: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hidden states and local derivatives of one sequence x (1, T, D), h_0 = 0.

    Returns (h, d): h of shape (T + 1, H) with h[0] = h_0, and d of shape
    (T, H) with d[t-1] = f'(a_t), computed from the stored outputs by the
    same rule table the derivation uses (:mod:`symrnn.ops`).
    """
    f = elementwise(spec.activation).numpy_impl
    W, U = params["W_hh"], params["W_xh"]
    b = params.get("b_h", np.zeros(W.shape[0]))
    T = x.shape[1]
    h = np.zeros((T + 1, W.shape[0]))
    with np.errstate(over="ignore", invalid="ignore"):
        for t, x_t in enumerate(x[0], start=1):
            h[t] = f(W @ h[t - 1] + U @ x_t + b)
        d = elementwise(spec.activation).derivative(h[1:], NUMPY_ALGEBRA)
    return h, d


def kernel(spec: Spec, backend: str = "numpy", *, clip: float | None = None) -> ModuleType:
    """The generated forward/backward module for ``spec`` (``symrnn.compile``).

    With ``clip`` the generated backward applies global-norm clipping at that
    threshold to the parameter gradients (``delta`` and ``h_0`` are unclipped).
    """
    return _compiled(spec, backend, clip)


@functools.cache
def _compiled(spec: Spec, backend: str, clip: float | None = None) -> ModuleType:
    try:
        from symrnn.codegen import compile as compile_spec
    except ImportError as err:
        raise SymrnnError(
            "gradient regimes measure with generated code, but symrnn.codegen is not "
            f"available ({err})"
        ) from None
    return compile_spec(spec, backend=backend, clip=clip)
