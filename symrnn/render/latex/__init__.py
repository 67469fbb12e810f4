"""LaTeX output: standalone derivation documents and notebook rendering.

:mod:`.sections` (model, unrolled graph, ∂L_3/∂W), :mod:`.bptt` (rolled
recurrence, truncation, clipping, bounds) and :mod:`.document` (the article,
pdflatex, the standard set; import its names from there).  Importing this
package registers ``_repr_latex_`` on the engine's :class:`Derivation`,
:class:`Recurrence` and :class:`Unrolled`, so the engine never imports its
renderer.
"""

from symrnn.engine.derive import Derivation, Recurrence, Unrolled
from symrnn.render.latex.document import repr_latex

for _cls in (Derivation, Recurrence, Unrolled):
    _cls._repr_latex_ = repr_latex
