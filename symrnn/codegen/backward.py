"""Lowering of the backward pass: a cell's step plan → the ``backward`` code tree.

From the rolled recurrence (column vectors, L = Σ_t L_t) and the step plan of
:mod:`symrnn.codegen.plan`::

    e_t = output error                        hoisted: all loss steps at once
    δ^h_t = W_hyᵀ e_t + carry^h_t             the head's part hoisted; δ^s_t = carry^s_t
    step t's reverse pass                     the plan's definitions, in order
    carry^s_{t-1} = ∂L/∂s_{t-1}               one product per stacked weight block
    ∂L/∂θ = Σ_t summand_t                     one stacked product per block of slots
    ∂L/∂s_0 = the carry after the last step

The adjoint of every slot (a gate's pre-activation) is kept for every t in the
buffer of its product (``dQ`` (T, B, width)), so the weight gradients are one
product each after the loop.  Adjoint-free factors (1 − h_t ⊙ h_t, i_t ⊙ (1 − i_t)
⊙ g_t) are computed for all t before the loop; a factor that a slot's adjoint reads
once is written straight into the slot's buffer, and the loop multiplies it in place
(``dQ[t - 1] *= delta[t - 1]``).

Full BPTT runs t = T..1 once.  Truncated BPTT (k1, k2) cuts the sequence into chunks
of k1 steps (the last one may be shorter); for the chunk ending at step e, the
losses of that chunk are backpropagated through the steps max(1, e−k2+1)..e only
(the state before is treated as a constant).  The returned ``delta`` is then the
sum over chunks of each window's δ_t, and every slot buffer the sum of each
window's slot adjoints, so that every parameter gradient is still Σ_t summand_t.
∂L/∂s_0 gets a contribution only from windows that reach t = 1.

Clipping, applied to the parameter gradients (not the initial states, not delta)
at the end: ``clip`` rescales them to global norm G when their norm exceeds G;
``clip_value`` clamps every entry to [−c, c].
"""

from __future__ import annotations

from dataclasses import dataclass

from sympy import MatAdd, MatMul, MatrixSymbol
from sympy.matrices.expressions.hadamard import HadamardProduct
from sympy.matrices.expressions.transpose import Transpose

from symrnn.codegen import ir
from symrnn.codegen.forward import (
    BUFFERS,
    CACHE_NAMES,
    Places,
    loss_env,
    step_env,
    unpack_params,
    width_code,
)
from symrnn.codegen.layout import Layout, buffer, carry_name, delta_name, stored_products
from symrnn.codegen.plan import Product, StepPlan, base_of
from symrnn.codegen.translate import CodegenError, outer_sum, rows, timed_bases
from symrnn.engine.derive import Recurrence
from symrnn.engine.graph import network
from symrnn.render.printing import text
from symrnn.spec import Spec

__all__ = ["lower_backward", "Homes", "adjoint_sum", "clipping", "block_grads", "per_gate",
           "stack_shape", "grad_name", "loop_env", "step_code", "carries_code"]

N, Idx, op = ir.Name, ir.Index, ir.op


def _zeros(*shape: ir.Node) -> ir.Op:
    return op("zeros", ir.Tuple(shape), N("dtype"), N("device"))


TB_H = (op("mul", N("T"), N("B")), N("H"))


# ------------------------------------------------------------------ homes


