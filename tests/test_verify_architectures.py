"""``verify`` on composed architectures: bidirectional stacks, one_to_many, encoder_decoder."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from click.testing import CliRunner

import symrnn
from symrnn import Spec
from symrnn.checks.verify import VerificationError, verify
from symrnn.cli import cli

SMALL = {"T": 3, "batch": 2, "entrywise_max": 12}
CELLS = ("elman", "lstm", "gru", "gru_v1")


@functools.cache
def _module(spec: Spec, backend: str):
    return symrnn.compile(spec, backend)


def _check(spec: Spec, backend: str = "numpy", **kw):
    return verify(spec, backend, module=_module(spec, backend), **{**SMALL, **kw})


BIDIRECTIONAL = [pytest.param(Spec(cell=cell, layout=layout, bidirectional=True, num_layers=n),
                              id=f"{cell}-{layout}-L{n}")
                 for cell in CELLS for layout in ("notes", "torch") for n in (1, 2)]


@pytest.mark.parametrize("spec", BIDIRECTIONAL)
def test_bidirectional(spec):
    report = _check(spec)
    assert report.ok
    oracles = set(report.worst())
    has_nn = spec.layout == "torch" and spec.cell != "gru_v1"
    assert oracles == {"autograd", "finite_differences", *(("torch.nn",) if has_nn else ())}
    names = {c.name for c in report.checks if c.oracle == "autograd"}
    assert {"W_hy_rev", "h_reverse_0", "x"} <= names
    if spec.num_layers == 2:
        assert "h_l1_reverse_0" in names
        assert ("weight_ih_l1_reverse" if spec.layout == "torch" else
                f"W_x{'h' if spec.cell == 'elman' else 'o' if spec.cell == 'lstm' else 'n'}"
                "_rev_l1_reverse") in names


@pytest.mark.parametrize("cell", ("elman", "lstm", "gru"))
def test_bidirectional_torch_backend_and_nn_row(cell):
    spec = Spec(cell=cell, layout="torch", bidirectional=True, num_layers=2)
    report = _check(spec, "torch", finite_differences=False)
    assert report.ok
    nn = report.worst()["torch.nn"]
    assert {"weight_ih_l1_reverse", "weight_hh_reverse", "W_hy_rev", "h_l1_reverse_0",
            "x"} <= set(nn)
    assert max(nn.values()) < 1e-10


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", (1, 2))
def test_encoder_decoder(cell, layers):
    spec = Spec(cell=cell, topology="encoder_decoder", num_layers=layers,
                layout="torch" if layers == 2 else "notes", input_size=2, output_size=4)
    report = _check(spec, T=4, T_out=2)
    assert report.ok and report.T_out == 2
    names = {c.name for c in report.checks}
    assert any(n.endswith("_dec") for n in names) and "x" in names
    assert not any("_dec" in n and n.endswith("_0") for n in names)  # not free states


def test_encoder_decoder_gru_v1_input_size_equal_hidden():
    """D == H != O: the layer functions size weight_hh's gradient H wide, weight_ih's by
    the input (a GRU v1's weight_hh once came out D wide)."""
    spec = Spec(cell="gru_v1", topology="encoder_decoder", hidden_size=3, input_size=3,
                output_size=2)
    _check(spec, T=3, T_out=2)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("feed", ("zeros", "repeat"))
def test_one_to_many(cell, feed):
    report = _check(Spec(cell=cell, topology="one_to_many", feed=feed, layout="torch"), T=4)
    assert report.ok


def test_one_to_many_bidirectional_stack_torch_backend():
    spec = Spec(cell="lstm", topology="one_to_many", feed="repeat", bidirectional=True,
                num_layers=2)
    assert _check(spec, "torch").ok


def test_many_to_one_bidirectional():
    spec = Spec(cell="gru", layout="torch", topology="many_to_one", bidirectional=True,
                head="softmax", loss="cross_entropy")
    assert _check(spec).ok


class _Corrupt:
    """The generated module with one gradient entry shifted."""

    def __init__(self, module, name, by=1e-3):
        self._module, self._name, self._by = module, name, by

    def __getattr__(self, attr):
        return getattr(self._module, attr)

    def loss_and_grad(self, *args, **kwargs):
        loss, grads = self._module.loss_and_grad(*args, **kwargs)
        bad = np.array(grads[self._name], copy=True)
        bad.flat[0] += self._by
        return loss, {**grads, self._name: bad}


@pytest.mark.parametrize("spec, name", [
    (Spec(cell="lstm", layout="torch", bidirectional=True, num_layers=2), "weight_hh_l1_reverse"),
    (Spec(cell="gru", topology="encoder_decoder"), "W_hn_dec"),
    (Spec(cell="elman", topology="one_to_many", feed="repeat"), "x"),
    (Spec(cell="elman", bidirectional=True), "h_reverse_0"),
])
def test_wrong_gradient_fails(spec, name):
    module = _Corrupt(_module(spec, "numpy"), name)
    with pytest.raises(VerificationError, match=f"dL/d{name}"):
        verify(spec, module=module, **SMALL)
    report = verify(spec, module=module, raise_exception=False, **SMALL)
    assert not report.ok
    failed = {c.oracle for c in report.failures}
    assert "autograd" in failed
    if name != "x":  # finite differences do not perturb x
        assert "finite_differences" in failed
    if spec.layout == "torch":
        assert "torch.nn" in failed


def test_missing_gradient_is_reported():
    spec = Spec(bidirectional=True)
    module = _module(spec, "numpy")

    class Missing(_Corrupt):
        def loss_and_grad(self, *args, **kwargs):
            loss, grads = self._module.loss_and_grad(*args, **kwargs)
            return loss, {k: v for k, v in grads.items() if k != "W_hy_rev"}

    with pytest.raises(VerificationError, match="lack dL/dW_hy_rev"):
        verify(spec, module=Missing(module, "W_hy_rev"), **SMALL)


def test_truncation_refused_for_composed():
    with pytest.raises(symrnn.SymrnnError):
        verify(Spec(bidirectional=True), tbptt=(2, 2), **SMALL)


def _cli(*args):
    return CliRunner().invoke(cli, ["verify", "--T", "3", "--batch", "2", *args])


def test_cli_bidirectional_torch_table():
    result = _cli("--cell", "lstm", "--layout", "torch", "--bidirectional", "--num-layers",
                  "2")
    assert result.exit_code == 0, result.output
    assert "torch.nn (tolerance 1e-10)" in result.output
    assert "dL/dweight_ih_l1_reverse" in result.output and "MISMATCH" not in result.output
    assert result.output.rstrip().endswith("ok")


def test_cli_encoder_decoder_json():
    result = _cli("--topology", "encoder_decoder", "--T-out", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] and data["T_out"] == 2 and data["T"] == 3


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("head, loss", [("identity", "mse"), ("softmax", "cross_entropy")])
def test_one_to_many_feedback(cell, head, loss):
    """x_(t+1) = yhat_t: the fed output's gradient, against autograd and differences."""
    spec = Spec(cell=cell, topology="one_to_many", feed="feedback", head=head, loss=loss,
                num_layers=2 if cell == "lstm" else 1)
    report = _check(spec, T=4)
    assert report.ok and {"autograd", "finite_differences"} <= {c.oracle for c in
                                                               report.checks}


@pytest.mark.parametrize("args, message", [
    (("--bidirectional", "--tbptt", "2,2"), "not available"),
    (("--bidirectional", "--clip", "1"), "not available"),
    (("--T-out", "2"), "encoder_decoder only"),
])
def test_cli_refusals_are_messages(args, message):
    result = _cli(*args)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, (KeyError, TypeError, AttributeError))
