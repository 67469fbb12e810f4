"""The names a BPTT function uses for parameters, resolved to the engine's.

A :class:`Binding` is one array the function takes or returns: a single parameter
(W_hh, W_xf, the aliases W, U, b, V, c, an initial state h_0) or one of torch's stacked
tensors (weight_ih, weight_hh, bias_ih, bias_hh, with ``_l{k}`` and ``_reverse``;
torch's ``weight_ih_l0`` is ``weight_ih``), whose (H, ·) row blocks are the per-gate
parameters in a declared gate order.  Which gate sits in which stack is read from
:attr:`symrnn.engine.graph.Network.stacks` (the cell definition's table, the one the
code generator's :class:`~symrnn.codegen.layout.Layout` reads); this module only
reorders it.  A single parameter is a stack of one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from symrnn.engine.graph import Network
from symrnn.errors import SpecError
from symrnn.formula.conventions import GATE_ALIASES
from symrnn.formula.problem import resolve_quantity

__all__ = ["Binding", "bind", "cell_gates", "stack_value", "split_blocks"]

_LAYER0 = re.compile(r"_l0(?=_|$)")


@dataclass(frozen=True)
class Binding:
    written: str
    """The name as the conventions write it (weight_ih_l0, W, W_xf, h_0)."""
    members: tuple[str | None, ...]
    """The engine's parameters in the array's row blocks, top to bottom (None: a zero
    block, e.g. bias_hh of a one-bias cell)."""
    is_bias: bool


def cell_gates(net: Network) -> str:
    """The cell's gate letters in its own order (ifgo, run; h for Elman)."""
    return "".join(m[len("W_h"):] for m in net.cell.stacks(False)["weight_hh"])


def _order(net: Network, gate_order: str | None, members: tuple) -> tuple:
    gates = cell_gates(net)
    if gate_order is None or len(members) == 1:
        return members
    letters = "".join(g if g in gates else GATE_ALIASES.get(g, g) for g in gate_order)
    if sorted(letters) != sorted(gates):
        raise SpecError(f"gate order {gate_order!r}: expected the {net.spec.cell} gates "
                        f"{', '.join(gates)} each once, in the stacked arrays' order "
                        f"(e.g. {gates!r}; z = u, c = g accepted)")
    return tuple(members[gates.index(g)] for g in letters)


def bind(net: Network, written: str, gate_order: str | None = None) -> Binding:
    """Resolve a written name to the engine's parameter(s) (FormulaError if unknown)."""
    stack = _LAYER0.sub("", written)
    if stack in net.stacks:
        members = _order(net, gate_order, net.stacks[stack])
        return Binding(written, members, stack.startswith("bias"))
    name = resolve_quantity(net.spec, written, None).wrt
    return Binding(written, (name,), name in net.bias_names or name not in net.params)


def stack_value(members: tuple[str | None, ...], lookup: Callable[[str], np.ndarray]
                ) -> np.ndarray:
    """The members' values, one row block each, in order (zeros for None)."""
    present = [lookup(m) for m in members if m is not None]
    if not present:
        raise SpecError(f"the stack ({', '.join('0' for _ in members)}) holds no parameter "
                        "of this network")
    zero = np.zeros_like(present[0])
    return np.concatenate([lookup(m) if m is not None else zero for m in members])


def split_blocks(members: tuple[str | None, ...], value: np.ndarray) -> dict[str, np.ndarray]:
    """A stacked array (or its gradient) → member → its row block (None members dropped)."""
    blocks = np.split(np.asarray(value), len(members))
    return {m: b for m, b in zip(members, blocks, strict=True) if m is not None}
