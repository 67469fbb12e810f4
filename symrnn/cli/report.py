"""``symrnn report``: the main job, every capability on one spec."""

from __future__ import annotations

from pathlib import Path

import click

from symrnn.cli.app import cli
from symrnn.cli.common import spec_options
from symrnn.report import write_report


@cli.command("report")
@spec_options
@click.option("-o", "--output", type=click.Path(file_okay=False), default="report",
              show_default=True, help="Folder for the report and its files.")
def report_command(spec, output) -> None:
    """Derive, generate, verify and analyse the spec; write a report folder."""
    path = write_report(spec, Path(output), echo=click.echo)
    click.echo(f"report written to {path}")
