"""The formula AST: small frozen dataclasses, independent of lark and of SymPy.

A parsed formula is a :class:`Formula`: auxiliary :class:`Definition` s
(``δ_t = …``, ``let dz_t = …``), an optional :class:`Claim` (the left-hand side
∂L_k/∂θ) or a left-hand side about state Jacobians / adjoints (``lhs``:
∂h_t/∂h_{t-1}, ∏_k ∂h_k/∂h_{k-1}, ∂L/∂h_t), the body, and the declared loss
over time (``L = \\frac{1}{T}\\sum_t L_t``: ``loss_time`` "mean").
:class:`Derivative` is ∂num/∂den written inside a formula (∂L/∂h_t, ∂h_t/∂h_{t-1}),
:class:`Power` a matrix power with an integer exponent such as ``t-k``.  Time
indices are :class:`Time` ``var + offset`` (``t-1``) or a constant (``3``); the
variable ``T`` is the sequence length.

:func:`walk` and :func:`replace_at` let :mod:`symrnn.formula.diagnose`
mutate one node at a time (the classic slips).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "Time", "Node", "Num", "Sym", "Neg", "Add", "Sub", "Prod", "Transpose", "Square",
    "Call", "Big", "Definition", "Claim", "Formula", "Partial", "walk", "replace_at", "render",
    "Exponent", "Power", "Derivative",
]


@dataclass(frozen=True)
class Time:
    """``var + offset`` (var None: the constant ``offset``)."""

    var: str | None
    offset: int = 0

    def value(self, bound: dict[str, int]) -> int:
        if self.var is None:
            return self.offset
        return bound[self.var] + self.offset

    def shifted(self, by: int) -> Time:
        return Time(self.var, self.offset + by)

    def __str__(self) -> str:
        if self.var is None:
            return str(self.offset)
        if self.offset == 0:
            return self.var
        return f"{self.var}{self.offset:+d}"


class Node:
    """Base class of expression nodes."""


@dataclass(frozen=True)
class Num(Node):
    value: Fraction


@dataclass(frozen=True)
class Sym(Node):
    """A symbol: ``base`` with a time index, a parameter suffix (``hh``) or nothing."""

    base: str
    index: Time | str | None = None


@dataclass(frozen=True)
class Neg(Node):
    arg: Node


@dataclass(frozen=True)
class Add(Node):
    left: Node
    right: Node


@dataclass(frozen=True)
class Sub(Node):
    left: Node
    right: Node


@dataclass(frozen=True)
class Prod(Node):
    """A product: op is 'matmul' (juxtaposition, @, \\cdot), 'hadamard' or 'div'."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Transpose(Node):
    arg: Node


@dataclass(frozen=True)
class Square(Node):
    """``x^2``: the elementwise square x ⊙ x."""

    arg: Node


@dataclass(frozen=True)
class Call(Node):
    """func(arg); ``derivative`` for f'(arg).  func: tanh, sigmoid, relu, softmax, diag, f."""

    func: str
    arg: Node
    derivative: bool = False


@dataclass(frozen=True)
class Big(Node):
    """``\\sum`` or ``\\prod`` (kind) over var = lo..hi of body."""

    kind: str
    var: str
    lo: Time
    hi: Time
    body: Node


@dataclass(frozen=True)
class Exponent:
    """An integer exponent: Σ coeff·var + offset (``t-k``, ``T-t+1``, ``3``)."""

    terms: tuple[tuple[str, int], ...]
    offset: int = 0

    def value(self, bound: dict[str, int]) -> int:
        return self.offset + sum(c * bound[v] for v, c in self.terms)

    def __str__(self) -> str:
        parts = [("-" if c < 0 else "+") + (v if abs(c) == 1 else f"{abs(c)}{v}")
                 for v, c in self.terms]
        if self.offset or not parts:
            parts.append(f"{self.offset:+d}")
        return "".join(parts).lstrip("+")


@dataclass(frozen=True)
class Power(Node):
    """``M^{n}``: the matrix power M M ⋯ M (n ≥ 0 factors; M^0 = I)."""

    arg: Node
    exponent: Exponent


