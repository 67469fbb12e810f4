"""Streamed truncated BPTT: ``loss_and_grad_streamed`` holds one window of steps, not T.

Same result as ``forward`` + ``backward`` with TBPTT (k1, k2) (see
:mod:`symrnn.codegen.backward` for the semantics), computed chunk by chunk:

1. forward the chunk's k1 steps from the carried states into rings of R = k2 + 1 steps
   (``ring_h[t % R]`` holds h_t; every stored value of the cell has its own ring);
2. head, loss and output error for the chunk's loss steps (one product each);
3. reverse through the window t = stop..first with the same step as ``backward``
   (the plan's definitions, factors computed from the rings), accumulating the
   parameter summands step by step, and ∂L/∂s_0 when the window reaches t = 1.

Stored activations: R·B per state and stored value plus one chunk's head values
(k1·B·O); the inputs are read in place.  ``deltas=True`` also returns ``delta`` (B, T, H)
(and the other states' adjoints), outputs of size T·B·H.  Clipping is applied once, to
the summed gradients.
"""

from __future__ import annotations

from symrnn.codegen import ir
from symrnn.codegen.backward import (
    Homes,
    block_grads,
    carries_code,
    clipping,
    grad_name,
    loop_env,
    per_gate,
    stack_shape,
    step_code,
)
from symrnn.codegen.forward import (
    Places,
    hoisted_code,
    loss_code,
    packs,
    step_body,
    targets,
    unpack_params,
    width_code,
)
from symrnn.codegen.layout import Layout, carry_name, delta_name, state_arg, stored_products
from symrnn.codegen.plan import StepPlan
from symrnn.codegen.translate import CodegenError, outer_sum, rows
from symrnn.engine.derive import Recurrence
from symrnn.engine.expr import T_SYMBOL
from symrnn.spec import Spec

__all__ = ["lower_streamed"]

N, Idx, op = ir.Name, ir.Index, ir.op
t_ = T_SYMBOL


def _ring(k: int) -> str:
    return "t % R" if k == 0 else f"(t - {-k}) % R" if k < 0 else f"(t + {k}) % R"


RINGS = Places(
    state=lambda base, k: (f"ring_{base}", _ring(k)),
    value=lambda name: (f"ring_{name}", _ring(0)),
    hoisted=lambda name: (name, "t - start"),
)


def _zeros(*shape: ir.Node) -> ir.Op:
    return op("zeros", ir.Tuple(shape), N("dtype"), N("device"))


def _rings(plan: StepPlan, layout: Layout) -> list[ir.Stmt]:
    out: list[ir.Stmt] = []
    for s in plan.states:
        out += [ir.Assign(N(f"ring_{s}"), _zeros(N("R"), N("B"), N("H")),
                          f"ring_{s}[t % R] = {s}_t"),
                ir.If(op("not_none", N(state_arg(s))),
                      (ir.Assign(Idx(N(f"ring_{s}"), "0"), N(state_arg(s))),))]
    views = {}
    for pack in packs(plan, layout):
        out.append(ir.Assign(N(f"ring_{pack.base}"), _zeros(N("R"), N("B"),
                                                            width_code(pack.width))))
        H = layout.H
        views |= {base: Idx(N(f"ring_{pack.base}"), f":, :, {b * H}:{(b + 1) * H}")
                  for base, _, b in pack.members}
    out += [ir.Assign(N(f"ring_{b}"), views.get(b) or _zeros(N("R"), N("B"), N("H")))
            for b in plan.stored() if not b.startswith("p_")]
    widths = {p.name: p.rows[1] - p.rows[0] for p in plan.products}
    out += [ir.Assign(N(f"ring_{name}"), _zeros(N("R"), N("B"), width_code(widths[name])))
            for name in sorted(stored_products(plan))]
    return out


def _forward_chunk(plan: StepPlan, layout: Layout) -> list[ir.Stmt]:
    out: list[ir.Stmt] = [ir.Assign(N("x_chunk"), Idx(N("x_all"), "(start - 1) * B:stop * B"))]
    for product in plan.products:
        if product.hoisted:
            code = hoisted_code(plan, layout, product, N("x_chunk"))
            width = width_code(product.rows[1] - product.rows[0])
            out.append(ir.Assign(N(product.name), op("reshape", code, ir.Tuple(
                (ir.Num(-1), N("B"), width))), "this chunk's input products"))
    out.append(ir.For("t", N("start"), op("add", N("stop"), ir.Num(1)), 1,
                      tuple(step_body(plan, layout, RINGS))))
    return out


