"""The ``symrnn`` command group: lazy subcommands and the one error path.

Subcommands are imported on use: :data:`COMMANDS` maps each name to its
module, the attribute holding the :class:`click.Command` and the short help
shown by ``symrnn --help`` (so listing the commands imports none of them,
and neither torch nor matplotlib is loaded before a command needs it).

Every failure leaves through :meth:`SymrnnGroup.invoke` or
:meth:`SymrnnGroup.make_context` and prints one line,
``symrnn: error: ...``, with exit code 2 (exit 1 is reserved for "checked
and wrong": ``symrnn check`` and ``symrnn verify``):

* a :class:`~symrnn.errors.SymrnnError` (bad spec, bad argument, a cap, an
  output that cannot be written);
* a click usage error (bad option value, missing argument, unknown option),
  reformatted from click's three-line block;
* any other exception (an OSError, a bug), prefixed with its type.

``symrnn --debug COMMAND ...`` prints the traceback first.
"""

from __future__ import annotations

import importlib
import sys
import traceback

import click

__all__ = ["cli", "COMMANDS", "SymrnnGroup", "UserError", "one_line"]

COMMANDS: dict[str, tuple[str, str, str]] = {
    "check": ("symrnn.cli.check", "check_command",
              "Check FORMULA (LaTeX or plain text) against the derivation engine."),
    "codegen": ("symrnn.cli.codegen", "codegen_command",
                "Generate a BPTT module (forward, backward, loss_and_grad) from the derivation."),
    "derive": ("symrnn.cli.derive", "derive_command",
               "Derive BPTT for a spec: the rolled recurrence, valid for every T."),
    "latex": ("symrnn.cli.latex", "latex_command",
              "Write a standalone LaTeX derivation of BPTT for a spec."),
    "regimes": ("symrnn.cli.regimes", "regimes_command",
                "Predict vanishing/exploding gradients from the recurrent Jacobian; "
                "measure; compare."),
    "report": ("symrnn.cli.report", "report_command",
               "Derive, generate, verify and analyse the spec; write a report folder."),
    "verify": ("symrnn.cli.verify", "verify_command",
               "Largest relative errors per parameter; exit 1 on a mismatch."),
}
"""name → (module, attribute, short help); the short help is what ``--help`` lists."""


def _short(text: str, limit: int) -> str:
    """``text`` cut at a word to ``limit`` characters with '...', as click lists commands."""
    if len(text) <= limit:
        return text
    cut = text[:max(limit - 3, 1)].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "..."


def one_line(text: str) -> str:
    """Collapse a message to one line: line breaks become '; ', other controls escaped."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    joined = "; ".join(parts)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in joined)


def _message(err: BaseException) -> str:
    """The user-facing text of ``err``, one line (FormulaError: message and column)."""
    column = getattr(err, "column", None)
    base = getattr(err, "message", None)
    if column is not None and isinstance(base, str):
        text = getattr(err, "text", None)
        where = "" if f"column {column}" in base else f" at column {column}"
        return one_line(f"{base}{where} in {text!r}")
    return one_line(str(err))


class UserError(click.ClickException):
    """A failure shown as one line, ``symrnn: error: ...``, exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))

    def show(self, file=None) -> None:
        click.echo(f"symrnn: error: {self.format_message()}", err=True)


def _usage_line(err: click.UsageError) -> str:
    """click's 'Usage: ... / Try ... / Error: ...' block as one line."""
    message = err.format_message().rstrip(".")
    ctx = err.ctx
    if ctx is not None and ctx.command is not None:
        message += f" (see '{ctx.command_path} --help')"
    if message[:1].isupper() and not message[1:2].isupper():
        message = message[0].lower() + message[1:]
    return message


def _debug(ctx: click.Context | None) -> bool:
    while ctx is not None:
        if ctx.params.get("debug"):
            return True
        ctx = ctx.parent
    return False


def _convert(err: BaseException, ctx: click.Context | None) -> click.ClickException:
    """Any exception → the one-line UserError (click's Exit and Abort pass unchanged)."""
    from symrnn.errors import SymrnnError

    if _debug(ctx):
        traceback.print_exception(err, file=sys.stderr)
    if isinstance(err, UserError):
        return err
    if isinstance(err, click.UsageError):
        return UserError(_usage_line(err))
    if isinstance(err, click.ClickException):
        return UserError(err.format_message())
    if isinstance(err, SymrnnError):
        return UserError(_message(err))
    if isinstance(err, MemoryError):
        return UserError("out of memory (MemoryError); lower the sizes, T, batch or seeds")
    if isinstance(err, RecursionError):
        return UserError("input too deeply nested (RecursionError)")
    if isinstance(err, OSError):
        where = f" {err.filename!r}" if getattr(err, "filename", None) else ""
        return UserError(f"{type(err).__name__}{where}: {err.strerror or err}")
    return UserError(f"internal error ({type(err).__name__}): {_message(err)}; rerun with "
                     "'symrnn --debug ...' for the traceback and please report it")


_PASS = (click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt, SystemExit,
         BrokenPipeError, GeneratorExit)


class SymrnnGroup(click.Group):
    """A group whose subcommands are imported on use and whose errors print one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        command = getattr(importlib.import_module(module), attr)
        self.commands[name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List every command from the table, importing none of them."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = [(name, _short(COMMANDS[name][2], limit) if name in COMMANDS
                 else self.commands[name].get_short_help_str(limit)) for name in names]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _PASS:
            raise
        except Exception as err:  # noqa: BLE001 - the one error path
            raise _convert(err, None) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _PASS:
            raise
        except Exception as err:  # noqa: BLE001 - the one error path
            raise _convert(err, ctx) from None


@click.group(cls=SymrnnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="symrnn")
@click.option("--debug", is_flag=True, help="Print the traceback of an error.")
def cli(debug: bool) -> None:
    """symrnn: backpropagation through time, derived and checked by machine."""
