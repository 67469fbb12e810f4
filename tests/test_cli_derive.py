"""The derive CLI: formats, flags, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from symrnn.cli import cli


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_json_has_spec_recurrence_and_gradients():
    result = run("derive", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"spec", "recurrence", "gradients"}
    assert data["spec"]["activation"] == "tanh"
    assert data["recurrence"]["adjoint"]["delta_{t}"] == (
        "W_hy.T @ e_{t} + W_hh.T @ (delta_{t+1} * (1 - h_{t+1} * h_{t+1}))")
    assert data["gradients"]["W_hh"] == (
        "sum_{t=1}^{T} (delta_{t} * (1 - h_{t} * h_{t})) @ h_{t-1}.T")
    assert set(data["gradients"]) == {"W_hh", "W_xh", "b_h", "W_hy", "b_y", "h_0"}


def test_json_with_T_adds_the_unrolled_gradients():
    data = json.loads(run("derive", "--format", "json", "--T", "2").output)
    assert data["unrolled"]["T"] == 2
    assert data["unrolled"]["adjoints"]["delta_{2}"] == "W_hy.T @ e_{2}"


def test_text_and_latex_formats_and_flags():
    text = run("derive", "--activation", "relu", "--no-bias", "--aliases").output
    assert "step(h_{t+1})" in text and "b_h" not in text and "W.T @" in text
    latex = run("derive", "--format", "latex").output
    assert r"\begin{aligned}" in latex and r"\odot" in latex


def test_spec_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[spec]\ntopology = "many_to_one"\n')
    assert "delta_{T} = W_hy.T @ e_{T}" in run("derive", "--spec", str(path)).output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--activation", "tnah"], "did you mean 'tanh'"),
        (["--hidden-size", "0"], "hidden_size must be a positive integer"),
        (["--T", "0"], "T must be a positive integer"),
        (["--loss", "cross_entropy"], "needs head 'softmax'"),
        (["--spec", "/nonexistent.toml"], "spec file not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    result = run("derive", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_console_entry_point_and_module():
    out = subprocess.run([sys.executable, "-m", "symrnn", "derive", "--cell", "tanhh"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("symrnn: error: unknown cell 'tanhh'")
    assert "Traceback" not in out.stderr
    help_text = subprocess.run([sys.executable, "-m", "symrnn", "--help"],
                               capture_output=True, text=True).stdout
    assert "derive" in help_text


def test_architectures_in_every_format():
    data = json.loads(run("derive", "--bidirectional", "--format", "json", "--T", "2").output)
    assert data["recurrence"]["boundary"]["delta^{h_reverse}_{0}"] == "0"
    assert "h_reverse_{T+1}" in data["gradients"] and "h_reverse_{T+1}" in \
        data["unrolled"]["gradients"]
    zeros = run("derive", "--topology", "one_to_many", "--feed", "zeros").output
    assert "  dL/dW_xh = (delta_{1} * (1 - h_{1} * h_{1})) @ x_{1}.T\n" in zeros
    latex = run("derive", "--topology", "encoder_decoder", "--format", "latex").output
    assert r"\sum_{t=1}^{T_{\mathrm{out}}}" in latex and r"\delta^{h}_{T} &= " in latex
    result = run("latex", "--topology", "one_to_many", "--feed", "feedback", "--head", "sigmoid")
    assert result.exit_code == 0, result.output
    assert "% command: symrnn latex --head sigmoid --topology one_to_many --feed feedback" \
        in result.output
    assert run("latex", "--bidirectional").output.splitlines()[1] == \
        "% command: symrnn latex --bidirectional"
