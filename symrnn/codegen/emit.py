"""Module assembly: header, constants, helpers, the lowered functions, wrappers.

:func:`emit` prints one generated module as text.  The text depends only on
the spec, the backend, the options, the passes and the command line given,
so the same inputs give byte-identical modules (no dates, no hashes of
memory addresses).  The module docstring states the spec, truncation,
clipping, the symrnn version, the command that made it, the loss
convention (summed over steps and batch), the shapes and the derivation it
was generated from.
"""

from __future__ import annotations

import re
from dataclasses import replace

from symrnn.codegen import ir
from symrnn.codegen.kernels import PARAM_GUARD, guard_params, lift
from symrnn.codegen.layout import state_arg
from symrnn.codegen.lower import Lowered
from symrnn.codegen.passes import Context, run_passes
from symrnn.codegen.printer import Backend, Printer
from symrnn.render.printing import text

__all__ = ["emit", "emit_composed", "header"]

_LOSS_TEXT = {
    "mse": "L = sum_b sum_t 1/2 |yhat_t - y_t|^2",
    "cross_entropy": "L = -sum_b sum_t y_t . log softmax(z_t)",
}

_CHECK = '''
def _check(x, y, {states}):
    """Validate the shapes of x, y and the initial states; return (B, T)."""
    if x.ndim != 3 or x.shape[2] != D:
        raise ValueError(f"x: expected shape (B, T, {{D}}), got {{tuple(x.shape)}}")
    if "float" not in str(x.dtype):
        raise ValueError(f"x: expected a floating dtype (float32 or float64), got {{x.dtype}}")
    B, T = int(x.shape[0]), int(x.shape[1])
    allowed = {allowed}
    if tuple(y.shape) not in allowed:
        raise ValueError(f"y: expected shape {{' or '.join(map(str, allowed))}}, "
                         f"got {{tuple(y.shape)}}")
    for name, s0 in zip({names!r}, ({states},), strict=True):
        if s0 is not None and tuple(s0.shape) != (B, H):
            raise ValueError(f"{{name}}: expected shape {{(B, H)}}, got {{tuple(s0.shape)}}")
    return B, T
'''

_TORCH_WRAPPERS = '''

class BPTTFunction(torch.autograd.Function):
    """The loss as an autograd node whose backward is the generated BPTT (no tape)."""

    @staticmethod
    def forward(ctx, x, y, {states}, *weights):
        params = dict(zip(PARAM_NAMES, weights, strict=True))
        loss, cache = forward(params, x, y, {states})
        ctx.params, ctx.cache = params, cache
        ctx.given = tuple(s0 is not None for s0 in ({states},))
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grads = backward(ctx.params, ctx.cache, input_grad=ctx.needs_input_grad[0])
        dx = grads["x"] * grad_loss if ctx.needs_input_grad[0] else None
        d0 = tuple(grads[f"{{s}}_0"] * grad_loss if given else None
                   for s, given in zip(STATES, ctx.given, strict=True))
        return (dx, None, *d0, *(grads[n] * grad_loss for n in PARAM_NAMES))


class RNNLoss(torch.nn.Module):
    """Parameters PARAM_NAMES (shapes PARAM_SHAPES); forward(x, y, {states}) -> loss."""

    def __init__(self, dtype=torch.float32, device=None):
        super().__init__()
        bound = 1.0 / H ** 0.5
        for name, shape in PARAM_SHAPES.items():
            value = torch.empty(shape, dtype=dtype, device=device).uniform_(-bound, bound)
            self.register_parameter(name, torch.nn.Parameter(value))

    def params(self):
        return {{name: getattr(self, name) for name in PARAM_NAMES}}

    def forward(self, x, y, {defaults}):
        return BPTTFunction.apply(x, y, {states}, *(getattr(self, n) for n in PARAM_NAMES))
'''

