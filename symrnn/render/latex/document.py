"""LaTeX documents of a derivation: write, compile, render; the standard set.

``derivation_to_latex(derivation_or_spec, notation)`` returns a standalone
``article`` (packages: amsmath, amssymb only) whose every equation is printed
from the engine's expressions, for every cell (Elman, LSTM, both GRUs): see
:mod:`symrnn.render.latex.sections` (model, torch's stacks, unrolled graph),
:mod:`symrnn.render.latex.gates` (rule applications, step Jacobians, direct paths) and
:mod:`symrnn.render.latex.bptt` (recurrence, truncation, clipping, bound) for the
sections; :data:`SECTIONS` is their order.  A composed network (bidirectional,
one_to_many, encoder_decoder) gets :data:`ARCHITECTURE_SECTIONS` instead: its own
sections from :mod:`symrnn.render.latex.architectures`, then the rolled recurrence.  The
file starts with a header
comment: the command that made it, the spec, the symrnn version and
"generated; do not edit".  Column vectors throughout.

``compile_pdf`` runs ``pdflatex -halt-on-error -interaction=nonstopmode`` in
a temporary folder with ``SOURCE_DATE_EPOCH`` fixed (stable PDFs);
``render_png`` turns page 1 into a PNG with ``pdftoppm``.  Both raise
:class:`LatexError` (a :class:`~symrnn.errors.SymrnnError`) when the tool is
missing or fails.

The standard documents in ``derivations/`` are :data:`STANDARD_DOCUMENTS`;
regenerate them with ``python -m symrnn.render.latex --all derivations``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from symrnn.engine.derive import Derivation, Recurrence, Unrolled, derive
from symrnn.errors import SpecError, SymrnnError
from symrnn.render.files import atomic_path, atomic_write_text
from symrnn.render.latex import architectures, bptt, gates, sections
from symrnn.render.latex.bptt import recurrence_rows
from symrnn.render.latex.sections import Context, aligned
from symrnn.render.printing import PLAIN, Notation, latex, symbol_latex
from symrnn.render.recurrence import is_composed
from symrnn.spec import DEFAULT_SPEC, Spec

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

PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage{amsmath}
\usepackage{amssymb}
\setlength{\textwidth}{16.5cm}
\setlength{\oddsidemargin}{0cm}
\setlength{\evensidemargin}{0cm}
\setlength{\textheight}{23cm}
\setlength{\topmargin}{-1.5cm}
\setlength{\parindent}{0pt}
\setlength{\parskip}{0.5em}
\allowdisplaybreaks
"""
SECTIONS = [
    sections.conventions_section,
    sections.model_section,
    sections.torch_section,
    sections.unrolled_section,
    sections.output_gradient_section,
    sections.recurrent_gradient_section,
    gates.derivation_section,
    bptt.recurrence_section,
    gates.jacobian_section,
    gates.direct_path_section,
    bptt.tbptt_section,
    bptt.clipping_section,
    bptt.bound_section,
]
"""Every section, in document order; a section that does not apply to the cell returns ""."""
ARCHITECTURE_SECTIONS = [
    *architectures.SECTIONS,
    bptt.recurrence_section,
    bptt.clipping_section,
]
"""The sections of a composed network (bidirectional, one_to_many, encoder_decoder): its
names and steps, what is particular to it, the rolled recurrence; the single-chain
sections (the ∂L_3/∂W_hh expansion, step Jacobians, truncation, the bound) are left out."""
TOPOLOGY_TITLES = {"one_to_many": "one-to-many, feed {feed}", "encoder_decoder":
                   "encoder-decoder"}
CELL_TITLES = {"elman": "Elman RNN", "lstm": "LSTM", "gru": "GRU (reset after the product)",
               "gru_v1": "GRU v1 (reset before the product)"}
"""How a title names each cell (others: the cell's name)."""
HADAMARD = {"odot": r"\odot", "circ": r"\circ"}
SOURCE_DATE_EPOCH = "0"


