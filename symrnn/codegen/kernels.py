"""Compiled kernels: a function's time loops lifted into functions that a JIT compiles.

For a backend with a :class:`~symrnn.codegen.printer.Kernels` table (Numba), :func:`lift`
replaces each loop whose every operation that table spells by a call to a module-level
kernel ``_<function>_loop<i>(names...)``: its arguments are the names the loop reads that
are bound on every path before it (arrays, step counts, the dtype), and it returns the
names it rebinds that the rest of the function reads.  Names it reads but no code in the
function binds are module constants (``H``, ``CLIP``), which the JIT freezes.

A loop that cannot be lifted (an operation with no kernel spelling, such as the softmax
helpers; a name bound only on some paths, such as ``delta`` under ``if deltas``) stays
host code and its inner loops are tried in turn, so every module runs, compiled or not.
The pass runs after :mod:`symrnn.codegen.passes`, on the tree they produced.
Compiled loops take one dtype (``np.dot`` does not mix float32 and float64), so
:func:`guard_params` makes a function that reads ``params`` after ``dtype = x.dtype``
read them through ``_param``, a ValueError naming the parameter, not a typing error.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, replace

from symrnn.codegen import ir

__all__ = ["Lifted", "lift", "guard_params", "PARAM_GUARD"]

_IDENT = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class Lifted:
    host: ir.FunctionDef
    kernels: tuple[ir.FunctionDef, ...]


def _node_names(node: ir.Node) -> set[str]:
    """Names an expression mentions, those inside printed index text included."""
    out: set[str] = set()
    for n in ir.walk(node):
        if isinstance(n, ir.Name):
            out.add(n.id)
        elif isinstance(n, ir.Index):
            out |= {w for w in _IDENT.findall(n.index) if not keyword.iskeyword(w)}
    return out


def _exprs(stmt: ir.Stmt):
    for attr in ("target", "value", "cond", "start", "stop"):
        node = getattr(stmt, attr, None)
        if isinstance(node, ir.Node):
            yield node


def _inner(stmt: ir.Stmt) -> tuple[ir.Stmt, ...]:
    return getattr(stmt, "body", ()) + getattr(stmt, "orelse", ())


def _mentions(body, skip: ir.Stmt | None = None) -> set[str]:
    """Every name ``body`` mentions, leaving out the statement ``skip`` (by identity)."""
    out: set[str] = set()
    for stmt in body:
        if stmt is skip:
            continue
        for node in _exprs(stmt):
            out |= _node_names(node)
        if isinstance(stmt, ir.For):
            out.add(stmt.var)
        out |= _mentions(_inner(stmt), skip)
    return out


def _targets(stmt: ir.Stmt) -> set[str]:
    """Names a statement itself rebinds (not its nested blocks)."""
    if not isinstance(stmt, (ir.Assign, ir.AugAssign)):
        return set()
    target = stmt.target
    items = target.items if isinstance(target, ir.Tuple) else (target,)
    return {t.id for t in items if isinstance(t, ir.Name)}


def _bound(body) -> set[str]:
    """Names rebound anywhere in ``body``, loop variables included."""
    out: set[str] = set()
    for stmt in body:
        out |= _targets(stmt) | ({stmt.var} if isinstance(stmt, ir.For) else set())
        out |= _bound(_inner(stmt))
    return out


def _op_keys(body) -> set[str]:
    out: set[str] = set()
    for stmt in body:
        for node in _exprs(stmt):
            out |= {n.key for n in ir.walk(node) if isinstance(n, ir.Op)}
        out |= _op_keys(_inner(stmt))
    return out


def _arg_name(arg: str) -> str:
    return re.match(r"\**(\w*)", arg)[1]


def _reads(stmt: ir.Stmt) -> set[str]:
    """Names a statement may read: its value, an indexed target's base, a whole block."""
    if isinstance(stmt, ir.Assign):
        target = set() if isinstance(stmt.target, (ir.Name, ir.Tuple)) else _node_names(
            stmt.target)
        return _node_names(stmt.value) | target
    if isinstance(stmt, ir.For):
        heads = _node_names(stmt.start) | _node_names(stmt.stop)
        return heads | (_live(stmt.body, set()) - {stmt.var})
    if isinstance(stmt, ir.If):
        return _node_names(stmt.cond) | _live(stmt.body, set()) | _live(stmt.orelse, set())
    return _mentions((stmt,))