@dataclass(frozen=True)
class Homes:
    """Where each slot adjoint is kept: buffer name and column block, per mode.

    ``where`` is "loop" (step t inside the loop, full BPTT), "window" (a (B, width)
    scratch array per buffer, truncated BPTT) or "all" (stacked (T*B, width) after it).
    """

    plan: StepPlan
    layout: Layout
    place: dict
    """adjoint symbol → (buffer, first column block)."""
    widths: dict
    """buffer → width in blocks of H."""

    @classmethod
    def of(cls, plan: StepPlan, layout: Layout) -> Homes:
        place, widths = {}, {}
        for s, seed in plan.seeds.items():
            place[seed] = (delta_name(plan.network, s), 0)
            widths[delta_name(plan.network, s)] = 1
        ordered = [p for p in plan.products if not p.hoisted] + \
                  [p for p in plan.products if p.hoisted]
        for product in ordered:  # a buffer holds only the slots homed in it, in order
            buf = f"d{product.name}"
            for slot in product.slots:
                d = plan.slot_adjoints[slot.symbol]
                if d not in place:
                    place[d] = (buf, widths.get(buf, 0))
                    widths[buf] = widths.get(buf, 0) + 1
        return cls(plan, layout, place, widths)

    @property
    def slot_buffers(self) -> list[str]:
        seeds = {delta_name(self.plan.network, s) for s in self.plan.states}
        return [b for b in self.widths if b not in seeds]

    def code(self, buf: str, first: int, stop: int, where: str) -> ir.Node:
        H, width = self.layout.H, self.widths[buf]
        cols = None if (first, stop) == (0, width) else f"{first * H}:{stop * H}"
        if where == "all":
            base = N(f"{buf}_all")
            return base if cols is None else Idx(base, f":, {cols}")
        if where == "window" and buf not in self.slot_buffers:  # a state's own adjoint
            state = next(s for s in self.plan.states if delta_name(self.plan.network, s) == buf)
            return N(carry_name(self.plan.network, state))
        if where == "window":
            base = N(f"g{buf}")
            return base if cols is None else Idx(base, f":, {cols}")
        return Idx(N(buf), "t - 1" if cols is None else f"t - 1, :, {cols}")


def _runs(items: list[tuple]) -> list[list[tuple]]:
    """Split (slot, buffer, column) items into runs of adjacent columns in one buffer."""
    runs: list[list[tuple]] = []
    for item in items:
        if runs and runs[-1][-1][1] == item[1] and runs[-1][-1][2] + 1 == item[2] \
                and runs[-1][-1][0].index + 1 == item[0].index:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _weight_term(term, weights: dict):
    """(product, slot, adjoint) for a term Wᵀ d with W a stacked weight, else None."""
    if not isinstance(term, MatMul):
        return None
    coeff, mats = term.as_coeff_matrices()
    if coeff != 1 or len(mats) != 2 or not isinstance(mats[0], Transpose):
        return None
    w = mats[0].arg
    if not isinstance(w, MatrixSymbol) or w.name not in weights \
            or not isinstance(mats[1], MatrixSymbol):
        return None
    product, slot = weights[w.name]
    return product, slot, mats[1]


def adjoint_sum(expr, env, homes: Homes, where: str) -> ir.Node:
    """Code for a sum with Σ_k W_kᵀ d_k terms: one product per run of adjacent blocks."""
    params = homes.layout.params()
    weights = {s.weight: (p, s) for p in homes.plan.products for s in p.slots}
    terms = expr.args if isinstance(expr, MatAdd) else (expr,)
    grouped: dict[str, list] = {}
    rest = []
    for term in terms:
        found = _weight_term(term, weights)
        if found is None or found[2] not in homes.place or (
                where != "all" and found[2] in homes.plan.seeds.values()):
            rest.append(term)
            continue
        product, slot, d = found
        buf, col = homes.place[d]
        grouped.setdefault(product.name, []).append((slot, buf, col))
    out = rows(MatAdd(*rest), env, params) if len(rest) > 1 else \
        rows(rest[0], env, params) if rest else None
    for name, items in grouped.items():
        product = next(p for p in homes.plan.products if p.name == name)
        for run in _runs(sorted(items, key=lambda i: i[0].index)):
            block = homes.code(run[0][1], run[0][2], run[-1][2] + 1, where)
            code = op("matmul", block, _weight_rows(homes.layout, product, run))
            out = code if out is None else op("add", out, code)
    return out


def _weight_rows(layout: Layout, product: Product, run) -> ir.Node:
    first, stop = run[0][0].index, run[-1][0].index + 1
    full = len(layout.members(product.stack))
    code = layout.stack_code(product.stack)
    if (first, stop) == (0, full):
        return code
    return Idx(code, f"{first * layout.H}:{stop * layout.H}")


# ------------------------------------------------------------------ environments


def _factor_uses(plan: StepPlan) -> dict:
    counts: dict = {}
    exprs = [v for _, v in plan.definitions] + list(plan.carries.values())
    for e in exprs:
        for sym in e.atoms(MatrixSymbol):
            counts[sym] = counts.get(sym, 0) + 1
    return counts


