"""The result of a check: a frozen :class:`Verdict`, printable as text, JSON or LaTeX.

``status`` is ``"correct"`` or ``"wrong"``.  A wrong verdict carries a
:class:`Counterexample` when the formula evaluates: the concrete instance (every
parameter, input, target and initial state, as nested lists; see
:mod:`symrnn.formula.instance`), the formula's and the true whole matrices and
the worst entry, enough to re-check it without symrnn (``symrnn check --replay
FILE`` re-evaluates it with symrnn).  A non-conformable formula carries the
clashing shapes instead.  Either carries the diagnosis: the classic slips of
:mod:`symrnn.formula.diagnose` that explain it.
``correct`` is the engine's gradient (unrolled, in terms of named adjoints,
with their definitions), the answer a reader should have written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Counterexample", "Verdict"]


@dataclass(frozen=True)
class Counterexample:
    """An instance on which the formula is wrong, with everything needed to re-check it."""

    seed: int
    entry: tuple[int, int]
    """The entry (row, column) with the largest |formula - true|."""
    claimed: float
    true: float
    claimed_matrix: tuple[tuple[float, ...], ...] = ()
    """The formula's whole value on the instance."""
    true_matrix: tuple[tuple[float, ...], ...] = ()
    """The true gradient's whole value on the instance."""
    instance: dict = field(default_factory=dict)
    """{"parameters", "initial_states", "inputs", "targets"} → name → nested list."""
    quantity: str = ""
    wrt: str = ""
    loss_step: int | None = None
    spec: dict = field(default_factory=dict)
    T: int = 0

    def to_text(self, quantity: str, replayable: bool = True) -> str:
        i, j = self.entry
        line = (f"instance seed {self.seed}, entry {quantity}[{i}, {j}]: "
                f"formula = {self.claimed:.6g}, true = {self.true:.6g}")
        if not self.instance:
            return line
        counts = ", ".join(_count(len(v), k.replace("_", " ")) for k, v in self.instance.items()
                           if v)
        shape = f"({len(self.true_matrix)}, {len(self.true_matrix[0])})"
        where = (f"{line}\n    the whole instance ({counts}) and both {shape} matrices: "
                 "--json or to_dict()")
        return where + ("; re-check with 'symrnn check --replay FILE'" if replayable else "")

    def to_dict(self, formula: str | None = None) -> dict[str, Any]:
        """Everything, as JSON-ready data; ``formula`` makes it self-contained for replay."""
        out: dict[str, Any] = {
            "seed": self.seed,
            "entry": list(self.entry),
            "formula_value": self.claimed,
            "true_value": self.true,
        }
        if not self.instance:
            return out
        out.update({
            "claimed": [list(row) for row in self.claimed_matrix],
            "true": [list(row) for row in self.true_matrix],
            "quantity": self.quantity, "wrt": self.wrt, "loss_step": self.loss_step,
            "T": self.T, "spec": dict(self.spec),
            "sizes": {k: self.spec.get(k) for k in ("hidden_size", "input_size",
                                                     "output_size")},
            "instance": {group: {name: [list(row) for row in value]
                                 for name, value in values.items()}
                         for group, values in self.instance.items()},
        })
        if formula is not None:
            out["formula"] = formula
        return out


