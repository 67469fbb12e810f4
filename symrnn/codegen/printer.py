"""Printers: one code tree, two backends that differ only by their name tables.

:class:`Printer` holds all the emission logic (precedence, parentheses,
statements, indentation) once.  A backend is a :class:`Backend` record: the
import line, a table ``op key → (template, precedence, operand precedences)``,
and the helper functions its modules define.  ``NUMPY`` and ``TORCH`` are the
two tables; adding a backend is adding a table.  ``NUMBA`` is NumPy's table for
the host code plus a :class:`Kernels` table: the spellings that Numba's nopython
mode compiles (``out`` positional, ``np.dot(a, b, out)``, jitted helpers), used for
the time loops :mod:`symrnn.codegen.kernels` lifts into ``@numba.njit`` functions.

Precedences follow Python: 10 for ``+``/``-``, 20 for ``*``/``@``, 30 for
unary minus, 40 for ``**``, 100 for atoms (names, calls, subscripts).  An
operand is parenthesised when its precedence is below the slot's minimum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from symrnn.codegen import ir
from symrnn.errors import SpecError, SymrnnError
from symrnn.ops import ELEMENTWISE

__all__ = ["Backend", "Kernels", "Printer", "NUMPY", "TORCH", "NUMBA", "BACKENDS", "backend",
           "require"]

ATOM = 100
_BIN = {
    "add": ("{0} + {1}", 10, (10, 11)),
    "sub": ("{0} - {1}", 10, (10, 11)),
    "mul": ("{0} * {1}", 20, (20, 21)),
    "matmul": ("{0} @ {1}", 20, (20, 21)),
    "div": ("{0} / {1}", 20, (20, 21)),
    "gt": ("{0} > {1}", 5, (6, 6)),
    "ge": ("{0} >= {1}", 5, (6, 6)),
    "eq": ("{0} == {1}", 5, (6, 6)),
    "is_none": ("{0} is None", 5, (6,)),
    "not_none": ("{0} is not None", 5, (6,)),
    "min": ("min({0}, {1})", ATOM, (0, 0)),
    "max": ("max({0}, {1})", ATOM, (0, 0)),
    "get": ("{0}[{1}]", ATOM, (ATOM, 0)),
    "neg": ("-{0}", 30, (30,)),
    "T": ("{0}.T", ATOM, (ATOM,)),
    "reshape": ("{0}.reshape({1})", ATOM, (ATOM, 0)),
    "float": ("float({0})", ATOM, (0,)),
    "shape": ("tuple({0}.shape)", ATOM, (0,)),
    "check": ("_check({0}, {1}, {2})", ATOM, (0, 0, 0)),
}


def _slots(template: str, arity: int) -> tuple[int, ...]:
    """Operand i needs an atom where the template reads ``{i}.attr`` or ``{i}[``."""
    return tuple(ATOM if re.search(rf"\{{{i}\}}[.\[]", template) else 0 for i in range(arity))


def _calls(table: dict) -> dict[str, tuple[str, int, tuple[int, ...]]]:
    """op key → template, or (template, arity) when some operands are not printed."""
    out = {}
    for key, entry in table.items():
        template, arity = entry if isinstance(entry, tuple) else (
            entry, len(set(re.findall(r"\{(\d)\}", entry))))
        out[key] = (template, ATOM, _slots(template, arity))
    return out


def _elementwise(target: str) -> dict[str, str]:
    """The operation table's spellings: ``tanh`` and, where one exists, ``tanh_`` (in place)."""
    out = {}
    for name, row in ELEMENTWISE.items():
        out[name] = getattr(row, target)
        inplace = getattr(row, f"{target}_inplace")
        if inplace is not None:
            out[f"{name}_"] = inplace
        into = getattr(row, f"{target}_out")
        if into is not None:  # writes into an existing array
            out[f"{name}_out"] = into
    return out


@dataclass(frozen=True)
class Kernels:
    """Compiled loops: the table their bodies are printed with, its helpers, the decorator."""

    table: dict[str, tuple[str, int, tuple[int, ...]]]
    helpers: str
    decorator: str


@dataclass(frozen=True)
class Backend:
    name: str
    imports: tuple[str, ...]
    table: dict[str, tuple[str, int, tuple[int, ...]]]
    helpers: str
    """Module-level helper functions every generated module of this backend defines."""
    family: str = ""
    """The array library of the host code ("numpy" or "torch"); empty: the name."""
    kernels: Kernels | None = None
    """Where set, time loops are lifted into compiled kernel functions."""
    requires: tuple[str, str] | None = None
    """(modules, space-separated; pip requirement) the backend needs beyond the family."""

    @property
    def host(self) -> str:
        return self.family or self.name


_NP_HELPERS = '''
def _softmax(z):
    s = np.exp(z - z.max(axis=-1, keepdims=True))
    return s / s.sum(axis=-1, keepdims=True)


def _log_softmax(z):
    m = z - z.max(axis=-1, keepdims=True)
    return m - np.log(np.exp(m).sum(axis=-1, keepdims=True))


def _time_major(a):
    """(B, T, n) batch-first -> contiguous (T, B, n)."""
    return np.ascontiguousarray(a.transpose(1, 0, 2))


def _is_index(y):
    return np.issubdtype(np.asarray(y).dtype, np.integer)


def _one_hot(y, n, dtype):
    return np.eye(n, dtype=dtype)[y]


def _device(a):
    """NumPy arrays live on the CPU; kept for symmetry with the torch backend."""
    return None
'''

_TORCH_HELPERS = '''
def _time_major(a):
    """(B, T, n) batch-first -> contiguous (T, B, n)."""
    return a.transpose(0, 1).contiguous()


def _is_index(y):
    return not (y.is_floating_point() or y.is_complex())


def _one_hot(y, n, dtype):
    return torch.nn.functional.one_hot(y.long(), n).to(dtype)
'''

_NP_CALLS = {
        "softmax": "_softmax({0})",
        "log_softmax": "_log_softmax({0})",
        "sum_all": "{0}.sum()",
        "cat0": "np.concatenate({0})",
        "sum0": "{0}.sum(axis=0)",
        "rowsum": "{0}.sum(axis=-1, keepdims=True)",
        "zeros": ("np.zeros({0}, dtype={1})", 3),
        "empty": ("np.empty({0}, dtype={1})", 3),
        "time_major": "_time_major({0})",
        "batch_first": "{0}.transpose(1, 0, 2)",
        "gather_steps": "{0}[np.arange({1}, {2} + 1) % {3}]",
        "matmul_out": "np.matmul({0}, {1}, out={2})",
        "mul_out": "np.multiply({0}, {1}, out={2})",
        "add_out": "np.add({0}, {1}, out={2})",
        "rsub_": "np.subtract({0}, {1}, out={1})",
        "sqrt": "np.sqrt({0})",
        "clip": "np.clip({0}, -{1}, {1})",
        "is_index": "_is_index({0})",
        "one_hot": "_one_hot({0}, {1}, {2})",
        "dtype_of": "{0}.dtype",
        "device_of": "_device({0})",
        "zeros_like": "np.zeros_like({0})",
        "copy": "{0}.copy()",
        "cast": ("np.asarray({0}, dtype={1})", 3),
}

NUMPY = Backend(
    "numpy",
    ("import numpy as np",),
    _BIN | _calls(_NP_CALLS | _elementwise("numpy")),
    _NP_HELPERS + "".join(row.numpy_helper for row in ELEMENTWISE.values()),
)

TORCH = Backend(
    "torch",
    ("import torch",),
    _BIN | _calls({
        "softmax": "torch.softmax({0}, dim=-1)",
        "log_softmax": "torch.log_softmax({0}, dim=-1)",
        "sum_all": "{0}.sum()",
        "cat0": "torch.cat({0})",
        "sum0": "{0}.sum(dim=0)",
        "rowsum": "{0}.sum(dim=-1, keepdim=True)",
        "zeros": "torch.zeros({0}, dtype={1}, device={2})",
        "empty": "torch.empty({0}, dtype={1}, device={2})",
        "time_major": "_time_major({0})",
        "batch_first": "{0}.transpose(0, 1)",
        "gather_steps": "{0}[torch.arange({1}, {2} + 1, device={0}.device) % {3}]",
        "matmul_out": "torch.matmul({0}, {1}, out={2})",
        "mul_out": "torch.mul({0}, {1}, out={2})",
        "add_out": "torch.add({0}, {1}, out={2})",
        "addmm_out": "torch.addmm({0}, {1}, {2}, out={3})",
        "rsub_": "{1}.neg_().add_({0})",
        "addmm": "torch.addmm({0}, {1}, {2})",
        "sqrt": "torch.sqrt({0})",
        "clip": "torch.clamp({0}, -{1}, {1})",
        "is_index": "_is_index({0})",
        "one_hot": "_one_hot({0}, {1}, {2})",
        "dtype_of": "{0}.dtype",
        "device_of": "{0}.device",
        "zeros_like": "torch.zeros_like({0})",
        "copy": "{0}.clone()",
        "cast": "torch.as_tensor({0}, dtype={1}, device={2})",
    } | _elementwise("torch")),
    _TORCH_HELPERS + "".join(row.torch_helper for row in ELEMENTWISE.values()),
)

# ------------------------------------------------------------------- numba kernels

_KERNEL_BIN = ("add", "sub", "mul", "matmul", "div", "gt", "ge", "eq", "min", "max",
               "neg", "T", "float")
_KERNEL_CALLS = ("sum_all", "sum0", "zeros", "empty", "gather_steps", "mul_out", "add_out",
                 "rsub_", "sqrt", "zeros_like", "copy")
"""NumPy spellings that nopython mode compiles as they are (once ``out=`` is positional);
a loop with an operation outside these and the elementwise rows stays in Python."""

_NB_HELPERS = '''
def _reshape(a, shape):
    """a.reshape(shape); in a kernel also a strided (B, G*H) block split into (B, G, H)."""
    return a.reshape(shape)


@numba.extending.overload(_reshape)
def _reshape_typed(a, shape):
    if a.layout == "C":
        return lambda a, shape: a.reshape(shape)
    if a.ndim != 2 or len(shape) != 3:
        raise numba.core.errors.TypingError("_reshape: a strided view splits (B, G*H) only")

    def split_last(a, shape):
        if shape[0] != a.shape[0] or shape[1] * shape[2] != a.shape[1]:
            raise ValueError("_reshape: a strided view splits its last axis only")
        s0, s1 = a.strides
        return np.lib.stride_tricks.as_strided(a, shape=shape, strides=(s0, shape[2] * s1, s1))

    return split_last
'''


def _nopython(entry: str | tuple[str, int]) -> str | tuple[str, int]:
    """A NumPy spelling as nopython mode takes it: ``out=`` positional, helpers jitted."""
    if isinstance(entry, tuple):
        return _nopython(entry[0]), entry[1]
    template = re.sub(r"out=(\{\d\}|\w+)", r"\1", entry)
    return re.sub(r"(?<![\w.])_(\w+)\(", r"_nb_\1(", template)


def _jitted(helpers: str, decorator: str) -> str:
    """The elementwise helpers as kernels call them: ``_nb_`` names, decorated."""
    chunks = [c for c in re.split(r"\n(?=def )", helpers.strip()) if c.strip()]
    return "".join(f"\n\n{decorator}\n{_nopython(c.rstrip())}\n" for c in chunks)


def _kernel_table() -> dict[str, tuple[str, int, tuple[int, ...]]]:
    calls = {k: _nopython(_NP_CALLS[k]) for k in _KERNEL_CALLS}
    calls |= {k: _nopython(v) for k, v in _elementwise("numpy").items()}
    calls |= {"matmul_out": "np.dot({0}, {1}, {2})", "reshape": "_reshape({0}, {1})"}
    return {k: _BIN[k] for k in _KERNEL_BIN} | _calls(calls)


_NB_DECORATOR = "@numba.njit(cache=True)"

NUMBA = Backend(
    "numba",
    ("import numba", "import numpy as np"),
    NUMPY.table,
    NUMPY.helpers,
    family="numpy",
    kernels=Kernels(
        _kernel_table(),
        _NB_HELPERS + _jitted("".join(r.numpy_helper for r in ELEMENTWISE.values()),
                              _NB_DECORATOR),
        _NB_DECORATOR),
    requires=("numba scipy", "symrnn[numba]"),  # numba's np.dot calls scipy's BLAS
)

BACKENDS = {b.name: b for b in (NUMPY, TORCH, NUMBA)}


def backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise SymrnnError(
            f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}, got {name!r}"
        ) from None


