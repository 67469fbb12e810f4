"""Replay a counterexample: re-evaluate a claim on the instance a verdict printed.

``replay(source)`` takes the JSON of a verdict (``symrnn check --json``,
:meth:`Verdict.to_dict`) or of its counterexample alone (the ``"counterexample"``
entry, which names its formula, spec, T and quantity), as a mapping, JSON text
or a file path.  It rebuilds the problem for that spec and quantity, sets every
leaf (parameters, initial states, inputs, targets) from the file instead of
drawing it (:func:`~symrnn.formula.instance.instance_env`), reruns the forward
pass and the engine's adjoints on it, and judges the formula exactly as
:func:`~symrnn.formula.check.check_formula` does, on that one instance.

The verdict says it was replayed, and notes where the file's own numbers
("true", "claimed") differ from what the engine recomputes on the instance
(an edited file, or another symrnn version).  A verdict whose counterexample
is in its scalar case (a non-conformable formula) replays that one.  A
function's verdict cannot be replayed: the function is not in the file.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from symrnn.checks.evaluate import run_adjoints, run_forward
from symrnn.errors import InputError
from symrnn.formula.budget import DEFAULT_BUDGET_S, Budget
from symrnn.formula.check import MAX_T, _judge
from symrnn.formula.instance import instance_env
from symrnn.formula.parse import parse_formula
from symrnn.formula.problem import Problem, resolve_quantity
from symrnn.formula.verdict import Verdict
from symrnn.spec import Spec

__all__ = ["replay", "load_counterexample", "MAX_FILE_BYTES"]

MAX_FILE_BYTES = 16 << 20
"""Refuse replay files larger than this (16 MiB)."""

_FUNCTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\(\.\.\.\)$")
_NEEDED = ("formula", "spec", "T", "wrt", "seed", "instance")


class _ReplayProblem(Problem):
    """A :class:`Problem` whose one instance is given, not drawn."""

    def __init__(self, spec: Spec, quantity, T: int, record: Mapping, seed: int):  # noqa: N803
        self._record = record
        super().__init__(spec, quantity, T, instances=1, seed=seed)

    def _instance(self, seed: int) -> dict:
        env = instance_env(self.unrolled.program, self._record)
        run_forward(self.unrolled.program.equations, env, "numpy")
        run_adjoints(self.unrolled.definitions, env, "numpy")
        return env


def _read(source: str | Path) -> tuple[dict, str]:
    path = Path(source)
    if _is_file(path):
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"replay file {str(path)!r} is larger than {MAX_FILE_BYTES} bytes")
        text, where = path.read_text(encoding="utf-8"), str(path)
    else:
        text, where = str(source), "the replay text"
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise InputError(f"cannot read {where} as JSON: {err}") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object (a verdict or a counterexample), "
                         f"got {type(data).__name__}")
    return data, where


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # JSON text too long or odd to be a path
        return False


def load_counterexample(source: Mapping | str | Path) -> tuple[dict, str]:
    """(the self-contained counterexample mapping, where it came from)."""
    data, where = (dict(source), "the mapping") if isinstance(source, Mapping) \
        else _read(source)
    if "counterexample" in data:
        verdict, cx = data, data["counterexample"]
        scalar = verdict.get("scalar_case") or {}
        if cx is None and isinstance(scalar, dict) and scalar.get("counterexample"):
            cx, where = scalar["counterexample"], f"{where} (its scalar case)"
        if not isinstance(cx, dict):
            raise InputError(f"{where}: the verdict ({verdict.get('status', '?')}) has no "
                             "counterexample to replay")
        cx = {"formula": verdict.get("formula"), **cx}
    else:
        cx = data
    missing = [key for key in _NEEDED if cx.get(key) is None]
    if missing:
        raise InputError(f"{where}: no {', '.join(missing)} (expected the JSON of a verdict, "
                         "'symrnn check --json', or of its counterexample)")
    if _FUNCTION.match(str(cx["formula"])):
        raise InputError(f"{where}: the counterexample of a function ({cx['formula']}) cannot "
                         "be replayed, the function is not in the file; check it again")
    return cx, where


def replay(source: Mapping | str | Path, *, diagnosis: bool = True,
           budget_s: float | None = DEFAULT_BUDGET_S) -> Verdict:
    """Judge the counterexample's formula on its own instance (module docstring)."""
    cx, where = load_counterexample(source)
    spec = Spec.from_mapping(cx["spec"], source=f"{where}: spec")
    quantity = resolve_quantity(spec, str(cx["wrt"]), cx.get("loss_step"))
    parsed = parse_formula(str(cx["formula"]), max_time=MAX_T + 1)
    problem = _ReplayProblem(spec, quantity, int(cx["T"]), cx["instance"], int(cx["seed"]))
    notes = [f"replayed on the instance from {where} (drawn with seed {cx['seed']}; "
             "the values are the file's)"]
    verdict = _judge(parsed, problem, notes, diagnosis, False, Budget(budget_s))
    notes = list(verdict.notes) + _mismatch_notes(cx, problem, verdict)
    return dataclasses.replace(verdict, notes=tuple(notes))


def _mismatch_notes(cx: Mapping, problem: Problem, verdict: Verdict) -> list[str]:
    """Where the file's "true"/"claimed" matrices differ from the recomputed ones."""
    out = []
    recomputed = {"true": problem.truth[0]}
    if verdict.counterexample is not None:
        recomputed["claimed"] = np.array(verdict.counterexample.claimed_matrix)
    for key, value in recomputed.items():
        if key not in cx:
            continue
        stored = np.array(cx[key], dtype=float)
        if stored.shape != value.shape or not np.allclose(stored, value, rtol=1e-12,
                                                          atol=1e-12):
            what = "the formula's" if key == "claimed" else "the engine's"
            out.append(f"the file's {key!r} values differ from {what} on this instance "
                       "(an edited file, or another symrnn version)")
    return out
