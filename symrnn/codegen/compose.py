"""Composed architectures: layer functions, a head function and the wiring between them.

A bidirectional network, an encoder–decoder and one_to_many's zero or repeated inputs are
cell definitions composed (see :mod:`symrnn.engine.graph`); their generated module is
composed the same way, from three generated parts and one fixed wiring:

* **the layer functions** ``forward_layer(params, x, h0, ...) -> cache`` and
  ``backward_layer(params, cache, grad_out, final=None) -> grads``, lowered from the
  cell's own single-layer derivation with no head (:func:`symrnn.codegen.lower.lower`
  with ``layer=True``): δ_t is seeded with ∂L/∂h_t from above (``grad_out``) and the
  carry at T with ∂L/∂s_T from after the layer (``final``: a decoder's context).  One
  layer function serves every layer, either direction and any input width;
* **the head functions** ``head_forward(params, h_all, y) -> (loss, cache)`` and
  ``head_backward(params, cache) -> (grads, d_h)``, lowered from the head of the derivation
  (e_t and ∂L/∂θ of W_hy and b_y, exactly as for one network; W_hy reads [h; h_reverse]);
* **the wiring** (:data:`WIRING`), the same text for every cell: layer l reads layer
  l−1's outputs, concatenated [h_t; h_reverse_t] when bidirectional; a reverse layer runs
  on the time-flipped sequence (its h_t for t = T..1 is the flipped output); the decoder
  starts from the encoder's final states and reads [y_0; y_1..y_{T_out-1}]; the backward
  pass runs the same graph in reverse, splitting ∂L/∂[h; h_reverse] by columns, flipping
  the reverse layer's, and summing what the layers above send into a layer's outputs.

The tables (``LAYERS``, ``BLOCKS``) are read off the :class:`~symrnn.engine.graph.Network`:
which layers exist, and which module parameters are the column blocks of a layer
function's input weights (W_xi_l1 | W_xi_rev_l1, or torch's whole weight_ih_l1).
"""

from __future__ import annotations

from sympy import MatrixSymbol, S

from symrnn.codegen import ir
from symrnn.codegen.forward import CACHE_NAMES, loss_code, targets, unpack_params
from symrnn.codegen.layout import HEAD, Layout, state_arg
from symrnn.codegen.translate import CodegenError, outer_sum, rows
from symrnn.engine.derive import Backprop, _head_blocks
from symrnn.engine.expr import T_SYMBOL, timed
from symrnn.engine.graph import REV_INPUT, Network, network
from symrnn.render.printing import text
from symrnn.spec import Spec

__all__ = ["composed", "layer_spec", "head_spec", "layer_table", "block_table",
           "lower_head", "WIRING"]

N, Idx, op = ir.Name, ir.Index, ir.op
t_ = T_SYMBOL
FED_BACK = "dyhat"
"""∂L/∂ŷ_t through the next step's input x_{t+1} = ŷ_t (one_to_many with feedback)."""


def composed(spec: Spec) -> bool:
    """Whether ``spec``'s module is composed of layer functions (not one fused loop)."""
    return spec.bidirectional or spec.topology in ("encoder_decoder", "one_to_many")


def layer_spec(spec: Spec) -> Spec:
    """The one-layer, one-direction network whose derivation gives the layer functions."""
    return spec.replace(num_layers=1, bidirectional=False, topology="many_to_many",
                        feed="zeros")


def head_spec(spec: Spec) -> Spec:
    """A one-layer network whose h is what the head reads ([h; h_reverse]: 2H wide)."""
    width = spec.hidden_size * (2 if spec.bidirectional else 1)
    last = "many_to_one" if spec.topology == "many_to_one" else "many_to_many"
    return spec.replace(num_layers=1, bidirectional=False, topology=last, feed="zeros",
                        hidden_size=width)


def layer_table(net: Network) -> tuple[tuple[str, int, int, str], ...]:
    """(suffix, direction, layer index, stage) of every layer, in forward order."""
    return tuple((layer.suffix, layer.direction, layer.index, layer.stage)
                 for layer in net.layers)