def require(target: Backend) -> None:
    """SpecError naming the extra to install when the backend's library is missing."""
    if target.requires is None:
        return
    modules, extra = target.requires
    for module in modules.split():
        try:
            __import__(module)
        except ImportError:
            raise SpecError(f"backend {target.name!r} needs {module}, which is not installed: "
                            f"pip install '{extra}'") from None


class Printer:
    """Prints :mod:`symrnn.codegen.ir` trees with one backend's table."""

    indent = "    "

    def __init__(self, target: Backend):
        self.target = target

    # ------------------------------------------------------------ expressions
    def expr(self, node: ir.Node) -> str:
        return self._print(node)[0]

    def _print(self, node: ir.Node) -> tuple[str, int]:
        if isinstance(node, ir.Name):
            return node.id, ATOM
        if isinstance(node, ir.Num):
            text = repr(node.value)
            return text, (30 if node.value < 0 else ATOM)
        if isinstance(node, ir.Str):
            return repr(node.value), ATOM
        if isinstance(node, ir.Index):
            return f"{self._slot(node.base, ATOM)}[{node.index}]", ATOM
        if isinstance(node, ir.Tuple):
            items = [self.expr(i) for i in node.items]
            inner = ", ".join(items) + ("," if len(items) == 1 else "")
            return f"({inner})", ATOM
        if isinstance(node, ir.Dict):
            return "{" + ", ".join(f"{k!r}: {self.expr(v)}" for k, v in node.items) + "}", ATOM
        if isinstance(node, ir.Op):
            return self._print_op(node)
        raise SymrnnError(f"cannot print code node {node!r}")

    def _print_op(self, node: ir.Op) -> tuple[str, int]:
        if node.key == "call":  # a generated helper with any number of arguments
            name, *args = node.args
            return f"{name.value}({', '.join(self.expr(a) for a in args)})", ATOM
        try:
            template, prec, slots = self.target.table[node.key]
        except KeyError:
            raise SymrnnError(
                f"backend {self.target.name!r} has no spelling for operation {node.key!r}"
            ) from None
        if len(slots) != len(node.args):
            raise SymrnnError(
                f"operation {node.key!r} expected {len(slots)} operands, got {len(node.args)}"
            )
        texts = [self._slot(arg, slot) for arg, slot in zip(node.args, slots, strict=True)]
        return template.format(*texts), prec

    def printed_args(self, node: ir.Op) -> tuple[ir.Node, ...]:
        """The operands of ``node`` that this backend's spelling actually prints."""
        if node.key == "call":
            return node.args[1:]
        template = self.target.table[node.key][0]
        return tuple(a for i, a in enumerate(node.args) if f"{{{i}}}" in template)

    def _slot(self, node: ir.Node, minimum: int) -> str:
        text, prec = self._print(node)
        return f"({text})" if prec < minimum else text

    # ------------------------------------------------------------- statements
    def block(self, body: tuple[ir.Stmt, ...], depth: int = 0) -> list[str]:
        lines: list[str] = []
        for stmt in body:
            lines += self.stmt(stmt, depth)
        return lines

    def stmt(self, stmt: ir.Stmt, depth: int) -> list[str]:
        pad = self.indent * depth
        if isinstance(stmt, ir.Assign):
            target = self.expr(stmt.target)
            if isinstance(stmt.target, ir.Tuple):
                target = target[1:-1]
            if isinstance(stmt.value, ir.Dict):
                inner = pad + self.indent
                items = [f"{inner}{k!r}: {self.expr(v)}," for k, v in stmt.value.items]
                return [pad + f"{target} = {{", *items, pad + "}"]
            return self._commented(pad, f"{target} = {self.expr(stmt.value)}", stmt.comment)
        if isinstance(stmt, ir.AugAssign):
            line = f"{self.expr(stmt.target)} {stmt.op}= {self.expr(stmt.value)}"
            return self._commented(pad, line, stmt.comment)
        if isinstance(stmt, ir.Expr):
            return self._commented(pad, self.expr(stmt.value), stmt.comment)
        if isinstance(stmt, ir.Comment):
            return wrap_comment(pad, stmt.text, self.width)
        if isinstance(stmt, ir.Blank):
            return [""]
        if isinstance(stmt, ir.Return):
            if isinstance(stmt.value, ir.Tuple):
                return [pad + "return " + self.expr(stmt.value)[1:-1]]
            if isinstance(stmt.value, ir.Dict):
                inner = pad + self.indent
                items = [f"{inner}{k!r}: {self.expr(v)}," for k, v in stmt.value.items]
                return [pad + "return {", *items, pad + "}"]
            return [pad + "return " + self.expr(stmt.value)]
        if isinstance(stmt, ir.For):
            step = "" if stmt.step == 1 else f", {stmt.step}"
            bounds = f"{self.expr(stmt.start)}, {self.expr(stmt.stop)}{step}"
            head = f"for {stmt.var} in range({bounds}):"
            return [pad + head] + self.block(stmt.body, depth + 1)
        if isinstance(stmt, ir.If):
            lines = [pad + f"if {self.expr(stmt.cond)}:"] + self.block(stmt.body, depth + 1)
            if stmt.orelse:
                lines += [pad + "else:"] + self.block(stmt.orelse, depth + 1)
            return lines
        if isinstance(stmt, ir.FunctionDef):
            doc = [pad + self.indent + line if line else "" for line in stmt.doc.split("\n")]
            doc[0] = pad + self.indent + '"""' + stmt.doc.split("\n")[0]
            doc.append(pad + self.indent + '"""')
            head = self._def_head(pad, stmt.name, stmt.args)
            return head + doc + self.block(stmt.body, depth + 1)
        raise SymrnnError(f"cannot print statement {stmt!r}")

    width = 99

    def _def_head(self, pad: str, name: str, args: tuple[str, ...]) -> list[str]:
        """``def name(args):``, its arguments continued under the first where too long."""
        line = f"{pad}def {name}({', '.join(args)}):"
        if len(line) <= self.width or not args:
            return [line]
        pieces = [f"{a}," for a in args[:-1]] + [f"{args[-1]}):"]
        lines = _fill(pieces, " " * len(f"{pad}def {name}("), self.width)
        return [f"{pad}def {name}(" + lines[0].lstrip()] + lines[1:]

    def _commented(self, pad: str, line: str, comment: str) -> list[str]:
        """``line  # comment``, or the comment on its own lines above when too long."""
        code = wrap_code(pad, line, self.width)
        if not comment:
            return code
        joined = f"{pad}{line}  # {comment}"
        if len(joined) <= self.width and len(code) == 1:
            return [joined]
        return wrap_comment(pad, comment, self.width) + code