_LOSS_AND_GRAD = '''

def _dtype_name(a):
    return str(a.dtype).replace("torch.", "")


def _first_bad_step(states, reverse=False):
    """The first index along axis 0 (the last with reverse) with an inf/NaN entry, or None."""
    bad = [not bool({isfinite}(s).all()) for s in states]
    if reverse:
        bad = bad[::-1]
    if True not in bad:
        return None
    i = bad.index(True)
    return len(bad) - 1 - i if reverse else i


def _check_forward_finite(loss, cache):
    """FloatingPointError naming the first step whose hidden state (or the loss) is inf/NaN."""
    HS = cache["HS"]  # h_t for t = 0..T
    t = _first_bad_step(HS)
    if t == 0:
        raise FloatingPointError("non-finite initial hidden state h_0 (inf or NaN in h0)")
    if t is not None:
        raise FloatingPointError(
            f"non-finite hidden state at step t={{t}} (overflow in {{_dtype_name(HS)}}?); "
            f"h_{{t - 1}} is finite")
    if not bool({isfinite}(loss).all()):
        raise FloatingPointError(
            f"non-finite loss {{float(loss)}} although every hidden state is finite "
            f"(overflow in the output head or the loss, {{_dtype_name(HS)}}?)")


def _check_grads_finite(grads):
    """FloatingPointError naming the first non-finite gradient (dL/dh_t: the largest t)."""
    delta = grads["delta"]  # (B, T, H), computed from t = T down to 1
    t = _first_bad_step(delta.transpose(0, 1) if hasattr(delta, "dim") else
                        delta.transpose(1, 0, 2), reverse=True)
    if t is not None:
        raise FloatingPointError(
            f"non-finite gradient dL/dh_t at step t={{t + 1}} of the backward pass "
            f"(overflow in {{_dtype_name(delta)}}?)")
    name = next((n for n, v in grads.items() if not bool({isfinite}(v).all())), None)
    if name is not None:
        raise FloatingPointError(
            f"non-finite gradient dL/d{{name}} (overflow in {{_dtype_name(grads[name])}}?)")


def loss_and_grad(params, x, y, {defaults}, *, check_finite=False):
    """(loss, grads): forward then backward.

    check_finite=True raises FloatingPointError naming the first step whose hidden
    state is inf/NaN (then the loss, then the gradients); off by default, at no cost.
{errstate_doc}    """
{body}'''

_FORWARD_BACKWARD = """loss, cache = forward(params, x, y, {states})
if check_finite:
    _check_forward_finite(loss, cache)
grads = backward(params, cache)
"""
_CHECK_GRADS = """    if check_finite:
        _check_grads_finite(grads)
    return loss, grads
"""

_NUMPY_ERRSTATE_DOC = (
    "    NumPy's overflow/invalid warnings are silenced here either way: an overflow\n"
    "    is an inf/NaN in the result (check it, or pass check_finite=True).\n")


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line for line in text.splitlines(keepends=True))


def _loss_and_grad(target: Backend, states: str, defaults: str) -> str:
    """loss_and_grad: the same passes; NumPy runs them under np.errstate."""
    run = _FORWARD_BACKWARD.format(states=states)
    if target.name == "torch":
        body = _indent(run, 4) + _CHECK_GRADS
        return _LOSS_AND_GRAD.format(isfinite="torch.isfinite", errstate_doc="", body=body,
                                     defaults=defaults)
    body = ('    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):\n'
            + _indent(run, 8) + _CHECK_GRADS)
    return _LOSS_AND_GRAD.format(isfinite="np.isfinite", errstate_doc=_NUMPY_ERRSTATE_DOC,
                                 body=body, defaults=defaults)


def _fit(line: str, width: int = 96) -> str:
    """Break a long header line at spaces, continuing with a deeper indent."""
    if len(line) <= width:
        return line
    indent = line[:len(line) - len(line.lstrip())]
    out, current = [], indent
    for word in line.split():
        if current.strip() and len(current) + 1 + len(word) > width:
            out.append(current)
            current = indent + "    " + word
        else:
            current = f"{current} {word}" if current.strip() else current + word
    return "\n".join(out + [current])


def _wrap(command: str, width: int = 88) -> str:
    """Break a long command before its flags, shell-style."""
    lines, line = [], ""
    for word in command.split(" --"):
        piece = word if not line else " --" + word
        if line and len(line) + len(piece) > width:
            lines.append(line + " \\")
            line = "    --" + word
        else:
            line += piece
    return "\n".join(lines + [line])


