"""The committed documents of derivations/: no drift, and every one compiles.

Drift: regenerating the standard documents must give the committed .tex
byte for byte (regenerate with ``python -m symrnn.render.latex --all derivations``).
Compilation: pdflatex -halt-on-error in a temporary folder, no overfull
boxes, page 1 rendered to PNG.  Without pdflatex/pdftoppm the compile test
is skipped with a message.  The documents of the composed architectures (bidirectional,
one-to-many with feedback, encoder–decoder) are checked for what they must show, against
strings typed here and the engine's own expressions (their formulas against finite
differences: tests/test_render_architectures.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from symrnn.engine.derive import derive_recurrence
from symrnn.render.latex.document import STANDARD_DOCUMENTS, render_png, write_standard_documents
from symrnn.render.printing import latex

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


# ------------------------------------------------------------ the composed architectures

ARCHITECTURE_DOCUMENTS = {
    "elman_bidirectional_2layer_mse": dict(bidirectional=True, num_layers=2),
    "elman_one_to_many_feedback": dict(topology="one_to_many", feed="feedback"),
    "lstm_encoder_decoder_mse": dict(cell="lstm", topology="encoder_decoder"),
}


def _document(name: str) -> tuple[str, object]:
    (doc,) = [d for d in STANDARD_DOCUMENTS if d.name == name]
    return (FOLDER / f"{name}.tex").read_text(), doc.spec


def _math(tex: str) -> list[str]:
    return re.findall(r"\$[^$]*\$", tex) + re.findall(
        r"\\begin\{align\*\}.*?\\end\{align\*\}", tex, flags=re.S)


@pytest.mark.parametrize("name", ARCHITECTURE_DOCUMENTS)
def test_architecture_documents_are_standard_and_print_no_raw_suffix(name):
    tex, spec = _document(name)
    for field, value in ARCHITECTURE_DOCUMENTS[name].items():
        assert getattr(spec, field) == value
    assert r"\section{The rolled BPTT recurrence (every $T$)}" in tex
    raw = [m for m in _math(tex) if re.search(r"(?<!\\texttt\{)\b[a-zA-Z]+_(l1|dec|rev)", m)]
    assert not raw, raw[:2]


def test_bidirectional_document_runs_the_reverse_adjoints_forward():
    tex, spec = _document("elman_bidirectional_2layer_mse")
    rec = derive_recurrence(spec)
    assert r"\delta^{\overleftarrow{h}^{(2)}}_{0} &= 0" in tex
    assert r"\delta^{h^{(2)}}_{T+1} &= 0" in tex
    assert r"\frac{\partial L}{\partial \overleftarrow{h}_{T+1}}" in tex
    assert latex(rec.cross["h"]) in tex  # the cross-layer term, as the engine derives it
    assert r"\bigl[\delta^{\overleftarrow{h}}_{t}\bigr]_{\text{step } t-1} &= " in tex
    order = tex[tex.index(r"\begin{gathered}"):tex.index(r"\end{gathered}")]
    reverse_top = r"\delta^{\overleftarrow{h}^{(2)}}_{"
    steps = [order[i + len(reverse_top)] for i in range(len(order))
             if order.startswith(reverse_top, i)]
    assert steps == ["1", "2", "3"]


def test_feedback_document_shows_the_fed_back_path_and_every_feed():
    tex, spec = _document("elman_one_to_many_feedback")
    assert r"\frac{\partial L}{\partial x_{t+1}} &= W_{xh}^{\top} \left(\delta_{t+1}" in tex
    assert r"\operatorname{diag}\left(\hat{y}_{t} \odot \left(\mathbf{1} - \hat{y}_{t}" in tex
    for feed in ("zeros", "repeat", "feedback"):
        assert rf"feed \texttt{{{feed}}}" in tex
    zeros = derive_recurrence(spec.replace(feed="zeros")).first_step["W_xh"]
    assert rf"\frac{{\partial L}}{{\partial W_{{xh}}}} &= {latex(zeros)}" in tex


def test_encoder_decoder_document_reaches_the_encoder_through_the_context():
    tex, spec = _document("lstm_encoder_decoder_mse")
    rec = derive_recurrence(spec)
    assert "checked: the same expressions" in tex and "MISMATCH" not in tex
    assert (r"\delta^{c}_{T} = \frac{\partial L}{\partial {c^{\mathrm{dec}}_{0}}} &= "
            + latex(rec.final["c"])) in tex
    assert r"{h^{\mathrm{dec}}_{0}} &= h_{T}" in tex
    assert r"\delta^{h^{\mathrm{dec}}}_{T_{\mathrm{out}}+1} &= 0" in tex
    assert r"\sum_{t=1}^{T_{\mathrm{out}}}" in tex and r"\delta^{h}_{T+1}" not in tex
