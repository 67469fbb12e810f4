"""The main job: ``symrnn report`` writes everything symrnn knows about a spec.

A report is a list of sections; each capability adds one function to
``SECTIONS``.  A section receives the spec and the output folder, may write
files there, and returns Markdown-ish text that is printed and saved in
``report.md``.

The folder is written all or nothing: the sections write into a temporary
folder (a sibling of ``out``, or inside it when ``out`` already exists) and
only when every section has succeeded are the files moved into ``out`` (one
rename for a new folder, one per file otherwise; files of ``out`` that the
report does not write are left alone).  A failure leaves ``out`` as it was.
The temporary folder's name is replaced by ``out`` in every text the sections
wrote, so paths in ``report.md`` and the ``.tex`` header name the real folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from symrnn.checks.verify import codegen_section
from symrnn.engine.derive import derive
from symrnn.formula.report import formula_section
from symrnn.nn.training import training_section
from symrnn.regimes.section import regimes_section
from symrnn.render.describe import recurrence_text, unrolled_text
from symrnn.render.files import atomic_folder
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
    ("training", training_section),
]


TEXT_SUFFIXES = (".md", ".txt", ".tex", ".json", ".py")


def _retarget(text: str, tmp: Path, out: Path) -> str:
    """Name ``out`` wherever ``text`` names the temporary folder."""
    final = "" if str(out) == "." else f"{out}/"
    return text.replace(f"{tmp}/", final).replace(str(tmp), str(out))


def write_report(spec: Spec, out: Path, *, echo: Callable[[str], None] = print) -> Path:
    """Run every section for ``spec``; write ``out/report.md``; return its path."""
    out = Path(out)
    parts = []
    with atomic_folder(out) as tmp:
        for _name, section in SECTIONS:
            text = _retarget(section(spec, tmp), tmp, out)
            echo(text)
            echo("")
            parts.append(text)
        (tmp / "report.md").write_text("# symrnn report\n\n" + "\n\n".join(parts) + "\n")
        for path in tmp.rglob("*"):
            if path.suffix in TEXT_SUFFIXES and path.is_file():
                try:
                    text = path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    continue
                if str(tmp) in text:
                    path.write_text(_retarget(text, tmp, out), encoding="utf-8")
    return out / "report.md"
