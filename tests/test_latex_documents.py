"""The committed documents of derivations/: no drift, and every one compiles.

Drift: regenerating the standard documents must give the committed .tex
byte for byte (regenerate with ``python -m symrnn.render.latex --all derivations``).
Compilation: pdflatex -halt-on-error in a temporary folder, no overfull
boxes, page 1 rendered to PNG.  Without pdflatex/pdftoppm the compile test
is skipped with a message.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from symrnn.render.latex.document import STANDARD_DOCUMENTS, render_png, write_standard_documents

FOLDER = Path(__file__).resolve().parent.parent / "derivations"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _committed() -> list[Path]:
    return sorted(FOLDER.glob("*.tex"))


def test_committed_set_is_the_standard_set():
    assert {p.stem for p in _committed()} == {d.name for d in STANDARD_DOCUMENTS}
    for tex in _committed():
        assert tex.with_suffix(".pdf").is_file(), f"missing PDF beside {tex.name}"
        assert tex.with_suffix(".png").read_bytes().startswith(PNG_MAGIC)


def test_no_drift(tmp_path):
    fresh = write_standard_documents(tmp_path / "derivations", pdf=False, png=False)
    assert len(fresh) == len(STANDARD_DOCUMENTS)
    for path in fresh:
        committed = FOLDER / path.name
        assert path.read_text() == committed.read_text(), (
            f"{committed} drifted from the engine; regenerate with "
            "`python -m symrnn.render.latex --all derivations`"
        )


def _need_tools() -> None:
    missing = [tool for tool in ("pdflatex", "pdftoppm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (run bash scripts/ensure-latex.sh); "
                    "LaTeX documents were not compiled")


@pytest.mark.parametrize("name", [d.name for d in STANDARD_DOCUMENTS])
def test_document_compiles_and_renders(name, tmp_path):
    _need_tools()
    shutil.copyfile(FOLDER / f"{name}.tex", tmp_path / f"{name}.tex")
    result = subprocess.run(
        ["pdflatex", "-halt-on-error", "-interaction=nonstopmode", "-no-shell-escape",
         f"{name}.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    log = (tmp_path / f"{name}.log").read_text(errors="replace")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "Overfull \\hbox" not in log, "an equation runs past the margin"
    assert "Undefined control sequence" not in log
    png = render_png(tmp_path / f"{name}.pdf")
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