def input_weights(kernel: Layout) -> set[str]:
    """The layer function's parameters that multiply its input (W_x*, weight_ih)."""
    net = kernel.net
    direct = {p.name for p in net.param_defs if p.shape[1] == "D"}
    stacked = {name for name, members in net.stacks.items()
               if any(m in direct for m in members if m is not None)}
    return (direct | stacked) & set(kernel.cell_params())


def block_table(net: Network, kernel: Layout) -> dict[str, dict[str, tuple]]:
    """layer suffix → layer-function parameter → ((module parameter, columns), ...);
    columns None: the parameter's own shape (only input weights change width)."""
    H = int(net.sizes.H)
    inputs = input_weights(kernel)
    out: dict[str, dict[str, tuple]] = {}
    for layer in net.layers:
        table: dict[str, tuple] = {}
        for name in kernel.cell_params():
            parts: list[tuple] = [(name + layer.suffix, None)]
            if name in inputs:
                parts = [(name + layer.suffix, _width(net, layer))]
                if layer.more_inputs and net.spec.layout != "torch":
                    parts = [(name + layer.suffix, H)] + [
                        (name + tag + layer.suffix, H) for _, tag in layer.more_inputs]
            table[name] = tuple(parts)
        out[layer.suffix] = table
    return out


def _width(net: Network, layer) -> int:
    """The columns of a layer's input weights ([h; h_reverse] is 2H)."""
    if layer.input == "x":
        return int(net.sizes.D)
    if layer.input == "y":
        return int(net.sizes.O)
    return int(net.sizes.H) * (1 + len(layer.more_inputs))


def head_blocks(net: Network) -> dict[str, tuple]:
    """Head parameter → its module column blocks (W_hy | W_hy_rev when bidirectional)."""
    H = int(net.sizes.H)
    out: dict[str, tuple] = {}
    for name in HEAD:
        if name not in net.params:
            continue
        parts = [(name, H)]
        if name == "W_hy" and net.spec.bidirectional:
            parts.append((name + REV_INPUT, H))
        out[name] = tuple(parts)
    return out


# ------------------------------------------------------------------ the head


def _head_env(readout: str):
    def env(base: str, k: int) -> ir.Node:
        if base == readout and k == 0:
            return N("h_all")
        if k == 0 and base in CACHE_NAMES:
            return N(CACHE_NAMES[base])
        if (base, k) == ("e", 0):
            return N("e")
        if (base, k) == (FED_BACK, 0):
            return N("d_yhat")
        raise CodegenError(f"the head reads {base} at offset {k}")

    return env


def lower_head(spec: Spec) -> tuple[ir.FunctionDef, ir.FunctionDef]:
    """``head_forward`` and ``head_backward`` from the head's own derivation."""
    hspec = head_spec(spec)
    net = network(hspec)
    last = hspec.topology == "many_to_one"
    eqs = net.head_equations(t_)
    seeds = {eq.lhs: S.One for eq in eqs if eq.block == "loss"}
    if spec.feed == "feedback":  # ŷ_t is x_{t+1}: what that input sends back joins e_t
        seeds[timed("yhat", t_, net.sizes.O)] = timed(FED_BACK, t_, net.sizes.O)
    local = Backprop(seeds)
    local.run(_head_blocks(eqs, t_))
    env = _head_env(net.readout)
    params = {n: N(n) for n in HEAD if n in net.params}
    fwd: list[ir.Stmt] = [
        ir.Assign(N("B"), op("get", op("shape", N("h_all")), ir.Num(0)), "rows: (T*B) or B"),
        ir.Assign(N("dtype"), op("dtype_of", N("h_all"))),
        ir.Assign(N("device"), op("device_of", N("h_all"))),
        *unpack_params(list(params)),
        *[s for s in targets(hspec, last) if not _assigns(s, "y_all")],
        ir.Assign(N("y_all"), op("reshape", op("cast", N("y"), N("dtype"), N("device")),
                                 ir.Tuple((N("B"), N("OUT")))), "targets: (rows, O)"),
    ]
    for eq in eqs:
        base = eq.lhs.name.split("_{")[0]
        if eq.block == "head":
            fwd.append(ir.Assign(N(CACHE_NAMES[base]), rows(eq.rhs, env, params),
                                 f"{base}_t = {text(eq.rhs)}"))
    (loss_eq,) = [eq for eq in eqs if eq.block == "loss"]
    fwd.append(ir.Assign(N("loss"), loss_code(loss_eq.rhs, env, params), "summed"))
    reads = sorted({CACHE_NAMES[b] for b in ("y", "yhat", "z") if _reads(local, b)}
                   | ({"yhat"} if spec.feed == "feedback" else set()))
    cache = ir.Dict(tuple((n, N(n)) for n in ["h_all", *reads]))
    fwd.append(ir.Return(ir.Tuple((N("loss"), cache))))
    forward = ir.FunctionDef("head_forward", ("params", "h_all", "y"),
                             "Loss of the head over h_all (rows, width) and targets y "
                             "(rows, O) (class indices: (rows,)).", tuple(fwd))
    return forward, _head_backward(net, local, params, reads)