def _shape(low: Lowered, name: str) -> tuple[int, ...]:
    """Biases are 1-D (n,), weights 2-D (rows, cols), as torch.nn.RNN/LSTM/GRU store them."""
    net = low.plan.network
    if name in net.stacks:
        first = next(m for m in net.stacks[name] if m is not None)
        rows = int(net.params[first].shape[0]) * len(net.stacks[name])
        return (rows,) if name.startswith("bias") else (rows, int(net.params[first].shape[1]))
    rows, cols = net.params[name].shape
    return (int(rows),) if name in net.bias_names else (int(rows), int(cols))


def _literal(name: str, items: list[str], brackets: str) -> str:
    """``NAME = {a, b}`` on one line where it fits, else one item per line."""
    one = ", ".join(items) + ("," if len(items) == 1 and brackets == "()" else "")
    line = f"{name} = {brackets[0]}{one}{brackets[1]}"
    if len(line) <= 99:
        return line
    return f"{name} = {brackets[0]}\n" + "".join(f"    {i},\n" for i in items) + brackets[1]


def _allowed_y(spec) -> str:
    if spec.topology == "many_to_one":
        shapes = ["(B, OUT)"] + (["(B,)"] if spec.loss == "cross_entropy" else [])
    else:
        shapes = ["(B, T, OUT)"] + (["(B, T)"] if spec.loss == "cross_entropy" else [])
    return "[" + ", ".join(shapes) + "]"


def _stack_lines(low: Lowered) -> list[str]:
    """How torch's stacked tensors hold the derivation's per-gate parameters."""
    net = low.plan.network
    rows = [f"  {stack} = [{'; '.join(m or '0' for m in members)}]"
            for stack, members in net.stacks.items() if len(members) > 1 or low.layout.torch]
    if not rows:
        return []
    where = "the module's parameters" if low.layout.torch else "stacked on entry"
    return [f"stacks ({where}; rows top to bottom, H each):", *rows]


def header(low: Lowered, target: Backend, command: str, version: str) -> str:
    spec, opts, rec = low.spec, low.options, low.recurrence
    tbptt = ("none (full BPTT)" if opts.tbptt is None else
             f"k1={opts.tbptt[0]}, k2={opts.tbptt[1]} (forward k1 steps, backpropagate k2)")
    clip = ", ".join(x for x in (
        f"global norm {opts.clip}" if opts.clip is not None else "",
        f"elementwise {opts.clip_value}" if opts.clip_value is not None else "") if x) or "none"
    y_shape = "(B, OUT)" if spec.topology == "many_to_one" else "(B, T, OUT)"
    if spec.loss == "cross_entropy":
        y_shape += " one-hot, or class indices " + (
            "(B,)" if spec.topology == "many_to_one" else "(B, T)")
    states = low.plan.states
    inits = "; ".join(f"{state_arg(s)} (B, H) or None" for s in states)
    lines = [
        f"BPTT for an {spec.cell} RNN, generated by symrnn {version}; do not edit.",
        "",
        _wrap("command: " + command),
        f"backend: {target.name}",
        f"spec: cell={spec.cell} activation={spec.activation} head={spec.head} "
        f"loss={spec.loss} topology={spec.topology}",
        f"      H={spec.hidden_size} D={spec.input_size} OUT={spec.output_size} "
        f"bias={spec.bias} layout={spec.layout} num_layers={spec.num_layers}",
        f"truncation: {tbptt}",
        f"clipping: {clip}",
        f"loss: {_LOSS_TEXT[spec.loss]}, summed over batch b and "
        + ("every step t" if spec.topology == "many_to_many" else "t = T only"),
        f"shapes: x (B, T, D) batch-first; y {y_shape}; {inits};",
        "        params[name] as torch.nn.RNN/LSTM/GRU store them, see PARAM_SHAPES.",
        *_stack_lines(low),
        "derivation (symrnn derive; column vectors, @ matrix product, * elementwise):",
        f"  {rec.output_error[0]} = {text(rec.output_error[1])}",
        *(f"  {rec.deltas[s][0]} = {text(rec.deltas[s][1])}" for s in states),
    ]
    if spec.topology == "many_to_one":
        lines.append("    (many_to_one: the W_hy.T @ e_t term at t = T only)")
    lines += [f"  dL/d{n} = sum_({rec.summand_range(n)}) {text(e)}"
              for n, e in rec.gradients.items()]
    lines += [f"  dL/d{s}_0 = {text(rec.initial_state[s])}" for s in states]
    physical = "\n".join(lines).split("\n")  # the command is already wrapped
    return 'r"""' + "\n".join(_fit(line) for line in physical) + '\n"""'


