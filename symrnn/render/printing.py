"""Printers for matrix expressions: plain text and LaTeX, with notation settings.

Text is NumPy-like and ASCII: ``@`` for the matrix product, ``*`` for the
elementwise (Hadamard) product, ``.T`` for the transpose, ``1`` for a matrix
of ones, per-step symbols as ``h_{t-1}``.  LaTeX uses juxtaposition for the
product, ``\\odot`` (or ``\\circ``) for Hadamard, ``^{\\top}`` for transpose
and ``\\mathbf{1}`` for ones.  With ``aliases=True`` the Elman parameters are
printed in the seed notes' letters W, U, b, V, c.  Column vectors throughout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sympy import MatAdd, MatMul, MatrixSymbol
from sympy.matrices.expressions.hadamard import HadamardProduct
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from symrnn.engine.cells import ALIASES
from symrnn.engine.expr import matmul, split_timed

__all__ = ["PLAIN", "Notation", "text", "latex", "symbol_latex"]

_PARAM_ALIAS = {v: k for k, v in ALIASES.items()}
_COMPOUND = (MatAdd, MatMul, HadamardProduct)


@dataclass(frozen=True)
class Notation:
    """How to print: parameter names, the Hadamard symbol."""

    aliases: bool = False
    hadamard: str = r"\odot"


class _MatrixSyntax:
    """Printing of matrix expressions shared by both targets.

    A target differs only by its table: the product and Hadamard separators,
    the parentheses, the transpose and the ones/zeros symbols.
    """

    PRODUCT = " @ "
    HADAMARD = " * "
    OPEN, CLOSE = "(", ")"
    TRANSPOSE = "{}.T"
    ONES, ZEROS = "1", "0"
    COEFF = "{}*"

    notation: Notation

    def _wrap(self, arg, compound=_COMPOUND) -> str:
        out = self._print(arg)
        if isinstance(arg, compound) or (isinstance(arg, MatMul) and arg.args[0] == -1):
            return f"{self.OPEN}{out}{self.CLOSE}"
        return out

    def _print_MatAdd(self, expr) -> str:
        return _join_sum(self, expr)

    def _print_MatMul(self, expr) -> str:
        coeff, mats = expr.as_coeff_matrices()
        body = self.PRODUCT.join(self._wrap(m, (MatAdd, HadamardProduct)) for m in mats)
        if coeff == 1:
            return body
        if coeff == -1:
            return f"-{body}"
        return self.COEFF.format(self._print(coeff)) + body

    def _print_HadamardProduct(self, expr) -> str:
        return self.HADAMARD.join(self._wrap(a, (MatAdd, MatMul)) for a in expr.args)

    def _print_Transpose(self, expr) -> str:
        inner = self._print(expr.arg)
        if not isinstance(expr.arg, MatrixSymbol):
            inner = f"{self.OPEN}{inner}{self.CLOSE}"
        return self.TRANSPOSE.format(inner)

    def _print_OneMatrix(self, expr) -> str:
        return self.ONES

    def _print_ZeroMatrix(self, expr) -> str:
        return self.ZEROS


class TextPrinter(_MatrixSyntax, StrPrinter):
    def __init__(self, notation: Notation):
        super().__init__()
        self.notation = notation

    def _print_MatrixSymbol(self, expr) -> str:
        if self.notation.aliases and expr.name in _PARAM_ALIAS:
            return _PARAM_ALIAS[expr.name]
        return expr.name


class SymrnnLatexPrinter(_MatrixSyntax, LatexPrinter):
    PRODUCT = " "
    OPEN, CLOSE = r"\left(", r"\right)"
    TRANSPOSE = "{}^{{\\top}}"
    ONES, ZEROS = r"\mathbf{1}", r"\mathbf{0}"
    COEFF = "{} "

    def __init__(self, notation: Notation):
        super().__init__({"mat_symbol_style": "plain"})
        self.notation = notation
        self.HADAMARD = f" {notation.hadamard} "

    def _print_MatrixSymbol(self, expr) -> str:
        return symbol_latex(expr.name, self.notation)


def negative_part(term):
    """−term when term carries a negative coefficient, else None."""
    if isinstance(term, MatMul):
        coeff, mats = term.as_coeff_matrices()
        if coeff < 0:
            return matmul(-coeff, *mats)
    return None


def _join_sum(printer, expr) -> str:
    """a + b − c with positive terms first (1 − h⊙h, ŷ − y), otherwise in order."""
    terms = sorted(expr.args, key=lambda term: negative_part(term) is not None)
    out = printer._print(terms[0])
    for term in terms[1:]:
        negated = negative_part(term)
        if negated is None:
            out += " + " + printer._print(term)
        else:
            inner = printer._print(negated)
            if isinstance(negated, MatAdd):
                inner = printer._wrap(negated)
            out += " - " + inner
    return out


PLAIN = Notation()
"""The default notation: W_hh, W_xh, ... and ⊙."""

_LATEX_BASES = {"yhat": r"\hat{y}", "delta": r"\delta"}
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_REVERSE, _DECODER, _REV_INPUT = "_reverse", "_dec", "_rev"
_LAYER = re.compile(r"_l(\d+)$")
DECODER_MARK = r"\mathrm{dec}"
"""The superscript of the decoder's quantities (h_dec → h^{dec}, W_hh_dec → W^{dec}_{hh})."""
T_OUT_LATEX = r"T_{\mathrm{out}}"
"""How the decoder's last step T_out prints in LaTeX."""


