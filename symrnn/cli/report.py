"""``symrnn report``: the main job, every capability on one spec."""

from __future__ import annotations

from pathlib import Path

import click

from symrnn.cli.common import spec_options
from symrnn.cli.io import (
    MAX_GFLOP,
    OutputFolder,
    check_memory,
    check_work,
    regimes_bytes,
    regimes_flops,
    verify_bytes,
    verify_flops,
)


@click.command("report")
@spec_options
@click.option("-o", "--output", type=OutputFolder(), default="report", show_default=True,
              help="Folder for the report and its files (created; files appear only when "
              "every section succeeded).")
@click.option("--max-gflop", type=click.IntRange(min=1), default=MAX_GFLOP, show_default=True,
              help="Refuse a report whose estimated work exceeds this many GFLOP.")
def report_command(spec, output, max_gflop) -> None:
    """Derive, generate, verify and analyse the spec; write a report folder."""
    from symrnn.regimes.network import default_hidden
    from symrnn.regimes.sweep import DEFAULT_RADII, DEFAULT_SEEDS, DEFAULT_T
    from symrnn.report import write_report

    if spec.is_concrete:
        H, D, O = spec.hidden_size, spec.input_size, spec.output_size  # noqa: E741,N806
        runs = len(DEFAULT_RADII) * DEFAULT_SEEDS + 4
        rH = default_hidden(spec)  # noqa: N806 - the regimes section's hidden size
        what = f"report for H={H}, D={D}, O={O}"
        check_memory(max(verify_bytes(H, D, O, 20, 3), regimes_bytes(rH, D, O, DEFAULT_T, runs)),
                     what)
        check_work(2 * verify_flops(H, D, O, 20, 3) + regimes_flops(rH, DEFAULT_T, runs),
                   max_gflop, what)
    path = write_report(spec, Path(output), echo=click.echo)
    click.echo(f"report written to {path}")