def _assigns(stmt, name: str) -> bool:
    return isinstance(stmt, ir.Assign) and isinstance(stmt.target, ir.Name) \
        and stmt.target.id == name


def _reads(local: Backprop, base: str) -> bool:
    exprs = [v for _, v in local.definitions if v is not None]
    return any(s.name.startswith(base + "_{") for e in exprs for s in e.atoms(MatrixSymbol))


def _head_backward(net: Network, local: Backprop, params: dict, reads: list[str]
                   ) -> ir.FunctionDef:
    env = _head_env(net.readout)
    e_sym, e_expr = local.definitions[0]
    h = timed(net.readout, t_, net.sizes.H)
    body: list[ir.Stmt] = [*unpack_params(list(params)),
                           *(ir.Assign(N(n), op("get", N("cache"), ir.Str(n)))
                             for n in ["h_all", *reads]),
                           ir.Assign(N("e"), rows(e_expr, env, params),
                                     f"{e_sym} = {text(e_expr)}")]
    grads = []
    for name, sym in net.params.items():
        if name in params and local.gradient(sym) is not None:
            body.append(ir.Assign(N(f"d{name}"), outer_sum(local.gradient(sym), env, params),
                                  f"sum_t {text(local.gradient(sym))}"))
            grads.append((name, N(f"d{name}")))
    body.append(ir.Assign(N("d_h"), rows(local.gradient(h), env, params),
                          f"dL/dh_t = {text(local.gradient(h))}: (rows, width)"))
    body.append(ir.Return(ir.Tuple((ir.Dict(tuple(grads)), N("d_h")))))
    args = ("params", "cache", "d_yhat") if FED_BACK in str(e_expr) else ("params", "cache")
    return ir.FunctionDef("head_backward", args,
                          "The head's gradients and dL/dh_all (rows, width).", tuple(body))


