"""Options and error handling shared by every subcommand."""

from __future__ import annotations

import functools
from collections.abc import Callable

import click

from symrnn.errors import SymrnnError
from symrnn.spec import Spec, load_spec

__all__ = ["SymrnnGroup", "spec_options", "T_option", "fail"]


class UserError(click.ClickException):
    """A SymrnnError shown as one line, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"symrnn: error: {self.format_message()}", err=True)


class SymrnnGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SymrnnError as err:
            raise UserError(str(err)) from None


def fail(message: str) -> UserError:
    return UserError(message)


def spec_options(fn: Callable) -> Callable:
    """Add --spec FILE and the per-field flags; pass a validated ``spec`` to ``fn``."""

    @click.option("--spec", "spec_file", type=click.Path(dir_okay=False),
                  help="TOML file with a [spec] table (flags override it).")
    @click.option("--cell", help="elman | lstm | gru")
    @click.option("--activation", help="tanh | relu | sigmoid | identity")
    @click.option("--head", help="identity | sigmoid | softmax")
    @click.option("--loss", help="mse | cross_entropy")
    @click.option("--topology", help="many_to_many | many_to_one")
    @click.option("--hidden-size", help="H: a positive integer or a symbol name")
    @click.option("--input-size", help="D: a positive integer or a symbol name")
    @click.option("--output-size", help="O: a positive integer or a symbol name")
    @click.option("--no-bias", is_flag=True, default=False, help="Drop b_h and b_y.")
    @functools.wraps(fn)
    def wrapper(*args, spec_file, cell, activation, head, loss, topology, hidden_size,
                input_size, output_size, no_bias, **kwargs):
        try:
            spec = load_spec(
                spec_file, cell=cell, activation=activation, head=head, loss=loss,
                topology=topology, hidden_size=hidden_size, input_size=input_size,
                output_size=output_size, bias=False if no_bias else None,
            )
        except SymrnnError as err:
            raise UserError(str(err)) from None
        return fn(*args, spec=spec, **kwargs)

    return wrapper


def T_option(default: int | None = None, help: str = "Sequence length T.") -> Callable:  # noqa: N802
    return click.option("--T", "T", type=int, default=default, show_default=True, help=help)


def describe_spec(spec: Spec) -> str:
    sizes = f"H={spec.hidden_size}, D={spec.input_size}, O={spec.output_size}"
    bias = "" if spec.bias else ", no bias"
    return (f"{spec.cell} {spec.activation}, head {spec.head}, loss {spec.loss}, "
            f"{spec.topology}, {sizes}{bias}")