def multiply_into(plan: StepPlan, homes: Homes) -> dict:
    """Definitions d = X ⊙ F whose factor F nothing else reads: d's buffer holds F first."""
    uses, factors = _factor_uses(plan), {f for f, _ in plan.factors}
    out = {}
    for name, value in plan.definitions:
        if name not in homes.place or not isinstance(value, HadamardProduct):
            continue
        fs = [a for a in value.args if a in factors and uses.get(a) == 1]
        if len(fs) == 1:
            rest = [a for a in value.args if a != fs[0]]
            moving = rest[0] if len(rest) == 1 else HadamardProduct(*rest)
            out[name] = (fs[0], moving)
    return out


def loop_env(plan: StepPlan, homes: Homes, where: str, seeds_code: dict,
             places: Places = BUFFERS, inline_factors: bool = False):
    """(base, offset) → code at step t of the reverse loop.

    Forward values come from ``places`` (the buffers, or the streamed rings); factors
    are read from their (T, B, H) arrays, or computed in place with ``inline_factors``.
    """
    net, layout = plan.network, homes.layout
    factors = {base_of(f): e for f, e in plan.factors}
    temps = {base_of(n) for n, _ in plan.definitions} - {base_of(d) for d in homes.place}
    place = {base_of(d): v for d, v in homes.place.items()}
    seeds = {base_of(sym): seeds_code[s] for s, sym in plan.seeds.items()}
    forward = step_env(plan, layout, places)

    def env(base: str, k: int) -> ir.Node:
        if k == 0 and base in seeds:
            return seeds[base]
        if k == 0 and base in temps:
            return N(base)
        if k == 0 and base in place:
            return homes.code(place[base][0], place[base][1], place[base][1] + 1, where)
        if k == 0 and base in factors:
            return rows(factors[base], env, layout.params()) if inline_factors \
                else Idx(N(base), "t - 1")
        if base in net.states or base in plan.stored():
            return forward(base, k)
        if (base, k) == ("x", 0):
            return Idx(N("X"), "t - 1")
        raise CodegenError(f"the reverse loop reads {base} at offset {k}")

    return env


def _slot_value(layout: Layout, products: set[str], base: str, index: str) -> ir.Node:
    weight = base[len("p_"):]
    product = layout.product_of(weight)
    if product.name not in products:
        raise CodegenError(f"the reverse pass reads {base}, which no buffer holds")
    cols = layout.slot_range(product, weight)
    return Idx(N(buffer(product.name)), index if cols is None else f"{index}, :, {cols}")


def stacked_env(plan: StepPlan, homes: Homes):
    """(base, offset) → (T, B, ·) arrays over every step, for the hoisted factors."""
    net, layout = plan.network, homes.layout
    stored, products = set(plan.stored()), stored_products(plan)

    def env(base: str, k: int) -> ir.Node:
        if base in net.states and k in (-1, 0):
            return Idx(N(buffer(base)), "1:" if k == 0 else ":-1")
        if k == 0 and base.startswith("p_"):
            return _slot_value(layout, products, base, ":")
        if k == 0 and base in stored:
            return N(buffer(base))
        raise CodegenError(f"a hoisted factor reads {base} at offset {k}")

    return env


# ------------------------------------------------------------------ the reverse loop


def _factors(plan: StepPlan, homes: Homes, into: dict) -> list[ir.Stmt]:
    """Every factor for all t at once; a factor multiplied into a buffer is written there."""
    env, params = stacked_env(plan, homes), homes.layout.params()
    target_of = {f: homes.place[d] for d, (f, _) in into.items()}
    out: list[ir.Stmt] = []
    for sym, expr in plan.factors:
        code = rows(expr, env, params)
        if sym in target_of:
            buf, col = target_of[sym]
            block = homes.code(buf, col, col + 1, "loop")
            index = block.index.replace("t - 1", ":", 1)
            target = N(buf) if index == ":" else Idx(N(buf), index)
            out.append(ir.Assign(target, code, f"hoisted into {buf}: {text(expr)}"))
        else:
            out.append(ir.Assign(N(base_of(sym)), code, f"hoisted: {text(expr)}, (T, B, H)"))
    return out


