"""Lowering of the forward pass: a cell's step plan → the ``forward`` function's code tree.

The products of :mod:`symrnn.codegen.plan` over x_t are one product for all steps
(``P = x_all @ weight_ih.T + bias_ih``, every gate at once); in the time loop each
product over the previous state is one matrix product per step (``Q = HS[t - 1] @
weight_hh.T``), then the cell's equations fill the state buffers and the stored values
(``HS[t] = tanh(Q + P[t - 1])`` for Elman; the gates, c_t and h_t for LSTM).  Values the
reverse pass does not read are inlined.  The head (z_t, ŷ_t) and the loss are computed
after the loop for all loss steps at once: every step for many_to_many (arrays
(T·B, ·)), the last step for many_to_one ((B, ·)).  The loss is summed over steps and
batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import sympy
from sympy import MatAdd, MatrixSymbol

from symrnn.codegen import ir
from symrnn.codegen.layout import Layout, buffer, state_arg
from symrnn.codegen.layout import stored_products as stored_products_of
from symrnn.codegen.plan import StepPlan, base_of
from symrnn.codegen.translate import CodegenError, rows
from symrnn.engine.expr import T_SYMBOL, Apply, MSELoss, SoftmaxCrossEntropy, timed
from symrnn.ops import ELEMENTWISE
from symrnn.render.printing import text
from symrnn.spec import Spec

__all__ = ["Pack", "packs", "hoisted_code", "lower_forward", "loss_env", "unpack_params",
           "step_env", "step_body", "state_args",
           "Places", "BUFFERS", "CACHE_NAMES", "width_code", "targets", "loss_code"]

CACHE_NAMES = {"h": "HS", "x": "x_all", "y": "y_all", "z": "z", "yhat": "yhat"}
"""Per-step quantities of the head and the loss, and their names in the cache."""

N, Idx, op = ir.Name, ir.Index, ir.op
t_ = T_SYMBOL


def unpack_params(names: list[str]) -> list[ir.Stmt]:
    return [ir.Assign(N(n), op("get", N("params"), ir.Str(n))) for n in names]

def loss_env(last: bool, readout: str = "h"):
    """The head's values at the loss steps; ``readout`` is the state it reads (h, h_l1)."""
    h_loss = Idx(N(buffer(readout)), "T") if last else N("h_all")

    def env(base: str, k: int) -> ir.Node:
        if base == readout and k == 0:
            return h_loss
        if k == 0 and base in CACHE_NAMES:
            return N(CACHE_NAMES[base])
        raise CodegenError(f"no stacked value for {base} at offset {k}")

    return env


@dataclass(frozen=True)
class Places:
    """Where step t's values are: (array name, index text) for states, stored values and
    hoisted products.  The forward pass uses the (T+1, B, H) and (T, B, ·) buffers; the
    streamed TBPTT uses rings of k2 + 1 steps."""

    state: Callable[[str, int], tuple[str, str]]
    value: Callable[[str], tuple[str, str]]
    hoisted: Callable[[str], tuple[str, str]]


BUFFERS = Places(
    state=lambda base, k: (buffer(base), "t" if k == 0 else "t - 1"),
    value=lambda name: (buffer(name), "t - 1"),
    hoisted=lambda name: (name, "t - 1"),
)


def _at(place: tuple[str, str], cols: str | None = None) -> ir.Node:
    name, index = place
    return Idx(N(name), index if cols is None else f"{index}, :, {cols}")


def inline_single(product, stored: set[str]) -> bool:
    """A one-slot product inside the loop is written where it is used (Q is not named)."""
    return not product.hoisted and len(product.slots) == 1 and product.name not in stored


def width_code(blocks: int) -> ir.Node:
    return N("H") if blocks == 1 else op("mul", ir.Num(blocks), N("H"))


