"""``symrnn latex``: write the LaTeX derivation of a spec (and its PDF)."""

from __future__ import annotations

from pathlib import Path

import click

from symrnn.cli.common import UserError, parse_tbptt, spec_options
from symrnn.cli.io import OutputFile

HADAMARD_NAMES = ("circ", "odot")


@click.command("latex")
@spec_options
@click.option("-o", "--output", type=OutputFile(),
              help="Write the document to FILE.tex (default: print it); folders are created.")
@click.option("--pdf", is_flag=True, help="Also compile FILE.pdf with pdflatex (needs -o).")
@click.option("--png", is_flag=True, help="Also render page 1 to FILE.png (needs -o).")
@click.option("--aliases", is_flag=True, help="Name parameters W, U, b, V, c as the seed notes.")
@click.option("--hadamard", type=click.Choice(HADAMARD_NAMES), default="odot",
              show_default=True, help="Symbol of the elementwise product.")
@click.option("--tbptt", metavar="K1,K2",
              help="Add a worked truncated-BPTT window (1 <= k1 <= k2, as codegen).")
def latex_command(spec, output, pdf, png, aliases, hadamard, tbptt) -> None:
    """Write a standalone LaTeX derivation of BPTT for a spec."""
    from symrnn.render.latex.document import (
        HADAMARD,
        command_for,
        derivation_to_latex,
        write_document,
    )
    from symrnn.render.printing import Notation

    window = parse_tbptt(tbptt, single=False)
    if output is None and (pdf or png):
        raise UserError("--pdf and --png need -o FILE.tex")
    notation = Notation(aliases=aliases, hadamard=HADAMARD[hadamard])
    if output is None:
        click.echo(derivation_to_latex(spec, notation, tbptt=window), nl=False)
        return
    command = command_for(spec, notation, window, output)
    for path in write_document(spec, Path(output), notation, tbptt=window, pdf=pdf, png=png,
                               command=command):
        click.echo(f"wrote {path}")
