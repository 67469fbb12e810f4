"""Startup stays light: ``symrnn --help`` and ``symrnn derive`` load neither torch nor matplotlib.

Each check runs in a fresh interpreter and inspects ``sys.modules`` after the
command; the lazy command table must list every command with its own help.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import click
import pytest

HEAVY = ("torch", "matplotlib")

PROBE = """
import json, sys
from symrnn.cli import main
try:
    main({args!r})
except SystemExit as exit:
    code = exit.code
else:
    code = 0
print("\\n" + json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""


def _modules_after(args: list[str]) -> tuple[int, set[str]]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True,
                         text=True, timeout=120, check=True)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    return record["code"], set(record["modules"])


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.mark.parametrize("args", [["--help"], ["derive"], ["derive", "--help"],
                                  ["verify", "--help"], ["regimes", "--help"],
                                  ["report", "--help"]])
def test_no_heavy_imports(args):
    code, modules = _modules_after(args)
    assert code == 0
    assert not _heavy(modules), f"symrnn {' '.join(args)} imported {_heavy(modules)[:5]}"


def test_help_imports_no_command_module_and_no_sympy():
    code, modules = _modules_after(["--help"])
    assert code == 0
    commands = {m for m in modules if m.startswith("symrnn.cli.") and m != "symrnn.cli.app"}
    assert not commands, commands
    assert "sympy" not in modules


def test_import_symrnn_is_light():
    code = "import json, sys, symrnn; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=120, check=True)
    loaded = set(json.loads(out.stdout))
    assert not _heavy(loaded) and "sympy" not in loaded


def test_lazy_names_resolve_and_register_repr_latex():
    import symrnn

    for name in symrnn.__all__:
        assert getattr(symrnn, name) is not None
    # a fresh process, the notebook route: nothing but the package root imported
    code = "import symrnn; print(symrnn.derive(symrnn.DEFAULT_SPEC)._repr_latex_()[:17])"
    out = subprocess.run([sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "$$\\begin{aligned}"


def test_lazy_table_matches_the_commands():
    from symrnn.cli import cli
    from symrnn.cli.app import COMMANDS

    ctx = click.Context(cli)
    for name, (_module, _attr, short) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
        assert short == command.help.strip().splitlines()[0], name


def test_hardcoded_choices_match_the_library():
    from symrnn.checks.verify import TOLERANCES
    from symrnn.cli.latex import HADAMARD_NAMES
    from symrnn.cli.verify import BACKEND_NAMES, DTYPES
    from symrnn.codegen import BACKENDS
    from symrnn.render.latex.document import HADAMARD

    assert BACKEND_NAMES == tuple(sorted(BACKENDS))
    assert DTYPES == tuple(sorted(TOLERANCES))
    assert HADAMARD_NAMES == tuple(sorted(HADAMARD))


def test_plot_formats_are_what_matplotlib_writes():
    matplotlib = pytest.importorskip("matplotlib")
    from matplotlib.backend_bases import FigureCanvasBase

    from symrnn.cli.io import PLOT_FORMATS

    assert matplotlib is not None
    supported = set(FigureCanvasBase.get_supported_filetypes())
    assert set(PLOT_FORMATS) <= supported, set(PLOT_FORMATS) - supported


def test_help_starts_fast():
    """Median of 5 wall times of ``python -m symrnn --help`` (generous bound for CI)."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "symrnn", "--help"], capture_output=True,
                       timeout=60, check=True)
        times.append(time.perf_counter() - start)
    assert sorted(times)[2] < 1.0, times
