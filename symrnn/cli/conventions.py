"""``symrnn check --function FILE.py:NAME``: the conventions of a hand-written BPTT function.

:func:`function_options` adds ``--function`` and one flag per field of
:class:`symrnn.formula.conventions.Conventions` (its module doc says what each means)
and passes ``function``: None, or a :class:`FunctionCheck` that runs
:func:`symrnn.formula.function.check_function`.  The file is the user's own code,
imported with :mod:`importlib` as pytest imports a test file; no string is evaluated.
A convention flag without ``--function`` is refused (exit 2).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from symrnn.cli.common import UserError, parse_tbptt
from symrnn.cli.io import COUNT, POSITIVE_FINITE

__all__ = ["function_options", "FunctionCheck", "load_function"]

_FIELDS = {  # option → (Conventions field, click type or None, help)
    "--inputs": ("inputs", None, "Keyword of the inputs (default: inputs)."),
    "--targets": ("targets", None, "Keyword of the targets (default: targets)."),
    "--vectors": ("vectors", click.Choice(["column", "row", "1d"]),
                  "Per-step vectors: column (n, B) with W @ h; row (B, n) or (n,) with "
                  "h @ W' (weights transposed); 1d (n,) with W @ h."),
    "--batch-axis": ("batch_axis", click.Choice(["0", "none"]),
                     "Row vectors: 0 for (B, n) arrays, none for (n,) (default: none)."),
    "--sequence": ("sequence", click.Choice(["list", "stacked", "time_major", "batch_first"]),
                   "A list of per-step arrays, one (T, ...) array (stacked = time_major), "
                   "or (B, T, n) (batch_first; row vectors, --batch-axis 0)."),
    "--input-kind": ("input_kind", click.Choice(["vector", "index", "one_hot"]),
                     "index: the function gets integer indices (x_t one-hot, W_xh its "
                     "embedding); one_hot: one-hot vectors."),
    "--target-kind": ("target_kind", click.Choice(["vector", "index"]),
                      "index: class indices (cross-entropy)."),
    "--time": ("time", click.Choice(["sum", "mean"]), "The loss over time: sum or mean."),
    "--batch": ("batch", COUNT, "Sequences per call B (default 1)."),
    "--batch-reduction": ("batch_reduction", click.Choice(["sum", "mean"]),
                          "The loss over the batch: sum or mean."),
    "--initial-value": ("initial_value", click.Choice(["random", "zero"]),
                        "h_0 drawn at random (default) or zero (the function starts from "
                        "zeros)."),
    "--biases": ("biases", click.Choice(["one", "two"]),
                 "two: b_ih and b_hh as torch (checks the spec with layout torch)."),
    "--bias-ndim": ("bias_ndim", click.Choice(["1"]), "1: biases are (n,) arrays."),
    "--gate-order": ("gate_order", None,
                     "Gate order of stacked weights (ifgo, ifog, gifo, ...; GRU rzn, ...)."),
    "--clip": ("clip", POSITIVE_FINITE,
               "The function rescales its gradients to global norm G when above it."),
    "--clip-value": ("clip_value", POSITIVE_FINITE,
                     "The function clamps every gradient entry to [-c, c]."),
    "--returned": ("returned", click.Choice(["gradient", "negative_gradient", "update"]),
                   "What it returns: the gradient, -gradient, or the update -lr * gradient."),
    "--lr": ("lr", POSITIVE_FINITE, "Learning rate of --returned update."),
    "--dtype": ("dtype", click.Choice(["float64", "float32"]),
                "float32: arrays passed as float32, compared with rtol 1e-4, atol 1e-5."),
}


def _option(flag: str, kind, help_text: str) -> Callable:
    return click.option(flag, _FIELDS[flag][0], type=kind, default=None, help=help_text)


def load_function(ref: str) -> Callable:
    """``path/to/file.py:name`` → the function (the file imported as a module)."""
    path_text, sep, name = ref.rpartition(":")
    if not sep or not name or not path_text:
        raise UserError(f"--function expected FILE.py:NAME, got {ref!r}")
    path = Path(path_text)
    if path.suffix != ".py" or not path.is_file():
        raise UserError(f"--function: {path_text!r} is not a Python file (expected FILE.py)")
    module_name = f"symrnn_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file failed to import: say so in one line
        raise UserError(f"--function: importing {path_text} failed: "
                        f"{type(err).__name__}: {err}") from err
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"--function: {path_text} has no function {name!r}")
    return fn


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    out = {}
    for item in values:
        ours, sep, theirs = item.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise UserError(f"{flag} expected OURS=THEIRS (e.g. W_xh=Wxh), got {item!r}")
        out[ours.strip()] = theirs.strip()
    return out


def _initial_state(text: str | None):
    if text is None:
        return ...
    if text == "none":
        return None
    if "=" in text:
        return _pairs(tuple(text.split(",")), "--initial-state")
    return text


def _conventions(fields: dict, param: tuple, initial_state, returns, tbptt,
                 initial_state_gradient: bool):
    from symrnn.formula.conventions import Conventions

    given = {k: v for k, v in fields.items() if v is not None}
    if "batch_axis" in given:
        given["batch_axis"] = None if given["batch_axis"] == "none" else 0
    if "bias_ndim" in given:
        given["bias_ndim"] = int(given["bias_ndim"])
    if param:
        given["params"] = _pairs(param, "--param")
    state = _initial_state(initial_state)
    if state is not ...:
        given["initial_state"] = state
    if returns is not None:
        given["returns"] = tuple(r.strip() for r in returns.split(","))
    if tbptt is not None:
        given["tbptt"] = parse_tbptt(tbptt)
    if initial_state_gradient:
        given["initial_state_constant"] = False
    return Conventions(**given)


@dataclass(frozen=True)
class FunctionCheck:
    fn: Callable
    conventions: object
    instances: int

    def check(self, formula, spec, *, wrt, T, seed):  # noqa: N803
        if formula is not None:
            raise UserError("--function checks a function; drop the FORMULA argument")
        from symrnn.formula.function import check_function

        return check_function(self.fn, spec, wrt=wrt or "W_hh", conventions=self.conventions,
                              T=T or 3, instances=self.instances, seed=seed)


def function_options(fn: Callable) -> Callable:
    """Add --function and the convention flags; pass ``function`` (None or a FunctionCheck)."""

    @click.option("--function", "function_ref", metavar="FILE.py:NAME",
                  help="Check the BPTT function NAME in FILE.py (imported) instead of a formula.")
    @click.option("--param", multiple=True, metavar="OURS=THEIRS",
                  help="Map a parameter to the function's keyword, repeatable: per-gate "
                       "(W_xf=Wxf), aliases (W=Whh) or torch's stacks (weight_ih=Wx).  "
                       "Default: min-char-rnn's Wxh, Whh, Why, bh, by.")
    @click.option("--initial-state", help="Keyword of h_0 (default hprev), state=keyword,... "
                                          "(h=hprev,c=cprev) or none.")
    @click.option("--returns", help="Comma-separated names of the returned tuple: loss, "
                                    "parameter or stack names, h_0, h_last, _ (ignored).")
    @click.option("--tbptt", help="The function truncates BPTT: k1,k2 (every k1 steps, "
                                  "backpropagate k2).")
    @click.option("--initial-state-gradient", is_flag=True,
                  help="The function also returns dL/dh_0 (check it with --wrt h_0).")
    @click.option("--instances", type=COUNT, default=3, show_default=True,
                  help="Random instances (calls of the function).")
    @functools.wraps(fn)
    def wrapper(*args, function_ref, param, initial_state, returns, tbptt,
                initial_state_gradient, instances, **kwargs):
        fields = {_FIELDS[f][0]: kwargs.pop(_FIELDS[f][0]) for f in _FIELDS}
        used = [f for f, v in zip(_FIELDS, fields.values(), strict=True) if v is not None]
        used += [f for f, v in (("--param", param), ("--initial-state", initial_state),
                                ("--returns", returns), ("--tbptt", tbptt),
                                ("--initial-state-gradient", initial_state_gradient)) if v]
        if function_ref is None:
            if used:
                raise UserError(f"{used[0]} applies to --function FILE.py:NAME only")
            return fn(*args, function=None, **kwargs)
        conv = _conventions(fields, param, initial_state, returns, tbptt,
                            initial_state_gradient)
        check = FunctionCheck(load_function(function_ref), conv, instances)
        return fn(*args, function=check, **kwargs)

    for flag, (_, kind, help_text) in reversed(_FIELDS.items()):
        wrapper = _option(flag, kind, help_text)(wrapper)
    return wrapper