WIRING = '''

def _layer_params(params, blocks):
    """A layer function's parameters: a module parameter, or its column blocks joined."""
    return {{name: params[parts[0][0]] if len(parts) == 1 else
            _join_columns([params[n] for n, _ in parts]) for name, parts in blocks.items()}}


def _scatter(grads, blocks, out):
    """Module gradients from a layer function's: column blocks split again."""
    for name, parts in blocks.items():
        if len(parts) == 1:
            out[parts[0][0]] = grads[name]
            continue
        start = 0
        for n, width in parts:
            out[n] = grads[name][:, start:start + width]
            start += width


def _inputs(x, T):
    """The input sequence (B, T, D) the first layer reads."""
    if TOPOLOGY != "one_to_many":
        return x
    first = x.reshape((x.shape[0], 1, D))
    if FEED == "repeat":
        return {repeat}
    rest = {zeros}((x.shape[0], T - 1, D), dtype=x.dtype{device})
    return {cat}([first, rest], {axis}=1)


def _input_grad(dx):
    """dL/dx of the module's x from dL/dx_t of the sequence (one_to_many: x_1 only)."""
    if TOPOLOGY != "one_to_many":
        return dx
    if FEED == "repeat":
        return dx.sum({axis}=1)
    return dx[:, 0]


def _run_stage(params, stage, below, initial, caches, masks=None):
    """Forward through the layers of one stage; returns the top outputs (B, T, width).

    masks[l]: a dropout mask (already scaled by 1/(1 - p)) on layer l's outputs, l below
    the top, as torch.nn's dropout between layers; None: no dropout."""
    for index in range(NUM_LAYERS):
        if masks is not None and index > 0:
            below = below * masks[index - 1]
        outs = []
        for suffix, direction, layer, where in LAYERS:
            if where != stage or layer != index:
                continue
            seq = below if direction > 0 else {flip}(below)
            init = [initial.get(s + suffix) for s in CELL_STATES]
            cache = forward_layer(_layer_params(params, BLOCKS[suffix]), seq, *init)
            caches[suffix] = cache
            hs = {batch_first}(cache["HS"][1:])
            outs.append(hs if direction > 0 else {flip}(hs))
        below = outs[0] if len(outs) == 1 else {cat}(outs, {axis}=2)
    return below


def forward(params, x, y, *initial_states, y0=None):
    """Loss and cache; x (B, T, D) ((B, D) for one_to_many), y (B, T, OUT) or (B, OUT).

    initial_states: STATE_ARGS in order, each (B, H) or None (zeros); y0: the decoder's
    first input (B, OUT) for encoder_decoder (zeros when None)."""
    initial = dict(zip(STATES, initial_states, strict=False))
    if FEED == "feedback":
        return _forward_fed_back(params, x, y, initial)
    T = y.shape[1] if TOPOLOGY == "one_to_many" else x.shape[1]
    caches = {{}}
    top = _run_stage(params, "", _inputs(x, T), initial, caches)
    if TOPOLOGY == "encoder_decoder":
        context = {{}}
        for suffix, _, _, where in LAYERS:
            if where == "":
                for s in CELL_STATES:
                    context[s + "_dec" + suffix] = caches[suffix][s.upper() + "S"][-1]
        start = y0
        if start is None:
            start = {zeros}((x.shape[0], OUT), dtype=x.dtype{device})
        teacher = {cat}([start.reshape((x.shape[0], 1, OUT)), y[:, :-1]], {axis}=1)
        top = _run_stage(params, "_dec", teacher, context, caches)
    rows = top[:, -1] if TOPOLOGY == "many_to_one" else top.reshape((-1, top.shape[2]))
    y_rows = y if TOPOLOGY == "many_to_one" else y.reshape((-1,) + tuple(y.shape[2:]))
    loss, head = head_forward(_layer_params(params, HEAD_BLOCKS), rows, y_rows)
    return loss, {{"layers": caches, "head": head, "B": x.shape[0], "T_out": top.shape[1],
                  "x": x}}


def _back_stage(params, stage, grad_top, caches, grads, final, masks=None, input_grad=True):
    """Backward through one stage's layers, top first; returns dL/d(its input sequence)
    (None without input_grad: layer 0's dL/dx is then not computed)."""
    for index in reversed(range(NUM_LAYERS)):
        wanted = input_grad or index > 0
        if masks is not None and index < NUM_LAYERS - 1:
            grad_top = grad_top * masks[index]
        segs = [s for s in LAYERS if s[3] == stage and s[2] == index]
        grad_in = None
        for k, (suffix, direction, _, _) in enumerate(segs):
            part = grad_top[:, :, k * H:(k + 1) * H]
            part = {time_major}(part if direction > 0 else {flip}(part))
            g = backward_layer(_layer_params(params, BLOCKS[suffix]), caches[suffix], part,
                               final.get(suffix), input_grad=wanted)
            _scatter(g, BLOCKS[suffix], grads)
            for s in CELL_STATES:
                grads[s + suffix + "_0"] = g[s + "_0"]
            if wanted:
                dx = g["x"] if direction > 0 else {flip}(g["x"])
                grad_in = dx if grad_in is None else grad_in + dx
        grad_top = grad_in
    return grad_top


def backward(params, cache, input_grad=False):
    """Gradients of every parameter, the free initial states (STATES) and, with input_grad,
    'x'."""
    if FEED == "feedback":
        grads, dx = _backward_fed_back(params, cache)
        out = {{n: grads[n] for n in PARAM_NAMES}} | {{s + "_0": grads[s + "_0"] for s in STATES}}
        return _clip(out | ({{"x": dx}} if input_grad else {{}}))
    caches, B = cache["layers"], cache["B"]
    hgrads, d_h = head_backward(_layer_params(params, HEAD_BLOCKS), cache["head"])
    x = cache["x"]
    grads = {{}}
    _scatter(hgrads, HEAD_BLOCKS, grads)
    T = cache["T_out"]
    if TOPOLOGY == "many_to_one":
        grad_top = {zeros}((B, T, d_h.shape[1]), dtype=d_h.dtype{device_h})
        grad_top[:, -1] = d_h
    else:
        grad_top = d_h.reshape((B, T, -1))
    final = {{}}
    if TOPOLOGY == "encoder_decoder":
        _back_stage(params, "_dec", grad_top, caches, grads, {{}}, input_grad=False)
        for suffix, _, _, where in LAYERS:
            if where == "":
                final[suffix] = {{s: grads.pop(s + "_dec" + suffix + "_0")
                                 for s in CELL_STATES}}
        grad_top = {zeros}((B, x.shape[1], H), dtype=d_h.dtype{device_h})
    dx = _back_stage(params, "", grad_top, caches, grads, final, input_grad=input_grad)
    grads = {{n: grads[n] for n in PARAM_NAMES}} | {{
        s + "_0": grads[s + "_0"] for s in STATES}}
    if input_grad:
        grads["x"] = _input_grad(dx)
    return _clip(grads)


def _forward_fed_back(params, x, y, initial):
    """x_(t+1) = yhat_t: the stack runs one step at a time, the head inside the loop."""
    T, inp, caches, heads, loss = y.shape[1], x.reshape((x.shape[0], 1, D)), [], [], 0.0
    state = {{s: initial.get(s) for s in STATES}}
    for t in range(T):
        step = {{}}
        for suffix, _, _, _ in LAYERS:
            init = [state[s + suffix] for s in CELL_STATES]
            cache = forward_layer(_layer_params(params, BLOCKS[suffix]), inp, *init)
            step[suffix] = cache
            for s in CELL_STATES:
                state[s + suffix] = cache[s.upper() + "S"][1]
            inp = {batch_first}(cache["HS"][1:])
        value, head = head_forward(_layer_params(params, HEAD_BLOCKS), inp[:, 0], y[:, t])
        loss, inp = loss + value, head["yhat"].reshape((x.shape[0], 1, OUT))
        caches.append(step)
        heads.append(head)
    return loss, {{"steps": caches, "heads": heads, "B": x.shape[0], "x": x}}


def _backward_fed_back(params, cache):
    """Steps t = T..1: e_t gains dL/dx_(t+1) (the fed output); each layer's carry goes
    to its step t-1 through final."""
    grads, head_params = {{}}, _layer_params(params, HEAD_BLOCKS)
    finals = {{suffix: None for suffix, _, _, _ in LAYERS}}
    d_next = None
    for step, head in zip(reversed(cache["steps"]), reversed(cache["heads"]), strict=True):
        if d_next is None:
            d_next = {zeros_like}(head["yhat"])
        hgrads, d_h = head_backward(head_params, head, d_next)
        _accumulate(grads, hgrads, HEAD_BLOCKS)
        grad = d_h.reshape((1, d_h.shape[0], d_h.shape[1]))
        for suffix, _, _, _ in reversed(LAYERS):
            g = backward_layer(_layer_params(params, BLOCKS[suffix]), step[suffix], grad,
                               finals[suffix])
            _accumulate(grads, g, BLOCKS[suffix])
            finals[suffix] = {{s: g[s + "_0"] for s in CELL_STATES}}
            grad = {time_major}(g["x"])
        d_next = grad[0]
    for suffix, _, _, _ in LAYERS:
        for s in CELL_STATES:
            grads[s + suffix + "_0"] = finals[suffix][s]
    return grads, d_next


def _accumulate(grads, step_grads, blocks):
    """Sum a step's gradients into the totals (module names, column blocks split)."""
    part = {{}}
    _scatter(step_grads, blocks, part)
    for name, value in part.items():
        grads[name] = value if name not in grads else grads[name] + value


def _clip(grads):
    """Global-norm (CLIP) then elementwise (CLIP_VALUE) clipping of the parameters'."""
    if CLIP is not None:
        norm = float(sum((grads[n] * grads[n]).sum() for n in PARAM_NAMES)) ** 0.5
        if norm > CLIP:
            for n in PARAM_NAMES:
                grads[n] = grads[n] * (CLIP / norm)
    if CLIP_VALUE is not None:
        for n in PARAM_NAMES:
            grads[n] = {clip}(grads[n], -CLIP_VALUE, CLIP_VALUE)
    return grads


def loss_and_grad(params, x, y, *initial_states, y0=None, input_grad=False):
    """(loss, grads): forward, then backward."""
    loss, cache = forward(params, x, y, *initial_states, y0=y0)
    return loss, backward(params, cache, input_grad=input_grad)
'''
"""The wiring of a composed module, formatted per backend (:data:`WIRING_SPELLINGS`)."""