def _live(body, live_out: set[str]) -> set[str]:
    """Names whose value at the start of ``body`` may still be read (live_out: after it);
    only a plain assignment kills a name (a loop may not run, a branch may not be taken)."""
    live = set(live_out)
    for stmt in reversed(body):
        kills = _targets(stmt) if isinstance(stmt, ir.Assign) else set()
        live = (live - kills) | _reads(stmt)
    return live


class _Lifter:
    def __init__(self, fn: ir.FunctionDef, table: dict):
        self.fn, self.table = fn, table
        self.everywhere = _bound(fn.body)
        self.kernels: list[ir.FunctionDef] = []

    def block(self, body: tuple[ir.Stmt, ...], known: set[str],
              live_out: set[str]) -> tuple[ir.Stmt, ...]:
        """``known``: names bound on every path to the start of ``body``; ``live_out``:
        names that may be read after it."""
        out: list[ir.Stmt] = []
        known = set(known)
        for i, stmt in enumerate(body):
            live_after = _live(body[i + 1:], live_out)
            if isinstance(stmt, ir.For):
                call = self.kernel_call(stmt, known, live_after)
                if call is not None:
                    out.append(call)
                    continue
                again = _live(stmt.body, live_after) | live_after  # next iteration, or after
                stmt = replace(stmt, body=self.block(stmt.body, known | {stmt.var}, again))
            out.append(stmt)
            known |= _targets(stmt)
        return tuple(out)

    def kernel_call(self, loop: ir.For, known: set[str], live_after: set[str]) -> ir.Stmt | None:
        """The call that replaces ``loop``, or None where it must stay host code."""
        if not _op_keys((loop,)) <= set(self.table):
            return None
        mentioned, rebound = _mentions((loop,)), _bound((loop,))
        local = rebound - known
        constants = mentioned - known - rebound
        if local & live_after or constants & self.everywhere:
            return None
        args = tuple(sorted(mentioned & known))
        results = tuple(sorted(rebound & known & live_after))
        name = f"_{self.fn.name}_loop{len(self.kernels)}"
        body: tuple[ir.Stmt, ...] = (loop,)
        if results:
            body += (ir.Return(_names(results)),)
        doc = f"The loop over {loop.var} of {self.fn.name}, compiled."
        self.kernels.append(ir.FunctionDef(name, args, doc, body))
        call = ir.Op("call", (ir.Str(name), *(ir.Name(a) for a in args)))
        comment = "compiled loop (numba)"
        if not results:
            return ir.Expr(call, comment)
        return ir.Assign(_names(results), call, comment)


def _names(names: tuple[str, ...]) -> ir.Node:
    return ir.Name(names[0]) if len(names) == 1 else ir.Tuple(tuple(ir.Name(n) for n in names))


def lift(fn: ir.FunctionDef, table: dict) -> Lifted:
    """``fn`` with its liftable loops replaced by kernel calls, and those kernels."""
    lifter = _Lifter(fn, table)
    params = {_arg_name(a) for a in fn.args} - {""}
    body = lifter.block(fn.body, params, set())
    return Lifted(replace(fn, body=body), tuple(lifter.kernels))


PARAM_GUARD = '''
def _param(params, name, dtype):
    """params[name], checked: the compiled loops run in the dtype of x."""
    value = params[name]
    if value.dtype != dtype:
        raise ValueError(f"params[{name!r}]: expected {dtype} like x (the compiled loops "
                         f"run in one dtype), got {value.dtype}")
    return value
'''


def guard_params(fn: ir.FunctionDef) -> ir.FunctionDef:
    """``W = params['W']`` after ``dtype = x.dtype`` becomes ``W = _param(params, 'W', dtype)``."""
    out, dtype_known = [], False
    for stmt in fn.body:
        value = getattr(stmt, "value", None)
        if (dtype_known and isinstance(stmt, ir.Assign) and isinstance(value, ir.Op)
                and value.key == "get" and value.args[0] == ir.Name("params")):
            stmt = replace(stmt, value=ir.Op("call", (ir.Str("_param"), *value.args,
                                                      ir.Name("dtype"))))
        dtype_known |= "dtype" in _targets(stmt)
        out.append(stmt)
    return replace(fn, body=tuple(out))