def _scaled_runs(homes: Homes, into: dict) -> dict:
    """Definitions multiplied in place by one factor, in adjacent blocks of one buffer:
    first member → (members, buffer, first block, stop block, factor)."""
    groups: dict = {}
    for name, (_, moving) in into.items():
        groups.setdefault((homes.place[name][0], moving), []).append(name)
    out = {}
    for (buf, moving), names in groups.items():
        blocks = sorted(homes.place[n][1] for n in names)
        if len(names) > 1 and blocks == list(range(blocks[0], blocks[0] + len(names))):
            out[names[0]] = (set(names), buf, blocks[0], blocks[-1] + 1, moving)
    return out


def _scaled_run_code(run, homes: Homes, env, params, k: int) -> list[ir.Stmt]:
    names, buf, first, stop, moving = run
    view = N(f"run{k}")
    block = homes.code(buf, first, stop, "loop")
    shape = ir.Tuple((N("B"), ir.Num(stop - first), N("H")))
    return [ir.Assign(view, op("reshape", block, shape), "(B, gates, H), a view"),
            ir.AugAssign(view, "*", Idx(rows(moving, env, params), ":, None, :"),
                         f"{', '.join(sorted(n.name for n in names))} = {text(moving)} * ...")]


def step_code(plan: StepPlan, homes: Homes, env, where: str, into: dict) -> list[ir.Stmt]:
    """The plan's definitions at step t: temporaries, and slot adjoints in their buffers."""
    params = homes.layout.params()
    runs = _scaled_runs(homes, into) if where == "loop" else {}
    grouped = set().union(*(r[0] for r in runs.values())) if runs else set()
    out: list[ir.Stmt] = []
    for name, value in plan.definitions:
        comment = f"{name} = {text(value)}"
        if name in runs:
            out += _scaled_run_code(runs[name], homes, env, params, len(out))
        elif name in grouped:
            continue
        elif name in into and where == "loop":
            factor, moving = into[name]
            buf, col = homes.place[name]
            target = homes.code(buf, col, col + 1, where)
            out.append(ir.AugAssign(target, "*", rows(moving, env, params), comment))
        elif name in homes.place:
            buf, col = homes.place[name]
            out.append(ir.Assign(homes.code(buf, col, col + 1, where),
                                 adjoint_sum(value, env, homes, where), comment))
        else:
            out.append(ir.Assign(N(base_of(name)), adjoint_sum(value, env, homes, where),
                                 comment))
    return out


def carries_code(plan: StepPlan, homes: Homes, env, where: str) -> list[ir.Stmt]:
    net = plan.network
    return [ir.Assign(N(carry_name(net, s)), adjoint_sum(plan.carries[s], env, homes, where),
                      f"dL/d{s}_(t-1) = {text(plan.carries[s])}") for s in plan.states]


def _final_carries(plan: StepPlan) -> list[ir.Stmt]:
    """A layer's carries at T: what the caller sends to its last states (``final``)."""
    adds = tuple(ir.AugAssign(N(carry_name(plan.network, s)), "+",
                              op("get", N("final"), ir.Str(s))) for s in plan.states)
    return [ir.If(op("not_none", N("final")), adds)]


def _full_loop(plan: StepPlan, homes: Homes, into: dict, layer: bool = False
               ) -> list[ir.Stmt]:
    net = plan.network
    seeds = {s: Idx(N(delta_name(net, s)), "t - 1") for s in plan.states}
    env = loop_env(plan, homes, "loop", seeds)
    first = net.readout
    others = [s for s in plan.states if s != first]
    body: list[ir.Stmt] = [ir.AugAssign(seeds[first], "+", N(carry_name(net, first)),
                                        f"delta_t = local_t + carry_t (dL/d{first}_t)")]
    body += [ir.Assign(seeds[s], N(carry_name(net, s)), f"dL/d{s}_t from step t+1")
             for s in others]
    body += step_code(plan, homes, env, "loop", into) + carries_code(plan, homes, env, "loop")
    init = [ir.Assign(N(carry_name(net, s)), _zeros(N("B"), N("H")),
                      "carry_T = 0 (nothing after step T)") for s in plan.states]
    init += _final_carries(plan) if layer else []
    return init + [ir.For("t", N("T"), ir.Num(0), -1, tuple(body))]