def step_env(plan: StepPlan, layout: Layout, places: Places = BUFFERS):
    """(base, offset) → code for step t's values (forward loop, or a ring)."""
    states, stored = set(plan.states), set(plan.stored())
    products = stored_products_of(plan)

    def env(base: str, k: int) -> ir.Node:
        if base in states and k in (-1, 0):
            return _at(places.state(base, k))
        if base.startswith("p_") and k == 0:
            return slot(base[len("p_"):])
        if base in stored and k == 0:
            return _at(places.value(base))
        raise CodegenError(f"the time loop reads {base} at offset {k}")

    def slot(weight: str) -> ir.Node:
        product = layout.product_of(weight)
        cols = layout.slot_range(product, weight)
        if inline_single(product, products):
            return _product_code(layout, product, env, layout.params())
        if product.hoisted:
            return _at(places.hoisted(product.name), cols)
        if product.name in products:
            return _at(places.value(product.name), cols)
        return N(product.name) if cols is None else Idx(N(product.name), f":, {cols}")

    return env


def _product_code(layout: Layout, product, env, params) -> ir.Node:
    code = op("matmul", rows(product.input, env, params), op("T", layout.product_weight(product)))
    bias = layout.product_bias(product)
    return code if bias is None else op("add", code, bias)


def _count(exprs, match) -> int:
    return sum(1 for e in exprs for node in sympy.preorder_traversal(e) if match(node))


def _fusable(plan: StepPlan, stored: set[str]) -> dict[str, list[tuple]]:
    """Loop product → its slots (q, x) whose only use is the sum p_q + p_x with the same
    gate's hoisted slot: that sum is taken once per step for a whole run of gates."""
    hoisted = {s.index: s for p in plan.products if p.hoisted for s in p.slots}
    exprs = [eq.rhs for eq in plan.equations]
    out: dict[str, list[tuple]] = {}
    for product in plan.products:
        if product.hoisted or len(product.slots) == 1:
            continue
        for q in product.slots:
            x = hoisted.get(q.index)
            if x is None:
                continue
            pair = {q.symbol, x.symbol}
            together = _count(exprs, lambda n, pair=pair: isinstance(n, MatAdd)
                              and set(n.args) == pair)
            if together and together == _count(exprs, lambda n, q=q: n == q.symbol) \
                    == _count(exprs, lambda n, x=x: n == x.symbol):
                out.setdefault(product.name, []).append((q, x))
    return out


def whole_products(plan: StepPlan) -> set[str]:
    """Loop products whose every slot is summed with the hoisted one's: the step adds the
    hoisted block to the product itself, and the product's bias moves into the hoisted one."""
    stored = stored_products_of(plan)
    hoisted = next((p for p in plan.products if p.hoisted), None)
    return {name for name, pairs in _fusable(plan, stored).items()
            if name not in stored  # a stored product keeps its own value
            and len(pairs) == len(next(p for p in plan.products if p.name == name).slots)
            and hoisted.rows == next(p for p in plan.products if p.name == name).rows}


def hoisted_code(plan: StepPlan, layout: Layout, product, x_code: ir.Node) -> ir.Node:
    """x @ W.T + b for a product over x_t, plus the biases of the whole loop products."""
    code = op("matmul", x_code, op("T", layout.product_weight(product)))
    moved = [p for p in plan.products if p.name in whole_products(plan)]
    for bias in [layout.product_bias(product), *(layout.product_bias(p) for p in moved)]:
        if bias is not None:
            code = op("add", code, bias)
    return code


