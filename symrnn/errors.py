"""The exception hierarchy of symrnn: one place, one base class.

Every error a user can trigger derives from :class:`SymrnnError`, so the CLI
can turn it into a one-line message and exit code 2 without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "SymrnnError",
    "SpecError",
    "ShapeError",
    "MissingRuleError",
    "FormulaError",
    "InputError",
    "LimitError",
    "OutputError",
    "suggest",
]


class SymrnnError(Exception):
    """Base class of every error symrnn raises on purpose."""


class SpecError(SymrnnError, ValueError):
    """A model specification names an unknown value or an invalid combination."""


class ShapeError(SymrnnError, ValueError):
    """Two matrix expressions are not conformable; the message names both shapes."""


class MissingRuleError(SymrnnError, NotImplementedError):
    """The derivation engine met an operation that has no derivative rule."""


class FormulaError(SymrnnError, ValueError):
    """A user formula could not be parsed or does not type-check."""

    def __init__(self, message: str, *, column: int | None = None, text: str | None = None):
        self.column = column
        self.text = text
        self.message = message
        if column is not None and text is not None:
            pointer = " " * (column - 1) + "^"
            message = f"{message}\n  {text}\n  {pointer}"
        super().__init__(message)


class InputError(SymrnnError, ValueError):
    """A command-line argument is out of range: the message names it, its value and the rule."""


class LimitError(InputError):
    """An argument exceeds a resource cap (``--max-T``, ``--max-size``, memory)."""


class OutputError(SymrnnError, OSError):
    """An output could not be written; the previous file, if any, is left as it was."""


def suggest(value: str, allowed: Iterable[str]) -> str:
    """Return "; did you mean 'x'?" for the closest allowed name, or ""."""
    close = difflib.get_close_matches(str(value), list(allowed), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
