"""LaTeX output: standalone derivation documents and notebook rendering.

:mod:`.sections` (model, torch's stacks, unrolled graph, ∂L_3/∂W), :mod:`.gates`
(rule applications, step Jacobians, direct paths), :mod:`.bptt` (rolled recurrence,
truncation, clipping, bounds), :mod:`.architectures` (bidirectional, one-to-many and
encoder–decoder networks), :mod:`.rows` (breaking long displays) and
:mod:`.document` (the article, pdflatex, the standard set; import its names from
there).  Every cell is written by the same sections, read from the network.  Importing this
package registers ``_repr_latex_`` on the engine's :class:`Derivation`,
:class:`Recurrence` and :class:`Unrolled`, so the engine never imports its
renderer.
"""

from symrnn.engine.derive import Derivation, Recurrence, Unrolled
from symrnn.render.latex.document import repr_latex

for _cls in (Derivation, Recurrence, Unrolled):
    _cls._repr_latex_ = repr_latex
