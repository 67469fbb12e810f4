"""Time budgets for the open-ended parts of a check (symbolic comparison, diagnosis).

A :class:`Budget` is a deadline checked between steps, never a thread or a
signal: the work in progress finishes its current step, then stops and says
what it skipped.  ``Budget(None)`` never runs out.
"""

from __future__ import annotations

import math
import time

from symrnn.errors import SymrnnError

__all__ = ["Budget", "BudgetExceeded", "DEFAULT_BUDGET_S"]

DEFAULT_BUDGET_S = 5.0
"""Seconds of symbolic work (comparison, diagnosis) one check may spend."""


class BudgetExceeded(SymrnnError):
    """Raised between steps of budgeted work when the deadline has passed."""


class Budget:
    """A deadline ``seconds`` from now (None: unlimited)."""

    def __init__(self, seconds: float | None = DEFAULT_BUDGET_S):
        if seconds is not None:
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
                    math.isnan(seconds) or seconds < 0:
                raise ValueError(f"budget_s must be a non-negative number of seconds or None, "
                                 f"got {seconds!r}")
        self.seconds = seconds
        self._deadline = math.inf if seconds is None else time.monotonic() + float(seconds)

    @property
    def exceeded(self) -> bool:
        return time.monotonic() >= self._deadline

    def check(self) -> None:
        if self.exceeded:
            raise BudgetExceeded(self.reason)

    @property
    def reason(self) -> str:
        return f"budget {self.seconds:g} s exceeded"