def _fused(plan: StepPlan, layout: Layout, places: Places, stored: set[str]):
    """(sum → symbol, symbol base → code, product name → the code that adds the hoisted
    slots to it, statements of partial runs)."""
    H = layout.H
    sums, codes, whole, runs = {}, {}, {}, []
    hoisted = next((p for p in plan.products if p.hoisted), None)
    wholes = whole_products(plan)
    for name, pairs in _fusable(plan, stored).items():
        product = next(p for p in plan.products if p.name == name)
        full = name in wholes
        groups = [pairs] if full else _contiguous(pairs)
        for k, group in enumerate(groups):
            first = group[0][0].index
            temp = name if full else f"{name}_sum{k}"
            if not full:
                a, b = first - product.rows[0], group[-1][0].index + 1 - product.rows[0]
                xa, xb = first - hoisted.rows[0], group[-1][0].index + 1 - hoisted.rows[0]
                mine = _at(places.value(name), f"{a * H}:{b * H}") if name in stored \
                    else Idx(N(name), f":, {a * H}:{b * H}")
                runs.append(ir.Assign(N(temp), op(
                    "add", mine,
                    _at(places.hoisted(hoisted.name), f"{xa * H}:{xb * H}")),
                    "pre-activations of " + ", ".join(q.weight[-1] for q, _ in group)))
            for q, x in group:
                sym = timed(f"s_{q.weight}", t_, H)
                sums[frozenset((q.symbol, x.symbol))] = sym
                cols = (q.index - first) if not full else (q.index - product.rows[0])
                width = len(group) if not full else len(product.slots)
                codes[f"s_{q.weight}"] = Idx(N(temp), f":, {cols * H}:{(cols + 1) * H}") \
                    if width > 1 else N(temp)
        if full:
            whole[name] = _at(places.hoisted(hoisted.name))
    return sums, codes, whole, runs


def _contiguous(pairs: list[tuple]) -> list[list[tuple]]:
    groups: list[list[tuple]] = []
    for pair in pairs:
        if groups and groups[-1][-1][0].index + 1 == pair[0].index:
            groups[-1].append(pair)
        else:
            groups.append([pair])
    return groups


@dataclass(frozen=True)
class Pack:
    """Gates computed in one buffer: the pre-activations of a run of gates land in
    ``{BASE}S[t - 1]`` (T, B, width·H), the most common activation runs over all of it in
    place, the others over their blocks; each gate's stored value is a view of a block."""

    base: str
    temp: str
    width: int
    members: tuple[tuple[str, str, int], ...]
    """(stored value, activation, block) in block order."""

    @property
    def major(self) -> str:
        ops = [m[1] for m in self.members]
        return max(sorted(set(ops)), key=ops.count)


def _temp_block(code: ir.Node, H: int) -> tuple[str, int]:
    if isinstance(code, ir.Name):
        return code.id, 0
    return code.base.id, int(code.index.split(", ")[-1].split(":")[0]) // H


def _folded(plan: StepPlan, sums: dict) -> list:
    keep = set(plan.states) | set(plan.stored())
    slots = {s.symbol for p in plan.products for s in p.slots}
    inline, out = {}, []
    for eq in plan.equations:
        if eq.lhs in slots:
            continue
        rhs = _fold(eq.rhs.xreplace(inline), sums)
        if base_of(eq.lhs) in keep:
            out.append((eq.lhs, rhs))
        else:
            inline[eq.lhs] = rhs
    return out


def packs(plan: StepPlan, layout: Layout) -> list[Pack]:
    """The runs of fused gates whose every block feeds one stored activation."""
    sums, codes, whole, runs = _fused(plan, layout, BUFFERS, stored_products_of(plan))
    eqs = _folded(plan, sums)
    exprs = [rhs for _, rhs in eqs]
    by_temp: dict[str, list] = {}
    for base, code in codes.items():
        temp, block = _temp_block(code, layout.H)
        by_temp.setdefault(temp, []).append((block, base))
    out = []
    for temp, blocks in sorted(by_temp.items()):
        members = []
        for block, base in sorted(blocks):
            sym = timed(base, t_, layout.H)
            users = [(lhs, rhs) for lhs, rhs in eqs if isinstance(rhs, Apply) and rhs.arg == sym]
            if len(users) != 1 or _count(exprs, lambda n, sym=sym: n == sym) != 1 \
                    or f"{users[0][1].op}_" not in _INPLACE:
                break
            members.append((base_of(users[0][0]), users[0][1].op, block))
        else:
            out.append(Pack("", temp, len(blocks), tuple(members)))
    names = ["gate"] if len(out) == 1 else [f"gate{k}" for k in range(len(out))]
    return [dataclasses.replace(p, base=name) for p, name in zip(out, names, strict=True)]


_INPLACE = {f"{name}_" for name, row in ELEMENTWISE.items()
            if row.numpy_inplace and row.torch_inplace}