def _truncated_loop(plan: StepPlan, homes: Homes, tbptt: tuple[int, int]) -> list[ir.Stmt]:
    net, (k1, k2) = plan.network, tbptt
    first = net.readout
    carries = {s: N(carry_name(net, s)) for s in plan.states}
    env = loop_env(plan, homes, "window", carries)
    inner: list[ir.Stmt] = [
        ir.If(op("ge", N("t"), N("start")),
              (ir.AugAssign(carries[first], "+", Idx(N("local"), "t - 1"),
                            "this chunk's loss at step t"),)),
        *(ir.AugAssign(Idx(N(delta_name(net, s)), "t - 1"), "+", carries[s],
                       "sum over windows") for s in plan.states),
        *step_code(plan, homes, env, "window", {}),
        *(ir.AugAssign(Idx(N(b), "t - 1"), "+", N(f"g{b}")) for b in homes.slot_buffers),
        *carries_code(plan, homes, env, "window"),
    ]
    chunk: list[ir.Stmt] = [
        ir.Assign(N("stop"), op("min", op("add", N("start"), ir.Num(k1 - 1)), N("T")),
                  "this chunk: steps start..stop"),
        ir.Assign(N("first"), op("max", op("sub", N("stop"), ir.Num(k2 - 1)), ir.Num(1)),
                  "backprop window: first..stop"),
        *(ir.Assign(Idx(c, "..."), ir.Num(0)) for c in carries.values()),
        ir.For("t", N("stop"), op("sub", N("first"), ir.Num(1)), -1, tuple(inner)),
        ir.If(op("eq", N("first"), ir.Num(1)),
              tuple(ir.AugAssign(N(f"d{s}_0"), "+", carries[s]) for s in plan.states)),
    ]
    out: list[ir.Stmt] = [ir.Assign(N("local"), N("delta"), "local parts W_hy.T @ e_t: (T, B, H)"),
                          ir.Assign(N("delta"), _zeros(N("T"), N("B"), N("H")))]
    for b, width in homes.widths.items():
        if b != "delta":
            out.append(ir.Assign(N(b), _zeros(N("T"), N("B"), width_code(width))))
    out += [ir.Assign(N(f"g{b}"), _zeros(N("B"), width_code(homes.widths[b])))
            for b in homes.slot_buffers]
    out += [ir.Assign(c, _zeros(N("B"), N("H"))) for c in carries.values()]
    out += [ir.Assign(N(f"d{s}_0"), _zeros(N("B"), N("H"))) for s in plan.states]
    out += [ir.Comment(f"truncated BPTT: forward k1={k1} steps, backpropagate k2={k2} steps"),
            ir.For("start", ir.Num(1), op("add", N("T"), ir.Num(1)), k1, tuple(chunk))]
    return out


# ------------------------------------------------------------------ gradients


def _input_all(plan: StepPlan, product: Product) -> ir.Node:
    """The product's input stacked over steps: x_all, h_prev or a stored value (T*B, ·)."""
    base = base_of(product.input)
    if base == "x":
        return N("x_all")
    if base in plan.states and str(product.input.name).endswith("{t-1}"):
        return N(f"{base}_prev")
    if base in plan.states:  # the layer below's h_t, t = 1..T
        return op("reshape", Idx(N(buffer(base)), "1:"), ir.Tuple(TB_H))
    return op("reshape", N(buffer(base)), ir.Tuple(TB_H))


def _matches(plan: StepPlan, product: Product, homes: Homes) -> bool:
    """Every slot's summands are (its adjoint) (input)ᵀ and (its adjoint) for the bias."""
    for slot in product.slots:
        d = plan.slot_adjoints[slot.symbol]
        if d not in homes.place or plan.summands[slot.weight] != MatMul(d, Transpose(
                product.input)):
            return False
        if slot.bias and plan.summands[slot.bias] != d:
            return False
    return True


