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

* :func:`loop_invariants` — ``W_hh.T`` inside a time loop is taken once before it.
* :func:`fuse_bias` — ``a @ W + c`` becomes ``addmm(c, a, W)`` for backends whose
  table has ``addmm`` (torch); NumPy has no fused form and is left alone.
* :func:`reuse_temporaries` — ``n = a @ W + b`` and ``n = 1 - h * h`` update the
  fresh array of their inner operation in place instead of allocating another.
* :func:`bind_views` — a loop slice used twice or updated in place (``delta[t - 1]``)
  is bound once per step to a view ``delta_tm1``.
* :func:`dead_code` — drops assignments whose value nothing reads in the
  printed text of this backend (NumPy has no ``device``).

The matrix-level passes (hoisting, sharing across time, stacked gradients,
stored outputs) run earlier, in :mod:`symrnn.codegen.plan` and the lowering.
``PASSES`` lists these in order; :func:`run_passes` applies a chosen subset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from symrnn.codegen import ir
from symrnn.codegen.printer import Printer
from symrnn.ops import ELEMENTWISE

__all__ = ["PASSES", "Context", "cse", "loop_invariants", "inplace", "fuse_bias",
           "reuse_temporaries", "bind_views",
           "dead_code", "run_passes"]

_NO_CSE = {"get", "T", "dtype_of", "device_of", "zeros", "empty", "zeros_like"}
"""Never shared: lookups, and allocations (each must be a fresh buffer)."""
_INPLACE_F = {name: f"{name}_" for name, row in ELEMENTWISE.items()
              if row.numpy_inplace and row.torch_inplace}


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


def _stable(node: ir.Node, run: list) -> bool:
    """No name that ``node`` reads is assigned at or after its first use in the run."""
    first = next(i for i, s in enumerate(run) if node in set(_array_ops(s.value)))
    names = _names(node)
    return not any(s.target.id in names for s in run[first:])


def _replace(node: ir.Node, old: ir.Node, new: ir.Node) -> ir.Node:
    return ir.map_expr(node, lambda n: new if n == old else None)


def _cse_run(run: list, counter: list[int]) -> list[ir.Stmt]:
    """CSE in a run of assignments (plain or augmented) to names."""
    while True:
        counts: Counter = Counter(n for s in run for n in _array_ops(s.value))
        repeated = [n for n, c in counts.items() if c >= 2 and _stable(n, run)]
        if not repeated:
            return list(run)
        best = max(repeated, key=lambda n: (_size(n), repr(n)))
        temp = ir.Name(f"common{counter[0]}")
        counter[0] += 1
        first = next(i for i, s in enumerate(run) if best in set(_array_ops(s.value)))
        replaced = [replace(s, value=_replace(s.value, best, temp)) for s in run]
        run = replaced[:first] + [ir.Assign(temp, best)] + replaced[first:]