WIRING_SPELLINGS = {
    "numpy": {"cat": "np.concatenate", "axis": "axis", "zeros": "np.zeros", "device": "",
              "device_h": "", "flip": "_flip", "batch_first": "_batch_first",
              "time_major": "_time_major",
              "repeat": "np.repeat(first, T, axis=1)", "zeros_like": "np.zeros_like",
              "clip": "np.clip"},
    "torch": {"cat": "torch.cat",
              "axis": "dim", "zeros": "torch.zeros", "device": ", device=x.device",
              "device_h": ", device=d_h.device", "flip": "_flip",
              "batch_first": "_batch_first", "time_major": "_time_major",
              "repeat": "first.repeat(1, T, 1)", "zeros_like": "torch.zeros_like",
              "clip": "torch.clamp"},
}


FLIP_HELPERS = {
    "numpy": '''
def _flip(a):
    """a (B, T, n) with its steps in reverse order (a copy)."""
    return np.ascontiguousarray(a[:, ::-1])


def _batch_first(a):
    """(T, B, n) time-major -> (B, T, n), a view."""
    return a.transpose(1, 0, 2)


def _join_columns(blocks):
    """[W_1 | W_2 | ...]: column blocks side by side."""
    return np.concatenate(blocks, axis=1)
''',
    "torch": '''
def _flip(a):
    """a (B, T, n) with its steps in reverse order (a copy)."""
    return torch.flip(a, (1,))


def _batch_first(a):
    """(T, B, n) time-major -> (B, T, n), a view."""
    return a.transpose(0, 1)


def _join_columns(blocks):
    """[W_1 | W_2 | ...]: column blocks side by side."""
    return torch.cat(blocks, dim=1)
''',
}