def emit(low: Lowered, target: Backend, *, command: str, version: str,
         passes: tuple[str, ...]) -> str:
    spec, opts = low.spec, low.options
    printer = Printer(target)
    decorator = ["@torch.no_grad()"] if target.name == "torch" else []
    parts = [header(low, target, command, version), "", *target.imports, ""]
    names = low.layout.module_params()
    states = low.plan.states
    args = ", ".join(state_arg(s) for s in states)
    defaults = ", ".join(f"{state_arg(s)}=None" for s in states)
    consts = [
        "SPEC = {\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in spec.to_dict().items()) + "}",
        _literal("PARAM_SHAPES", [f"{n!r}: {_shape(low, n)!r}" for n in names], "{}"),
        _literal("PARAM_NAMES", [repr(n) for n in names], "()"),
        f"STATES = {tuple(states)!r}",
        f"STATE_ARGS = {tuple(state_arg(s) for s in states)!r}",
        f"TBPTT = {opts.tbptt!r}",
        f"CLIP = {opts.clip!r}",
        f"CLIP_VALUE = {opts.clip_value!r}",
        "PASSES = (\n" + "".join(f"    {p!r},\n" for p in passes) + ")",
        f"H = {spec.hidden_size}",
        f"D = {spec.input_size}",
        f"OUT = {spec.output_size}",
    ]
    parts += consts
    helpers_at = len(parts)
    parts.append("\n" + _CHECK.format(allowed=_allowed_y(spec), states=args,
                                       names=tuple(state_arg(s) for s in states)).rstrip())
    for fn in (low.forward, low.backward):
        fn = run_passes(fn, passes, Context(low.buffers, printer, frozenset(names)))
        parts.append(function_text(fn, target, decorator))
    parts.append(_loss_and_grad(target, args, defaults).rstrip())
    if low.streamed is not None:
        fn = run_passes(low.streamed, passes, Context(low.buffers, printer, frozenset(names)))
        parts.append(function_text(fn, target, decorator))
    if target.name == "torch":
        parts.append(_TORCH_WRAPPERS.format(states=args, defaults=defaults).rstrip())
    parts.insert(helpers_at, used_helpers(all_helpers(target), "\n".join(parts[helpers_at:])))
    return "\n".join(parts) + "\n"


def all_helpers(target: Backend, extra: str = "") -> str:
    """The host helpers, then (for a compiled backend) the kernels' jitted helpers."""
    kernels = PARAM_GUARD + target.kernels.helpers if target.kernels is not None else ""
    return target.helpers + extra + kernels


def function_text(fn: ir.FunctionDef, target: Backend, decorator: list[str]) -> str:
    """A function as printed; with a kernel table, its liftable time loops go first, as
    decorated kernel functions (:mod:`symrnn.codegen.kernels`)."""
    if target.kernels is None:
        return "\n\n" + "\n".join(decorator + Printer(target).stmt(fn, 0))
    lifted = lift(guard_params(fn), target.kernels.table)
    kernel_printer = Printer(replace(target, table=target.kernels.table))
    texts = ["\n".join([target.kernels.decorator, *kernel_printer.stmt(k, 0)])
             for k in lifted.kernels]
    texts.append("\n".join(decorator + Printer(target).stmt(lifted.host, 0)))
    return "\n\n" + "\n\n\n".join(texts)


