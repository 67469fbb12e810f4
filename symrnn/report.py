"""The main job: ``symrnn report`` writes everything symrnn knows about a spec.

A report is a list of sections; each capability adds one function to
``SECTIONS``.  A section receives the spec and the output folder, may write
files there, and returns Markdown-ish text that is printed and saved in
``report.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from symrnn.checks.verify import codegen_section
from symrnn.engine.derive import derive
from symrnn.formula.report import formula_section
from symrnn.regimes.section import regimes_section
from symrnn.render.describe import recurrence_text, unrolled_text
from symrnn.render.latex.document import report_section as latex_section
from symrnn.spec import Spec

__all__ = ["SECTIONS", "write_report"]

Section = Callable[[Spec, Path], str]


def derivation_section(spec: Spec, out: Path) -> str:
    derivation = derive(spec)
    body = recurrence_text(derivation.recurrence) + "\n\n" + unrolled_text(derivation.unrolled(3))
    (out / "derivation.txt").write_text(body + "\n")
    return "## Derivation\n\n" + body


SECTIONS: list[tuple[str, Section]] = [
    ("derivation", derivation_section),
    ("latex", latex_section),
    ("regimes", regimes_section),
    ("formula check", formula_section),
    ("codegen", codegen_section),
]


def write_report(spec: Spec, out: Path, *, echo: Callable[[str], None] = print) -> Path:
    """Run every section for ``spec``; write ``out/report.md``; return its path."""
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for _name, section in SECTIONS:
        text = section(spec, out)
        echo(text)
        echo("")
        parts.append(text)
    path = out / "report.md"
    path.write_text("# symrnn report\n\n" + "\n\n".join(parts) + "\n")
    return path
