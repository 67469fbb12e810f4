"""From formula text to a :class:`~symrnn.formula.nodes.Formula` (no evaluation of user text).

``parse_formula(text)`` runs the lark grammar of :mod:`symrnn.formula.grammar`
and turns the tree into nodes.  Rules of reading:

* ``x_{t-1}``: a time index (variables t, k, j, i, s, n, T); ``W_{hh}``: a
  parameter suffix.  A multi-letter name that is not a known word
  (``delta``, ``yhat``) is a product of letters: ``Vh_3`` is V h_3.
* ``^T``, ``^\\top``, ``^{\\mathsf T}``, ``.T``: transpose; ``^2``: elementwise square
  (a matrix power of a square matrix, see :mod:`symrnn.formula.lower`); ``^k``,
  ``^{t-k}``, ``^3``: a matrix power (:class:`~symrnn.formula.nodes.Power`).
* Fonts are dropped: ``\\mathbf{W}_\\textrm{hh}`` is W_hh, ``\\boldsymbol{h}_t``,
  ``\\bm``, ``\\vec``, ``\\mathcal{L}`` likewise.
* Gate adjoints: ``\\delta^{f}_t``, ``\\delta^f_t``, ``\\delta^{(f)}_t``, ``\\delta_t^{f}`` are
  the symbol ``delta^{f}`` at step t.
* ``\\nabla_W L`` is ∂L/∂W; ``\\frac{\\partial L}{\\partial h_t}`` or ``dL/dh_t`` on a
  right-hand side is the engine's adjoint of h_t, ``\\frac{\\partial h_t}{\\partial h_{t-1}}``
  its state Jacobian (:mod:`symrnn.formula.statements`).
* ``let NAME_t = expr`` (or ``let NAME = expr``) defines a quantity the grammar does
  not know: NAME, any word of letters, is one symbol everywhere in the formula.
* ``\\sum_t`` and ``sum_t`` run over t = 1..T; ``\\sum_{k=1}^{t}`` as written.
* The left-hand side ``\\frac{\\partial L_3}{\\partial V}``, ``\\partial L / \\partial W``,
  ``dL/dW_hh`` is the :class:`Claim`; ``\\delta_t = …`` before it is a
  :class:`Definition`.

Every problem raises :class:`~symrnn.errors.FormulaError` with the column
and what was expected.
"""

from __future__ import annotations

