"""The closed grammar of the formula language (LaTeX notation and its plain-text twin).

One LALR grammar (lark) reads both spellings; nothing is ever evaluated:

==================  ===============================  ===========================
meaning             LaTeX                            plain text
==================  ===============================  ===========================
per-step symbol     ``h_t``, ``h_{t-1}``, ``\\hat{y}_3``  ``h_t``, ``yhat_{t+1}``
adjoint             ``\\delta_{t+1}``                   ``delta_{t+1}``
parameter           ``W_{hh}``, ``W``, ``U``, ``V``    ``W_hh``, ``b_h``
transpose           ``^T``, ``^\\top``, ``^{\\mathsf T}``  ``.T``
matrix product      juxtaposition, ``\\cdot``          ``@``
Hadamard product    ``\\odot``, ``\\circ``               ``*``
activation          ``\\tanh``, ``\\sigma``, ``f'(a_t)``  ``tanh(.)``, ``f'(.)``
diagonal matrix     ``\\operatorname{diag}(v)``        ``diag(v)``
sums / products     ``\\sum_{t=1}^{T}``, ``\\prod_{j=k+1}^{t}``  ``sum_t``, ``prod_{j=1}^{t}``
left-hand side      ``\\frac{\\partial L_3}{\\partial V}``  ``dL/dW_hh``
                    ``\\nabla_{W_{hh}} L``
fonts (dropped)     ``\\mathbf{W}_\\textrm{hh}``, ``\\bm``,  ``W_hh``, ``h_t``
                    ``\\boldsymbol{h}_t``, ``\\vec``
matrix power        ``(W^T)^{t-k}``, ``W^k``, ``W^3``   ``W^{t-k}``
gate adjoint        ``\\delta^{f}_t``, ``\\delta^{(f)}_t``  ``delta^f_t``
adjoint, Jacobian   ``\\frac{\\partial L}{\\partial h_t}``,  ``dL/dh_t``, ``dh_t/dh_j``
                    ``\\frac{\\partial h_t}{\\partial h_{t-1}}``
loss declaration    ``L = \\frac{1}{T}\\sum_{t=1}^{T} L_t``  ``L = sum_t L_t / T``
new name            ``let dz_t = …``                    ``let M = W_hh``
==================  ===============================  ===========================

All products (juxtaposition, ``\\cdot``, ``@``, ``\\odot``, ``*``, ``/``) share one
precedence and group from the left, as in NumPy; a sum's body extends to the
end of the term.  Statements are separated by ``;``, ``,``, ``\\\\`` or newlines;
``let NAME_t = …`` (``let`` first in a statement) makes the word NAME one symbol
throughout the formula: the way to name a quantity this grammar has no word for.
Sub- and superscripts are single tokens; :mod:`symrnn.formula.parse` reads
their contents with small regular expressions (never ``eval``).
"""

from __future__ import annotations

from functools import lru_cache

from lark import Lark

__all__ = ["GRAMMAR", "parser", "TERMINAL_NAMES"]