def _shapes(net: Network, kernel_shapes: dict, blocks: dict, head: dict) -> dict:
    """PARAM_SHAPES of the module: each block with its own columns."""
    out: dict[str, tuple] = {}
    for table in blocks.values():
        for name, parts in table.items():
            for module_name, width in parts:
                shape = kernel_shapes[name]
                out[module_name] = shape if width is None else (shape[0], width)
    for name, parts in head.items():
        for module_name, width in parts:
            shape = kernel_shapes[name]
            out[module_name] = (shape[0],) if len(shape) == 1 else (shape[0], width)
    return out


def constants(spec: Spec, net: Network, kernel: Layout, kernel_shapes: dict,
              clip: float | None = None, clip_value: float | None = None) -> list[str]:
    blocks, head = block_table(net, kernel), head_blocks(net)
    shapes = _shapes(net, kernel_shapes, blocks, head)
    free = [s for s in net.states if s not in net.contexts]
    layers = "".join(f"    {row!r},\n" for row in layer_table(net))
    return [
        _lines("SPEC", spec.to_dict()),
        _lines("PARAM_SHAPES", shapes),
        "PARAM_NAMES = tuple(PARAM_SHAPES)",
        f"STATES = {tuple(free)!r}",
        "STATE_ARGS = (\n" + "".join(f"    {state_arg(s)!r},\n" for s in free) + ")",
        f"CELL_STATES = {tuple(net.cell.states)!r}",
        "LAYERS = (  # (suffix, direction, layer, stage) in forward order\n" + layers + ")",
        "# layer -> layer-function parameter -> ((module parameter, columns or None), ...)",
        _lines("BLOCKS", {k: _Inline(_lines("", v, 8)) for k, v in blocks.items()}),
        _lines("HEAD_BLOCKS", head),
        f"CLIP = {clip!r}",
        f"CLIP_VALUE = {clip_value!r}",
        f"NUM_LAYERS = {spec.num_layers}",
        f"TOPOLOGY = {spec.topology!r}",
        f"FEED = {spec.feed!r}",
        f"H = {spec.hidden_size}",
        f"D = {spec.input_size}",
        f"OUT = {spec.output_size}",
    ]


