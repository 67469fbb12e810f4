"""Lowering of the forward pass: step equations → the ``forward`` function's code tree.

The cell's pre-activation a_t = W_hh h_{t-1} + W_xh x_t + b_h is split by
:func:`~symrnn.codegen.analysis.split_recurrent`: the input terms are one
product over all steps, ``P = x_all @ W_xh.T + b_h``; the time loop keeps
``HS[t] = f(HS[t - 1] @ W_hh.T + P[t - 1])``.  The head (z_t, ŷ_t) and the
loss are computed after the loop for all loss steps at once: every step for
many_to_many (arrays (T·B, ·)), the last step for many_to_one ((B, ·)).
The loss is summed over steps and batch.
"""

from __future__ import annotations

from sympy import MatAdd, MatrixSymbol

from symrnn.codegen import ir
from symrnn.codegen.analysis import CACHE_NAMES, split_recurrent
from symrnn.codegen.translate import CodegenError, rows
from symrnn.engine.expr import T_SYMBOL, MSELoss, SoftmaxCrossEntropy, timed
from symrnn.engine.graph import network
from symrnn.render.printing import text
from symrnn.spec import Spec

__all__ = ["lower_forward", "loss_env", "unpack_params"]

N, Idx, op = ir.Name, ir.Index, ir.op
t_ = T_SYMBOL


def unpack_params(names: list[str]) -> list[ir.Stmt]:
    return [ir.Assign(N(n), op("get", N("params"), ir.Str(n))) for n in names]

def loss_env(last: bool):
    h_loss = Idx(N("HS"), "T") if last else N("h_all")

    def env(base: str, k: int) -> ir.Node:
        if base == "h" and k == 0:
            return h_loss
        if k == 0 and base in CACHE_NAMES:
            return N(CACHE_NAMES[base])
        raise CodegenError(f"no stacked value for {base} at offset {k}")

    return env


