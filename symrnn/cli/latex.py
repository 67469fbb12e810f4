"""``symrnn latex``: write the LaTeX derivation of a spec (and its PDF)."""

from __future__ import annotations

from pathlib import Path

import click

from symrnn.cli.app import cli
from symrnn.cli.common import UserError, spec_options
from symrnn.render.latex.document import HADAMARD, command_for, derivation_to_latex, write_document
from symrnn.render.printing import Notation


def _parse_tbptt(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise UserError(f"--tbptt expects two positive integers 'k1,k2', got {value!r}")
    return int(parts[0]), int(parts[1])


@cli.command("latex")
@spec_options
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the document to FILE.tex (default: print it).")
@click.option("--pdf", is_flag=True, help="Also compile FILE.pdf with pdflatex (needs -o).")
@click.option("--png", is_flag=True, help="Also render page 1 to FILE.png (needs -o).")
@click.option("--aliases", is_flag=True, help="Name parameters W, U, b, V, c as the seed notes.")
@click.option("--hadamard", type=click.Choice(sorted(HADAMARD)), default="odot",
              show_default=True, help="Symbol of the elementwise product.")
@click.option("--tbptt", metavar="K1,K2", help="Add a worked truncated-BPTT window.")
def latex_command(spec, output, pdf, png, aliases, hadamard, tbptt) -> None:
    """Write a standalone LaTeX derivation of BPTT for a spec."""
    notation = Notation(aliases=aliases, hadamard=HADAMARD[hadamard])
    window = _parse_tbptt(tbptt)
    if output is None:
        if pdf or png:
            raise UserError("--pdf and --png need -o FILE.tex")
        click.echo(derivation_to_latex(spec, notation, tbptt=window), nl=False)
        return
    command = command_for(spec, notation, window, output)
    for path in write_document(spec, Path(output), notation, tbptt=window, pdf=pdf, png=png,
                               command=command):
        click.echo(f"wrote {path}")