def _pack_code(pack: Pack, code: ir.Node, places: Places, H: int) -> list[ir.Stmt]:
    """Pre-activations into the pack, the minority activations set aside, the majority in
    place over the whole, the set-aside blocks put back."""
    target = _at(places.value(pack.base))
    out: list[ir.Stmt] = [ir.Assign(target, code, "pre-activations of " + ", ".join(
        m[0] for m in pack.members) + f": (B, {pack.width}H)")]
    minority = [m for m in pack.members if m[1] != pack.major]
    for k, (base, fn, block) in enumerate(minority):
        cols = f"{block * H}:{(block + 1) * H}"
        out.append(ir.Assign(N(f"keep{k}"), op(fn, _at(places.value(pack.base), cols)),
                             f"{base}_t = {fn}(...)"))
    out.append(ir.Expr(op(f"{pack.major}_", target), ", ".join(
        m[0] for m in pack.members if m[1] == pack.major) + f" = {pack.major}(...)"))
    for k, (_, _, block) in enumerate(minority):
        out.append(ir.Assign(_at(places.value(pack.base), f"{block * H}:{(block + 1) * H}"),
                             N(f"keep{k}")))
    return out


def step_body(plan: StepPlan, layout: Layout, places: Places = BUFFERS) -> list[ir.Stmt]:
    """One forward step: the loop products, then each state or stored value, in order."""
    products = stored_products_of(plan)
    sums, codes, whole, runs = _fused(plan, layout, places, products)
    inner = step_env(plan, layout, places)

    def env(base: str, k: int) -> ir.Node:
        return codes[base] if (k == 0 and base in codes) else inner(base, k)

    params, keep = layout.params(), set(plan.states) | set(plan.stored())
    packed = {p.temp: p for p in packs(plan, layout)}
    members = {m[0] for p in packed.values() for m in p.members}
    slots = {s.symbol: p for p in plan.products for s in p.slots}
    net = plan.network
    said = {e.lhs: e.rhs for e in net.step_equations(t_, net.state_symbols(t_ - 1), head=False)}
    inline: dict = {}
    done: set[str] = set()
    body: list[ir.Stmt] = []
    for eq in plan.equations:
        product = slots.get(eq.lhs)
        if product is not None:
            if product.hoisted or product.name in done or inline_single(product, products):
                continue
            done.add(product.name)
            target = _at(places.value(product.name)) if product.name in products \
                else N(product.name)
            code = _product_code(layout, product, env, params)
            if product.name in whole:  # its bias is in the hoisted product
                code = op("add", op("matmul", rows(product.input, env, params),
                                    op("T", layout.product_weight(product))), whole[product.name])
            if product.name in packed:
                body += _pack_code(packed[product.name], code, places, layout.H)
            else:
                body.append(ir.Assign(target, code, product_comment(product)))
            for run in runs:
                if not run.target.id.startswith(f"{product.name}_sum"):
                    continue
                pack = packed.get(run.target.id)
                body += [run] if pack is None else _pack_code(pack, run.value, places, layout.H)
            continue
        rhs = _fold(eq.rhs.xreplace(inline), sums)
        base = base_of(eq.lhs)
        if base in members:
            continue
        if base not in keep:
            inline[eq.lhs] = rhs
            continue
        body.append(ir.Assign(env(base, 0), rows(rhs, env, params),
                              f"{eq.lhs} = {text(said.get(eq.lhs, rhs))}"))
    return body


def _fold(expr, sums: dict):
    """Replace each fused sum p_q + p_x by its symbol."""
    mapping = {n: sums[frozenset(n.args)] for n in sympy.preorder_traversal(expr)
               if isinstance(n, MatAdd) and frozenset(n.args) in sums}
    return expr.xreplace(mapping) if mapping else expr


def product_comment(product) -> str:
    weights = [s.weight for s in product.slots]
    biases = [s.bias for s in product.slots if s.bias]
    text_ = f"[{'; '.join(weights)}] @ {product.input}"
    return text_ + (f" + [{'; '.join(biases)}]" if biases else "") + \
        f": (B, {len(weights)}H)" if len(weights) > 1 else text_ + (
            f" + {biases[0]}" if biases else "")