def block_grads(plan: StepPlan, homes: Homes, product: Product, where: str, input_code,
                env) -> list[tuple]:
    """(stack, rows, code) for the weight and bias blocks of one product: one product per
    run of adjacent slot adjoints, or each slot's own summand where the pattern differs."""
    layout, out = homes.layout, []
    if not _matches(plan, product, homes):
        for slot in product.slots:
            rows_ = (slot.index, slot.index + 1)
            out.append((product.stack, rows_, outer_sum(plan.summands[slot.weight], env,
                                                        layout.params())))
            if slot.bias:
                out.append((product.bias_stack, rows_, outer_sum(plan.summands[slot.bias], env,
                                                                 layout.params())))
        return out
    items = [(s, *homes.place[plan.slot_adjoints[s.symbol]]) for s in product.slots]
    for run in _runs(items):
        block = homes.code(run[0][1], run[0][2], run[-1][2] + 1, where)
        rows_ = (run[0][0].index, run[-1][0].index + 1)
        out.append((product.stack, rows_, op("matmul", op("T", block), input_code(product))))
    for run in _runs([item for item in items if item[0].bias]):
        block = homes.code(run[0][1], run[0][2], run[-1][2] + 1, where)
        out.append((product.bias_stack, (run[0][0].index, run[-1][0].index + 1),
                    op("sum0", block)))
    return out


def stack_shape(layout: Layout, stack: str) -> tuple[ir.Node, ...]:
    first = next(m for m in layout.members(stack) if m is not None)
    rows_ = width_code(len(layout.members(stack)))
    if stack.startswith("bias"):
        return (rows_,)
    net = layout.net
    reads_x = {sym.name for sym in net.layers[0].params.values()} if \
        net.layers[0].input == "x" else set()
    shape = next(p.shape for p in net.param_defs if p.name == first)
    if first in reads_x and shape[1] == "D":
        return (rows_, N("D"))  # the input width: a layer function reads any
    return (rows_, ir.Num(int(net.params[first].shape[1])))


def grad_name(layout: Layout, stack: str) -> str:
    return f"d{layout.stack_code(stack).id}"


def _all_env(plan: StepPlan, homes: Homes):
    place = {base_of(d): v for d, v in homes.place.items()}

    def env(base: str, k: int) -> ir.Node:
        if k == 0 and base in place:
            return homes.code(place[base][0], place[base][1], place[base][1] + 1, "all")
        if base == "x" and k == 0:
            return N("x_all")
        if base in plan.states and k in (-1, 0):
            return N(f"{base}_prev" if k == -1 else f"{base}_all")
        raise CodegenError(f"a gradient summand reads {base} at offset {k}, which is not stored")

    return env


def _stack_grads(plan: StepPlan, homes: Homes) -> list[ir.Stmt]:
    """d<stack> for every stack: one assignment, or its row blocks into zeros."""
    layout, out = homes.layout, []
    blocks: dict[str, list] = {}
    env = _all_env(plan, homes)
    for product in plan.products:
        for stack, rows_, code in block_grads(plan, homes, product, "all",
                                              lambda p: _input_all(plan, p), env):
            blocks.setdefault(stack, []).append((rows_, code))
    for stack, parts in blocks.items():
        name = grad_name(layout, stack)
        total = len(layout.members(stack))
        if len(parts) == 1 and parts[0][0] == (0, total):
            out.append(ir.Assign(N(name), parts[0][1], f"sum_t over the steps, {stack}"))
            continue
        out.append(ir.Assign(N(name), _zeros(*stack_shape(layout, stack))))
        for (a, b), code in parts:
            out.append(ir.Assign(Idx(N(name), f"{a * layout.H}:{b * layout.H}"), code))
    return out


def per_gate(layout: Layout) -> list[ir.Stmt]:
    """Notes layout: each per-gate gradient is a row block of its stack's gradient."""
    if layout.torch:
        return []
    out = []
    for stack, members in layout.net.stacks.items():
        if len(members) == 1:
            continue
        for k, name in enumerate(members):
            if name is not None:
                out.append(ir.Assign(N(f"d{name}"), Idx(N(f"d{stack}"),
                                                        f"{k * layout.H}:{(k + 1) * layout.H}")))
    return out