def _chunk_env_of(readout: str):
    names = {readout: "h_chunk", "y": "y_chunk", "z": "z", "yhat": "yhat", "e": "e"}

    def env(base: str, k: int) -> ir.Node:
        if k == 0 and base in names:
            return N(names[base])
        raise CodegenError(f"the chunk head reads {base} at offset {k}")

    return env


def _head_chunk(spec: Spec, rec: Recurrence, plan: StepPlan, layout: Layout) -> list[ir.Stmt]:
    net, last, params = plan.network, spec.topology == "many_to_one", layout.params()
    _chunk_env = _chunk_env_of(net.readout)
    eqs = net.step_equations(t_, net.state_symbols(t_ - 1))
    (loss_eq,) = [e for e in eqs if e.block == "loss"]
    if last:
        body: list[ir.Stmt] = [ir.Assign(N("h_chunk"), Idx(N(f"ring_{net.readout}"), "T % R")),
                               ir.Assign(N("y_chunk"), N("y_all"))]
    else:
        ring = N(f"ring_{net.readout}")
        body = [ir.Assign(N("h_chunk"), op("reshape", op("gather_steps", ring, N("start"),
                                                         N("stop"), N("R")),
                                           ir.Tuple((ir.Num(-1), N("H"))))),
                ir.Assign(N("y_chunk"), Idx(N("y_all"), "(start - 1) * B:stop * B"))]
    body += [ir.Assign(N(e.lhs.name.split("_{")[0]), rows(e.rhs, _chunk_env, params))
             for e in eqs if e.block == "head"]
    body.append(ir.AugAssign(N("loss"), "+", loss_code(loss_eq.rhs, _chunk_env, params)))
    body.append(ir.Assign(N("e"), rows(rec.output_error[1], _chunk_env, params)))
    local = rows(rec.local[net.readout], _chunk_env, params)
    if last:
        body.append(ir.Assign(Idx(N("local"), "stop - start"), local, "loss at t = T only"))
    else:
        body.append(ir.Assign(N("local"), op("reshape", local,
                                             ir.Tuple((ir.Num(-1), N("B"), N("H"))))))
    body += [ir.AugAssign(N(f"d{n}"), "+", outer_sum(rec.gradients[n], _chunk_env, params))
             for n in ("W_hy", "b_y") if n in params]
    if not last:
        return body
    zeros = _zeros(op("sub", op("add", N("stop"), ir.Num(1)), N("start")), N("B"), N("H"))
    return [ir.Assign(N("local"), zeros), ir.If(op("eq", N("stop"), N("T")), tuple(body))]


def _window(plan: StepPlan, homes: Homes) -> list[ir.Stmt]:
    """Reverse through one window, the parameter summands added step by step."""
    net, layout = plan.network, homes.layout
    carries = {s: N(carry_name(net, s)) for s in plan.states}
    env = loop_env(plan, homes, "window", carries, RINGS, inline_factors=True)
    first = net.readout
    grads: list[ir.Stmt] = []
    for product in plan.products:
        for stack, (a, b), code in block_grads(plan, homes, product, "window",
                                               lambda p: rows(p.input, env, layout.params()),
                                               env):
            target = N(grad_name(layout, stack))
            if (a, b) != (0, len(layout.members(stack))):
                target = Idx(target, f"{a * layout.H}:{b * layout.H}")
            grads.append(ir.AugAssign(target, "+", code))
    inner: list[ir.Stmt] = [
        ir.If(op("ge", N("t"), N("start")),
              (ir.AugAssign(carries[first], "+", Idx(N("local"), "t - start")),)),
        ir.If(N("deltas"), tuple(ir.AugAssign(Idx(N(delta_name(net, s)), "t - 1"), "+",
                                              carries[s]) for s in plan.states)),
        *step_code(plan, homes, env, "window", {}),
        *grads,
        *carries_code(plan, homes, env, "window"),
    ]
    return [
        *(ir.Assign(Idx(c, "..."), ir.Num(0)) for c in carries.values()),
        ir.For("t", N("stop"), op("sub", N("first"), ir.Num(1)), -1, tuple(inner)),
        ir.If(op("eq", N("first"), ir.Num(1)),
              tuple(ir.AugAssign(N(f"d{s}_0"), "+", carries[s]) for s in plan.states)),
    ]


