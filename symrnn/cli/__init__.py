"""The ``symrnn`` command line: a thin shell over the library.

Each subcommand lives in its own module of this package and parses options,
makes one library call and formats the result.  The modules are imported on
use (:data:`symrnn.cli.app.COMMANDS`), so ``symrnn --help`` loads neither
SymPy, torch nor matplotlib.  Every error prints one line,
``symrnn: error: ...``, and exits 2; a failed check exits 1.
"""

from __future__ import annotations

import sys

from symrnn.cli.app import cli

__all__ = ["main", "cli"]


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="symrnn")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
