"""Options shared by every subcommand: the spec flags, T with its cap, TBPTT, cells."""

from __future__ import annotations

import functools
from collections.abc import Callable

import click

from symrnn.cli.app import SymrnnGroup, UserError
from symrnn.cli.io import MAX_SIZE, MAX_T_NUMERIC, check_sizes, check_T
from symrnn.errors import SpecError
from symrnn.spec import Spec, load_spec

__all__ = ["SymrnnGroup", "UserError", "spec_options", "T_option", "T_out_option", "fail",
           "parse_tbptt", "describe_spec"]


def fail(message: str) -> UserError:
    return UserError(message)


def spec_options(fn: Callable) -> Callable:
    """Add --spec FILE, the per-field flags and --max-size; pass a validated ``spec``."""

    @click.option("--spec", "spec_file", metavar="FILE",
                  help="TOML file with a [spec] table (flags override it).")
    @click.option("--cell", help="elman | lstm | gru | gru_v1 (gru: reset after the recurrent "
                                 "product, torch's; gru_v1: before it, Cho et al.'s)")
    @click.option("--activation", help="tanh | relu | sigmoid | identity")
    @click.option("--head", help="identity | sigmoid | softmax")
    @click.option("--loss", help="mse | cross_entropy")
    @click.option("--topology", help="many_to_many | many_to_one | one_to_many | "
                                     "encoder_decoder")
    @click.option("--feed", help="one_to_many: the inputs after x_1, zeros | repeat | "
                                 "feedback (x_t = yhat_(t-1), needs D = O)")
    @click.option("--bidirectional", is_flag=True, default=None,
                  help="Add a reverse recurrence per layer; the head and the next layer "
                       "read [h_t; h_reverse_t] (torch's bidirectional=True).")
    @click.option("--hidden-size", help="H: a positive integer or a symbol name")
    @click.option("--input-size", help="D: a positive integer or a symbol name")
    @click.option("--output-size", help="O: a positive integer or a symbol name")
    @click.option("--layout", help="notes | torch (torch: two biases per gate, b_x* and b_h*, "
                                   "as torch's bias_ih and bias_hh)")
    @click.option("--num-layers", type=int, default=None,
                  help="Stacked layers, 1 to 8 (layer l reads layer l-1's h_t; the head "
                       "reads the top one).")
    @click.option("--no-bias", is_flag=True, default=False,
                  help="Drop every bias (the cell's and b_y).")
    @click.option("--max-size", type=click.IntRange(min=1), default=MAX_SIZE, show_default=True,
                  help="Refuse hidden/input/output sizes above this.")
    @functools.wraps(fn)
    def wrapper(*args, spec_file, cell, activation, head, loss, topology, hidden_size,
                input_size, output_size, layout, num_layers, no_bias, max_size, feed,
                bidirectional, **kwargs):
        spec = load_spec(
            spec_file, cell=cell, activation=activation, head=head, loss=loss,
            topology=topology, hidden_size=hidden_size, input_size=input_size,
            output_size=output_size, layout=layout, num_layers=num_layers,
            bias=False if no_bias else None, feed=feed, bidirectional=bidirectional,
        )
        check_sizes(spec, max_size)
        return fn(*args, spec=spec, **kwargs)

    return wrapper


def T_option(default: int | None = None, help: str = "Sequence length T.",  # noqa: N802
             max_T: int = MAX_T_NUMERIC, pass_max: bool = False) -> Callable:  # noqa: N803
    """--T (validated: 1 ≤ T ≤ --max-T) and --max-T, its override (passed on as ``max_T``
    with ``pass_max``, for commands whose library call bounds more than T)."""

    def decorate(fn: Callable) -> Callable:
        @click.option("--T", "T", type=int, default=default, show_default=True, help=help)
        @click.option("--max-T", "max_T", type=click.IntRange(min=1), default=max_T,
                      show_default=True, help="Refuse T above this.")
        @functools.wraps(fn)
        def wrapper(*args, T, max_T, **kwargs):  # noqa: N803
            if T is not None:
                T = check_T(T, max_T)
            if pass_max:
                kwargs["max_T"] = max_T
            return fn(*args, T=T, **kwargs)

        return wrapper

    return decorate


def parse_tbptt(value: str | None, option: str = "--tbptt", *,
                single: bool = True) -> tuple[int, int] | None:
    """'k1,k2' → (k1, k2); with ``single`` a lone 'k' means k1 = k2 = k.  The rule
    (1 ≤ k1 ≤ k2) is the code generator's own (:class:`symrnn.codegen.lower.Options`),
    applied by every command."""
    if value is None:
        return None
    expected = "k1,k2 (two positive integers)"
    try:
        numbers = tuple(int(p) for p in value.split(","))
    except ValueError:
        raise UserError(f"{option} expected {expected}, got {value!r}") from None
    if len(numbers) == 1 and single:
        numbers = (numbers[0], numbers[0])
    if len(numbers) != 2:
        raise UserError(f"{option} expected {expected}, got {value!r}")
    from symrnn.codegen.lower import Options

    try:
        Options(tbptt=numbers)
    except SpecError as err:
        raise UserError(f"{option} {value}: {err}") from None
    return numbers



def describe_spec(spec: Spec) -> str:
    sizes = f"H={spec.hidden_size}, D={spec.input_size}, O={spec.output_size}"
    bias = "" if spec.bias else ", no bias"
    layout = ", torch layout" if spec.layout == "torch" else ""
    layers = f", {spec.num_layers} layers" if spec.num_layers > 1 else ""
    both = ", bidirectional" if spec.bidirectional else ""
    feed = f" (feed {spec.feed})" if spec.topology == "one_to_many" else ""
    return (f"{spec.cell} {spec.activation}, head {spec.head}, loss {spec.loss}, "
            f"{spec.topology}{feed}, {sizes}{bias}{layout}{layers}{both}")


def T_out_option(fn: Callable) -> Callable:  # noqa: N802
    """--T-out: an encoder_decoder's decoder steps (default: --T); refused otherwise."""

    @click.option("--T-out", "T_out", type=int, default=None,
                  help="encoder_decoder: the decoder's steps T_y (default: --T, T_x).")
    @functools.wraps(fn)
    def wrapper(*args, T_out, **kwargs):  # noqa: N803
        spec = kwargs.get("spec")
        if T_out is not None:
            if spec is not None and spec.topology != "encoder_decoder":
                raise fail(f"--T-out applies to topology encoder_decoder only (got "
                           f"{spec.topology}); --T sets the sequence length")
            if T_out < 1:
                raise fail(f"--T-out must be a positive integer, got {T_out}")
        return fn(*args, T_out=T_out, **kwargs)

    return wrapper
