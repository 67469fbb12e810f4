"""LaTeX output: standalone derivation documents and notebook rendering.

:mod:`.sections` (model, unrolled graph, ∂L_3/∂W), :mod:`.bptt` (rolled
recurrence, truncation, clipping, bounds) and :mod:`.document` (the article,
pdflatex, the standard set).  Importing this package registers
``_repr_latex_`` on the engine's :class:`Derivation`, :class:`Recurrence`
and :class:`Unrolled`, so the engine never imports its renderer.
"""

from symrnn.engine.derive import Derivation, Recurrence, Unrolled
from symrnn.render.latex.document import (
    STANDARD_DOCUMENTS,
    LatexError,
    StandardDocument,
    command_for,
    compile_pdf,
    derivation_to_latex,
    render_png,
    report_section,
    repr_latex,
    write_document,
    write_standard_documents,
)

__all__ = [
    "LatexError",
    "StandardDocument",
    "STANDARD_DOCUMENTS",
    "derivation_to_latex",
    "command_for",
    "compile_pdf",
    "render_png",
    "write_document",
    "write_standard_documents",
    "repr_latex",
    "report_section",
]

for _cls in (Derivation, Recurrence, Unrolled):
    _cls._repr_latex_ = repr_latex
