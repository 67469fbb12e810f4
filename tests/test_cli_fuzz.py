"""Fuzz every subcommand: no input crashes, nothing runs unbounded.

Hypothesis draws argument vectors from each command's own options with hostile
values (sizes 0, negative, huge, non-numeric; T; paths '', folders, missing,
under a file, with a newline; non-finite numbers; formula text) and asserts
that every call exits 0, 1 or 2, never with an unhandled exception or a
traceback, within a time bound.  Small caps (``--max-T``, ``--max-size``,
``--max-batch``, ``--max-seeds``) are passed first so that accepted calls stay
small; a cap the draw overrides later is still one of the drawn values.
``report``'s sections are replaced by a quick one: its fuzz target is the
argument layer, the sections have their own tests.
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symrnn.cli import cli

SCRATCH = Path(tempfile.mkdtemp(prefix="symrnn-fuzz-"))
(SCRATCH / "folder").mkdir()
(SCRATCH / "file.txt").write_text("not toml {")
(SCRATCH / "bad.toml").write_bytes(b'cell = "\xff"\n')
(SCRATCH / "good.toml").write_text('[spec]\nhidden_size = 2\nactivation = "relu"\n')
(SCRATCH / "huge.toml").write_text("[spec]\nhidden_size = 10000000\n")
(SCRATCH / "w.npz").write_bytes(b"PK\x03\x04 not really a zip")

PATHS = ["", str(SCRATCH / "folder"), str(SCRATCH / "missing.toml"), str(SCRATCH / "file.txt"),
         str(SCRATCH / "bad.toml"), str(SCRATCH / "good.toml"), str(SCRATCH / "huge.toml"),
         str(SCRATCH / "w.npz"), str(SCRATCH / "file.txt" / "under"), str(SCRATCH / "a\nb")]
OUTPUTS = ["", str(SCRATCH / "folder"), str(SCRATCH / "file.txt" / "x.py"),
           str(SCRATCH / "a\nb.tex"), str(SCRATCH / "out" / "new" / "x.tex"),
           str(SCRATCH / "o.py"), str(SCRATCH / "p.png"), str(SCRATCH / "p.jpgx"),
           str(SCRATCH / "p.svg"), str(SCRATCH / "rows.json")]
INTS = ["0", "-1", "1", "2", "3", "7", "100000", "99999999999999999999", "abc", "", "1.5",
        "-0", " 2", "H"]
FLOATS = ["0", "-1", "1", "0.5", "2.5", "1e309", "inf", "-inf", "nan", "abc", "", "1e-300"]
LISTS = ["0.5,1.1", "1", "0", "inf", "nan", "", ",", "1,x", "-1", "1e309", "0.9,0.9,0.9"]
TBPTT = ["2,2", "1,3", "3,2", "0,1", "2", "a,b", "", "1,2,3", "-1,-1", "99999999999,1"]
CHOICE_VALUES = ["elman", "lstm", "gru", "tanh", "relu", "sigmoid", "identity", "softmax",
                 "mse", "cross_entropy", "many_to_one", "many_to_many", "bogus", ""]
FORMULAS = [r"\frac{\partial L_3}{\partial V} = -(y_3 - \hat{y}_3) h_3^\top",
            "dL/dV = sum_t e_t h_t^T", "dL/dW = 0", "(" * 300, "dL/dV = " + "(" * 300,
            "", "\\frac{", "dL/dV = e_t @ @ h_t", "δ_t = W^T δ_{t+1}", "\x00\n\t",
            "dL/dh_0 = W^T (delta_1 * (1 - h_1^2))", "x" * 2000]

SPEC = {"--cell": CHOICE_VALUES, "--activation": CHOICE_VALUES, "--head": CHOICE_VALUES,
        "--loss": CHOICE_VALUES, "--topology": CHOICE_VALUES, "--hidden-size": INTS,
        "--input-size": INTS, "--output-size": INTS, "--no-bias": None, "--spec": PATHS,
        "--max-size": INTS, "--layout": CHOICE_VALUES, "--num-layers": INTS}

OPTIONS: dict[str, dict[str, list[str] | None]] = {
    "derive": {**SPEC, "--T": INTS, "--max-T": INTS, "--format": ["text", "json", "latex", "x"],
               "--aliases": None},
    "check": {**SPEC, "--T": INTS, "--max-T": INTS, "--wrt": ["W", "V", "W_hh", "h_0", "x", ""],
              "--seed": INTS, "--json": None, "--latex": None},
    "codegen": {**SPEC, "--backend": ["numpy", "torch", "jax"], "--tbptt": TBPTT,
                "--clip": FLOATS, "--clip-value": FLOATS, "-o": OUTPUTS},
    "latex": {**SPEC, "-o": OUTPUTS, "--aliases": None, "--hadamard": ["odot", "circ", "x"],
              "--tbptt": TBPTT, "--pdf": None, "--png": None},
    "verify": {**SPEC, "--backend": ["numpy", "torch", "x"], "--T": INTS, "--max-T": INTS,
               "--batch": INTS, "--max-batch": INTS, "--dtype": ["float32", "float64", "x"],
               "--seed": INTS, "--tbptt": TBPTT, "--clip": FLOATS, "--clip-value": FLOATS,
               "--json": None, "--max-gflop": INTS},
    "regimes": {**SPEC, "--T": INTS, "--max-T": INTS,
                "--family": ["gaussian", "orthogonal", "nonnormal", "x"], "--radii": LISTS,
                "--seeds": INTS, "--max-seeds": INTS, "--json": OUTPUTS, "--plot": OUTPUTS,
                "--clip": FLOATS, "--weights": PATHS, "--input-scale": FLOATS,
                "--compare-activations": None, "--max-gflop": INTS},
    "report": {**SPEC, "-o": OUTPUTS, "--max-gflop": INTS},
}

# Caps first (a later drawn value overrides them); hidden size small by default.
SMALL = {"derive": ["--max-T", "6", "--max-size", "6"],
         "check": ["--max-T", "4", "--max-size", "4"],
         "codegen": ["--max-size", "6"],
         "latex": ["--max-size", "6"],
         "verify": ["--max-T", "8", "--max-batch", "3", "--max-size", "6", "--T", "4",
                    "--batch", "2"],
         "regimes": ["--max-T", "30", "--max-seeds", "2", "--max-size", "8", "--radii", "0.9",
                     "--T", "10", "--seeds", "1"],
         "report": ["--max-size", "6"]}

# A drawn cap may be a huge value: keep the work bounded by overriding only downwards.
_CAP_OPTIONS = {"--max-T", "--max-size", "--max-batch", "--max-seeds", "--max-gflop"}

TIME_LIMIT = 20.0
"""Seconds one call may take (also hypothesis's deadline): generous for a loaded CI machine
whose first call imports torch; a typical call takes well under a second."""


def _token(name: str, values: list[str] | None):
    if values is None:
        return st.just([name])
    listed = st.sampled_from(values)
    return st.one_of(listed, listed, listed, st.text(max_size=8)).map(lambda v: [name, v])


def _argv(command: str):
    options = OPTIONS[command]
    pair = st.sampled_from(sorted(options)).flatmap(lambda n: _token(n, options[n]))
    extra = st.lists(pair, max_size=5).map(lambda pairs: [t for p in pairs for t in p])
    junk = st.sampled_from([[]] * 8 + [[t] for t in ("--bogus", "-x", "--", "extra", "--help",
                                                     "-o")])
    head = [command]
    if command == "check":
        formula = st.one_of(st.sampled_from(FORMULAS), st.text(max_size=30))
        return st.tuples(formula, extra, junk).map(
            lambda t: [command, t[0], *SMALL[command], *_bounded(t[1]), *t[2]])
    return st.tuples(extra, junk).map(lambda t: [*head, *SMALL[command], *_bounded(t[0]), *t[1]])


def _bounded(tokens: list[str]) -> list[str]:
    """Drop drawn cap overrides that would raise a cap (keeps every call small)."""
    out: list[str] = []
    skip = False
    for i, token in enumerate(tokens):
        if skip:
            skip = False
            continue
        if token in _CAP_OPTIONS and i + 1 < len(tokens):
            value = tokens[i + 1].strip()
            if value.isascii() and value.isdigit() and int(value) > 8:
                skip = True
                continue
        out.append(token)
    return out


@pytest.fixture(autouse=True)
def _in_a_scratch_folder(tmp_path_factory, monkeypatch):
    """Fuzzed output paths are relative: they land in a temporary folder, not the checkout."""
    monkeypatch.chdir(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(autouse=True)
def _quick_report(monkeypatch):
    import symrnn.report as report

    def section(spec, out):
        (out / "spec.txt").write_text(str(spec.to_dict()) + "\n")
        return f"## Spec\n\n{spec.to_dict()}"

    monkeypatch.setattr(report, "SECTIONS", [("spec", section)])


def _check(argv: list[str]) -> None:
    start = time.perf_counter()
    result = CliRunner().invoke(cli, argv)
    elapsed = time.perf_counter() - start
    shown = [a if len(a) < 60 else a[:60] + "..." for a in argv]
    assert result.exit_code in (0, 1, 2), (shown, result.exit_code, result.output[-500:])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        (shown, repr(result.exception))
    assert "Traceback" not in result.output, (shown, result.output[-2000:])
    assert "internal error" not in result.stderr, (shown, result.stderr)
    if result.exit_code == 2 and "--help" not in argv:
        lines = result.stderr.splitlines()
        assert lines and lines[-1].startswith("symrnn: error: "), (shown, result.stderr)
        assert len([ln for ln in lines if ln.startswith("symrnn: error:")]) == 1, shown
    assert elapsed < TIME_LIMIT, (shown, elapsed)


EXAMPLES = {"derive": 300, "check": 200, "codegen": 200, "latex": 150, "verify": 120,
            "regimes": 120, "report": 150}


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_fuzz_command(command):
    @settings(max_examples=EXAMPLES[command], deadline=timedelta(seconds=TIME_LIMIT),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(_argv(command))
    def fuzz(argv):
        _check(argv)

    fuzz()


@pytest.mark.parametrize("argv", [
    ["derive", "--T", "3"], ["derive", "--aliases", "--format", "json"],
    ["check", "dL/dV = sum_t e_t h_t^T"], ["codegen", "--tbptt", "2,3", "--clip", "1"],
    ["latex", "--hadamard", "circ"], ["verify", "--T", "4", "--batch", "2"],
    ["regimes", "--T", "12", "--seeds", "1", "--radii", "0.9,1.1"],
])
def test_valid_calls_still_work(argv):
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