@dataclass(frozen=True)
class Derivative(Node):
    """∂num/∂den inside a formula: ∂L/∂h_t (the engine's adjoint of h_t, the total
    derivative) or ∂h_t/∂h_j (the engine's state Jacobian)."""

    num: Node
    den: Node


@dataclass(frozen=True)
class Definition:
    """``base_{time} = rhs``: an auxiliary quantity (δ_t, e_t, …); time None: a
    time-free ``let`` definition."""

    base: str
    time: Time | None
    rhs: Node


@dataclass(frozen=True)
class Claim:
    """The left-hand side ∂L_k/∂θ: ``loss_step`` k (None: the total L), raw parameter name."""

    loss_step: int | None
    wrt: str


@dataclass(frozen=True)
class Formula:
    definitions: tuple[Definition, ...]
    claim: Claim | None
    body: Node
    source: str = ""
    lhs: Node | None = None
    """A claim about Jacobians or adjoints: the left-hand side (checked by
    :mod:`symrnn.formula.jacobian`); None for a gradient ∂L/∂θ."""
    loss_time: str | None = None
    """The loss declared in the formula: "sum" (L = Σ_t L_t), "mean" ((1/T) Σ_t L_t), None."""


def _children(node) -> list[str]:
    return [f.name for f in dataclasses.fields(node)
            if isinstance(getattr(node, f.name), (Node, Definition))]


def walk(node, path: tuple = ()) -> Iterator[tuple[tuple, object]]:
    """(path, node) for the node and every descendant, parents first."""
    yield path, node
    if isinstance(node, Formula):
        for i, d in enumerate(node.definitions):
            yield from walk(d.rhs, path + (("def", i),))
        yield from walk(node.body, path + (("body", None),))
        return
    for name in _children(node):
        yield from walk(getattr(node, name), path + ((name, None),))


def replace_at(node, path: tuple, new):
    """A copy of ``node`` with the descendant at ``path`` replaced by ``new``."""
    if not path:
        return new
    (name, i), rest = path[0], path[1:]
    if name == "def":
        d = node.definitions[i]
        defs = list(node.definitions)
        defs[i] = dataclasses.replace(d, rhs=replace_at(d.rhs, rest, new))
        return dataclasses.replace(node, definitions=tuple(defs))
    return dataclasses.replace(node, **{name: replace_at(getattr(node, name), rest, new)})


_OPS = {"matmul": " @ ", "hadamard": " * ", "div": " / "}


def render(node) -> str:
    """Plain-text form of an AST (for messages about slips)."""
    if isinstance(node, Num):
        return str(node.value)
    if isinstance(node, Sym):
        if node.index is None:
            return node.base
        return f"{node.base}_{{{node.index}}}" if isinstance(node.index, Time) else \
            f"{node.base}_{node.index}"
    if isinstance(node, Neg):
        return f"-{_wrap(node.arg)}"
    if isinstance(node, Add):
        return f"{render(node.left)} + {render(node.right)}"
    if isinstance(node, Sub):
        return f"{render(node.left)} - {_wrap(node.right)}"
    if isinstance(node, Prod):
        return _wrap(node.left) + _OPS[node.op] + _wrap(node.right)
    if isinstance(node, Transpose):
        return f"{_wrap(node.arg)}.T"
    if isinstance(node, Square):
        return f"{_wrap(node.arg)}^2"
    if isinstance(node, Call):
        return f"{node.func}{chr(39) if node.derivative else ''}({render(node.arg)})"
    if isinstance(node, Big):
        return f"{node.kind}_{{{node.var}={node.lo}}}^{{{node.hi}}} {_wrap(node.body)}"
    if isinstance(node, Power):
        base = f"({render(node.arg)})" if isinstance(node.arg, (Transpose, Power)) else \
            _wrap(node.arg)
        return f"{base}^{{{node.exponent}}}"
    if isinstance(node, Derivative):
        return f"d{_wrap(node.num)}/d{_wrap(node.den)}"
    raise TypeError(f"expected a formula node, got {type(node).__name__}")


def _wrap(node) -> str:
    text = render(node)
    return f"({text})" if isinstance(node, (Add, Sub, Prod, Big, Neg)) else text


@dataclass(frozen=True)
class Partial:
    """``\\partial X`` while reading a left-hand side (never in a finished Formula)."""

    arg: object