def lower_forward(spec: Spec, params, last: bool, stored: list[str]) -> ir.FunctionDef:
    """``forward``; the cache holds the ``stored`` quantities (see stored_outputs)."""
    eqs = network(spec).step_equations(t_, {"h": timed("h", t_ - 1, spec.hidden_size)})
    cell = [e for e in eqs if e.block == "cell"]
    head = [e for e in eqs if e.block == "head"]
    (loss_eq,) = [e for e in eqs if e.block == "loss"]
    (a_eq,) = [e for e in cell if e.lhs.name.startswith("a_")]
    (h_eq,) = [e for e in cell if e.lhs.name.startswith("h_")]
    recurrent, hoisted = split_recurrent(a_eq.rhs, "h", -1)

    def stacked(base: str, k: int) -> ir.Node:
        if (base, k) == ("x", 0):
            return N("x_all")
        raise CodegenError(f"the hoisted input term reads {base} at offset {k}")

    a_code = None

    def loop_env(base: str, k: int) -> ir.Node:
        if (base, k) == ("h", -1):
            return Idx(N("HS"), "t - 1")
        if (base, k) == ("a", 0):
            return a_code
        raise CodegenError(f"the time loop reads {base} at offset {k}")

    a_code = op("add", rows(recurrent, loop_env, params), Idx(N("P"), "t - 1"))
    h_code = rows(h_eq.rhs, loop_env, params)
    body: list[ir.Stmt] = [
        ir.Assign(ir.Tuple((N("B"), N("T"))), op("check", N("x"), N("y"), N("h0"))),
        ir.Assign(N("dtype"), op("dtype_of", N("x"))),
        ir.Assign(N("device"), op("device_of", N("x"))),
        *unpack_params(list(params)),
        ir.Assign(N("x_all"), op("reshape", op("time_major", N("x")),
                                 ir.Tuple((op("mul", N("T"), N("B")), N("D")))),
                  "x_t stacked over t: (T*B, D)"),
        *_targets(spec, last),
        ir.Comment("hoisted: the input terms of a_t for every t in one product"),
        ir.Assign(N("P"), op("reshape", rows(hoisted, stacked, params),
                             ir.Tuple((N("T"), N("B"), N("H")))),
                  "(T, B, H)"),
        ir.Assign(N("HS"), op("empty", ir.Tuple((op("add", N("T"), ir.Num(1)), N("B"), N("H"))),
                              N("dtype"), N("device")), "h_t for t = 0..T: (T+1, B, H)"),
        ir.If(op("is_none", N("h0")), (ir.Assign(Idx(N("HS"), "0"), ir.Num(0)),),
              (ir.Assign(Idx(N("HS"), "0"), N("h0")),)),
        ir.Comment(f"recurrence: {h_eq.lhs} = {text(h_eq.rhs)}, {a_eq.lhs} = {text(a_eq.rhs)}"),
        ir.For("t", ir.Num(1), op("add", N("T"), ir.Num(1)), 1,
               (ir.Assign(Idx(N("HS"), "t"), h_code),)),
    ]
    if not last:
        body.append(ir.Assign(N("h_all"), op("reshape", Idx(N("HS"), "1:"),
                                             ir.Tuple((op("mul", N("T"), N("B")), N("H")))),
                              "h_t at the loss steps: (T*B, H)"))
    env = loss_env(last)
    for eq in head:
        base = eq.lhs.name.split("_{")[0]
        if isinstance(eq.rhs, MatrixSymbol):
            body.append(ir.Assign(N(CACHE_NAMES[base]), rows(eq.rhs, env, params),
                                  f"{base}_t = {text(eq.rhs)}"))
        else:
            body.append(ir.Assign(N(CACHE_NAMES[base]), rows(eq.rhs, env, params),
                                  f"{base}_t: ({'B' if last else 'T*B'}, O)"))
    body.append(ir.Assign(N("loss"), _loss_code(loss_eq.rhs, env, params),
                          "summed over steps and batch"))
    cache = ir.Dict(tuple((CACHE_NAMES[b], N(CACHE_NAMES[b])) for b in stored)
                    + (("T", N("T")), ("B", N("B"))))
    body.append(ir.Assign(N("cache"), cache))
    body.append(ir.Return(ir.Tuple((N("loss"), N("cache")))))
    doc = ("Loss L (summed over steps and batch) and the cache for backward.\n\n"
           "x: (B, T, D); y: targets (see the module docstring); h0: (B, H) or None (zeros).")
    fn = ir.FunctionDef("forward", ("params", "x", "y", "h0=None"), doc, tuple(body))
    return fn


def _targets(spec: Spec, last: bool) -> list[ir.Stmt]:
    stmts: list[ir.Stmt] = []
    if spec.loss == "cross_entropy":
        stmts.append(ir.If(op("is_index", N("y")),
                           (ir.Assign(N("y"), op("one_hot", N("y"), N("OUT"), N("dtype")),
                                      "class indices -> one-hot rows"),)))
    y = op("cast", N("y"), N("dtype"), N("device"))
    if last:
        stmts.append(ir.Assign(N("y_all"), y, "y_T: (B, O)"))
    else:
        stmts.append(ir.Assign(N("y_all"), op("reshape", op("time_major", y),
                                              ir.Tuple((op("mul", N("T"), N("B")), N("OUT")))),
                               "y_t stacked over t: (T*B, O)"))
    return stmts


def _loss_code(node, env, params) -> ir.Node:
    if isinstance(node, MSELoss):
        diff = rows(MatAdd(node.prediction, -node.target), env, params)
        return op("mul", ir.Num(0.5), op("sum_all", op("mul", diff, diff)))
    if isinstance(node, SoftmaxCrossEntropy):
        return op("neg", op("sum_all", op("mul", rows(node.target, env, params),
                                           op("log_softmax", rows(node.prediction, env, params)))))
    raise CodegenError(f"no lowering for the loss {type(node).__name__}")