class _Inline(str):
    """Text printed as it is inside :func:`_lines`."""

    def __repr__(self) -> str:
        return str(self)


def _lines(name: str, mapping: dict, indent: int = 4) -> str:
    """``NAME = {`` one entry per line ``}`` (short lines, stable order)."""
    pad = " " * indent
    body = "".join(f"{pad}{k!r}: {v!r},\n" for k, v in mapping.items())
    head = f"{name} = {{" if name else "{"
    return head + "\n" + body + " " * (indent - 4) + "}"


TORCH_WRAPPERS = '''

class BPTTFunction(torch.autograd.Function):
    """The loss as an autograd node whose backward is the generated BPTT (no tape)."""

    @staticmethod
    def forward(ctx, x, y, y0, n_states, *tensors):
        states, weights = tensors[:n_states], tensors[n_states:]
        params = dict(zip(PARAM_NAMES, weights, strict=True))
        loss, cache = forward(params, x, y, *states, y0=y0)
        ctx.params, ctx.cache = params, cache
        ctx.given = tuple(s is not None for s in states)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grads = backward(ctx.params, ctx.cache, input_grad=ctx.needs_input_grad[0])
        dx = grads["x"] * grad_loss if ctx.needs_input_grad[0] else None
        d0 = tuple(grads[f"{s}_0"] * grad_loss if given else None
                   for s, given in zip(STATES, ctx.given, strict=True))
        return (dx, None, None, None, *d0, *(grads[n] * grad_loss for n in PARAM_NAMES))


class RNNLoss(torch.nn.Module):
    """Parameters PARAM_NAMES (shapes PARAM_SHAPES); forward(x, y, *initial_states, y0=None)
    -> loss, initial states in STATE_ARGS order (None: zeros)."""

    def __init__(self, dtype=torch.float32, device=None):
        super().__init__()
        bound = 1.0 / H ** 0.5
        for name, shape in PARAM_SHAPES.items():
            value = torch.empty(shape, dtype=dtype, device=device).uniform_(-bound, bound)
            self.register_parameter(name, torch.nn.Parameter(value))

    def params(self):
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def forward(self, x, y, *initial_states, y0=None):
        states = tuple(initial_states) + (None,) * (len(STATES) - len(initial_states))
        return BPTTFunction.apply(x, y, y0, len(STATES), *states,
                                  *(getattr(self, n) for n in PARAM_NAMES))
'''
"""The torch backend's autograd wrappers of a composed module."""