def _accumulators(plan: StepPlan, homes: Homes) -> list[ir.Stmt]:
    layout, net = homes.layout, plan.network
    stacks = [s for s in net.stacks if layout.present(s)]
    out = [ir.Assign(N(grad_name(layout, s)), _zeros(*stack_shape(layout, s))) for s in stacks]
    out += [ir.Assign(N(f"d{n}"), op("zeros", op("get", N("PARAM_SHAPES"), ir.Str(n)),
                                     N("dtype"), N("device")))
            for n in ("W_hy", "b_y") if n in net.params]
    out += [ir.Assign(N(f"d{s}_0"), _zeros(N("B"), N("H"))) for s in plan.states]
    out += [ir.Assign(N(carry_name(net, s)), _zeros(N("B"), N("H"))) for s in plan.states]
    out += [ir.Assign(N(f"g{b}"), _zeros(N("B"), width_code(homes.widths[b])))
            for b in homes.slot_buffers]
    out.append(ir.If(N("deltas"), tuple(
        ir.Assign(N(delta_name(net, s)), _zeros(N("T"), N("B"), N("H"))) for s in plan.states)))
    return out


def lower_streamed(spec: Spec, rec: Recurrence, plan: StepPlan, layout: Layout,
                   tbptt: tuple[int, int], clip, clip_value) -> ir.FunctionDef:
    k1, k2 = tbptt
    net, homes = plan.network, Homes.of(plan, layout)
    inits = [N(state_arg(s)) for s in plan.states]
    names = layout.module_params()
    body: list[ir.Stmt] = [
        ir.Assign(ir.Tuple((N("B"), N("T"))), op("call", ir.Str("_check"), N("x"), N("y"),
                                                 *inits)),
        ir.Assign(N("dtype"), op("dtype_of", N("x"))),
        ir.Assign(N("device"), op("device_of", N("x"))),
        *unpack_params(names), *layout.build_stacks(),
        ir.Assign(N("R"), ir.Num(k2 + 1), "steps held: one window and the one before it"),
        ir.Assign(N("x_all"), op("reshape", op("time_major", N("x")),
                                 ir.Tuple((op("mul", N("T"), N("B")), N("D"))))),
        ir.Assign(N("X"), op("reshape", N("x_all"), ir.Tuple((N("T"), N("B"), N("D"))))),
        *targets(spec, spec.topology == "many_to_one"),
        *_rings(plan, layout), *_accumulators(plan, homes),
        ir.Assign(N("loss"), ir.Num(0.0)),
        ir.For("start", ir.Num(1), op("add", N("T"), ir.Num(1)), k1, (
            ir.Assign(N("stop"), op("min", op("add", N("start"), ir.Num(k1 - 1)), N("T"))),
            ir.Assign(N("first"), op("max", op("sub", N("stop"), ir.Num(k2 - 1)), ir.Num(1))),
            *_forward_chunk(plan, layout),
            *_head_chunk(spec, rec, plan, layout),
            *_window(plan, homes),
        )),
        *per_gate(layout),
        *clipping([f"d{n}" for n in names], clip, clip_value),
        ir.Assign(N("grads"), ir.Dict(tuple((n, N(f"d{n}")) for n in names)
                                      + tuple((f"{s}_0", N(f"d{s}_0")) for s in plan.states))),
        ir.If(N("deltas"), tuple(ir.Assign(Idx(N("grads"), repr(delta_name(net, s))),
                                           op("batch_first", N(delta_name(net, s))))
                                 for s in plan.states)),
        ir.Return(ir.Tuple((N("loss"), N("grads")))),
    ]
    doc = (f"TBPTT ({k1}, {k2}) streamed chunk by chunk: (loss, grads) as loss_and_grad,\n"
           f"holding {k2 + 1} steps instead of T + 1; deltas=True adds 'delta' (B, T, H).")
    args = ("params", "x", "y", *(f"{state_arg(s)}=None" for s in plan.states), "deltas=False")
    return ir.FunctionDef("loss_and_grad_streamed", args, doc, tuple(body))
