"""The closed language of regime statements, parsed with lark (nothing is evaluated).

A statement links a *condition* on the recurrent matrix W = W_hh and a *regime*,
in either order::

    sigma_max(W) < 1/gamma -> vanishing        exploding -> sigma_max(W) > 1/gamma
    rho(W) < 1 -> vanishing                    rho(W) > 1 -> exploding
    gamma * sigma_max(W) <= 0.9 => vanishing   ρ(W) ≥ 1.5 ⇒ exploding

==============  ============================================================
piece           spellings
==============  ============================================================
implication     ``->``, ``=>``, ``→``, ``⇒``, ``implies``
regime          ``vanishing``, ``exploding``
quantity        ``rho(W)``, ``ρ(W)``, ``\\rho(W)``; ``sigma_max(W)``, ``σ_max(W)``,
                ``sigma_{max}(W)``, ``\\sigma_{max}(W)`` (W, W_hh or W_{hh})
constant        ``gamma``, ``γ``, ``\\gamma`` (sup |f'| of the cell's activation),
                numbers ``1``, ``0.25``
arithmetic      ``*``, ``/``, parentheses
comparison      ``<``, ``<=``, ``≤``, ``>``, ``>=``, ``≥``
==============  ============================================================

Each side of a comparison is a product of powers of those pieces; a
condition must bound exactly one quantity (to the power ±1), so it is read as
``quantity op c·γ^k`` (a :class:`Bound`; every piece is positive, so dividing
keeps or flips the comparison).  Problems raise
:class:`~symrnn.errors.FormulaError` with the column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from lark import Lark, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

from symrnn.errors import FormulaError, suggest

__all__ = ["Bound", "Regime", "Statement", "parse_statement", "MAX_LENGTH", "QUANTITIES"]

MAX_LENGTH = 500
QUANTITIES = {"rho": "ρ(W)", "sigma_max": "σ_max(W)"}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_OPS = {"<": "<", "<=": "<=", "≤": "<=", ">": ">", ">=": ">=", "≥": ">="}
_SHOWN = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}
_WORDS = ("vanishing", "exploding", "gamma", "rho", "sigma_max", "implies", "W", "W_hh")
_WORD = re.compile(r"[A-Za-z_]+")
_ARROW = re.compile(r"->|=>|→|⇒|implies")

GRAMMAR = r"""
start: side ARROW side

?side: REGIME                  -> regime
     | product CMP product     -> comparison

?product: product "*" factor   -> mul
        | product "/" factor   -> div
        | factor

?factor: NUMBER                -> number
       | GAMMA                 -> gamma
       | QUANTITY "(" MATRIX ")" -> quantity
       | "(" product ")"

ARROW: "->" | "=>" | "→" | "⇒" | "implies"
CMP: "<=" | ">=" | "≤" | "≥" | "<" | ">"
REGIME: "vanishing" | "exploding"
GAMMA: "\\gamma" | "gamma" | "γ"
QUANTITY: "\\sigma_{max}" | "\\sigma_max" | "sigma_{max}" | "σ_{max}" | "sigma_max" | "σ_max"
        | "\\rho" | "rho" | "ρ"
