"""Lowering of the backward pass: the rolled recurrence → the ``backward`` code tree.

From :class:`~symrnn.derive.Recurrence` (column vectors, L = Σ_t L_t)::

    e_t = output_error                       hoisted: all loss steps at once
    δ_t = local_t + carry_t                  local_t = W_hyᵀ e_t, hoisted
    carry_t = J_{t+1}ᵀ δ_{t+1}               in the loop, via g_{t+1}
    g_t = δ_t ⊙ f'(h_t)                      shared by carry and summands
    ∂L/∂θ = Σ_t summand_t                    one stacked product per θ
    ∂L/∂h_0 = initial_state                  the carry after the last step

Full BPTT runs t = T..1 once.  Truncated BPTT (k1, k2) cuts the sequence
into chunks of k1 steps (the last one may be shorter); for the chunk ending
at step e, the losses of that chunk are backpropagated through the steps
max(1, e−k2+1)..e only (the state before is treated as a constant).  The
returned ``delta`` is then the sum over chunks of each window's δ_t, so
that every parameter gradient is still Σ_t summand_t(δ_t).  ∂L/∂h_0 gets a
contribution only from windows that reach t = 1.

Clipping, applied to the parameter gradients (not h_0, not delta) at the
end: ``clip`` rescales them to global norm G when their norm exceeds G;
``clip_value`` clamps every entry to [−c, c].
"""

from __future__ import annotations

from dataclasses import replace

from sympy import MatrixSymbol

from symrnn.codegen import ir
from symrnn.codegen.analysis import (
    CACHE_NAMES,
    has_delta,
    idx,
    input_adjoint,
    share_across_time,
    split_recurrent,
    stack_gradients,
    stored_outputs,
    substitute_shared,
)
from symrnn.codegen.forward import loss_env, unpack_params
from symrnn.codegen.translate import CodegenError, rows, to_generic
from symrnn.engine.derive import Recurrence
from symrnn.engine.expr import T_SYMBOL, at_time, hadamard, timed
from symrnn.render.printing import text
from symrnn.spec import Spec

__all__ = ["lower_backward"]

N, Idx, op = ir.Name, ir.Index, ir.op
t_ = T_SYMBOL
TBH = ir.Tuple((N("T"), N("B"), N("H")))
TB_H = ir.Tuple((op("mul", N("T"), N("B")), N("H")))
BH = ir.Tuple((N("B"), N("H")))


def _zeros(shape: ir.Tuple) -> ir.Op:
    return op("zeros", shape, N("dtype"), N("device"))


def _all_env(base: str, k: int) -> ir.Node:
    """Stacked (T*B, ·) arrays over every step t = 1..T."""
    table = {("h", 0): "h_all", ("h", -1): "h_prev", ("x", 0): "x_all",
             ("g", 0): "g_all", ("delta", 0): "delta_all", ("h", 1): "h_next"}
    if (base, k) in table:
        return N(table[(base, k)])
    raise CodegenError(f"no stacked value for {base} at offset {k}")


def _loop_env(g_name: str, at: int | None = None):
    """One step inside the reverse time loop (buffers 0-based, t 1-based), or step ``at``."""

    def where(k: int) -> str:
        return idx("t", k) if at is None else str(at + k)

    def env(base: str, k: int) -> ir.Node:
        if base == "h":
            return Idx(N("HS"), where(k))
        if base == "delta":
            return Idx(N("delta"), where(k - 1))
        if base == "g":
            return N(g_name) if k == 0 and g_name != "g" else Idx(N("g"), where(k - 1))
        raise CodegenError(f"the reverse loop reads {base} at offset {k}")

    return env


def _split_shared(shared):
    """g_t = δ_t ⊙ F → F, the factor free of δ (hoisted), or None."""
    if shared is None or not hasattr(shared, "args"):
        return None
    args = getattr(shared, "args", ())
    deltas = [a for a in args if has_delta(a)]
    rest = [a for a in args if not has_delta(a)]
    if len(deltas) != 1 or not isinstance(deltas[0], MatrixSymbol) or not rest:
        return None
    factor = rest[0]
    for other in rest[1:]:
        factor = hadamard(factor, other)
    return factor