def cse(fn: ir.FunctionDef, ctx: Context) -> ir.FunctionDef:
    counter = [0]

    def block(body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        out: list[ir.Stmt] = []
        run: list[ir.Assign] = []
        for stmt in body:
            if isinstance(stmt, (ir.Assign, ir.AugAssign)) and isinstance(stmt.target, ir.Name):
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


def _rewrite(stmt: ir.Stmt, buffers: frozenset[str], table: dict) -> list[ir.Stmt]:
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
    if isinstance(value, ir.Op) and value.key == "add" and isinstance(value.args[1], ir.Op) \
            and value.args[1].key == "matmul" and fn is None:  # c + a @ b: the product first
        value = ir.Op("add", (value.args[1], value.args[0]))
    if isinstance(value, ir.Op) and value.key == "add" and isinstance(value.args[0], ir.Op) \
            and value.args[0].key == "matmul":
        product = value.args[0].args
        if "addmm_out" in table:  # one call: target = c + a @ b
            out: list[ir.Stmt] = [ir.Expr(ir.op("addmm_out", value.args[1], *product, target),
                                          stmt.comment)]
        else:
            out = [ir.Expr(ir.op("matmul_out", *product, target), stmt.comment),
                   ir.AugAssign(target, "+", value.args[1])]
        if fn is not None:
            out.append(ir.Expr(ir.op(fn, target)))
        return out
    return _rewrite_elementwise(stmt, table)


def _rewrite_elementwise(stmt: ir.Assign, table: dict) -> list[ir.Stmt]:
    """``buf = a * b (+ c)`` and ``buf = f(a)`` write into ``buf`` (no temporary, no copy)."""
    value, target = stmt.value, stmt.target
    if not isinstance(value, ir.Op):
        return [stmt]
    if value.key in ("mul", "add") and len(value.args) == 2:
        first = value.args[0]
        if value.key == "add" and isinstance(first, ir.Op) and first.key == "mul":
            return [ir.Expr(ir.op("mul_out", *first.args, target), stmt.comment),
                    ir.AugAssign(target, "+", value.args[1])]
        if all(not isinstance(a, ir.Num) for a in value.args):
            return [ir.Expr(ir.op(f"{value.key}_out", *value.args, target), stmt.comment)]
    if f"{value.key}_out" in table and len(value.args) == 1:
        return [ir.Expr(ir.op(f"{value.key}_out", value.args[0], target), stmt.comment)]
    return [stmt]


def inplace(fn: ir.FunctionDef, ctx: Context) -> ir.FunctionDef:
    def block(body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        out: list[ir.Stmt] = []
        for stmt in body:
            out += _rewrite(stmt, ctx.buffers, ctx.printer.target.table)
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


def _assigned(body: tuple[ir.Stmt, ...]) -> set[str]:
    out: set[str] = set()
    for stmt in body:
        if isinstance(stmt, (ir.Assign, ir.AugAssign)):
            name = _target_name(stmt.target)
            if name:
                out.add(name)
        if isinstance(stmt, (ir.For, ir.If)):
            out |= _assigned(stmt.body + getattr(stmt, "orelse", ()))
            if isinstance(stmt, ir.For):
                out.add(stmt.var)
    return out


def loop_invariants(fn: ir.FunctionDef, ctx: Context) -> ir.FunctionDef:
    """Transposes of names a loop never writes (``W_hh.T``) are taken once, before it."""

    def block(body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        out: list[ir.Stmt] = []
        for stmt in body:
            if isinstance(stmt, ir.For):
                written = _assigned((stmt,))
                found = sorted({n.args[0].id for s in stmt.body for n in _stmt_nodes(s)
                                if isinstance(n, ir.Op) and n.key == "T"
                                and isinstance(n.args[0], ir.Name)
                                and n.args[0].id not in written})
                swap = {ir.op("T", ir.Name(name)): ir.Name(f"{name}_T") for name in found}
                out += [ir.Assign(new, old, "loop invariant") for old, new in swap.items()]
                body = _replace_in(stmt.body, swap)
                stmt = replace(stmt, body=tuple(s for s in body if not (
                    isinstance(s, ir.Assign) and s.target == s.value)))  # inner loop's own copy
            out.append(stmt)
        return tuple(out)

    return ir.map_body((fn,), block)[0]


def _stmt_nodes(stmt: ir.Stmt):
    for attr in ("target", "value", "cond"):
        node = getattr(stmt, attr, None)
        if isinstance(node, ir.Node):
            yield from ir.walk(node)
    for inner in getattr(stmt, "body", ()) + getattr(stmt, "orelse", ()):
        yield from _stmt_nodes(inner)


def _replace_in(body: tuple[ir.Stmt, ...], swap: dict) -> tuple[ir.Stmt, ...]:
    def sub(node: ir.Node) -> ir.Node:
        return ir.map_expr(node, lambda n: swap.get(n))

    out = []
    for stmt in body:
        changes = {a: sub(getattr(stmt, a)) for a in ("target", "value", "cond")
                   if isinstance(getattr(stmt, a, None), ir.Node)}
        if isinstance(stmt, (ir.For, ir.If)):
            changes["body"] = _replace_in(stmt.body, swap)
            if isinstance(stmt, ir.If):
                changes["orelse"] = _replace_in(stmt.orelse, swap)
        out.append(replace(stmt, **changes))
    return tuple(out)


def _view_name(node: ir.Index) -> str:
    index = node.index.replace(" - ", "m").replace(" + ", "p").replace(" % ", "mod")
    index = index.replace(", :, ", "_").replace(":", "_")
    return f"{node.base.id}_" + "".join(c for c in index if c.isalnum() or c == "_")


def _view_counts(body: tuple[ir.Stmt, ...]) -> Counter:
    counts: Counter = Counter()
    for stmt in body:
        if isinstance(stmt, (ir.For, ir.If)):
            continue
        nodes = list(_stmt_nodes(stmt))
        if isinstance(stmt, ir.AugAssign):
            counts[stmt.target] += 1  # `a[i] += b` would write the view back through __setitem__
        for node in nodes:
            if isinstance(node, ir.Index) and isinstance(node.base, ir.Name) \
                    and node.index.startswith("t"):
                counts[node] += 1
    return counts


def bind_views(fn: ir.FunctionDef, ctx: Context) -> ir.FunctionDef:
    """Inside a time loop, a slice used twice or updated in place is bound to a name once.

    ``delta[t - 1] += carry`` becomes ``delta_tm1 += carry`` on a view bound at the top
    of the body: an in-place update of the buffer without a write-back through
    ``__setitem__`` and without building the same view again.  Assignments *to* a slice
    (``HS[t] = ...``) stay as they are, so the buffer is always what is written.
    """

    def block(body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        out: list[ir.Stmt] = []
        for stmt in body:
            if isinstance(stmt, ir.For):
                counts = _view_counts(stmt.body)
                assigned_whole = {s.target for s in stmt.body if isinstance(s, ir.Assign)}
                views = sorted((n for n, c in counts.items() if c >= 2 and n not in assigned_whole
                                and n.base.id not in _assigned(stmt.body) - ctx.buffers),
                               key=_view_name)
                swap = {n: ir.Name(_view_name(n)) for n in views}
                binds = tuple(ir.Assign(new, old) for old, new in swap.items())
                stmt = replace(stmt, body=binds + _replace_in(stmt.body, swap))
            out.append(stmt)
        return tuple(out)

    return ir.map_body((fn,), block)[0]


def fuse_bias(fn: ir.FunctionDef, ctx: Context) -> ir.FunctionDef:
    """``a @ W + c`` becomes one ``addmm(c, a, W)`` where the backend's table has it."""
    if "addmm" not in ctx.printer.target.table:
        return fn

    def fuse(node: ir.Node) -> ir.Node | None:
        if isinstance(node, ir.Op) and node.key == "add" and isinstance(node.args[0], ir.Op) \
                and node.args[0].key == "matmul":
            return ir.op("addmm", node.args[1], *node.args[0].args)
        return None

    def block(body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        out = []
        for stmt in body:
            if isinstance(stmt, (ir.Assign, ir.AugAssign, ir.Expr, ir.Return)):
                stmt = replace(stmt, value=ir.map_expr(stmt.value, fuse))
            out.append(stmt)
        return tuple(out)

    return ir.map_body((fn,), block)[0]


_FRESH = {"add", "sub", "mul", "matmul", "div", "neg", "softmax", "log_softmax", "addmm",
          *(name for name in ELEMENTWISE if name != "identity")}
"""Operations whose result is always a new array (never a view of an operand)."""


def _fresh(node: ir.Node) -> bool:
    return isinstance(node, ir.Op) and node.key in _FRESH


def _reuse(stmt: ir.Assign, params: frozenset[str]) -> list[ir.Stmt]:
    target, value = stmt.target, stmt.value
    if not isinstance(target, ir.Name) or target.id in _names(value):
        return [stmt]
    shape = None
    if isinstance(value, ir.Op) and value.key == "reshape" and _fresh(value.args[0]):
        value, shape = value.args
    out: list[ir.Stmt] | None = None
    if _fresh(value) and len(value.args) == 2:
        a, b = value.args
        if value.key == "add" and isinstance(a, ir.Op) and a.key == "matmul" and (
                isinstance(b, ir.Num) or (isinstance(b, ir.Name) and b.id in params)):
            out = [ir.Assign(target, a, stmt.comment), ir.AugAssign(target, "+", b)]
        elif value.key == "sub" and isinstance(a, ir.Num) and _fresh(b):
            out = [*_reuse(ir.Assign(target, b, stmt.comment), params),
                   ir.Expr(ir.op("rsub_", a, target))]
        elif value.key == "mul" and _fresh(b) and not _fresh(a):
            out = [*_reuse(ir.Assign(target, b, stmt.comment), params),
                   ir.AugAssign(target, "*", a)]
    if out is None:
        return [stmt]
    if shape is not None:
        out.append(ir.Assign(target, ir.op("reshape", target, shape)))
    return out


def reuse_temporaries(fn: ir.FunctionDef, ctx: Context) -> ir.FunctionDef:
    """``n = a @ W + b`` → ``n = a @ W; n += b``; ``n = 1 - h * h`` → ``n = h * h; n = 1 - n``
    in place: the fresh array of the inner operation is updated instead of allocating
    another one of the same size (only for operations known to return new arrays).
    """

    def block(body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        out: list[ir.Stmt] = []
        for stmt in body:
            out += _reuse(stmt, ctx.params) if isinstance(stmt, ir.Assign) else [stmt]
        return tuple(out)

    return ir.map_body((fn,), block)[0]


@dataclass(frozen=True)
class Context:
    buffers: frozenset[str]
    printer: Printer
    params: frozenset[str] = frozenset()


Pass = Callable[[ir.FunctionDef, Context], ir.FunctionDef]
PASSES: dict[str, Pass] = {"cse": cse, "loop_invariants": loop_invariants, "inplace": inplace,
                           "fuse_bias": fuse_bias, "reuse_temporaries": reuse_temporaries,
                           "bind_views": bind_views,
                           "dead_code": dead_code}


def run_passes(fn: ir.FunctionDef, names: tuple[str, ...], ctx: Context) -> ir.FunctionDef:
    for name in names:
        fn = PASSES[name](fn, ctx)
    return fn