GRAMMAR = r"""
start: _SEP* statement (_SEP+ statement)* _SEP*

?statement: expr "=" expr   -> equation
          | LET expr "=" expr -> let_equation
          | expr            -> bare

?expr: expr "+" term        -> add
     | expr "-" term        -> sub
     | term

?term: "-" term             -> neg
     | "+" term
     | product

?product: chain
        | chain bigop       -> jux
        | chain MULOP bigop -> binop
        | bigop

?chain: chain postfix       -> jux
      | chain MULOP postfix -> binop
      | postfix

bigop: BIGOP SUBSCRIPT? SUPERSCRIPT? term

?postfix: postfix SUBSCRIPT      -> subscript
        | postfix SUPERSCRIPT    -> superscript
        | postfix DOT_T          -> dot_t
        | postfix PRIME          -> prime
        | atom

?atom: NAME                       -> name
     | GREEK                      -> greek
     | NUMBER                     -> number
     | HAT atom                   -> hat
     | FONT atom                  -> group
     | NABLA SUBSCRIPT atom       -> nabla
     | "(" expr ")"               -> group
     | "[" expr "]"               -> group
     | "{" expr "}"               -> group
     | FRAC "{" expr "}" "{" expr "}" -> frac
     | FRAC_DIGITS                -> frac_digits
     | PARTIAL postfix            -> partial
     | FUNC "(" expr ")"          -> call
     | FUNC SUPERSCRIPT "(" expr ")" -> call_power
     | FUNC "[" expr "]"          -> call
     | DFUNC "(" expr ")"         -> dcall

MULOP: "@" | "*" | "/" | "\\cdot" | "\\odot" | "\\circ"
BIGOP.3: /\\(sum|prod)(?![A-Za-z])/ | /(sum|prod)(?![A-Za-z])/
FUNC.3: /\\(tanh|sigma)(?![A-Za-z])/
      | /\\(mathrm|operatorname|text|textrm|mathit)\s*\{\s*(softmax|ReLU|relu|diag)\s*\}/
      | /\\(mathrm|operatorname|text|textrm|mathit)\s*\{\s*(tanh|sigmoid)\s*\}/
      | /(tanh|sigmoid|softmax|relu|diag)(?![A-Za-z_'])/
DFUNC.4: /(\\(tanh|sigma)|tanh|sigmoid|relu|[fg])\s*'/
       | /\\(mathrm|operatorname)\s*\{\s*(ReLU|relu)\s*\}\s*'/
FONT.2: /\\(mathrm|mathbf|textrm|text|mathit|boldsymbol|bm|mathsf|vec|mathcal)(?![A-Za-z])/
HAT.2: /\\(hat|widehat)(?![A-Za-z])/
GREEK.2: /\\delta(?![A-Za-z])/
FRAC.2: /\\[td]?frac(?![A-Za-z])/
FRAC_DIGITS.3: /\\[td]?frac\s*[0-9][0-9]/
PARTIAL.2: /\\partial(?![A-Za-z])/
NABLA.2: /\\nabla(?![A-Za-z])/
LET.5: /let(?![A-Za-z])/
NAME: /[A-Za-z]+/
NUMBER: /[0-9]+(\.[0-9]+)?/
SUBSCRIPT: /_(\{([^{}]|\{[^{}]*\})*\}|[0-9]+|[A-Za-z]+|\\[A-Za-z]+\s*\{[^{}]*\})/
SUPERSCRIPT: /\^(\{([^{}]|\{[^{}]*\})*\}|\\[A-Za-z]+|[A-Za-z0-9])/
DOT_T.2: /\.T(?![A-Za-z0-9_])/
PRIME: "'"
_SEP: ";" | "," | /\n/ | "\\\\"

SPACE: /[ \t\r\f]+/ | /\\[,;:! ]/ | /\\q?quad(?![A-Za-z])/ | "&"
     | /\\(left|right|bigl|bigr|Bigl|Bigr|big|Big)(?![A-Za-z])/
%ignore SPACE
"""

TERMINAL_NAMES = {
    "MULOP": "an operator (@, *, /, \\cdot, \\odot)",
    "BIGOP": "\\sum or \\prod",
    "FUNC": "a function (\\tanh, \\sigma, softmax, ReLU, diag)",
    "DFUNC": "a derivative such as f'(",
    "FONT": "\\mathrm{...}",
    "HAT": "\\hat",
    "GREEK": "\\delta",
    "FRAC": "\\frac",
    "FRAC_DIGITS": "\\frac12",
    "PARTIAL": "\\partial",
    "NABLA": "\\nabla",
    "LET": "let",
    "NAME": "a symbol",
    "NUMBER": "a number",
    "SUBSCRIPT": "a subscript",
    "SUPERSCRIPT": "a superscript",
    "DOT_T": ".T",
    "PRIME": "'",
    "_SEP": "a separator (; or newline)",
    "EQUAL": "'='",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "$END": "the end of the formula",
}


@lru_cache(maxsize=1)
def parser() -> Lark:
    """The LALR parser (built once)."""
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=False)