import re
from fractions import Fraction

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import (
    LarkError,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from symrnn.errors import FormulaError, suggest
from symrnn.formula.grammar import TERMINAL_NAMES, parser
from symrnn.formula.nodes import (
    Add,
    Big,
    Call,
    Derivative,
    Exponent,
    Formula,
    Neg,
    Node,
    Num,
    Partial,
    Power,
    Prod,
    Square,
    Sub,
    Sym,
    Time,
    Transpose,
)
from symrnn.formula.statements import WORDS, build_formula

__all__ = ["parse_formula", "parse_time", "MAX_LENGTH", "MAX_DEPTH", "MAX_TIME", "TIME_VARS"]

MAX_LENGTH = 2000
MAX_DEPTH = 200
"""Deepest nesting of a formula (parse-tree levels): nothing downstream can recurse deeper."""
MAX_TIME = 1000
"""Largest number allowed in a time index (``h_{k}``, ``L_{k}``, ``t+k``, sum bounds)."""
TIME_VARS = frozenset("tkjisnT")

_TIME = re.compile(r"^(?:(?P<var>[A-Za-z])\s*(?:(?P<sign>[+-])\s*(?P<off>\d+))?|(?P<num>\d+))$")
_BOUND = re.compile(r"^(?P<var>[a-zA-Z])\s*=\s*(?P<lo>.+)$")
_TRANSPOSE = {"T", r"\top", r"\intercal", r"\mathsfT", r"\mathrmT", r"\rmT"}
_FONTS = re.compile(r"\\(mathrm|textrm|text|mathit|mathbf|mathsf|boldsymbol|bm|vec|rm)\s*")
_EXPONENT = re.compile(r"^[+-]?(\d+|[A-Za-z])([+-](\d+|[A-Za-z]))*$")
_GATE = re.compile(r"^\(?([a-z]+)\)?$")
_FUNCS = {"tanh": "tanh", "sigma": "sigmoid", "sigmoid": "sigmoid", "softmax": "softmax",
          "ReLU": "relu", "relu": "relu", "diag": "diag", "f": "f", "g": "f"}


def _unbrace(text: str) -> str:
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    return text.strip()


def _unfont(text: str) -> str:
    """A subscript's content without fonts: ``\\textrm{hh}`` → 'hh', ``{\\mathrm{h}h}`` → 'hh'."""
    if not _FONTS.search(text):
        return _unbrace(text)
    return re.sub(r"[{}\s]", "", _FONTS.sub("", text))


def parse_exponent(text: str, tok: Token, max_time: int = MAX_TIME) -> Exponent | None:
    """'t-k' → Exponent((('t', 1), ('k', -1)), 0); '3' → Exponent((), 3); else None."""
    content = re.sub(r"[\s{}]", "", text)
    if not _EXPONENT.match(content):
        return None
    terms: dict[str, int] = {}
    offset = 0
    for sign, item in re.findall(r"([+-]?)(\d+|[A-Za-z])", content):
        c = -1 if sign == "-" else 1
        if item.isdigit():
            if int(item) > max_time:
                raise _err(f"exponent {item} in '{tok}' exceeds the bound {max_time}", tok)
            offset += c * int(item)
        elif item in TIME_VARS:
            terms[item] = terms.get(item, 0) + c
        else:
            return None
    return Exponent(tuple((v, c) for v, c in terms.items() if c), offset)


def parse_time(text: str) -> Time | None:
    """'t-1' → Time('t', -1); '3' → Time(None, 3); anything else → None."""
    match = _TIME.match(_unbrace(text))
    if not match:
        return None
    if match["num"] is not None:
        return Time(None, int(match["num"]))
    if match["var"] not in TIME_VARS:
        return None
    off = int(match["off"] or 0) * (-1 if match["sign"] == "-" else 1)
    return Time(match["var"], off)


def _err(message: str, token: Token | None = None) -> FormulaError:
    return FormulaError(message, column=getattr(token, "column", None))


def _bounded(time: Time | None, tok: Token, max_time: int) -> Time | None:
    """``time`` unless its number exceeds ``max_time`` (then a FormulaError at ``tok``)."""
    if time is not None and abs(time.offset) > max_time:
        raise _err(f"time index {abs(time.offset)} in '{tok}' exceeds the bound {max_time} on "
                   "time indices (a check unrolls at most max_T steps; raise it with "
                   "check_formula(..., max_T=...))", tok)
    return time


def _with_index(node, tok: Token, max_time: int = MAX_TIME):
    """Attach a subscript to the (possibly grouped / transposed) symbol ``node``."""
    if isinstance(node, Transpose):
        return Transpose(_with_index(node.arg, tok, max_time))
    if isinstance(node, Derivative):  # \nabla_W L_3
        return Derivative(_with_index(node.num, tok, max_time), node.den)
    if isinstance(node, Prod) and node.op == "matmul" and isinstance(node.right, Sym):
        return Prod("matmul", node.left, _with_index(node.right, tok, max_time))  # Vh_3 = V h_3
    if not isinstance(node, Sym) or node.index is not None:
        raise _err(f"a subscript {tok} needs a plain symbol before it", tok)
    content = _unfont(tok[1:])
    time = _bounded(parse_time(content), tok, max_time)
    if time is not None and (node.base != "L" or time.var is None):
        return Sym(node.base, time)
    if re.fullmatch(r"[A-Za-z]+", content):
        return Sym(node.base, content)
    raise _err(f"unexpected subscript '{tok}': expected a time such as t, t-1, 3 "
               "or a parameter suffix such as hh", tok)


@v_args(inline=True)
class _Builder(Transformer):
    def __init__(self, max_time: int = MAX_TIME, words: frozenset = frozenset()):
        super().__init__()
        self.max_time = max_time
        self.words = words

    def start(self, *statements):
        return list(statements)

    def equation(self, lhs, rhs):
        return ("eq", lhs, rhs)

    def bare(self, expr):
        return ("bare", expr)

    def let_equation(self, tok, lhs, rhs):
        return ("let", lhs, rhs)

    def add(self, a, b):
        return Add(a, b)

    def sub(self, a, b):
        return Sub(a, b)

    def neg(self, a):
        return Neg(a)

    def jux(self, a, b):
        return Prod("matmul", a, b)

    def binop(self, a, op, b):
        kind = {"@": "matmul", r"\cdot": "matmul", "*": "hadamard", r"\odot": "hadamard",
                r"\circ": "hadamard", "/": "div"}[str(op)]
        return Prod(kind, a, b)

    def bigop(self, op, *rest):
        *bounds, body = rest
        kind = "sum" if "sum" in op else "prod"
        sub = next((b for b in bounds if b.type == "SUBSCRIPT"), None)
        sup = next((b for b in bounds if b.type == "SUPERSCRIPT"), None)
        var, lo = "t", Time(None, 1)
        if sub is not None:
            content = _unbrace(sub[1:])
            match = _BOUND.match(content)
            var = match["var"] if match else content
            if var not in TIME_VARS - {"T"}:
                raise _err(f"unexpected index '{sub}' of \\{kind}: expected t, k or j "
                           "(optionally = a lower bound)", sub)
            if match:
                lo = _bounded(parse_time(match["lo"]), sub, self.max_time)
                if lo is None:
                    raise _err(f"unexpected lower bound in '{sub}'", sub)
        hi = Time("T") if sup is None else _bounded(parse_time(sup[1:]), sup, self.max_time)
        if hi is None:
            raise _err(f"unexpected upper bound '{sup}': expected T, t, t-1 or a number", sup)
        return Big(kind, var, lo, hi, body)

    def subscript(self, node, tok):
        return _with_index(node, tok, self.max_time)

    def superscript(self, node, tok):
        content = re.sub(r"[\s{}]", "", tok[1:])
        if content in _TRANSPOSE:
            return Transpose(node)
        gate = _GATE.match(content)
        if isinstance(node, Sym) and node.base == "delta" and gate:
            return Sym(f"delta^{{{gate[1]}}}", node.index)  # δ^{f}_t: a gate's adjoint
        if content == "2":
            return Square(node)
        exponent = parse_exponent(content, tok, self.max_time)
        if exponent is not None:
            return Power(node, exponent)
        raise _err(f"unsupported superscript '{tok}': expected ^T / ^\\top (transpose), "
                   "^2 (elementwise square), a power such as ^k or ^{t-k}, or a gate "
                   "name on \\delta (\\delta^{f}_t)", tok)

    def dot_t(self, node, tok):
        return Transpose(node)

    def prime(self, node, tok):
        raise _err("a prime needs a function and an argument, as in f'(a_t)", tok)

    def name(self, tok):
        text = str(tok)
        if text in WORDS or text in self.words or len(text) == 1 or \
                (text.startswith("d") and len(text) <= 3):
            return Sym(text)
        hint = suggest(text, sorted(WORDS | set(_FUNCS)))
        if hint:
            raise _err(f"unknown name {text!r}{hint}", tok)
        return _split_letters(text)  # Vh is V h

    def greek(self, tok):
        return Sym("delta")

    def number(self, tok):
        return Num(Fraction(str(tok)))

    def hat(self, tok, node):
        if isinstance(node, Sym) and node.base == "y":
            return Sym("yhat", node.index)
        raise _err("\\hat applies to y only (\\hat{y}_t is the prediction)", tok)

    def group(self, *items):
        return items[-1]

    def frac(self, tok, num, den):
        return Prod("div", num, den)

    def frac_digits(self, tok):
        digits = re.sub(r"\D", "", str(tok)[-2:])
        return Prod("div", Num(Fraction(int(digits[0]))), Num(Fraction(int(digits[1]))))

    def partial(self, tok, node):
        return Partial(node)

    def nabla(self, tok, sub, node):
        """``\\nabla_{W_{hh}} L``: ∂L/∂W_hh (the subscript read by the same grammar)."""
        content = _unbrace(sub[1:])
        try:
            items = _Builder(self.max_time, self.words).transform(parser().parse(content))
        except VisitError as err:
            raise err.orig_exc from None
        except LarkError:
            raise _err(f"unexpected subscript '{sub}' of \\nabla: expected a parameter "
                       "such as W or W_{hh}", sub) from None
        kind, wrt = items[0] if len(items) == 1 else ("many", None)
        if kind != "bare" or not isinstance(wrt, Sym):
            raise _err(f"\\nabla{sub}: expected a parameter or a state such as W_{{hh}} "
                       "or h_t", sub)
        return Derivative(node, wrt)

    def call(self, tok, arg):
        return Call(_FUNCS[re.sub(r"[\\{}\s]|mathrm|operatorname|textrm|text|mathit", "",
                                  str(tok))], arg)

    def call_power(self, tok, sup, arg):
        """\\tanh^2(a) is (tanh a)^2, elementwise."""
        if re.sub(r"[\s{}]", "", sup[1:]) != "2":
            raise _err(f"unsupported power '{sup}' of a function: expected ^2", sup)
        return Square(self.call(tok, arg))

    def dcall(self, tok, arg):
        key = re.sub(r"[\\{}'\s]|mathrm|operatorname", "", str(tok))
        return Call(_FUNCS[key], arg, derivative=True)


def _split_letters(text: str) -> Node:
    node: Node = Sym(text[0])
    for letter in text[1:]:
        node = Prod("matmul", node, Sym(letter))
    return node


def _expected(err: UnexpectedInput) -> str:
    names = sorted({TERMINAL_NAMES.get(e, repr(e)) for e in getattr(err, "expected", ()) or ()})
    if not names:
        names = sorted({TERMINAL_NAMES.get(e, repr(e)) for e in getattr(err, "allowed", ()) or ()})
    names.sort(key=lambda n: not n.startswith("a "))
    return ", ".join(names[:10]) or "a formula"


def _depth(tree: Tree) -> int:
    """Levels of a lark tree, counted without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))
    return deepest


def parse_formula(text: str, *, max_time: int = MAX_TIME) -> Formula:
    """Parse formula text (LaTeX or plain); raises FormulaError on any problem.

    Bounded: at most :data:`MAX_LENGTH` characters, :data:`MAX_DEPTH` levels of
    nesting and time indices up to ``max_time``.
    """
    if not isinstance(text, str):
        raise FormulaError(f"expected formula text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula too long: expected at most {MAX_LENGTH} characters, "
                           f"got {len(text)}")
    stripped = text.strip().strip("$").strip()
    if not stripped:
        raise FormulaError("empty formula: expected e.g. dL/dW_hh = sum_t ...")
    try:
        tree = parser().parse(stripped)
    except UnexpectedCharacters as err:
        raise _located(err, stripped, f"unexpected character {stripped[err.pos_in_stream]!r}"
                       ) from None
    except UnexpectedEOF as err:
        raise FormulaError(f"unexpected end of formula; expected {_expected(err)}") from None
    except UnexpectedToken as err:
        if err.token.type == "$END":
            err.line = stripped.count("\n") + 1
            err.column = len(stripped.splitlines()[-1]) + 1
            raise _located(err, stripped, "unexpected end of formula") from None
        raise _located(err, stripped, f"unexpected {str(err.token)!r}") from None
    except LarkError as err:  # pragma: no cover - other lark failures
        raise FormulaError(f"cannot parse formula: {err}") from None
    depth = _depth(tree)
    if depth > MAX_DEPTH:
        raise FormulaError(f"formula nested too deeply: {depth} levels, at most {MAX_DEPTH}")
    try:
        items = _Builder(max_time, _let_names(tree)).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, FormulaError):
            raise _relocate(err.orig_exc, stripped) from None
        raise
    except RecursionError:
        raise FormulaError("formula nested too deeply") from None
    try:
        return build_formula(items, stripped)
    except RecursionError:
        raise FormulaError("formula nested too deeply") from None


def _let_names(tree: Tree) -> frozenset:
    """The words defined by ``let NAME… = …`` statements (each one symbol everywhere)."""
    names = set()
    for sub in tree.find_data("let_equation"):
        lhs = sub.children[1]
        found = list(lhs.scan_values(lambda v: isinstance(v, Token) and v.type == "NAME")) \
            if isinstance(lhs, Tree) else []
        if found:
            names.add(str(found[0]))
    reserved = names & (set(_FUNCS) | {"sum", "prod", "let", "T"})
    if reserved:
        raise FormulaError(f"let cannot define {sorted(reserved)[0]!r}: it is a built-in name")
    return frozenset(names)


def _located(err: UnexpectedInput, text: str, what: str) -> FormulaError:
    line_no, column = err.line, err.column
    line = text.splitlines()[line_no - 1] if line_no and line_no > 0 else text
    where = f"line {line_no}, column {column}" if "\n" in text else f"column {column}"
    return FormulaError(f"{what} at {where}; expected {_expected(err)}", column=column,
                        text=line)


def _relocate(err: FormulaError, text: str) -> FormulaError:
    if err.column is None or "\n" in text:
        return err
    return FormulaError(str(err), column=err.column, text=text)