def _buffers(plan: StepPlan, layout: Layout, stored_products: set[str]) -> list[ir.Stmt]:
    out: list[ir.Stmt] = []
    for s in plan.states:
        name = buffer(s)
        out += [ir.Assign(N(name), op("empty", ir.Tuple((op("add", N("T"), ir.Num(1)), N("B"),
                                                           N("H"))), N("dtype"), N("device")),
                          f"{s}_t for t = 0..T: (T+1, B, H)"),
                ir.If(op("is_none", N(state_arg(s))), (ir.Assign(Idx(N(name), "0"), ir.Num(0)),),
                      (ir.Assign(Idx(N(name), "0"), N(state_arg(s))),))]
    widths = {p.name: width_code(p.rows[1] - p.rows[0]) for p in plan.products}
    views = {}
    for pack in packs(plan, layout):
        out.append(ir.Assign(N(buffer(pack.base)), op("empty", ir.Tuple(
            (N("T"), N("B"), width_code(pack.width))), N("dtype"), N("device")),
            "gates " + ", ".join(m[0] for m in pack.members) + " for t = 1..T, side by side"))
        H = layout.H
        views |= {base: Idx(N(buffer(pack.base)), f":, :, {b * H}:{(b + 1) * H}")
                  for base, _, b in pack.members}
    for base in plan.stored():
        if base.startswith("p_"):
            continue
        value = views.get(base) or op("empty", ir.Tuple((N("T"), N("B"), N("H"))),
                                      N("dtype"), N("device"))
        out.append(ir.Assign(N(buffer(base)), value, f"{base}_t for t = 1..T: (T, B, H)"))
    for name in sorted(stored_products):
        out.append(ir.Assign(N(buffer(name)), op("empty", ir.Tuple((N("T"), N("B"),
                                                                    widths[name])),
                                                 N("dtype"), N("device")),
                             f"product {name} for t = 1..T"))
    return out


def _hoisted(plan: StepPlan, layout: Layout) -> list[ir.Stmt]:
    """Products over x_t: one matrix product for every step."""
    out: list[ir.Stmt] = []
    for product in plan.products:
        if product.hoisted:
            width = width_code(product.rows[1] - product.rows[0])
            code = hoisted_code(plan, layout, product, N("x_all"))
            out.append(ir.Assign(N(product.name), op("reshape", code, ir.Tuple(
                (N("T"), N("B"), width))), "hoisted, every t: " + product_comment(product)))
    return out


def state_args(plan: StepPlan) -> tuple[str, ...]:
    return tuple(f"{state_arg(s)}=None" for s in plan.states)


def _sizes_of_x() -> list[ir.Stmt]:
    """A layer's B, T and D, read off its input (one layer function serves any width)."""
    return [ir.Assign(ir.Tuple((N("B"), N("T"), N("D"))), op("shape", N("x")),
                      "any input width D")]