def lower_backward(spec: Spec, rec: Recurrence, names: list[str], params, last: bool,
                   tbptt: tuple[int, int] | None, clip: float | None,
                   clip_value: float | None) -> tuple[ir.FunctionDef, set[str], list[str]]:
    H = spec.hidden_size
    cell_params = [n for n in names if n not in ("W_hy", "b_y")]
    shared = share_across_time(rec, cell_params)
    factor = _split_shared(shared)
    def g_at(k):
        return (timed("g", t_ + k, H))
    carry = substitute_shared(rec.carry["h"], shared, g_at)
    summands = {n: substitute_shared(rec.gradients[n], shared, g_at) for n in names}
    init = substitute_shared(rec.initial_state["h"], shared, g_at)
    dx = substitute_shared(input_adjoint(spec, H), shared, g_at)
    _, local = split_recurrent(rec.deltas["h"][1], "delta", 1)  # terms without δ_{t+1}
    if shared is not None and factor is None:
        raise CodegenError(f"expected the shared term to be δ_t ⊙ (a factor), got {shared}")
    e_sym, e_expr = rec.output_error
    reads = stored_outputs([e_expr, local, carry, init, dx, *summands.values()]
                           + ([factor] if factor is not None else []))
    env_loss = loss_env(last)

    def env_loss_e(base: str, k: int) -> ir.Node:
        return N("e") if (base, k) == ("e", 0) else env_loss(base, k)

    body: list[ir.Stmt] = [*unpack_params(names)]
    body += [ir.Assign(N(CACHE_NAMES[b]), op("get", N("cache"), ir.Str(CACHE_NAMES[b])))
             for b in reads]
    body += [ir.Assign(N(n), op("get", N("cache"), ir.Str(n))) for n in ("T", "B")]
    if "h" not in reads:
        reads.insert(0, "h")
        body.append(ir.Assign(N("HS"), op("get", N("cache"), ir.Str("HS"))))
    body += [ir.Assign(N("dtype"), op("dtype_of", N("HS"))),
             ir.Assign(N("device"), op("device_of", N("HS")))]
    stacked_names = {"h_all": Idx(N("HS"), "1:"), "h_prev": Idx(N("HS"), ":-1")}
    used = _used_stacked(summands, factor, last)
    for name, view in stacked_names.items():
        if name in used or (name == "h_all" and not last):
            body.append(ir.Assign(N(name), op("reshape", view, TB_H), "(T*B, H)"))
    body.append(ir.Assign(N("e"), rows(e_expr, env_loss, params), f"{e_sym} = {text(e_expr)}"))
    body += _local_delta(local, env_loss_e, params, last)
    g_name = "g" if shared is not None else "delta"
    if shared is not None:
        body.append(ir.Assign(N("fprime" if tbptt else "g"),
                              op("reshape", rows(factor, _all_env, params), TBH),
                              f"hoisted: {text(factor)}, from stored outputs"))
    carry_t = at_time(carry, t_ - 1)
    init_is_last_carry = init == at_time(carry, 0)
    if tbptt is None:
        body += _full_loop(carry_t, shared is not None, params)
    else:
        body += _truncated_loop(carry_t, shared is not None, params, tbptt)
    body += [ir.Assign(N("delta_all"), op("reshape", N("delta"), TB_H))]
    if shared is not None:
        body.append(ir.Assign(N("g_all"), op("reshape", N("g"), TB_H)))
    grads = stack_gradients(replace(rec, gradients=summands), names, _all_env, env_loss_e,
                            params)
    for name in names:
        body.append(ir.Assign(N(f"d{name}"), grads[name],
                              f"sum_t {text(summands[name])}"))
    if tbptt is None:
        h0 = N("carry") if init_is_last_carry else rows(
            to_generic(init, 1), _loop_env(g_name, at=1), params)
        body.append(ir.Assign(N("dh_0"), h0, f"dL/dh_0 = {text(init)}"))
    body += _clipping([f"d{n}" for n in names], clip, clip_value)
    items = tuple((n, N(f"d{n}")) for n in names)
    items += (("h_0", N("dh_0")), ("delta", op("batch_first", N("delta"))))
    body.append(ir.Assign(N("grads"), ir.Dict(items)))
    dx_code = op("reshape", rows(dx, _all_env, params),
                 ir.Tuple((N("T"), N("B"), N("D"))))
    body.append(ir.If(N("input_grad"), (
        ir.Assign(Idx(N("grads"), "'x'"), op("batch_first", dx_code),
                  f"dL/dx_t = {text(dx)}: (B, T, D)"),)))
    body.append(ir.Return(N("grads")))
    doc = ("Gradients of the loss: every parameter, 'h_0' (B, H) and 'delta' (B, T, H),\n"
           "delta[:, t-1] = dL/dh_t for t = 1..T; with input_grad also 'x' (B, T, D).")
    fn = ir.FunctionDef("backward", ("params", "cache", "input_grad=False"), doc, tuple(body))
    buffers = {"carry", "HS", "delta", "g"}
    return fn, buffers, reads


def _used_stacked(summands, factor, last) -> set[str]:
    used = set()
    for name, expr in summands.items():
        if name in ("W_hy", "b_y") and last:
            continue
        for base, k in _offsets(expr):
            if base == "h":
                used.add("h_all" if k == 0 else "h_prev")
    if factor is not None:
        used |= {"h_all" if k == 0 else "h_prev" for b, k in _offsets(factor) if b == "h"}
    return used


def _offsets(expr):
    from symrnn.codegen.translate import timed_symbols

    return timed_symbols(expr) if expr is not None else set()