def used_helpers(helpers: str, body: str) -> str:
    """The helper functions that ``body`` calls, directly or through another helper."""
    chunks = [c for c in re.split(r"\n(?=def |@)", helpers.strip()) if c.strip()]
    chunks = _with_decorators(chunks)
    named = {re.search(r"^def (\w+)", c, re.M)[1]: c for c in chunks}
    used: set[str] = set()
    frontier = body
    while True:
        new = {n for n in named if n not in used and re.search(rf"\b{n}\(", frontier)}
        new |= {n for n in named if n not in used and any(
            re.match(rf"@[\w.]+\({u}\)", named[n]) for u in used | new)}  # overloads
        if not new:
            break
        used |= new
        frontier = "\n".join(named[n] for n in new)
    kept = [c.rstrip() for n, c in named.items() if n in used]
    return ("\n" + "\n\n\n".join(kept)) if kept else ""


def _with_decorators(chunks: list[str]) -> list[str]:
    """Decorator lines joined to the function they decorate."""
    out: list[str] = []
    for chunk in chunks:
        if out and out[-1].lstrip().startswith("@") and "\ndef " not in out[-1]:
            out[-1] += "\n" + chunk
        else:
            out.append(chunk)
    return out


def _composed_header(spec, target: Backend, command: str, version: str) -> str:
    from symrnn.engine.derive import derive_recurrence

    rec = derive_recurrence(spec)
    lines = [
        f"BPTT for a composed {spec.cell} RNN, generated by symrnn {version}; do not edit.",
        "", _wrap("command: " + command), f"backend: {target.name}",
        f"spec: cell={spec.cell} activation={spec.activation} head={spec.head} "
        f"loss={spec.loss} topology={spec.topology} feed={spec.feed}",
        f"      H={spec.hidden_size} D={spec.input_size} OUT={spec.output_size} "
        f"bias={spec.bias} layout={spec.layout} num_layers={spec.num_layers} "
        f"bidirectional={spec.bidirectional}",
        f"loss: {_LOSS_TEXT[spec.loss]}, summed over batch b",
        "composition (symrnn.codegen.compose): forward_layer/backward_layer are one layer",
        "  of the cell (lowered with no head), head_forward/head_backward the head; the",
        "  wiring below runs them per LAYERS, joining column blocks per BLOCKS.",
        "derivation (symrnn derive; column vectors, @ matrix product, * elementwise):",
        f"  {rec.output_error[0]} = {text(rec.output_error[1])}",
        *(f"  {rec.deltas[s][0]} = {text(rec.deltas[s][1])}" for s in rec.deltas),
        *(f"  {s}: delta_T = {text(e)}" for s, e in rec.final.items()),
    ]
    physical = "\n".join(lines).split("\n")
    return 'r"""' + "\n".join(_fit(line) for line in physical) + '\n"""'


def emit_composed(spec, target: Backend, *, command: str, version: str,
                  passes: tuple[str, ...], clip: float | None = None,
                  clip_value: float | None = None) -> str:
    """A composed architecture's module: layer functions, head functions, wiring."""
    from symrnn.codegen import compose
    from symrnn.codegen.lower import Options, lower
    from symrnn.engine.graph import network

    low = lower(compose.layer_spec(spec), Options(), layer=True)
    printer = Printer(target)
    decorator = ["@torch.no_grad()"] if target.name == "torch" else []
    kernel_shapes = {n: _shape(low, n) for n in low.layout.module_params()}
    parts = [_composed_header(spec, target, command, version), "", *target.imports, ""]
    parts += compose.constants(spec, network(spec), low.layout, kernel_shapes, clip,
                               clip_value)
    helpers_at = len(parts)
    names = frozenset(low.layout.module_params())
    for fn in (low.forward, low.backward):
        fn = run_passes(fn, passes, Context(low.buffers, printer, names))
        parts.append(function_text(fn, target, decorator))
    for fn in compose.lower_head(spec):
        fn = run_passes(fn, passes, Context(frozenset(), printer, names))
        parts.append("\n\n" + "\n".join(printer.stmt(fn, 0)))
    parts.append(compose.WIRING.format(**compose.WIRING_SPELLINGS[target.host]).rstrip())
    if target.name == "torch":
        parts.append(compose.TORCH_WRAPPERS.rstrip())
    helpers = all_helpers(target, compose.FLIP_HELPERS[target.host])
    parts.insert(helpers_at, used_helpers(helpers, "\n".join(parts[helpers_at:])))
    return "\n".join(parts) + "\n"
