"""Streamed truncated BPTT: ``loss_and_grad_streamed`` holds one window of states, not T.

Same result as ``forward`` + ``backward`` with TBPTT (k1, k2) (see
:mod:`symrnn.codegen.backward` for the semantics), computed chunk by chunk:

1. forward the chunk's k1 steps from the carried state into a ring of
   R = k2 + 1 states (``ring[t % R]`` holds h_t);
2. head, loss and output error for the chunk's loss steps (one product each);
3. reverse through the window t = stop..first, accumulating the parameter
   summands of the derivation step by step (g_t = δ_t ⊙ f'(h_t) with f' from
   the ring), and ∂L/∂h_0 when the window reaches t = 1.

Stored activations: R·B·H states plus one chunk's head values (k1·B·O);
the inputs are read in place.  ``deltas=True`` also returns ``delta``
(B, T, H), which is an output of size T·B·H.  Clipping is applied once, to
the summed gradients.
"""

from __future__ import annotations

from sympy import MatrixSymbol

from symrnn.codegen import ir
from symrnn.codegen.analysis import share_across_time, split_recurrent, substitute_shared
from symrnn.codegen.backward import _clipping, _split_shared
from symrnn.codegen.forward import _loss_code, _targets, unpack_params
from symrnn.codegen.translate import CodegenError, outer_sum, rows
from symrnn.engine.derive import Recurrence
from symrnn.engine.expr import T_SYMBOL, at_time, timed
from symrnn.engine.graph import network
from symrnn.spec import Spec

__all__ = ["lower_streamed"]

N, Idx, op = ir.Name, ir.Index, ir.op
t_ = T_SYMBOL
HEAD = ("W_hy", "b_y")


def _ring(k: int) -> str:
    return "t % R" if k == 0 else f"(t - {-k}) % R" if k < 0 else f"(t + {k}) % R"


def _step_env(g_name: str):
    def env(base: str, k: int) -> ir.Node:
        if base == "h":
            return Idx(N("ring"), _ring(k))
        if (base, k) == ("x", 0):
            return Idx(N("X"), "t - 1")
        if (base, k) == ("g", 0):
            return N(g_name)
        if (base, k) == ("delta", 0):
            return N("carry")
        raise CodegenError(f"the streamed window reads {base} at offset {k}")

    return env


def _chunk_env(last: bool):
    names = {"h": "h_chunk", "y": "y_chunk", "z": "z", "yhat": "yhat", "e": "e"}

    def env(base: str, k: int) -> ir.Node:
        if k == 0 and base in names:
            return N(names[base])
        raise CodegenError(f"the chunk head reads {base} at offset {k}")

    return env


def _forward_chunk(spec: Spec, params) -> list[ir.Stmt]:
    eqs = network(spec).step_equations(t_, {"h": timed("h", t_ - 1, spec.hidden_size)}, head=False)
    (a_eq,) = [e for e in eqs if e.lhs.name.startswith("a_")]
    (h_eq,) = [e for e in eqs if e.lhs.name.startswith("h_")]
    recurrent, hoisted = split_recurrent(a_eq.rhs, "h", -1)
    a_code = None

    def env(base: str, k: int) -> ir.Node:
        if (base, k) == ("h", -1):
            return Idx(N("ring"), _ring(-1))
        if (base, k) == ("a", 0):
            return a_code
        if (base, k) == ("x", 0):
            return N("x_chunk")
        raise CodegenError(f"the streamed forward reads {base} at offset {k}")

    a_code = op("add", rows(recurrent, env, params), Idx(N("P"), "t - start"))
    return [
        ir.Assign(N("x_chunk"), Idx(N("x_all"), "(start - 1) * B:stop * B")),
        ir.Assign(N("P"), op("reshape", rows(hoisted, env, params),
                             ir.Tuple((ir.Num(-1), N("B"), N("H")))), "this chunk's input terms"),
        ir.For("t", N("start"), op("add", N("stop"), ir.Num(1)), 1,
               (ir.Assign(Idx(N("ring"), _ring(0)), rows(h_eq.rhs, env, params)),)),
    ]


def _head_chunk(spec: Spec, rec: Recurrence, params, names, local) -> list[ir.Stmt]:
    last = spec.topology == "many_to_one"
    env = _chunk_env(last)
    eqs = network(spec).step_equations(t_, {"h": timed("h", t_ - 1, spec.hidden_size)})
    head = [e for e in eqs if e.block == "head"]
    (loss_eq,) = [e for e in eqs if e.block == "loss"]
    n_rows = ir.Tuple((ir.Num(-1), N("H")))
    if last:
        body: list[ir.Stmt] = [ir.Assign(N("h_chunk"), Idx(N("ring"), "T % R")),
                               ir.Assign(N("y_chunk"), N("y_all"))]
    else:
        body = [ir.Assign(N("h_chunk"), op("reshape", op("gather_steps", N("ring"), N("start"),
                                                         N("stop"), N("R")), n_rows)),
                ir.Assign(N("y_chunk"), Idx(N("y_all"), "(start - 1) * B:stop * B"))]
    for eq in head:
        base = eq.lhs.name.split("_{")[0]
        body.append(ir.Assign(N(base), rows(eq.rhs, env, params)))
    body.append(ir.AugAssign(N("loss"), "+", _loss_code(loss_eq.rhs, env, params)))
    body.append(ir.Assign(N("e"), rows(rec.output_error[1], env, params)))
    code = rows(local, env, params)
    if last:
        body.append(ir.Assign(Idx(N("local"), "stop - start"), code, "loss at t = T only"))
    else:
        body.append(ir.Assign(N("local"), op("reshape", code,
                                             ir.Tuple((ir.Num(-1), N("B"), N("H"))))))
    for name in names:
        if name in HEAD:
            body.append(ir.AugAssign(N(f"d{name}"), "+", outer_sum(rec.gradients[name], env,
                                                                   params)))
    if not last:
        return body
    zeros = op("zeros", ir.Tuple((op("sub", op("add", N("stop"), ir.Num(1)), N("start")),
                                  N("B"), N("H"))), N("dtype"), N("device"))
    return [ir.Assign(N("local"), zeros), ir.If(op("eq", N("stop"), N("T")), tuple(body))]


