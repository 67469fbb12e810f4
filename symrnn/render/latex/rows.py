"""Fitting displays to the page: a width estimate for math, and sums broken over rows.

The documents load amsmath only, so a long sum is broken by hand: :func:`equation_rows`
prints ``lhs &= t_1 + t_2`` and continues with ``&\\quad + t_3`` rows whenever the
estimated width would pass :data:`BUDGET_EM`.  :func:`tex_width` estimates the width of
a math string in em (11 pt: the 16.5 cm text is about 42.7 em), from glyph classes:
letters, binary operators with their spacing, relations, scripts at 70 %, fractions as
their wider part.  It errs on the wide side; the compile test of ``derivations/``
checks that no display runs into the margin.
"""

from __future__ import annotations

import re

from sympy import MatAdd, MatMul
from sympy.matrices.expressions.hadamard import HadamardProduct

from symrnn.engine.expr import matmul
from symrnn.render.printing import negative_part

__all__ = ["BUDGET_EM", "tex_width", "equation_rows", "pack"]

BUDGET_EM = 36.0
"""Width for one display row (the text is ~42.7 em; the rest is a safety margin)."""

_TOKEN = re.compile(r"\\[a-zA-Z]+|\\.|[{}_^]|[^\\{}_^]", re.S)
_WIDTHS = {
    "+": 1.2, "-": 1.2, "=": 1.3, "(": 0.4, ")": 0.4, "[": 0.3, "]": 0.3, ",": 0.3,
    ";": 0.3, ".": 0.3, ":": 0.5, "|": 0.3, " ": 0.0, "&": 0.0, "'": 0.3, "/": 0.5,
    r"\odot": 1.2, r"\circ": 1.0, r"\cdot": 0.8, r"\times": 1.2, r"\le": 1.3,
    r"\approx": 1.3, r"\to": 1.3, r"\in": 1.2, r"\leftarrow": 1.6, r"\mapsto": 1.6,
    r"\tanh": 1.8, r"\sigma": 0.6, r"\sum": 1.5, r"\prod": 1.5, r"\bigodot": 1.5,
    r"\quad": 1.0, r"\qquad": 2.0, r"\,": 0.17, r"\;": 0.28, r"\ ": 0.33, r"\!": -0.17,
    r"\\": 0.0, r"\top": 0.8, r"\left": 0.0, r"\right": 0.0, r"\big": 0.0, r"\Big": 0.0,
    r"\bigl": 0.0, r"\bigr": 0.0, r"\Bigl": 0.0, r"\Bigr": 0.0, r"\lVert": 0.5,
    r"\rVert": 0.5, r"\lvert": 0.3, r"\rvert": 0.3, r"\partial": 0.6, r"\dots": 1.2,
    r"\cdots": 1.2, r"\mathrel": 0.0, r"\colon": 0.3, r"\textstyle": 0.0,
}
_ACCENTS = {r"\hat", r"\bar", r"\overline", r"\tilde", r"\mathbf", r"\operatorname",
            r"\text", r"\textbf", r"\texttt", r"\underbrace", r"\mathrm"}
_FRACTIONS = {r"\frac": 1.0, r"\tfrac": 0.7}
_LETTER = 0.55


def _parse(tokens: list[str], i: int = 0) -> tuple[list, int]:
    """Tokens → nested lists (one per ``{...}`` group), up to the closing brace."""
    items: list = []
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok == "{":
            group, i = _parse(tokens, i)
            items.append(group)
        elif tok == "}":
            return items, i
        else:
            items.append(tok)
    return items, i


def _item(item, scale: float) -> float:
    if isinstance(item, list):
        return _width(item, scale)
    return scale * _WIDTHS.get(item, _LETTER)


def _width(items: list, scale: float) -> float:
    total, i, last_script = 0.0, 0, 0.0
    while i < len(items):
        tok = items[i]
        if tok in ("_", "^") and i + 1 < len(items):
            w = _item(items[i + 1], scale * 0.7)
            total += max(0.0, w - last_script)  # sub- and superscript stack
            last_script = max(w, last_script)
            i += 2
            continue
        last_script = 0.0
        if isinstance(tok, list):
            total += _width(tok, scale)
            i += 1
            continue
        if tok in _FRACTIONS and i + 2 < len(items):
            s = scale * _FRACTIONS[tok]
            total += max(_item(items[i + 1], s), _item(items[i + 2], s)) + 0.2 * scale
            i += 3
            continue
        if tok in (r"\begin", r"\end") and i + 1 < len(items):
            i += 2
            continue
        total += 0.0 if tok in _ACCENTS else _item(tok, scale)
        i += 1
    return total


def tex_width(tex: str) -> float:
    """Estimated width of a math-mode string, in em."""
    items, _ = _parse(_TOKEN.findall(tex))
    return _width(items, 1.0)


def _signed(expr) -> list[tuple[str, object]]:
    """(sign, positive term) of a sum, positive terms first, as the printer orders them."""
    terms = list(expr.args) if isinstance(expr, MatAdd) else [expr]
    terms.sort(key=lambda term: negative_part(term) is not None)
    out = []
    for k, term in enumerate(terms):
        negated = negative_part(term)
        out.append(("- ", negated) if negated is not None else ("+ " if k else "", term))
    return out


def _term_tex(sign: str, term, tex) -> str:
    """``+ t`` or ``- t``; a subtracted sum in brackets, as the printer writes it."""
    body = _wrapped(term, tex) if sign == "- " and isinstance(term, MatAdd) else tex(term)
    return sign + body


def _wrapped(expr, tex) -> str:
    text = tex(expr)
    compound = (MatAdd, MatMul, HadamardProduct)
    return rf"\left({text}\right)" if isinstance(expr, compound) else text