def lower_forward(spec: Spec, plan: StepPlan, layout: Layout, last: bool,
                  head_reads: list[str], layer: bool = False) -> ir.FunctionDef:
    """``forward``: the cache holds the states, the stored values and what the head needs.

    ``layer``: no head and no loss (``forward_layer(params, x, h0, ...) -> cache``), for a
    layer of a composed architecture whose outputs feed what the caller puts above."""
    net = plan.network
    stored_products = stored_products_of(plan)
    inits = [N(state_arg(s)) for s in plan.states]
    check = _sizes_of_x() if layer else [ir.Assign(ir.Tuple((N("B"), N("T"))), op(
        "call", ir.Str("_check"), N("x"), N("y"), *inits))]
    body: list[ir.Stmt] = [
        *check,
        ir.Assign(N("dtype"), op("dtype_of", N("x"))),
        ir.Assign(N("device"), op("device_of", N("x"))),
        *unpack_params(layout.cell_params() if layer else layout.module_params()),
        *layout.build_stacks(),
        ir.Assign(N("x_all"), op("reshape", op("time_major", N("x")),
                                 ir.Tuple((op("mul", N("T"), N("B")), N("D")))),
                  "x_t stacked over t: (T*B, D)"),
        *([] if layer else targets(spec, last)),
        *_hoisted(plan, layout),
        *_buffers(plan, layout, stored_products),
        ir.Comment("recurrence: " + "; ".join(f"{e.lhs} = {text(e.rhs)}"
                                              for e in net.step_equations(
                                                  t_, net.state_symbols(t_ - 1), head=False))),
        ir.For("t", ir.Num(1), op("add", N("T"), ir.Num(1)), 1,
               tuple(step_body(plan, layout))),
    ]
    body += [] if layer else _head(spec, net, last, layout)
    cache = [(buffer(s), N(buffer(s))) for s in plan.states]
    cache += [(buffer(b), N(buffer(b))) for b in plan.stored() if not b.startswith("p_")]
    cache += [(buffer(n), N(buffer(n))) for n in sorted(stored_products)]
    cache += [(CACHE_NAMES[b], N(CACHE_NAMES[b])) for b in head_reads]
    cache += [("x_all", N("x_all")), ("T", N("T")), ("B", N("B"))]
    body.append(ir.Assign(N("cache"), ir.Dict(tuple(dict(cache).items()))))
    states = "".join(f"\n{state_arg(s)}: (B, H) or None (zeros)." for s in plan.states)
    if layer:
        body.append(ir.Return(N("cache")))
        doc = ("One layer over x_1..x_T: the cache for backward_layer; cache['HS'][1:] holds\n"
               f"h_1..h_T (T, B, H).\n\nx: (B, T, D) batch-first, any D.{states}")
        return ir.FunctionDef("forward_layer", ("params", "x", *state_args(plan)), doc,
                              tuple(body))
    body.append(ir.Return(ir.Tuple((N("loss"), N("cache")))))
    doc = ("Loss L (summed over steps and batch) and the cache for backward.\n\n"
           f"x: (B, T, D); y: targets (see the module docstring).{states}")
    return ir.FunctionDef("forward", ("params", "x", "y", *state_args(plan)), doc, tuple(body))


def _head(spec: Spec, net, last: bool, layout: Layout) -> list[ir.Stmt]:
    eqs = net.step_equations(t_, net.state_symbols(t_ - 1))
    head = [e for e in eqs if e.block == "head"]
    (loss_eq,) = [e for e in eqs if e.block == "loss"]
    params = layout.params()
    body: list[ir.Stmt] = []
    if not last:
        body.append(ir.Assign(N("h_all"), op("reshape", Idx(N(buffer(net.readout)), "1:"),
                                             ir.Tuple((op("mul", N("T"), N("B")), N("H")))),
                              "h_t at the loss steps: (T*B, H)"))
    env = loss_env(last, net.readout)
    for eq in head:
        base = eq.lhs.name.split("_{")[0]
        comment = f"{base}_t = {text(eq.rhs)}" if isinstance(eq.rhs, MatrixSymbol) \
            else f"{base}_t: ({'B' if last else 'T*B'}, O)"
        body.append(ir.Assign(N(CACHE_NAMES[base]), rows(eq.rhs, env, params), comment))
    body.append(ir.Assign(N("loss"), loss_code(loss_eq.rhs, env, params),
                          "summed over steps and batch"))
    return body


def targets(spec: Spec, last: bool) -> list[ir.Stmt]:
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


def loss_code(node, env, params) -> ir.Node:
    if isinstance(node, MSELoss):
        diff = rows(MatAdd(node.prediction, -node.target), env, params)
        return op("mul", ir.Num(0.5), op("sum_all", op("mul", diff, diff)))
    if isinstance(node, SoftmaxCrossEntropy):
        return op("neg", op("sum_all", op("mul", rows(node.target, env, params),
                                           op("log_softmax", rows(node.prediction, env, params)))))
    raise CodegenError(f"no lowering for the loss {type(node).__name__}")

