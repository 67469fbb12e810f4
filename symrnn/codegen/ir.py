"""The code tree that generated modules are built from, before any backend prints it.

Expressions are frozen (hashable) dataclasses, so passes can compare and
count them structurally:

* :class:`Name` — a variable; :class:`Num` — a literal; :class:`Str` — a string;
* :class:`Index` — ``base[index]`` with the index as printed text (``t - 1``, ``1:``);
* :class:`Op` — an operation keyed by name (``add``, ``matmul``, ``tanh``,
  ``sum_all``, ...); what it prints as is the printer's table, not the tree's;
* :class:`Tuple` and :class:`Dict` literals.

Statements: :class:`Assign`, :class:`AugAssign` (``x += v``), :class:`Expr`
(a call for its effect, e.g. ``np.matmul(a, b, out=c)``), :class:`For`
(``for var in range(start, stop, step)``), :class:`If`, :class:`Comment`,
:class:`Blank`, :class:`Return` and :class:`FunctionDef`.

Nothing here knows about NumPy or torch: two printers with two name tables
turn one tree into two backends (:mod:`symrnn.codegen.printer`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

__all__ = [
    "Node", "Name", "Num", "Str", "Index", "Op", "Tuple", "Dict",
    "Stmt", "Assign", "AugAssign", "Expr", "For", "If", "Comment", "Blank", "Return",
    "FunctionDef", "op", "children", "walk", "map_expr", "map_body", "uses",
]


class Node:
    """Base of expression nodes."""


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class Num(Node):
    value: int | float


@dataclass(frozen=True)
class Str(Node):
    value: str


@dataclass(frozen=True)
class Index(Node):
    base: Node
    index: str


@dataclass(frozen=True)
class Op(Node):
    key: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Tuple(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Dict(Node):
    items: tuple[tuple[str, Node], ...]


def op(key: str, *args: Node) -> Op:
    return Op(key, tuple(args))


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Index):
        return (node.base,)
    if isinstance(node, (Op, Tuple)):
        return node.args if isinstance(node, Op) else node.items
    if isinstance(node, Dict):
        return tuple(v for _, v in node.items)
    return ()


def walk(node: Node) -> Iterator[Node]:
    """Every sub-expression, parents before children."""
    yield node
    for child in children(node):
        yield from walk(child)


def map_expr(node: Node, fn: Callable[[Node], Node | None]) -> Node:
    """Rebuild ``node`` bottom-up; ``fn`` may return a replacement (None keeps it)."""
    if isinstance(node, Index):
        node = Index(map_expr(node.base, fn), node.index)
    elif isinstance(node, Op):
        node = Op(node.key, tuple(map_expr(a, fn) for a in node.args))
    elif isinstance(node, Tuple):
        node = Tuple(tuple(map_expr(a, fn) for a in node.items))
    elif isinstance(node, Dict):
        node = Dict(tuple((k, map_expr(v, fn)) for k, v in node.items))
    out = fn(node)
    return node if out is None else out


def uses(node: Node, name: str) -> bool:
    return any(isinstance(n, Name) and n.id == name for n in walk(node))


# ---------------------------------------------------------------- statements


class Stmt:
    """Base of statements."""


@dataclass(frozen=True)
class Assign(Stmt):
    target: Node
    value: Node
    comment: str = ""


@dataclass(frozen=True)
class AugAssign(Stmt):
    target: Node
    op: str
    value: Node
    comment: str = ""


@dataclass(frozen=True)
class Expr(Stmt):
    value: Node
    comment: str = ""


@dataclass(frozen=True)
class For(Stmt):
    var: str
    start: Node
    stop: Node
    step: int
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class If(Stmt):
    cond: Node
    body: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...] = ()


@dataclass(frozen=True)
class Comment(Stmt):
    text: str


@dataclass(frozen=True)
class Blank(Stmt):
    pass


@dataclass(frozen=True)
class Return(Stmt):
    value: Node


@dataclass(frozen=True)
class FunctionDef(Stmt):
    name: str
    args: tuple[str, ...]
    doc: str
    body: tuple[Stmt, ...] = field(default_factory=tuple)


def map_body(body: tuple[Stmt, ...], fn: Callable[[tuple[Stmt, ...]], tuple[Stmt, ...]]):
    """Apply a block transformation to ``body`` and to every nested block."""
    out = []
    for stmt in body:
        if isinstance(stmt, (For, If, FunctionDef)):
            stmt = replace(stmt, body=map_body(stmt.body, fn))
        if isinstance(stmt, If) and stmt.orelse:
            stmt = replace(stmt, orelse=map_body(stmt.orelse, fn))
        out.append(stmt)
    return fn(tuple(out))