def _flat(expr) -> list:
    if isinstance(expr, HadamardProduct):
        return [a for arg in expr.args for a in _flat(arg)]
    return [expr]


def _split_product(term, tex, hadamard: str, budget: float | None = None) -> list[str] | None:
    """A wide ``A (a ⊙ b ⊙ …) B`` as pieces ``A \\Bigl(a``, ``⊙ b``, …, ``⊙ z \\Bigr) B``;
    with a ``budget``, a piece still wider than it (a long sum inside the product) is split
    again the same way."""
    coeff, mats = term.as_coeff_matrices() if isinstance(term, MatMul) else (1, [term])
    inner = [i for i, m in enumerate(mats) if isinstance(m, (HadamardProduct, MatAdd))]
    if not inner:
        return _factors(coeff, mats, tex) if len(mats) > 1 else None
    i = max(inner, key=lambda k: tex_width(tex(mats[k])))
    if isinstance(mats[i], MatAdd):
        pieces = [p for sign, t in _signed(mats[i])
                  for p in _again(_term_tex(sign, t, tex), t, sign, tex, hadamard, budget)]
    else:
        pieces = [p for a in _flat(mats[i])
                  for p in _again(_wrapped(a, tex), a, "", tex, hadamard, budget, wrap=True)]
        pieces = pieces[:1] + [p if p.startswith("&") else f"{hadamard} {p}"
                               for p in pieces[1:]]
        pieces = [p.removeprefix("&") for p in pieces]
    before = tex(matmul(coeff, *mats[:i])) if i or coeff != 1 else ""
    after = tex(matmul(*mats[i + 1:])) if i + 1 < len(mats) else ""
    open_, close = (r"\Bigl(", r"\Bigr)") if before or after else ("", "")
    pieces[0] = " ".join(p for p in (before, open_, pieces[0]) if p)
    pieces[-1] = " ".join(p for p in (pieces[-1], close, after) if p)
    return pieces


def _again(text: str, expr, sign: str, tex, hadamard: str, budget: float | None,
           wrap: bool = False) -> list[str]:
    """``text`` as one piece, or, when wider than ``budget`` and itself a product or a sum,
    its own pieces (a bracketed sum as ``\\Bigl(`` … ``\\Bigr)``; continuation pieces of
    an elementwise factor marked ``&`` so that no ⊙ is put in front of them)."""
    if budget is None or tex_width(text) <= budget or \
            not isinstance(expr, (MatAdd, MatMul, HadamardProduct)):
        return [text]
    if isinstance(expr, MatAdd):
        inner = [p for s, t in _signed(expr)
                 for p in _again(_term_tex(s, t, tex), t, s, tex, hadamard, budget)]
        if wrap or sign == "- ":
            inner[0], inner[-1] = r"\Bigl( " + inner[0], inner[-1] + r" \Bigr)"
    else:
        inner = _split_product(expr, tex, hadamard, budget)
        if inner is None:
            return [text]
        if wrap:
            inner[0], inner[-1] = r"\Bigl( " + inner[0], inner[-1] + r" \Bigr)"
        inner[0] = sign + inner[0]
    return inner[:1] + ["&" + p for p in inner[1:]] if wrap else inner


def _factors(coeff, mats: list, tex) -> list[str]:
    """A wide product of plain factors as one piece per factor (juxtaposition may break)."""
    pieces = [tex(m) if not isinstance(m, (HadamardProduct, MatAdd)) else _wrapped(m, tex)
              for m in mats]
    if coeff != 1:
        pieces[0] = tex(matmul(coeff, mats[0]))
    return pieces


def _pieces(expr, tex, hadamard: str, budget: float) -> list[list[str]]:
    """The signed terms of ``expr``, one group each; a term wider than ``budget`` is split
    inside its product into several pieces."""
    out = []
    for sign, term in _signed(expr):
        text = _term_tex(sign, term, tex)
        split = _split_product(term, tex, hadamard, budget) if tex_width(text) > budget \
            else None
        out.append([text] if split is None else [sign + split[0]] + split[1:])
    return out


def pack(first: str, groups: list[list[str]], budget: float = BUDGET_EM) -> list[str]:
    r"""Rows ``first term term …`` then ``&\quad term …``: as many terms per row as fit in
    ``budget`` (continuation rows measured with ``first``'s width in front).  A term in
    several pieces gets rows of its own, its continuations indented further."""
    rows: list[str] = []
    row, offset, empty = first, 0.0, True

    def flush(indent: str):
        nonlocal row, offset, empty
        rows.append(row)
        row, offset, empty = indent, tex_width(first), True

    for group in groups:
        if len(group) > 1 and not empty:
            flush(r"&\quad")
        for k, piece in enumerate(group):
            if not empty and tex_width(f"{row} {piece}") + offset > budget:
                flush(r"&\qquad" if k else r"&\quad")
            row, empty = f"{row} {piece}", False
        if len(group) > 1:
            flush(r"&\quad")
    if not empty:
        rows.append(row)
    return rows


def equation_rows(lhs: str, expr, tex, budget: float = BUDGET_EM, rel: str = "&=",
                  hadamard: str = r"\odot") -> list[str]:
    """``lhs &= expr`` as one row, or broken after whole terms (and inside a term's
    elementwise product when one term alone is too wide)."""
    head = " ".join(part for part in (lhs, rel) if part)
    if expr is None:
        return [f"{head} 0"]
    one = f"{head} {tex(expr)}"
    if tex_width(one) <= budget:
        return [one]
    return pack(head, _pieces(expr, tex, hadamard, budget - tex_width(head)), budget)