def _depths(text: str) -> list[int]:
    """Bracket depth at each character (strings are not tracked: generated code has none
    with brackets)."""
    depth, out = 0, []
    for ch in text:
        if ch in ")]}":
            depth -= 1
        out.append(depth)
        if ch in "([{":
            depth += 1
    return out


def _breaks(text: str, level: int) -> list[int]:
    """Positions where a line may break at bracket depth ``level``: before a binary
    operator, or after a comma."""
    depths = _depths(text)
    out = []
    for i in range(1, len(text) - 2):
        if depths[i] != level:
            continue
        if text[i] == " " and text[i + 1] in "+-*@/" and text[i + 2] == " " and text[i - 1] != "(":
            out.append(i)
        elif text[i - 1] == "," and text[i] == " ":
            out.append(i)
    return out


_ASSIGN = re.compile(r" ([-+*/@]?=) ")


def wrap_code(pad: str, line: str, width: int) -> list[str]:
    """A long ``target = value`` line as ``target = (`` … ``)`` broken at the shallowest
    operators and commas that make every piece fit."""
    match = _ASSIGN.search(line)
    if len(pad) + len(line) <= width:
        return [pad + line]
    if match is None:
        return _wrap_call(pad, line, width)
    head, value = line[:match.end()].rstrip(), line[match.end():]
    inner = pad + "    "
    for level in range(0, 4):
        lines = _fill(_split_at(value, _breaks(value, level)), inner, width)
        if all(len(x) <= width for x in lines):
            return [f"{pad}{head} ("] + lines + [pad + ")"]
    return [pad + line]