def _local_delta(local, env, params, last: bool) -> list[ir.Stmt]:
    code = rows(local, env, params)
    if not last:
        return [ir.Assign(N("delta"), op("reshape", code, TBH),
                          "delta_t, hoisted local part: (T, B, H)")]
    return [ir.Assign(N("delta"), _zeros(TBH), "delta_t: (T, B, H)"),
            ir.Assign(Idx(N("delta"), "T - 1"), code, "the loss is at t = T only")]


def _full_loop(carry_t, has_g: bool, params) -> list[ir.Stmt]:
    g_or_delta = "g" if has_g else "delta"
    body: list[ir.Stmt] = [ir.AugAssign(Idx(N("delta"), "t - 1"), "+", N("carry"),
                                        "delta_t = local_t + carry_t")]
    if has_g:
        body.append(ir.AugAssign(Idx(N("g"), "t - 1"), "*", Idx(N("delta"), "t - 1"),
                                 "g_t = delta_t * f'(h_t)"))
    body.append(ir.Assign(N("carry"), rows(carry_t, _loop_env(g_or_delta), params),
                          f"carry_(t-1) = {text(carry_t)}"))
    return [
        ir.Assign(N("carry"), _zeros(BH),
                  "carry_T = 0 (delta_(T+1) = 0)"),
        ir.For("t", N("T"), ir.Num(0), -1, tuple(body)),
    ]


def _truncated_loop(carry_t, has_g: bool, params, tbptt) -> list[ir.Stmt]:
    k1, k2 = tbptt
    inner: list[ir.Stmt] = [
        ir.If(op("ge", N("t"), N("start")),
              (ir.AugAssign(N("carry"), "+", Idx(N("local"), "t - 1"),
                            "this chunk's loss at step t"),)),
        ir.AugAssign(Idx(N("delta"), "t - 1"), "+", N("carry"), "sum over windows"),
    ]
    if has_g:
        inner += [ir.Assign(N("gt"), op("mul", N("carry"), Idx(N("fprime"), "t - 1")),
                            "g_t of this window"),
                  ir.AugAssign(Idx(N("g"), "t - 1"), "+", N("gt"))]
        env = _loop_env("gt")
    else:
        env = _loop_env("delta_window")
        inner.insert(0, ir.Comment("identity activation: g_t = delta_t"))
        carry_t = carry_t.xreplace({timed("delta", t_, carry_t.shape[0]):
                                    MatrixSymbol("carry", carry_t.shape[0], 1)})
    carry_code = rows(carry_t, env, {**params, "carry": N("carry")})
    inner.append(ir.Assign(N("carry"), carry_code, "sent back to delta_(t-1)"))
    chunk: list[ir.Stmt] = [
        ir.Assign(N("stop"), op("min", op("add", N("start"), ir.Num(k1 - 1)), N("T")),
                  "this chunk: steps start..stop"),
        ir.Assign(N("first"), op("max", op("sub", N("stop"), ir.Num(k2 - 1)), ir.Num(1)),
                  "backprop window: first..stop"),
        ir.Assign(Idx(N("carry"), "..."), ir.Num(0)),
        ir.For("t", N("stop"), op("sub", N("first"), ir.Num(1)), -1, tuple(inner)),
        ir.If(op("eq", N("first"), ir.Num(1)), (ir.AugAssign(N("dh_0"), "+", N("carry")),)),
    ]
    out: list[ir.Stmt] = [
        ir.Assign(N("local"), N("delta"), "local parts W_hy.T @ e_t: (T, B, H)"),
        ir.Assign(N("delta"), _zeros(TBH)),
    ]
    if has_g:
        out.append(ir.Assign(N("g"), _zeros(TBH)))
    out += [
        ir.Assign(N("carry"), _zeros(BH)),
        ir.Assign(N("dh_0"), _zeros(BH)),
        ir.Comment(f"truncated BPTT: forward k1={k1} steps, backpropagate k2={k2} steps"),
        ir.For("start", ir.Num(1), op("add", N("T"), ir.Num(1)), k1, tuple(chunk)),
    ]
    return out


def _clipping(grad_names: list[str], clip: float | None, clip_value: float | None):
    out: list[ir.Stmt] = []
    if clip is not None:
        squares = [op("sum_all", op("mul", N(g), N(g))) for g in grad_names]
        scaled = tuple(ir.AugAssign(N(g), "*", op("div", N("CLIP"), N("norm")))
                       for g in grad_names)
        out += [ir.Comment("global-norm clipping: g <- g * CLIP / |g| when |g| > CLIP"),
                ir.Assign(N("norm2"), squares[0]),
                *(ir.AugAssign(N("norm2"), "+", sq) for sq in squares[1:]),
                ir.Assign(N("norm"), op("sqrt", N("norm2"))),
                ir.If(op("gt", N("norm"), N("CLIP")), scaled)]
    if clip_value is not None:
        out.append(ir.Comment("elementwise clipping to [-CLIP_VALUE, CLIP_VALUE]"))
        out += [ir.Assign(N(g), op("clip", N(g), N("CLIP_VALUE"))) for g in grad_names]
    return out