def _version() -> str:
    from symrnn.version import __version__

    return __version__


class LatexError(SymrnnError, RuntimeError):
    """pdflatex or pdftoppm is missing, or failed on a document."""


def _one_line(text: str) -> str:
    """``text`` safe for a ``%`` comment: control characters (newlines too) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _spec_line(spec: Spec) -> str:
    return " ".join(f"{k}={v}" for k, v in spec.to_dict().items())


def command_for(spec: Spec, notation: Notation = PLAIN, tbptt: tuple[int, int] | None = None,
                output: str | None = None) -> str:
    """The ``symrnn latex`` invocation that writes this document (non-default flags only)."""
    parts = ["symrnn latex"]
    for key, value in spec.to_dict().items():
        if value != getattr(DEFAULT_SPEC, key):
            flag = f"--{key.replace('_', '-')}"
            parts.append("--no-bias" if key == "bias" else flag if value is True
                         else f"{flag} {value}")
    if notation.aliases:
        parts.append("--aliases")
    name = {v: k for k, v in HADAMARD.items()}.get(notation.hadamard, notation.hadamard)
    if name != "odot":
        parts.append(f"--hadamard {name}")
    if tbptt is not None:
        parts.append(f"--tbptt {tbptt[0]},{tbptt[1]}")
    if output is not None:
        parts.append(f"-o {output}")
    return " ".join(parts)


def _check_tbptt(tbptt) -> tuple[int, int] | None:
    if tbptt is None:
        return None
    if len(tbptt) != 2 or any(isinstance(k, bool) or not isinstance(k, int) or k < 1
                              for k in tbptt):
        raise SpecError(f"tbptt must be two positive integers (k1, k2), got {tbptt!r}")
    return (tbptt[0], tbptt[1])


def _title(spec: Spec) -> str:
    topology = TOPOLOGY_TITLES.get(spec.topology, spec.topology.replace("_", "-"))
    topology = topology.format(feed=spec.feed)
    loss = {"mse": "squared error", "cross_entropy": "cross-entropy"}[spec.loss]
    cell = CELL_TITLES.get(spec.cell, spec.cell.replace("_", r"\_"))
    layers = f", {spec.num_layers} layers" if spec.num_layers > 1 else ""
    layers += ", bidirectional" if spec.bidirectional else ""
    return (rf"Backpropagation through time: {cell}{layers}\\ \large "
            rf"{spec.activation} activation, {spec.head} head, {loss}, {topology}")


def _body(ctx: Context) -> str:
    """Every section that applies, in order; a section's SpecError names the section."""
    out = []
    for section in ARCHITECTURE_SECTIONS if is_composed(ctx.spec) else SECTIONS:
        try:
            text = section(ctx)
        except SpecError as err:
            name = section.__name__.removesuffix("_section").replace("_", " ")
            raise SpecError(f"cannot write the LaTeX document of cell {ctx.spec.cell!r} "
                            f"({name} section): {err}") from err
        if text:
            out.append(text)
    return "\n".join(out)


def derivation_to_latex(derivation_or_spec: Derivation | Spec, notation: Notation = PLAIN, *,
                        tbptt: tuple[int, int] | None = None, command: str | None = None) -> str:
    """A full standalone LaTeX document of the derivation, every formula from the engine."""
    if isinstance(derivation_or_spec, Spec):
        derivation = derive(derivation_or_spec)
    elif isinstance(derivation_or_spec, Derivation):
        derivation = derivation_or_spec
    else:
        raise SpecError(f"expected a Derivation or a Spec, got {type(derivation_or_spec).__name__}")
    spec = derivation.spec
    tbptt = _check_tbptt(tbptt)
    ctx = Context(spec, derivation.recurrence, notation, tbptt)
    header = [
        f"% generated by symrnn {_version()}; do not edit",
        f"% command: {_one_line(command or command_for(spec, notation, tbptt))}",
        f"% spec: {_one_line(_spec_line(spec))}",
        f"% notation: aliases={notation.aliases} hadamard={notation.hadamard}"
        + (f" tbptt={tbptt[0]},{tbptt[1]}" if tbptt else ""),
    ]
    body = _body(ctx)
    return (
        "\n".join(header) + "\n" + PREAMBLE
        + f"\\title{{{_title(spec)}}}\n\\author{{symrnn {_version()}}}\n\\date{{}}\n"
        + "\\begin{document}\n\\maketitle\n" + body + "\\end{document}\n"
    )