def clipping(grad_names: list[str], clip: float | None, clip_value: float | None):
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


# ------------------------------------------------------------------ assembly


def head_reads(rec: Recurrence) -> list[str]:
    """The head values the backward reads from the cache (y, ŷ, z)."""
    readout = _readout(rec)
    exprs = [rec.output_error[1], rec.local[readout], rec.gradients["W_hy"],
             rec.gradients.get("b_y")]
    bases = set().union(*(timed_bases(e) for e in exprs if e is not None))
    return [b for b in CACHE_NAMES if b in bases and b not in ("h", "x")]


def _readout(rec: Recurrence) -> str:
    return network(rec.spec).readout


def _head(rec: Recurrence, layout: Layout, last: bool) -> list[ir.Stmt]:
    """e_t, the hoisted local part W_hyᵀ e_t of δ_t, and the head's gradients."""
    env_loss, params = loss_env(last, layout.net.readout), layout.params()

    def env(base: str, k: int) -> ir.Node:
        return N("e") if (base, k) == ("e", 0) else env_loss(base, k)

    e_sym, e_expr = rec.output_error
    local = rows(rec.local[layout.net.readout], env, params)
    TBH = ir.Tuple((N("T"), N("B"), N("H")))
    out: list[ir.Stmt] = [ir.Assign(N("e"), rows(e_expr, env_loss, params),
                                    f"{e_sym} = {text(e_expr)}")]
    if last:
        out += [ir.Assign(N("delta"), _zeros(N("T"), N("B"), N("H")), "delta_t: (T, B, H)"),
                ir.Assign(Idx(N("delta"), "T - 1"), local, "the loss is at t = T only")]
    else:
        out.append(ir.Assign(N("delta"), op("reshape", local, TBH),
                             "delta_t, hoisted local part: (T, B, H)"))
    for name in ("W_hy", "b_y"):
        if name in rec.gradients and name in params:
            out.append(ir.Assign(N(f"d{name}"), outer_sum(rec.gradients[name], env, params),
                                 f"sum_t {text(rec.gradients[name])}"))
    return out


def _reads(plan: StepPlan, rec: Recurrence, layout: Layout, layer: bool) -> list[ir.Stmt]:
    products = stored_products(plan)
    names = [buffer(s) for s in plan.states] + [buffer(b) for b in plan.stored()
                                                 if not b.startswith("p_")]
    names += [buffer(p) for p in sorted(products)] + ["x_all"]
    names += ([] if layer else [CACHE_NAMES[b] for b in head_reads(rec)]) + ["T", "B"]
    return [ir.Assign(N(n), op("get", N("cache"), ir.Str(n))) for n in dict.fromkeys(names)]


def _stacked_views(plan: StepPlan, homes: Homes, last: bool) -> list[ir.Stmt]:
    out = [ir.Assign(N(f"{s}_prev"), op("reshape", Idx(N(buffer(s)), ":-1"), ir.Tuple(TB_H)),
                     f"{s}_(t-1): (T*B, H)") for s in plan.states]
    if not last:
        out.append(ir.Assign(N("h_all"), op("reshape", Idx(N(buffer(plan.network.readout)), "1:"),
                                            ir.Tuple(TB_H)),
                             "(T*B, H)"))
    out += [ir.Assign(N(f"{b}_all"), op("reshape", N(b), ir.Tuple(
        (op("mul", N("T"), N("B")), width_code(w))))) for b, w in homes.widths.items()]
    return out


def _buffers(plan: StepPlan, homes: Homes) -> list[ir.Stmt]:
    """delta_s for the other states, and each product's adjoint buffer (preallocated, so
    that a hoisted factor can be written into it in place)."""
    out = [ir.Assign(N(delta_name(plan.network, s)), op("empty", ir.Tuple(
        (N("T"), N("B"), N("H"))), N("dtype"), N("device")), f"dL/d{s}_t: (T, B, H)")
        for s in plan.states if s != plan.network.readout]
    out += [ir.Assign(N(b), op("empty", ir.Tuple((N("T"), N("B"), width_code(homes.widths[b]))),
                               N("dtype"), N("device")), f"dL/d{b[1:]}_t for t = 1..T")
            for b in homes.slot_buffers]
    return out


