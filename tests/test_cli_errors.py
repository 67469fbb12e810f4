"""One error path: bad input of every class exits 2 with one line ``symrnn: error: ...``.

Each test names one input class.  The assertion is always the same: exit code 2,
exactly one line on stderr, starting with ``symrnn: error:``, naming what was
wrong, and no traceback anywhere; the refused command writes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from symrnn.cli import cli
from symrnn.errors import SpecError
from symrnn.spec import Spec


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def assert_one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("symrnn: error: "), lines[0]
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# ----------------------------------------------------------------- input files


def test_spec_not_utf8(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'cell = "\xff"\n')
    assert_one_line_error(run("derive", "--spec", str(bad)), "not UTF-8", "bad.toml")
    with pytest.raises(SpecError, match="not UTF-8"):
        Spec.from_toml(bad)


def test_nul_in_paths():
    assert_one_line_error(run("derive", "--spec", "a\x00b"), "NUL")
    assert_one_line_error(run("regimes", "--weights", "a\x00b"), "NUL")
    assert_one_line_error(run("latex", "-o", "a\x00b.tex"), "control character")


def test_spec_empty_path():
    assert_one_line_error(run("derive", "--spec", ""), "spec file", "''")


def test_spec_is_a_directory(tmp_path):
    assert_one_line_error(run("derive", "--spec", str(tmp_path)), "is a folder")
    with pytest.raises(SpecError, match="is a folder"):
        Spec.from_toml(tmp_path)


def test_spec_missing(tmp_path):
    assert_one_line_error(run("derive", "--spec", str(tmp_path / "nope.toml")), "not found")


def test_weights_empty_path():
    assert_one_line_error(run("regimes", "--weights", "", "--T", "5"), "--weights", "''")


def test_weights_directory(tmp_path):
    assert_one_line_error(run("regimes", "--weights", str(tmp_path), "--T", "5"), "is a folder")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_input_files_are_refused():
    assert_one_line_error(run("derive", "--spec", "/dev/zero"), "not a regular file")
    assert_one_line_error(run("regimes", "--weights", "/dev/zero"), "not a regular file")


# ---------------------------------------------------------------- output paths


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_device_outputs_are_not_replaced():
    assert_one_line_error(run("codegen", "-o", "/dev/null"), "not a regular file")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


@pytest.mark.parametrize("command", [["codegen", "-o"], ["latex", "-o"], ["report", "-o"],
                                     ["regimes", "--T", "5", "--json"],
                                     ["regimes", "--T", "5", "--plot"]])
def test_output_empty_path(command):
    assert_one_line_error(run(*command, ""), "''")


def test_missing_output_folders_are_created_by_every_command(tmp_path):
    code = tmp_path / "a" / "b" / "m.py"
    tex = tmp_path / "c" / "d" / "d.tex"
    rows = tmp_path / "e" / "rows.json"
    assert run("codegen", "-o", str(code)).exit_code == 0 and code.is_file()
    assert run("latex", "-o", str(tex)).exit_code == 0 and tex.is_file()
    result = run("regimes", "--T", "6", "--seeds", "1", "--radii", "0.9", "--json", str(rows))
    assert result.exit_code == 0, result.output
    assert rows.is_file()


def _unwritable(tmp_path) -> str:
    """A destination that cannot be created: under a file (fails for root too) or in a
    read-only folder (when not root, who ignores permissions)."""
    if os.geteuid() == 0:
        blocker = tmp_path / "somefile"
        blocker.write_text("x")
        return str(blocker / "out")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    return str(folder / "out")


@pytest.mark.parametrize("command,suffix", [(["codegen", "-o"], ".py"), (["latex", "-o"], ".tex"),
                                            (["report", "-o"], ""),
                                            (["regimes", "--T", "5", "--json"], ".json")])
def test_output_folder_not_writable(tmp_path, command, suffix):
    target = _unwritable(tmp_path) + suffix
    assert_one_line_error(run(*command, target), "cannot write")
    assert not os.path.exists(target)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert_one_line_error(run("codegen", "-o", str(folder / "m.py")), "not writable")
    finally:
        folder.chmod(0o700)


def test_output_is_a_directory(tmp_path):
    assert_one_line_error(run("codegen", "-o", str(tmp_path)), "is a folder")


def test_report_output_is_a_file(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("keep")
    assert_one_line_error(run("report", "-o", str(blocker)), "is a file")
    assert blocker.read_text() == "keep"


def test_newline_in_output_name(tmp_path):
    target = tmp_path / "a\nb.tex"
    assert_one_line_error(run("latex", "-o", str(target)), "control character")
    assert not target.exists()


def test_latex_header_escapes_control_characters():
    from symrnn.render.latex.document import derivation_to_latex

    text = derivation_to_latex(Spec(), command="symrnn latex -o a\nb.tex")
    header = [line for line in text.splitlines() if "command:" in line]
    assert header == [r"% command: symrnn latex -o a\nb.tex"]


@pytest.mark.parametrize("name", ["x.jpgx", "x", "x.txt"])
def test_plot_format(tmp_path, name):
    line = assert_one_line_error(run("regimes", "--T", "5", "--plot", str(tmp_path / name)),
                                 "--plot", ".png", ".svg")
    assert "allowed" in line


# ---------------------------------------------------------------- numbers, caps


@pytest.mark.parametrize("field", ["--hidden-size", "--input-size", "--output-size"])
def test_huge_size(field):
    assert_one_line_error(run("derive", field, "100000000"), "exceeds --max-size 4096",
                          "pass --max-size 100000000")


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "a b", "²", "-²", "٣"])
def test_bad_size(value):
    assert_one_line_error(run("derive", "--hidden-size", value), "hidden_size")


@pytest.mark.parametrize("command", [["verify", "--T", "3"], ["check", "dL/dV = 0"]])
def test_seed_negative(command):
    assert_one_line_error(run(*command, "--seed", "-1"), "--seed", "-1")


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "-inf", "abc"])
@pytest.mark.parametrize("command", [["codegen", "--clip"], ["codegen", "--clip-value"],
                                     ["verify", "--T", "3", "--clip"],
                                     ["regimes", "--T", "5", "--clip"],
                                     ["regimes", "--T", "5", "--input-scale"]])
def test_clip_not_finite_positive(command, value):
    assert_one_line_error(run(*command, value), command[-1], "finite number > 0")


@pytest.mark.parametrize("radii", ["inf", "nan", "0", "-1", "", "1,x"])
def test_radii(radii):
    assert_one_line_error(run("regimes", "--T", "5", "--radii", radii), "--radii")


@pytest.mark.parametrize("command", [["derive"], ["check", "dL/dV = 0"], ["verify"],
                                     ["regimes"]])
@pytest.mark.parametrize("T", ["0", "-1"])
def test_T_not_positive(command, T):  # noqa: N802,N803
    assert_one_line_error(run(*command, "--T", T), "--T", "T >= 1")


def test_check_T_zero_is_an_error_not_T_3():  # noqa: N802
    line = assert_one_line_error(run("check", "dL/dV = sum_t e_t h_t^T", "--T", "0"))
    assert "--T 0" in line


@pytest.mark.parametrize("command,cap", [(["derive"], 1000), (["check", "dL/dV = 0"], 64),
                                         (["verify"], 10000), (["regimes"], 10000)])
def test_T_cap(command, cap):  # noqa: N802
    line = assert_one_line_error(run(*command, "--T", "100000"),
                                 f"exceeds --max-T {cap}", "pass --max-T 100000")
    assert line.startswith("symrnn: error: T = 100000")


def test_seeds_and_batch_caps():
    assert_one_line_error(run("regimes", "--seeds", "5000"), "--max-seeds 1000")
    assert_one_line_error(run("verify", "--batch", "100000"), "--max-batch 4096")
    assert_one_line_error(run("verify", "--batch", "0"), "--batch")


def test_memory_estimate_refuses_before_allocating():
    line = assert_one_line_error(run("verify", "--hidden-size", "4096", "--T", "10000",
                                     "--batch", "4096"), "needs about", "GiB", "available")
    assert "T=10000" in line


def test_work_estimate_refuses_runaway_runs():
    assert_one_line_error(run("regimes", "--hidden-size", "4096", "--T", "10000"),
                          "GFLOP", "above --max-gflop 300", "pass --max-gflop")
    assert_one_line_error(run("verify", "--hidden-size", "1024", "--T", "10000"),
                          "GFLOP", "--max-gflop")
    assert_one_line_error(run("report", "--hidden-size", "4096"), "GFLOP", "--max-gflop")


def test_memory_available_falls_back(monkeypatch):
    import builtins

    from symrnn.cli import io

    def broken(*args, **kwargs):
        raise OSError("no /proc")

    monkeypatch.setattr(builtins, "open", broken)
    assert io.memory_available() == 24 * 2**30


# --------------------------------------------------------------- command rules


def test_latex_tbptt_follows_the_codegen_rule():
    assert_one_line_error(run("latex", "--tbptt", "3,2"), "--tbptt 3,2", "k1 <= k2")
    assert_one_line_error(run("codegen", "--tbptt", "3,2"), "--tbptt 3,2", "k1 <= k2")
    assert run("latex", "--tbptt", "2,3").exit_code == 0


def test_verify_unknown_cell_names_it_and_suggests():
    line = assert_one_line_error(run("verify", "--cell", "gruu", "--T", "3"), "'gruu'")
    assert "did you mean 'gru'" in line


def test_derive_aliases_left_hand_side():
    result = run("derive", "--aliases", "--T", "2")
    assert result.exit_code == 0
    lhs = [line.split("=")[0].strip() for line in result.output.splitlines() if "dL/d" in line]
    assert "dL/dW" in lhs and "dL/dV" in lhs and "dL/dU" in lhs
    assert not any(name in lhs for name in ("dL/dW_hh", "dL/dW_xh", "dL/dW_hy"))


# ------------------------------------------------------------ click's own errors


@pytest.mark.parametrize("args,fragment", [
    (["derive", "--T", "abc"], "'abc' is not a valid integer"),
    (["derive", "--bogus"], "no such option '--bogus'"),
    (["check"], "missing argument 'FORMULA'"),
    (["derive", "--format", "pdf"], "'pdf' is not one of"),
    (["nosuch"], "no such command 'nosuch'"),
    (["--bogus"], "no such option"),
])
def test_usage_errors_are_one_line(args, fragment):
    assert_one_line_error(run(*args), fragment)


def test_formula_error_is_one_line():
    assert_one_line_error(run("check", "dL/dV = (("), "column")


def test_unexpected_exception_is_one_line(monkeypatch):
    import symrnn.cli.derive as derive_cli
    import symrnn.engine.derive as engine

    def boom(spec):
        raise RuntimeError("kaput")

    monkeypatch.setattr(engine, "derive", boom)
    assert derive_cli is not None
    assert_one_line_error(run("derive"), "internal error (RuntimeError)", "kaput", "--debug")
    debug = run("--debug", "derive")
    assert debug.exit_code == 2 and "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("symrnn: error: ")


def test_real_entry_point_prints_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe")
    out = subprocess.run([sys.executable, "-m", "symrnn", "derive", "--spec", str(bad)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("symrnn: error: ")


# ----------------------------------------------------------------- atomic writes


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    import symrnn.render.files as files

    target = tmp_path / "m.py"
    target.write_text("previous")

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", fail)
    assert_one_line_error(run("codegen", "-o", str(target)), "No space left")
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py"]


def test_failed_report_leaves_no_folder(tmp_path, monkeypatch):
    import symrnn.report as report

    def broken(spec, out):
        (out / "half.txt").write_text("half")
        raise RuntimeError("section failed")

    monkeypatch.setattr(report, "SECTIONS", [("x", lambda s, o: "## ok"), ("y", broken)])
    target = tmp_path / "rep"
    assert_one_line_error(run("report", "-o", str(target)), "section failed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    target.mkdir()
    (target / "mine.txt").write_text("mine")
    assert_one_line_error(run("report", "-o", str(target)), "section failed")
    assert sorted(p.name for p in target.iterdir()) == ["mine.txt"]


def test_report_names_the_real_folder(tmp_path, monkeypatch):
    import symrnn.report as report

    def section(spec, out):
        (out / "a.txt").write_text(f"see {out}/a.txt")
        return f"## A\n\n- file: {out / 'a.txt'}"

    monkeypatch.setattr(report, "SECTIONS", [("a", section)])
    target = tmp_path / "rep"
    result = run("report", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert (target / "a.txt").read_text() == f"see {target}/a.txt"
    assert f"- file: {target}/a.txt" in (target / "report.md").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]


def test_report_refuses_a_clash_before_moving_anything(tmp_path, monkeypatch):
    import symrnn.report as report

    def section(spec, out):
        (out / "a.txt").write_text("a")
        (out / "z.txt").write_text("z")
        return "## A"

    monkeypatch.setattr(report, "SECTIONS", [("a", section)])
    target = tmp_path / "rep"
    (target / "z.txt").mkdir(parents=True)
    assert_one_line_error(run("report", "-o", str(target)), "in the way")
    assert sorted(p.name for p in target.iterdir()) == ["z.txt"]