# ------------------------------------------------------------------ tools


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise LatexError(f"{name} not found; install a TeX toolchain "
                         "(bash scripts/ensure-latex.sh)")
    return path


def compile_pdf(tex: Path, pdf: Path | None = None, *, timeout: float = 120) -> Path:
    """pdflatex ``tex`` in a temporary folder; write the PDF to ``pdf`` (default: beside it)."""
    tex = Path(tex)
    pdf = Path(pdf) if pdf is not None else tex.with_suffix(".pdf")
    env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH, FORCE_SOURCE_DATE="1")
    with tempfile.TemporaryDirectory(prefix="symrnn-latex-") as tmp:
        shutil.copyfile(tex, Path(tmp) / "doc.tex")
        cmd = [_tool("pdflatex"), "-halt-on-error", "-interaction=nonstopmode",
               "-no-shell-escape", "doc.tex"]
        result = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if result.returncode != 0:
            tail = "\n".join(result.stdout.splitlines()[-15:])
            raise LatexError(f"pdflatex failed on {tex} (exit {result.returncode}):\n{tail}")
        with atomic_path(pdf) as part:
            shutil.copyfile(Path(tmp) / "doc.pdf", part)
    return pdf


def render_png(pdf: Path, png: Path | None = None, *, dpi: int = 100) -> Path:
    """Page 1 of ``pdf`` as a PNG (pdftoppm); default: beside the PDF."""
    pdf = Path(pdf)
    png = Path(png) if png is not None else pdf.with_suffix(".png")
    with atomic_path(png) as part:
        cmd = [_tool("pdftoppm"), "-png", "-r", str(dpi), "-f", "1", "-l", "1", "-singlefile",
               str(pdf), str(part.with_suffix(""))]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0 or not part.stat().st_size:
            raise LatexError(f"pdftoppm failed on {pdf}: {result.stderr.strip()}")
    return png


def write_document(spec: Spec, path: Path, notation: Notation = PLAIN, *,
                   tbptt: tuple[int, int] | None = None, pdf: bool = False,
                   png: bool = False, command: str | None = None) -> list[Path]:
    """Write the .tex (and with ``pdf``/``png`` its PDF and page-1 PNG); return the paths."""
    path = Path(path)
    command = command or command_for(spec, notation, tbptt, str(path))
    atomic_write_text(path, derivation_to_latex(spec, notation, tbptt=tbptt, command=command))
    out = [path]
    if pdf or png:
        out.append(compile_pdf(path))
    if png:
        out.append(render_png(out[-1]))
    return out


# ------------------------------------------------------------ standard set


@dataclass(frozen=True)
class StandardDocument:
    """One committed document of ``derivations/``."""

    name: str
    spec: Spec
    notation: Notation = PLAIN
    tbptt: tuple[int, int] | None = None

    def command(self, folder: str = "derivations") -> str:
        return command_for(self.spec, self.notation, self.tbptt, f"{folder}/{self.name}.tex")