def _layer_seed(plan: StepPlan) -> list[ir.Stmt]:
    """A layer's local part of δ_t: what the caller's layers above and head send."""
    return [ir.Assign(N("D"), op("get", op("shape", N("x_all")), ir.Num(1)), "input width"),
            ir.Assign(N(delta_name(plan.network, plan.network.readout)),
                      op("copy", N("grad_out")), "delta_t, local part from above: (T, B, H)")]


def lower_backward(spec: Spec, rec: Recurrence, plan: StepPlan, layout: Layout, last: bool,
                   tbptt, clip, clip_value, layer: bool = False
                   ) -> tuple[ir.FunctionDef, set[str]]:
    """``backward``; ``layer``: ``backward_layer(params, cache, grad_out, final=None)`` of a
    layer function, seeded with ∂L/∂h_t from above (grad_out, (T, B, H) time-major) and
    ∂L/∂s_T (final: {'h': (B, H), ...} or None)."""
    net, homes = plan.network, Homes.of(plan, layout)
    into = multiply_into(plan, homes) if tbptt is None else {}
    names = layout.cell_params() if layer else layout.module_params()
    body: list[ir.Stmt] = [*unpack_params(names), *_reads(plan, rec, layout, layer)]
    body += [ir.Assign(N("dtype"), op("dtype_of", N("HS"))),
             ir.Assign(N("device"), op("device_of", N("HS"))), *layout.build_stacks()]
    if layer:
        body += _layer_seed(plan)
    else:
        if not last:
            body.append(ir.Assign(N("h_all"), op("reshape", Idx(N(buffer(net.readout)), "1:"),
                                                 ir.Tuple(TB_H)), "(T*B, H)"))
        body += _head(rec, layout, last)
    if tbptt is None:
        body += _buffers(plan, homes) + _factors(plan, homes, into)
        body += _full_loop(plan, homes, into, layer)
        body += [ir.Assign(N(f"d{s}_0"), N(carry_name(net, s)), f"dL/d{s}_0") for s in plan.states]
    else:
        body += _factors(plan, homes, {}) + _truncated_loop(plan, homes, tbptt)
    body += [s for s in _stacked_views(plan, homes, last) if not (
        isinstance(s.target, ir.Name) and s.target.id == "h_all")]
    body += _stack_grads(plan, homes) + per_gate(layout)
    body += clipping([f"d{n}" for n in names], clip, clip_value)
    items = tuple((n, N(f"d{n}")) for n in names) + tuple(
        (f"{s}_0", N(f"d{s}_0")) for s in plan.states) + tuple(
        (delta_name(net, s), op("batch_first", N(delta_name(net, s)))) for s in plan.states)
    body.append(ir.Assign(N("grads"), ir.Dict(items)))
    dx = op("reshape", adjoint_sum(plan.input_adjoint, _all_env(plan, homes), homes, "all"),
            ir.Tuple((N("T"), N("B"), N("D"))))
    body.append(ir.If(N("input_grad"), (ir.Assign(Idx(N("grads"), "'x'"), op("batch_first", dx),
                                                  f"dL/dx_t = {text(plan.input_adjoint)}"),)))
    body.append(ir.Return(N("grads")))
    fn = _backward_def(plan, body, layer)
    buffers = {carry_name(net, s) for s in plan.states} | set(homes.widths) | {
        f"g{b}" for b in homes.slot_buffers} | {buffer(s) for s in plan.states}
    return fn, buffers


def _backward_def(plan: StepPlan, body: list[ir.Stmt], layer: bool) -> ir.FunctionDef:
    states = ", ".join(f"'{s}_0' (B, H)" for s in plan.states)
    doc = (f"Gradients of the loss: every parameter, {states} and 'delta' (B, T, H),\n"
           "delta[:, t-1] = dL/dh_t for t = 1..T; with input_grad also 'x' (B, T, D).")
    if layer:
        return ir.FunctionDef("backward_layer", ("params", "cache", "grad_out", "final=None",
                                                 "input_grad=True"), doc, tuple(body))
    return ir.FunctionDef("backward", ("params", "cache", "input_grad=False"), doc, tuple(body))
