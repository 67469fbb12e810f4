"""The verification corpus, hypothesis over sizes and seeds, and tests of the tester."""

from __future__ import annotations

import functools
import itertools
import json

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symrnn
from symrnn import Spec
from symrnn.checks.verify import TOLERANCES, VerificationError, verify
from symrnn.cli import cli
from symrnn.engine.rules import RULES, Rule
from symrnn.errors import SpecError


def _corpus() -> list[Spec]:
    out = []
    for act, head, loss, top in itertools.product(
            ("tanh", "relu", "sigmoid", "identity"), ("identity", "sigmoid", "softmax"),
            ("mse", "cross_entropy"), ("many_to_many", "many_to_one")):
        try:
            out.append(Spec(activation=act, head=head, loss=loss, topology=top))
        except SpecError:
            continue  # cross_entropy needs the softmax head
    return out


CORPUS = _corpus()


@functools.cache
def _module(spec: Spec, backend: str, tbptt=None):
    return symrnn.compile(spec, backend, tbptt)


def _id(spec: Spec) -> str:
    return f"{spec.activation}-{spec.head}-{spec.loss}-{spec.topology}"


def test_corpus_covers_every_activation_head_loss_topology():
    assert len(CORPUS) == 4 * 4 * 2


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("spec", CORPUS, ids=_id)
def test_corpus(spec, backend):
    module = _module(spec, backend)
    for T, batch in itertools.product((1, 2, 7, 50), (1, 5)):
        fd = backend == "numpy" or T <= 7  # the torch printer is checked by autograd at T=50
        report = verify(spec, backend, T=T, batch=batch, seed=T + batch, module=module,
                        finite_differences=fd)
        assert report.ok
        assert {c.oracle for c in report.checks} == (
            {"autograd", "finite_differences"} if fd else {"autograd"})


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("tbptt", [(1, 1), (2, 3), (3, 3), (2, 7), (4, 9)])
def test_truncated_bptt_matches_the_detach_pattern(backend, tbptt):
    for spec in (CORPUS[0], Spec(activation="relu", head="softmax", loss="cross_entropy",
                                 topology="many_to_one"), Spec(activation="identity")):
        module = _module(spec, backend, tbptt)
        for T in (1, 7, 12):
            assert verify(spec, backend, T=T, batch=3, tbptt=tbptt, module=module).ok


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_float32_has_its_own_tolerance(backend):
    assert TOLERANCES["float32"]["autograd"] > TOLERANCES["float64"]["autograd"]
    for spec in CORPUS[::5]:
        module = _module(spec, backend)
        report = verify(spec, backend, T=50, batch=5, dtype="float32", module=module)
        assert report.ok
        assert max(c.error for c in report.checks if c.oracle == "autograd") > 1e-12


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(H=st.integers(1, 6), D=st.integers(1, 4), O=st.integers(1, 4), T=st.integers(1, 12),
       B=st.integers(1, 4), seed=st.integers(0, 2**16), index=st.integers(0, len(CORPUS) - 1),
       bias=st.booleans())
def test_hypothesis_sizes_and_seeds(H, D, O, T, B, seed, index, bias):  # noqa: E741
    spec = CORPUS[index].replace(hidden_size=H, input_size=D, output_size=O, bias=bias)
    assert verify(spec, "numpy", T=T, batch=B, seed=seed, module=_module(spec, "numpy")).ok


# ------------------------------------------------------------------ test the tester


def test_wrong_tanh_rule_gives_wrong_code_and_verify_fails(monkeypatch):
    right = RULES["tanh"]

    def wrong_vjp(node, g, out):  # f'(a) = 1 - h instead of 1 - h*h
        from symrnn.engine.expr import hadamard, ones_like, sub

        return [(node.arg, hadamard(g, sub(ones_like(out), out)))]

    monkeypatch.setitem(RULES, "tanh", Rule("tanh", "wrong", "wrong", wrong_vjp))
    spec = Spec()
    good_text = None
    bad = symrnn.compile(spec, "numpy")
    bad_text = open(bad.__file__).read()
    assert "g = (1 - h_all).reshape((T, B, H))  # hoisted: 1 - h_{t}, from" in bad_text
    with pytest.raises(VerificationError, match=r"gradient mismatch for dL/d\w+\[[\d, ]+\] "
                                                r"\(T=20, autograd\): reference=.*generated="):
        verify(spec, "numpy", T=20, module=bad)
    monkeypatch.setitem(RULES, "tanh", right)
    good_text = symrnn.codegen.generate(spec, "numpy")
    assert "g = h_all * h_all  # hoisted: 1 - h_{t} * h_{t}" in good_text
    assert verify(spec, "numpy", T=20).ok


def test_report_without_raising_lists_the_failures(monkeypatch):
    def wrong_vjp(node, g, out):
        return [(node.arg, g)]  # treats tanh as the identity

    monkeypatch.setitem(RULES, "tanh", Rule("tanh", "wrong", "wrong", wrong_vjp))
    report = verify(Spec(), "torch", T=7, raise_exception=False)
    assert not report.ok
    assert {c.name for c in report.failures} >= {"W_hh", "W_xh", "b_h"}
    assert "W_hy" not in {c.name for c in report.failures if c.oracle == "autograd"}


# ------------------------------------------------------------------ CLI


def test_cli_verify_ok_and_json():
    result = CliRunner().invoke(cli, ["verify", "--T", "5", "--batch", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] and set(data["max_relative_error"]) == {"autograd", "finite_differences"}


def test_cli_verify_exits_nonzero_on_mismatch(monkeypatch):
    monkeypatch.setitem(RULES, "tanh", Rule("tanh", "wrong", "wrong",
                                            lambda node, g, out: [(node.arg, g)]))
    result = CliRunner().invoke(cli, ["verify", "--backend", "torch", "--T", "6"])
    assert result.exit_code == 1
    assert "MISMATCH" in result.output and "gradient mismatch for dL/dW_hh[" in result.output


def test_cli_codegen_writes_a_module(tmp_path):
    out = tmp_path / "bptt.py"
    result = CliRunner().invoke(cli, ["codegen", "--backend", "torch", "--tbptt", "3,5",
                                      "--clip", "1.5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "TBPTT = (3, 5)" in text and "CLIP = 1.5" in text and "import torch" in text
    bad = CliRunner().invoke(cli, ["codegen", "--tbptt", "x"])
    assert bad.exit_code == 2 and "expected k1,k2" in bad.output
    lstm = CliRunner().invoke(cli, ["codegen", "--cell", "lstm"])
    assert lstm.exit_code == 2 and "supports cell 'elman' only" in lstm.output