def symbol_latex(name: str, notation: Notation = PLAIN) -> str:
    """LaTeX for a symbol name: W_hh → W_{hh} (or W), yhat_{t} → \\hat{y}_{t}; a layer
    l ≥ 1 (``_l{l}``) as the superscript (l+1), a reverse direction (``_reverse``) as an
    arrow over the letter, the decoder (``_dec``) as the superscript dec, the column
    block of a reverse input (``_rev``) as an arrow over the subscript's first letter
    (W_hy_rev → W_{\\overleftarrow{h}y}: the weight from the reverse h to y)."""
    if notation.aliases and name in _PARAM_ALIAS:
        return _PARAM_ALIAS[name]
    parts = split_timed(MatrixSymbol(name, 1, 1))
    if parts is None:
        return _name_latex(name, braced=True)
    base, time = parts
    time = time.replace("T_out", T_OUT_LATEX)
    sup = ""
    if "^" in base:
        base, sup = base.split("^", 1)
        sup = "^" + _superscript_latex(sup)
    if not _IDENTIFIER.match(base):
        return f"{base}{sup}_{{{time}}}"
    head, marks = _decorated(base)
    if marks:
        return f"{{{head}^{{{marks}}}_{{{time}}}}}"  # braced: a transpose may follow
    return f"{head}{sup}_{{{time}}}"


def _name_latex(name: str, braced: bool) -> str:
    """A parameter or state name (no time): W_{hh}, {W^{(2)}_{hh}}, \\overleftarrow{h}."""
    if not _IDENTIFIER.match(name):
        return name
    core, marks, tail = _split_name(name)
    sup = f"^{{{marks}}}" if marks else ""
    sub = f"_{{{tail}}}" if tail else ""
    out = f"{core}{sup}{sub}"
    return f"{{{out}}}" if marks and braced else out


def _split_name(name: str) -> tuple[str, str, str]:
    """(letter with its arrow, superscript marks, subscript) of a name: W_hh_l1_reverse →
    (\\overleftarrow{W}, (2), hh); W_hy_rev → (W, '', \\overleftarrow{h}y)."""
    stripped, layer, reverse, decoder = _suffixes(name)
    column = stripped.endswith(_REV_INPUT) and "_" in stripped.removesuffix(_REV_INPUT)
    if column:
        stripped = stripped.removesuffix(_REV_INPUT)
    head, _, tail = stripped.partition("_")
    letter = _LATEX_BASES.get(head, head)
    if reverse:
        letter = rf"\overleftarrow{{{letter}}}"
    if column and tail:
        tail = rf"\overleftarrow{{{tail[0]}}}{tail[1:]}"
    marks = [m for m in (layer, DECODER_MARK if decoder else "") if m]
    return letter, ",".join(marks), tail


def _suffixes(name: str) -> tuple[str, str, bool, bool]:
    """(name without its suffixes, layer mark '(l+1)' or '', reverse?, decoder?)."""
    reverse = name.endswith(_REVERSE) and len(name) > len(_REVERSE)
    name = name.removesuffix(_REVERSE) if reverse else name
    match = _LAYER.search(name)
    layer = f"({int(match[1]) + 1})" if match else ""
    name = name[:match.start()] if match else name
    decoder = name.endswith(_DECODER) and len(name) > len(_DECODER)
    return (name.removesuffix(_DECODER) if decoder else name), layer, reverse, decoder


def _decorated(base: str) -> tuple[str, str]:
    """A per-step base (h_l1, yhat, i_dec) as (its letter, its superscript marks)."""
    core, marks, tail = _split_name(base)
    return (f"{core}_{{{tail}}}" if tail else core), marks


def _superscript_latex(sup: str) -> str:
    """δ^{h_l1} → δ^{h^{(2)}}: the state named inside an adjoint's superscript."""
    inner = sup[1:-1] if sup.startswith("{") and sup.endswith("}") else None
    if inner is not None and _IDENTIFIER.match(inner):
        return "{" + _name_latex(inner, braced=False) + "}"
    return _layered(sup)


def state_latex(state: str, time: str) -> str:
    """A state at a step: ('h_l1', 't') → {h^{(2)}_{t}}, ('h', '0') → h_{0}."""
    return symbol_latex(f"{state}_{{{time}}}")


def _layered(sup: str) -> str:
    """δ^{h_l1} → δ^{h^{(2)}}: the layer suffix inside an adjoint's superscript."""
    return re.sub(r"_l(\d+)\}", lambda m: f"^{{({int(m[1]) + 1})}}}}", sup)


def text(expr, notation: Notation = PLAIN) -> str:
    """Plain-text form of a matrix expression (NumPy-like operators)."""
    return TextPrinter(notation).doprint(expr)


def latex(expr, notation: Notation = PLAIN) -> str:
    """LaTeX form of a matrix expression."""
    return SymrnnLatexPrinter(notation).doprint(expr)