def _window(spec: Spec, rec: Recurrence, params, names) -> list[ir.Stmt]:
    cell = [n for n in names if n not in HEAD]
    shared = share_across_time(rec, cell)
    factor = _split_shared(shared)
    H = spec.hidden_size

    def g_at(k):
        return timed("g", t_ + k, H)

    summands = {n: substitute_shared(rec.gradients[n], shared, g_at) for n in cell}
    carry_t = at_time(substitute_shared(rec.carry["h"], shared, g_at), t_ - 1)
    g_name = "gt" if shared is not None else "carry"
    env = _step_env(g_name)
    inner: list[ir.Stmt] = [
        ir.If(op("ge", N("t"), N("start")),
              (ir.AugAssign(N("carry"), "+", Idx(N("local"), "t - start")),)),
        ir.If(N("deltas"), (ir.AugAssign(Idx(N("delta"), "t - 1"), "+", N("carry")),)),
    ]
    if shared is not None:
        inner.append(ir.Assign(N("gt"), op("mul", N("carry"), rows(factor, env, params)),
                               "g_t of this window, f' from the stored state"))
    inner += [ir.AugAssign(N(f"d{n}"), "+", outer_sum(summands[n], env, params)) for n in cell]
    if shared is None:
        carry_t = carry_t.xreplace({timed("delta", t_, H): MatrixSymbol("carry", H, 1)})
    inner.append(ir.Assign(N("carry"), rows(carry_t, env, {**params, "carry": N("carry")})))
    return [
        ir.Assign(Idx(N("carry"), "..."), ir.Num(0)),
        ir.For("t", N("stop"), op("sub", N("first"), ir.Num(1)), -1, tuple(inner)),
        ir.If(op("eq", N("first"), ir.Num(1)), (ir.AugAssign(N("dh_0"), "+", N("carry")),)),
    ]


def lower_streamed(spec: Spec, rec: Recurrence, names: list[str], params,
                   tbptt: tuple[int, int], clip, clip_value) -> ir.FunctionDef:
    k1, k2 = tbptt
    last = spec.topology == "many_to_one"
    _, local = split_recurrent(rec.deltas["h"][1], "delta", 1)
    BH = ir.Tuple((N("B"), N("H")))

    def zeros(shape):
        return op("zeros", shape, N("dtype"), N("device"))

    body: list[ir.Stmt] = [
        ir.Assign(ir.Tuple((N("B"), N("T"))), op("check", N("x"), N("y"), N("h0"))),
        ir.Assign(N("dtype"), op("dtype_of", N("x"))),
        ir.Assign(N("device"), op("device_of", N("x"))),
        *unpack_params(names),
        ir.Assign(N("R"), ir.Num(k2 + 1), "states held: one window and the one before it"),
        ir.Assign(N("x_all"), op("reshape", op("time_major", N("x")),
                                 ir.Tuple((op("mul", N("T"), N("B")), N("D"))))),
        ir.Assign(N("X"), op("reshape", N("x_all"), ir.Tuple((N("T"), N("B"), N("D"))))),
        *_targets(spec, last),
        ir.Assign(N("ring"), zeros(ir.Tuple((N("R"), N("B"), N("H")))), "ring[t % R] = h_t"),
        ir.If(op("not_none", N("h0")), (ir.Assign(Idx(N("ring"), "0"), N("h0")),)),
        *(ir.Assign(N(f"d{n}"), zeros(op("get", N("PARAM_SHAPES"), ir.Str(n)))) for n in names),
        ir.Assign(N("dh_0"), zeros(BH)),
        ir.Assign(N("carry"), zeros(BH)),
        ir.If(N("deltas"), (ir.Assign(N("delta"), zeros(ir.Tuple((N("T"), N("B"), N("H"))))),)),
        ir.Assign(N("loss"), ir.Num(0.0)),
        ir.For("start", ir.Num(1), op("add", N("T"), ir.Num(1)), k1, (
            ir.Assign(N("stop"), op("min", op("add", N("start"), ir.Num(k1 - 1)), N("T"))),
            ir.Assign(N("first"), op("max", op("sub", N("stop"), ir.Num(k2 - 1)), ir.Num(1))),
            *_forward_chunk(spec, params),
            *_head_chunk(spec, rec, params, names, local),
            *_window(spec, rec, params, names),
        )),
        *_clipping([f"d{n}" for n in names], clip, clip_value),
        ir.Assign(N("grads"), ir.Dict(tuple((n, N(f"d{n}")) for n in names)
                                      + (("h_0", N("dh_0")),))),
        ir.If(N("deltas"), (ir.Assign(Idx(N("grads"), "'delta'"),
                                      op("batch_first", N("delta"))),)),
        ir.Return(ir.Tuple((N("loss"), N("grads")))),
    ]
    doc = (f"TBPTT ({k1}, {k2}) streamed chunk by chunk: (loss, grads) as loss_and_grad,\n"
           f"holding {k2 + 1} states instead of T + 1; deltas=True adds 'delta' (B, T, H).")
    return ir.FunctionDef("loss_and_grad_streamed", ("params", "x", "y", "h0=None",
                                                     "deltas=False"), doc, tuple(body))
