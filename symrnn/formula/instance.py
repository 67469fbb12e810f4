"""A check's concrete instance as plain data (nested lists), and back.

An instance is what :class:`~symrnn.formula.problem.Problem` draws for one seed:
a value for every *leaf* of the unrolled program (a symbol that some equation
reads and none defines): the parameters, the initial states (h_0, and c_0 for an
LSTM; h_reverse_{T+1} for a reverse layer), the inputs x_t and the targets y_t.
Everything else (a_t, h_t, ŷ_t, L_t, the adjoints δ_t) is recomputed from them.

The record groups the leaves as
``{"parameters": {...}, "initial_states": {...}, "inputs": {...}, "targets": {...}}``;
each value is a nested list of floats (rows of the column-vector matrix), and a
per-step name drops its braces (``x_{2}`` → ``x_2``).  float64 values written by
:func:`json.dumps` read back bit for bit, so a replayed instance is the drawn one.

:func:`counterexample_of` builds the :class:`~symrnn.formula.verdict.Counterexample`
of one instance (the record, both whole matrices, the worst entry);
:func:`instance_env` turns a record back into an environment, every name and
shape checked (:class:`~symrnn.errors.ShapeError` naming the leaf).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sympy import MatrixSymbol

from symrnn.engine.expr import split_timed
from symrnn.errors import ShapeError
from symrnn.formula.problem import Problem
from symrnn.formula.verdict import Counterexample

__all__ = ["GROUPS", "leaves", "instance_record", "instance_env", "counterexample_of",
           "worst_deviation",
           "plain_name"]

GROUPS = ("parameters", "initial_states", "inputs", "targets")


def plain_name(symbol: MatrixSymbol) -> str:
    """``x_{2}`` → ``x_2``; a parameter's name unchanged."""
    return symbol.name.replace("{", "").replace("}", "")


def leaves(program) -> dict[str, tuple[str, MatrixSymbol]]:
    """plain name → (group, symbol) for every leaf of ``program``, in a stable order."""
    defined = {eq.lhs for eq in program.equations}
    read = {a for eq in program.equations for a in eq.rhs.atoms(MatrixSymbol)}
    params = set(program.params.values())
    initial = set(program.initial_states.values())
    out: dict[str, tuple[str, MatrixSymbol]] = {}
    for sym in sorted(read - defined, key=lambda s: s.name):
        parts = split_timed(sym)
        if sym in params:
            group = "parameters"
        elif sym in initial:
            group = "initial_states"
        elif parts is not None and parts[0] == "y":
            group = "targets"
        else:
            group = "inputs"
        out[plain_name(sym)] = (group, sym)
    return dict(sorted(out.items(), key=lambda item: GROUPS.index(item[1][0])))


def instance_record(program, env: Mapping) -> dict[str, dict[str, list]]:
    """The leaves of ``program`` in ``env`` as nested lists, grouped (module docstring)."""
    record: dict[str, dict[str, list]] = {group: {} for group in GROUPS}
    for name, (group, sym) in leaves(program).items():
        record[group][name] = np.asarray(env[sym], dtype=float).tolist()
    return record


def instance_env(program, record: Mapping) -> dict:
    """An environment with every leaf of ``program`` set from ``record`` (checked)."""
    if not isinstance(record, Mapping):
        raise ShapeError(f"the instance must be a mapping of {', '.join(GROUPS)}, "
                         f"got {type(record).__name__}")
    given: dict[str, object] = {}
    for group, values in record.items():
        if group not in GROUPS or not isinstance(values, Mapping):
            raise ShapeError(f"instance: unexpected entry {group!r} "
                             f"(expected a mapping for each of {', '.join(GROUPS)})")
        given.update(values)
    wanted = leaves(program)
    unknown = sorted(set(given) - set(wanted))
    if unknown:
        raise ShapeError(f"instance: {', '.join(unknown)} is not a leaf of this problem "
                         f"(expected {', '.join(wanted)})")
    env = {}
    for name, (_, sym) in wanted.items():
        if name not in given:
            raise ShapeError(f"instance: no value for {name}")
        env[sym] = _matrix(name, given[name], tuple(int(d) for d in sym.shape))
    return env


def _matrix(name: str, value, shape: tuple[int, int]) -> np.ndarray:
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise ShapeError(f"instance: {name} must be a nested list of numbers") from None
    if arr.shape != shape:
        raise ShapeError(f"instance: {name} has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise ShapeError(f"instance: {name} has non-finite entries")
    return arr


def worst_deviation(values, truths, rtol: float, atol: float):
    """(instance index, (i, j)) of the largest deviation among the instances whose claimed
    matrix is not close to the true one (``np.allclose(rtol, atol)``), or None."""
    worst = None
    for index, (claimed, true) in enumerate(zip(values, truths, strict=True)):
        if np.allclose(claimed, true, rtol=rtol, atol=atol):
            continue
        diff = np.abs(claimed - true)
        i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
        if worst is None or diff[i, j] > worst[0]:
            worst = (diff[i, j], index, (int(i), int(j)))
    return None if worst is None else worst[1:]


def counterexample_of(problem: Problem, index: int, entry: tuple[int, int],
                      claimed: np.ndarray) -> Counterexample:
    """The counterexample on instance ``index`` of ``problem``: all of it, as data."""
    true = np.asarray(problem.truth[index], dtype=float)
    claimed = np.asarray(claimed, dtype=float)
    i, j = entry
    quantity = problem.quantity
    return Counterexample(
        seed=problem.seeds[index], entry=(i, j), claimed=float(claimed[i, j]),
        true=float(true[i, j]), claimed_matrix=_rows(claimed), true_matrix=_rows(true),
        instance=instance_record(problem.unrolled.program, problem.envs[index]),
        quantity=str(quantity), wrt=quantity.wrt, loss_step=quantity.loss_step,
        spec=problem.spec.to_dict(), T=problem.T)


def _rows(matrix: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in matrix)
