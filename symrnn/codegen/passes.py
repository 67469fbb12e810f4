"""Code-tree passes, named and separate, run after lowering and before printing.

* :func:`cse` — common-subexpression elimination inside straight-line runs
  of assignments: an operation that occurs twice or more (``yhat - y_all``
  in the MSE loss; ``yhat - y`` in the softmax output error) is computed
  once into ``common<i>``.  A run ends at any statement that writes into
  an array, so a reused value is never stale.
* :func:`inplace` — writes into preallocated buffers instead of allocating:
  ``buf = f(a @ W + c)`` becomes ``matmul(a, W, out=buf); buf += c;
  f(buf, out=buf)`` (or one fused ``addmm(c, a, W, out=buf)`` where the
  backend's table has ``addmm_out``) and ``buf = a @ W`` becomes ``matmul(a, W, out=buf)``,
  only when ``buf`` is a known buffer that the right-hand side does not read.

* :func:`dead_code` — drops assignments whose value nothing reads in the
  printed text of this backend (NumPy has no ``device``).

The matrix-level passes (hoisting, sharing across time, stacked gradients,
stored outputs) run earlier, in :mod:`symrnn.codegen.analysis`.
``PASSES`` lists these in order; :func:`run_passes` applies a chosen subset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from symrnn.codegen import ir
from symrnn.codegen.printer import Printer

__all__ = ["PASSES", "Context", "cse", "inplace", "dead_code", "run_passes"]

_NO_CSE = {"get", "T", "dtype_of", "device_of", "zeros", "empty", "zeros_like"}
"""Never shared: lookups, and allocations (each must be a fresh buffer)."""
_INPLACE_F = {"tanh": "tanh_", "sigmoid": "sigmoid_", "relu": "relu_"}


def _size(node: ir.Node) -> int:
    return sum(1 for _ in ir.walk(node))


def _names(node: ir.Node) -> set[str]:
    return {n.id for n in ir.walk(node) if isinstance(n, ir.Name)}


def _array_ops(node: ir.Node):
    """Operations on arrays: shape tuples such as (T * B, H) are left alone."""
    if isinstance(node, ir.Tuple):
        return
    if isinstance(node, ir.Op) and node.key not in _NO_CSE and _size(node) >= 3:
        yield node
    for child in ir.children(node):
        yield from _array_ops(child)


def _stable(node: ir.Node, run: list[ir.Assign]) -> bool:
    """No name that ``node`` reads is assigned at or after its first use in the run."""
    first = next(i for i, s in enumerate(run) if node in set(_array_ops(s.value)))
    names = _names(node)
    return not any(s.target.id in names for s in run[first:])


def _replace(node: ir.Node, old: ir.Node, new: ir.Node) -> ir.Node:
    return ir.map_expr(node, lambda n: new if n == old else None)


def _cse_run(run: list[ir.Assign], counter: list[int]) -> list[ir.Stmt]:
    while True:
        counts: Counter = Counter(n for s in run for n in _array_ops(s.value))
        repeated = [n for n, c in counts.items() if c >= 2 and _stable(n, run)]
        if not repeated:
            return list(run)
        best = max(repeated, key=lambda n: (_size(n), repr(n)))
        temp = ir.Name(f"common{counter[0]}")
        counter[0] += 1
        first = next(i for i, s in enumerate(run) if best in set(_array_ops(s.value)))
        replaced = [ir.Assign(s.target, _replace(s.value, best, temp), s.comment) for s in run]
        run = replaced[:first] + [ir.Assign(temp, best)] + replaced[first:]


def cse(fn: ir.FunctionDef, ctx: Context) -> ir.FunctionDef:
    counter = [0]

    def block(body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        out: list[ir.Stmt] = []
        run: list[ir.Assign] = []
        for stmt in body:
            if isinstance(stmt, ir.Assign) and isinstance(stmt.target, ir.Name):
                run.append(stmt)
                continue
            out += _cse_run(run, counter)
            run = []
            out.append(stmt)
        out += _cse_run(run, counter)
        return tuple(out)

    return ir.map_body((fn,), block)[0]


def _target_name(target: ir.Node) -> str | None:
    if isinstance(target, ir.Name):
        return target.id
    if isinstance(target, ir.Index) and isinstance(target.base, ir.Name):
        return target.base.id
    return None


def _aliases(value: ir.Node, target: ir.Node) -> bool:
    """Whether ``value`` may read the memory ``target`` writes (same index, or the whole)."""
    name = _target_name(target)
    for node in ir.walk(value):
        if isinstance(node, ir.Index) and isinstance(node.base, ir.Name) \
                and node.base.id == name:
            if not isinstance(target, ir.Index) or node.index == target.index:
                return True
    bare = _names(ir.map_expr(value, lambda n: ir.Num(0) if isinstance(n, ir.Index) else None))
    return name in bare


def _rewrite(stmt: ir.Stmt, buffers: frozenset[str], fused: bool) -> list[ir.Stmt]:
    if not isinstance(stmt, ir.Assign):
        return [stmt]
    name = _target_name(stmt.target)
    if name not in buffers or _aliases(stmt.value, stmt.target):
        return [stmt]
    value, target, fn = stmt.value, stmt.target, None
    if isinstance(value, ir.Op) and value.key in _INPLACE_F:
        fn, value = _INPLACE_F[value.key], value.args[0]
    if isinstance(value, ir.Op) and value.key == "matmul" and fn is None:
        return [ir.Expr(ir.op("matmul_out", *value.args, target), stmt.comment)]
    if isinstance(value, ir.Op) and value.key == "add" and isinstance(value.args[0], ir.Op) \
            and value.args[0].key == "matmul":
        product = value.args[0].args
        if fused:  # one call: target = c + a @ b
            out: list[ir.Stmt] = [ir.Expr(ir.op("addmm_out", value.args[1], *product, target),
                                          stmt.comment)]
        else:
            out = [ir.Expr(ir.op("matmul_out", *product, target), stmt.comment),
                   ir.AugAssign(target, "+", value.args[1])]
        if fn is not None:
            out.append(ir.Expr(ir.op(fn, target)))
        return out
    return [stmt]


def inplace(fn: ir.FunctionDef, ctx: Context) -> ir.FunctionDef:
    def block(body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        out: list[ir.Stmt] = []
        for stmt in body:
            out += _rewrite(stmt, ctx.buffers, "addmm_out" in ctx.printer.target.table)
        return tuple(out)

    return ir.map_body((fn,), block)[0]


def _read_names(node: ir.Node, printer: Printer) -> set[str]:
    """Names that the printed text of ``node`` reads (operands a backend drops do not count)."""
    if isinstance(node, ir.Name):
        return {node.id}
    kids = printer.printed_args(node) if isinstance(node, ir.Op) else ir.children(node)
    out: set[str] = set()
    for kid in kids:
        out |= _read_names(kid, printer)
    return out


def _stmt_reads(stmt: ir.Stmt, printer: Printer) -> set[str]:
    if isinstance(stmt, ir.Assign):
        target = stmt.target
        extra = _read_names(target, printer) if isinstance(target, ir.Index) else set()
        return _read_names(stmt.value, printer) | extra
    if isinstance(stmt, ir.AugAssign):
        return _read_names(stmt.value, printer) | _read_names(stmt.target, printer)
    if isinstance(stmt, (ir.Expr, ir.Return)):
        return _read_names(stmt.value, printer)
    if isinstance(stmt, (ir.For, ir.If)):
        heads = (stmt.start, stmt.stop) if isinstance(stmt, ir.For) else (stmt.cond,)
        out = set().union(*(_read_names(h, printer) for h in heads))
        for inner in stmt.body + getattr(stmt, "orelse", ()):
            out |= _stmt_reads(inner, printer)
        return out
    return set()


def dead_code(fn: ir.FunctionDef, ctx: Context) -> ir.FunctionDef:
    """Drop assignments to names that nothing after them reads (as printed)."""
    body = list(fn.body)
    changed = True
    while changed:
        changed = False
        reads = set().union(*(_stmt_reads(s, ctx.printer) for s in body))
        for i, stmt in enumerate(body):
            if isinstance(stmt, ir.Assign) and isinstance(stmt.target, ir.Name) \
                    and stmt.target.id not in reads:
                del body[i]
                changed = True
                break
    return replace(fn, body=tuple(body))


@dataclass(frozen=True)
class Context:
    buffers: frozenset[str]
    printer: Printer


Pass = Callable[[ir.FunctionDef, Context], ir.FunctionDef]
PASSES: dict[str, Pass] = {"cse": cse, "inplace": inplace, "dead_code": dead_code}


def run_passes(fn: ir.FunctionDef, names: tuple[str, ...], ctx: Context) -> ir.FunctionDef:
    for name in names:
        fn = PASSES[name](fn, ctx)
    return fn