MATRIX: "W_{hh}" | "W_hh" | "W"
NUMBER: /[0-9]+(\.[0-9]+)?/
%ignore /[ \t]+/
"""

_TERMINALS = {"ARROW": "'->'", "CMP": "a comparison (<, <=, >, >=)",
              "REGIME": "vanishing or exploding", "GAMMA": "gamma", "QUANTITY":
              "rho(W) or sigma_max(W)", "MATRIX": "W", "NUMBER": "a number", "LPAR": "'('",
              "RPAR": "')'", "STAR": "'*'", "SLASH": "'/'", "$END": "the end"}


@dataclass(frozen=True)
class Bound:
    """``quantity op coefficient·γ^gamma_power``: a condition on one spectral quantity."""

    quantity: str
    """'rho' or 'sigma_max'."""
    op: str
    """'<', '<=', '>' or '>='."""
    coefficient: Fraction
    gamma_power: int
    text: str

    def threshold(self, gamma: float) -> float:
        return float(self.coefficient) * float(gamma) ** self.gamma_power

    @property
    def upper(self) -> bool:
        """The condition bounds the quantity from above (< or <=)."""
        return self.op in ("<", "<=")

    def holds(self, value: float, gamma: float) -> bool:
        t = self.threshold(gamma)
        return {"<": value < t, "<=": value <= t, ">": value > t, ">=": value >= t}[self.op]

    def describe(self, gamma: float) -> str:
        """'σ_max(W) < 1/γ = 4'."""
        c, k = self.coefficient, self.gamma_power
        bound = _fraction(c) if k == 0 else _gamma_term(c, k)
        value = f"{self.threshold(gamma):.6g}"
        tail = "" if bound == value else f" = {value}"
        return f"{QUANTITIES[self.quantity]} {_SHOWN[self.op]} {bound}{tail}"


def _fraction(c: Fraction) -> str:
    return str(c.numerator) if c.denominator == 1 else f"{float(c):g}"


def _gamma_term(c: Fraction, k: int) -> str:
    power = "γ" if abs(k) == 1 else f"γ^{abs(k)}"
    if k > 0:
        return power if c == 1 else f"{_fraction(c)}·{power}"
    return f"{_fraction(c)}/{power}"


@dataclass(frozen=True)
class Regime:
    name: str
    """'vanishing' or 'exploding'."""
    text: str

    def describe(self, gamma: float) -> str:
        return self.name


@dataclass(frozen=True)
class Statement:
    premise: Bound | Regime
    conclusion: Bound | Regime
    source: str

    @property
    def bound(self) -> Bound:
        return self.premise if isinstance(self.premise, Bound) else self.conclusion

    @property
    def regime(self) -> Regime:
        return self.premise if isinstance(self.premise, Regime) else self.conclusion

    def describe(self, gamma: float) -> str:
        return f"{self.premise.describe(gamma)} ⇒ {self.conclusion.describe(gamma)}"


@dataclass(frozen=True)
class _Monomial:
    """coefficient · γ^gamma · ∏ quantity^power."""

    coefficient: Fraction
    gamma: int = 0
    powers: tuple[tuple[str, int], ...] = ()

    def times(self, other: _Monomial, sign: int = 1) -> _Monomial:
        powers = dict(self.powers)
        for name, p in other.powers:
            powers[name] = powers.get(name, 0) + sign * p
        coefficient = self.coefficient * (other.coefficient if sign > 0 else
                                          1 / other.coefficient)
        return _Monomial(coefficient, self.gamma + sign * other.gamma,
                         tuple(sorted((n, p) for n, p in powers.items() if p)))


@v_args(inline=True)
class _Build(Transformer):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def number(self, tok):
        return _Monomial(Fraction(str(tok)))

    def gamma(self, tok):
        return _Monomial(Fraction(1), 1)

    def quantity(self, tok, _matrix):
        name = "rho" if "rho" in tok or "ρ" in tok else "sigma_max"
        return _Monomial(Fraction(1), 0, ((name, 1),))

    def mul(self, a, b):
        return a.times(b)

    def div(self, a, b):
        if b.coefficient == 0:
            return _Monomial(Fraction(0))  # refused by comparison (a bound must be positive)
        return a.times(b, -1)

    def regime(self, tok):
        return Regime(str(tok), str(tok))

    def comparison(self, left, op, right):
        column = op.column
        if left.coefficient <= 0 or right.coefficient <= 0:
            raise FormulaError("a bound must be a positive number (every piece of a "
                               "condition is positive)", column=column, text=self.text)
        ratio = left.times(right, -1)  # left/right op 1
        if len(ratio.powers) != 1 or abs(ratio.powers[0][1]) != 1:
            raise FormulaError("a condition bounds exactly one of rho(W), sigma_max(W), to "
                               "the first power (e.g. sigma_max(W) < 1/gamma)",
                               column=column, text=self.text)
        (name, power), op = ratio.powers[0], _OPS[str(op)]
        if power == 1:  # c·γ^g·q op 1  ⇔  q op 1/(c·γ^g)
            return Bound(name, op, 1 / ratio.coefficient, -ratio.gamma, self.text)
        return Bound(name, _FLIP[op], ratio.coefficient, ratio.gamma, self.text)

    def start(self, premise, _arrow, conclusion):
        if isinstance(premise, Regime) == isinstance(conclusion, Regime):
            kind = "two regimes" if isinstance(premise, Regime) else "two conditions"
            raise FormulaError(f"a regime statement links a condition on W and a regime "
                               f"(vanishing, exploding), got {kind}", column=1, text=self.text)
        return Statement(premise, conclusion, self.text)


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", lexer="contextual")


def parse_statement(text: str) -> Statement:
    """Read a regime statement (module docstring); FormulaError with the column."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("empty regime statement: write e.g. 'rho(W) < 1 -> vanishing'")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"regime statement too long ({len(text)} > {MAX_LENGTH} characters)")
    if "\n" in text or "\r" in text:
        raise FormulaError("a regime statement is one line", column=1, text=text.splitlines()[0])
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, text) from None
    try:
        return _Build(text).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, FormulaError):
            raise err.orig_exc from None
        raise


def _syntax_error(err: UnexpectedInput, text: str) -> FormulaError:
    expected = sorted(_TERMINALS.get(t, t) for t in (getattr(err, "expected", None) or
                                                     getattr(err, "allowed", None) or ()))
    if _ARROW.search(text[:max(getattr(err, "pos_in_stream", 0) or 0, 0)]):
        expected = [e for e in expected if e != _TERMINALS["ARROW"]] or ["the end"]
    hint = f"; expected {', '.join(dict.fromkeys(expected))}" if expected else ""
    if isinstance(err, UnexpectedEOF) or getattr(err, "column", -1) in (None, -1):
        return FormulaError(f"the statement ends early{hint}", column=len(text) + 1, text=text)
    if isinstance(err, UnexpectedCharacters):
        word = _WORD.match(text, err.pos_in_stream)
        what = repr(word.group() if word else text[err.pos_in_stream])
        hint += suggest(word.group(), _WORDS) if word else ""
    elif err.token.type == "$END":
        return FormulaError(f"the statement ends early{hint}", column=len(text) + 1, text=text)
    else:
        what = repr(str(err.token))
    return FormulaError(f"unexpected {what}{hint}", column=err.column, text=text)
