"""The ``symrnn`` command line: a thin shell over the library.

Each subcommand lives in its own module of this package and parses options,
makes one library call and formats the result.  Errors that symrnn raises on
purpose (:class:`~symrnn.errors.SymrnnError`) print one line and exit 2;
a failed check exits 1.
"""

from __future__ import annotations

import sys

from symrnn.cli.app import cli

__all__ = ["main", "cli"]

# Subcommands register themselves on import; one line per command module.
from symrnn.cli import check as _check  # noqa: E402,F401
from symrnn.cli import codegen as _codegen  # noqa: E402,F401
from symrnn.cli import derive as _derive  # noqa: E402,F401
from symrnn.cli import latex as _latex  # noqa: E402,F401
from symrnn.cli import regimes as _regimes  # noqa: E402,F401
from symrnn.cli import report as _report  # noqa: E402,F401
from symrnn.cli import verify as _verify  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="symrnn")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