STANDARD_DOCUMENTS: tuple[StandardDocument, ...] = (
    StandardDocument("elman_tanh_mse", DEFAULT_SPEC, Notation(aliases=True)),
    StandardDocument("elman_many_to_one_softmax_ce", DEFAULT_SPEC.replace(
        topology="many_to_one", head="softmax", loss="cross_entropy")),
    StandardDocument("elman_linear", DEFAULT_SPEC.replace(activation="identity")),
    StandardDocument("elman_tanh_tbptt", DEFAULT_SPEC, tbptt=(2, 2)),
    StandardDocument("lstm_mse", DEFAULT_SPEC.replace(cell="lstm")),
    StandardDocument("gru_mse", DEFAULT_SPEC.replace(cell="gru")),
    StandardDocument("gru_v1_mse", DEFAULT_SPEC.replace(cell="gru_v1")),
    StandardDocument("elman_2layer_mse", DEFAULT_SPEC.replace(num_layers=2, hidden_size=2)),
    StandardDocument("elman_bidirectional_2layer_mse", DEFAULT_SPEC.replace(
        bidirectional=True, num_layers=2, hidden_size=2)),
    StandardDocument("elman_one_to_many_feedback", DEFAULT_SPEC.replace(
        topology="one_to_many", feed="feedback", head="sigmoid")),
    StandardDocument("lstm_encoder_decoder_mse", DEFAULT_SPEC.replace(
        cell="lstm", topology="encoder_decoder", hidden_size=2)),
)


def write_standard_documents(folder: Path, *, pdf: bool = True, png: bool = True) -> list[Path]:
    """Write every standard document into ``folder`` (with PDF and PNG by default)."""
    folder = Path(folder)
    out: list[Path] = []
    for doc in STANDARD_DOCUMENTS:
        out += write_document(doc.spec, folder / f"{doc.name}.tex", doc.notation,
                              tbptt=doc.tbptt, pdf=pdf, png=png,
                              command=doc.command(folder.name or "."))
    return out


# ------------------------------------------------------------ notebook, report


def repr_latex(obj: Derivation | Recurrence | Unrolled, notation: Notation = PLAIN) -> str:
    """``$$\\begin{aligned}…\\end{aligned}$$`` for Jupyter's ``_repr_latex_``."""
    if isinstance(obj, Derivation):
        obj = obj.recurrence
    if isinstance(obj, Recurrence):
        rows = recurrence_rows(Context(obj.spec, obj, notation))
    elif isinstance(obj, Unrolled):
        rows = [rf"{latex(s, notation)} &= {latex(x, notation) if x is not None else '0'}"
                for s, x in obj.definitions]
        rows += [rf"\frac{{\partial L}}{{\partial {symbol_latex(k, notation)}}} &= "
                 rf"{latex(x, notation) if x is not None else '0'}"
                 for k, x in obj.gradients.items()]
    else:
        raise SpecError(f"expected a Derivation, Recurrence or Unrolled, got {type(obj).__name__}")
    return "$$" + aligned(rows) + "$$"


def report_section(spec: Spec, out: Path) -> str:
    """Report: the spec's .tex, and its PDF when pdflatex is installed."""
    tex = out / "derivation.tex"
    try:
        write_document(spec, tex, command=command_for(spec, output=str(tex)))
    except SpecError as err:
        return f"## LaTeX derivation\n\nnot written: {err}"
    lines = ["## LaTeX derivation", "", f"- LaTeX source: {tex}"]
    try:
        lines.append(f"- PDF: {compile_pdf(tex)}")
    except LatexError as err:
        lines.append(f"- PDF: not built ({str(err).splitlines()[0]})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symrnn.render.latex",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--all", metavar="FOLDER", default="derivations",
                        help="write every standard document into FOLDER")
    parser.add_argument("--tex-only", action="store_true", help="skip PDF and PNG")
    args = parser.parse_args(argv)
    try:
        paths = write_standard_documents(Path(args.all), pdf=not args.tex_only,
                                         png=not args.tex_only)
    except SymrnnError as err:
        parser.exit(2, f"symrnn: error: {err}\n")
    for path in paths:
        print(path)
    return 0