def _wrap_call(pad: str, line: str, width: int) -> list[str]:
    """A long call statement ``f(a, b, out=c)`` broken after ``f(`` at its commas."""
    start = line.find("(")
    if start < 0 or not line.endswith(")"):
        return [pad + line]
    args = line[start + 1:-1]
    for level in range(0, 4):
        lines = _fill(_split_at(args, _breaks(args, level)), pad + "    ", width)
        if all(len(x) <= width for x in lines):
            return [pad + line[:start + 1]] + lines + [pad + ")"]
    return [pad + line]


def _split_at(text: str, cuts: list[int]) -> list[str]:
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(text[start:cut])
        start = cut + 1
    return pieces + [text[start:]]


def _fill(pieces: list[str], indent: str, width: int) -> list[str]:
    lines, current = [], ""
    for piece in pieces:
        candidate = f"{current} {piece}" if current else piece
        if current and len(indent) + len(candidate) > width:
            lines.append(indent + current)
            current = piece
        else:
            current = candidate
    return lines + [indent + current]


def wrap_comment(pad: str, comment: str, width: int) -> list[str]:
    """A comment as ``# ...`` lines of at most ``width`` characters, broken at spaces."""
    words, lines, current = comment.split(" "), [], ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if current and len(pad) + 2 + len(candidate) > width:
            lines.append(f"{pad}# {current}")
            current = word
        else:
            current = candidate
    return lines + [f"{pad}# {current}"]