@dataclass(frozen=True)
class Verdict:
    status: str
    quantity: str
    formula: str
    spec: dict
    T: int
    correct: tuple[str, ...]
    """The correct gradient: first line ∂/∂θ = …, then 'where' definitions."""
    correct_latex: str = ""
    claimed_latex: str = ""
    quantity_latex: str = ""
    definitions_latex: tuple[str, ...] = ()
    """LaTeX of the named adjoints the correct formula uses (e_3 = …, δ_3 = …)."""
    counterexample: Counterexample | None = None
    diagnosis: tuple[tuple[str, str], ...] = ()
    """(class, message) pairs."""
    shape_error: str | None = None
    notes: tuple[str, ...] = ()
    symbolic: str = "not run"
    seeds: tuple[int, ...] = ()
    scalar_case: Verdict | None = field(default=None)
    skipped: tuple[str, ...] = ()
    """What the time budget cut short ('symbolic comparison skipped: budget 5 s exceeded')."""

    @property
    def diagnosis_complete(self) -> bool:
        return not any(s.startswith("diagnosis") for s in self.skipped)

    @property
    def ok(self) -> bool:
        return self.status == "correct"

    def __bool__(self) -> bool:
        return self.ok

    @property
    def diagnosis_classes(self) -> tuple[str, ...]:
        return tuple(kind for kind, _ in self.diagnosis)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "quantity": self.quantity,
            "formula": self.formula,
            "spec": self.spec,
            "T": self.T,
            "seeds": list(self.seeds),
            "counterexample": None if self.counterexample is None
            else self.counterexample.to_dict(self.formula),
            "shape_error": self.shape_error,
            "diagnosis": [{"class": k, "message": m} for k, m in self.diagnosis],
            "correct": list(self.correct),
            "symbolic": self.symbolic,
            "notes": list(self.notes),
            "skipped": list(self.skipped),
            "scalar_case": None if self.scalar_case is None else self.scalar_case.to_dict(),
        }

    def to_text(self, indent: str = "") -> str:
        lines = [f"{self.quantity}: {self.status.upper()} (T = {self.T}, "
                 f"{_spec_line(self.spec)})", f"  formula: {self.formula}"]
        if self.shape_error:
            lines.append(f"  dimensions: {self.shape_error}")
        if self.counterexample is not None:
            lines += ("  counterexample: "
                      + self.counterexample.to_text(self.quantity,
                                                    not self.formula.endswith("(...)"))
                      ).splitlines()
        if self.ok:
            lines.append(f"  numerically equal on instances {list(self.seeds)} "
                         "(float64, rtol 1e-7); symbolic: " + self.symbolic)
        if self.diagnosis:
            lines.append("  diagnosis:")
            lines += [f"    - {message}" for _, message in self.diagnosis]
        elif not self.ok and self.counterexample is not None and self.diagnosis_complete:
            lines.append("  diagnosis: no single classic slip explains the difference")
        elif not self.ok and not self.diagnosis_complete:
            lines.append("  diagnosis: none found before the budget ran out")
        if not self.ok:
            lines.append("  correct:")
            lines += [f"    {line}" for line in self.correct]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  skipped: {s}" for s in self.skipped]
        if self.scalar_case is not None:
            lines.append("  in the scalar case (all sizes 1):")
            lines += ["  " + line for line in self.scalar_case.to_text().splitlines()]
        return "\n".join(indent + line for line in lines)

    def to_latex(self) -> str:
        """A short snippet: the claimed formula, the correct one, the diagnosis."""
        claimed = self.claimed_latex or r"\text{(as written)}"
        rows = [rf"\text{{claimed: }} & {self.quantity_latex} = {claimed}",
                rf"\text{{correct: }} & {self.quantity_latex} = {self.correct_latex}"]
        rows += [rf"& \quad {d}" for d in self.definitions_latex]
        aligned = "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"
        verdict = r"\textbf{correct}" if self.ok else r"\textbf{wrong}"
        items = [_latex_escape(m) for _, m in self.diagnosis]
        if self.shape_error:
            items.insert(0, "dimensions: " + _latex_escape(self.shape_error))
        if self.scalar_case is not None and not self.scalar_case.ok:
            items += ["in the scalar case (all sizes 1): " + _latex_escape(m)
                      for _, m in self.scalar_case.diagnosis]
        body = f"{verdict}\n$$\n{aligned}\n$$"
        if items:
            body += "\n\\begin{itemize}\n" + "\n".join(
                f"  \\item {item}" for item in items) + "\n\\end{itemize}"
        return body


def _count(n: int, plural: str) -> str:
    return f"{n} {plural if n != 1 else plural[:-1]}"


def _spec_line(spec: dict) -> str:
    sizes = f"H={spec['hidden_size']}, D={spec['input_size']}, O={spec['output_size']}"
    return (f"{spec['cell']} {spec['activation']}, head {spec['head']}, loss {spec['loss']}, "
            f"{spec['topology']}, {sizes}")


_ESCAPES = {"_": r"\_", "^": r"\^{}", "{": r"\{", "}": r"\}", "\\": r"\textbackslash{}",
            "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$", "~": r"\~{}",
            "⊙": r"$\odot$", "…": r"\dots{}"}


def _latex_escape(text: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in text)
