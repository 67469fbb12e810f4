"""Load a user's Elman network: a ``.npz`` of named arrays or a torch ``state_dict``.

Accepted names (a key may carry a module prefix such as ``rnn.``):

=========  =====================================================  ========
parameter  names                                                  shape
=========  =====================================================  ========
W_hh       W_hh, W, weight_hh_l0                                  (H, H)
W_xh       W_xh, U, weight_ih_l0                                  (H, D)
b_h        b_h, b, or bias_hh_l0 + bias_ih_l0 (summed)            (H,)
W_hy       W_hy, V                                                (O, H)
b_y        b_y, c                                                 (O,)
=========  =====================================================  ========

torch files are read with ``torch.load(..., weights_only=True)`` (no code
runs).  Only W_hh is required; :func:`complete` draws the missing ones as
:mod:`symrnn.regimes.network` documents and lists what it drew.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from symrnn.errors import SpecError, suggest
from symrnn.regimes.network import (
    INPUT_SCALE,
    kernel,
    random_params,
    random_sequence,
    regime_spec,
)
from symrnn.regimes.spectrum import spectral_radius
from symrnn.regimes.sweep import Backend, Run, run_one
from symrnn.spec import Spec

__all__ = ["NAMES", "Weights", "load_weights", "complete", "weights_runs"]

NAMES: dict[str, tuple[str, ...]] = {
    "W_hh": ("W_hh", "W", "weight_hh_l0"),
    "W_xh": ("W_xh", "U", "weight_ih_l0"),
    "b_h": ("b_h", "b"),
    "W_hy": ("W_hy", "V"),
    "b_y": ("b_y", "c"),
}
_TORCH_BIASES = ("bias_hh_l0", "bias_ih_l0")


@dataclass(frozen=True)
class Weights:
    """Named parameters found in a file, and the keys that were not used."""

    source: str
    params: dict
    ignored: tuple[str, ...]


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise SpecError(f"weights file not found: {path}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: np.asarray(data[k], dtype=float) for k in data.files}
        except (ValueError, TypeError, OSError, zipfile.BadZipFile) as err:
            raise SpecError(f"cannot read {path} as a .npz of numeric arrays: {err}") from None
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign files
        raise SpecError(
            f"cannot read {path} as a .npz or a torch state_dict: {str(err).splitlines()[0]}"
        ) from None
    if not isinstance(state, dict):
        raise SpecError(f"expected a state_dict (a dict of tensors) in {path}, "
                        f"got {type(state).__name__}")
    return {str(k): v.detach().double().numpy() for k, v in state.items()
            if isinstance(v, torch.Tensor)}


def _base(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def load_weights(path: str | Path) -> Weights:
    """Read and rename the arrays of ``path``; W_hh must be present."""
    path = Path(path)
    arrays = _read(path)
    by_base = {_base(k): k for k in arrays}
    params, used = {}, set()
    for name, aliases in NAMES.items():
        for alias in aliases:
            if alias in by_base:
                params[name] = arrays[by_base[alias]]
                used.add(by_base[alias])
                break
    if "b_h" not in params and any(b in by_base for b in _TORCH_BIASES):
        keys = [by_base[b] for b in _TORCH_BIASES if b in by_base]
        params["b_h"] = sum(arrays[k] for k in keys)
        used.update(keys)
    if "W_hh" not in params:
        known = [a for aliases in NAMES.values() for a in aliases]
        hint = suggest(next(iter(by_base), ""), known) if by_base else ""
        raise SpecError(
            f"no recurrent matrix in {path}: expected one of W_hh, W or weight_hh_l0, "
            f"got keys {sorted(arrays)}{hint}"
        )
    return Weights(str(path), params, tuple(sorted(set(arrays) - used)))


def complete(weights: Weights, spec: Spec, rng: np.random.Generator) -> tuple[Spec, dict, list]:
    """(regime spec, every parameter, notes on what was drawn) for a loaded network."""
    p = weights.params
    W = np.asarray(p["W_hh"], dtype=float)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise SpecError(f"W_hh must be square (H, H), got shape {W.shape}")
    H = W.shape[0]
    D = p["W_xh"].shape[1] if "W_xh" in p else spec.input_size
    n_out = p["W_hy"].shape[0] if "W_hy" in p else spec.output_size
    full = regime_spec(spec, hidden_size=H, input_size=D, output_size=n_out)
    drawn = random_params(full, W, rng)
    expected = {"W_xh": (H, D), "b_h": (H,), "W_hy": (n_out, H), "b_y": (n_out,)}
    notes = []
    for name, shape in expected.items():
        if name not in drawn:
            continue
        if name in p:
            if tuple(p[name].shape) != shape:
                raise SpecError(f"{name} must have shape {shape}, got {tuple(p[name].shape)}")
            drawn[name] = np.asarray(p[name], dtype=float)
        else:
            how = "zeros" if name.startswith("b_") else "drawn at random"
            notes.append(f"{name} not in file: {how}")
    return full, drawn, notes


def weights_runs(path: str | Path, spec: Spec, T: int, seeds: int, *,
                 clip: float | None = None, input_scale: float = INPUT_SCALE,
                 backend: Backend = kernel) -> tuple[Spec, list[str], list[Run]]:
    """Analyse and measure a saved network on ``seeds`` random input sequences."""
    weights = load_weights(path)
    full, params, notes = complete(weights, spec, np.random.default_rng(0))
    notes.append(f"inputs x_t ~ N(0, {input_scale:g}²), one sequence per seed")
    if weights.ignored:
        notes.append("ignored keys: " + ", ".join(weights.ignored))
    radius = round(spectral_radius(params["W_hh"]), 6)
    runs = []
    for seed in range(seeds):
        x, y = random_sequence(full, T, np.random.default_rng(seed), input_scale=input_scale)
        runs.append(run_one(full, params, x, y, family="weights", radius=radius, seed=seed,
                            clip=clip, backend=backend))
    return full, notes, runs
