"""The ``symrnn`` command group; every subcommand module registers on it."""

from __future__ import annotations

import click

from symrnn.cli.common import SymrnnGroup

__all__ = ["cli"]


@click.group(cls=SymrnnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="symrnn")
def cli() -> None:
    """symrnn: backpropagation through time, derived and checked by machine."""
