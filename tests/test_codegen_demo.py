"""The training demo, reduced: generated code + TBPTT + clipping learns within seconds."""

from __future__ import annotations

import numpy as np
import pytest

from symrnn.codegen.demo import TrainResult, adding_batch, plot, train_adding, train_sine


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYMRNN_CACHE", str(tmp_path_factory.getbasetemp() / "symrnn-cache"))


def test_sine_next_step_loss_falls():
    result = train_sine(steps=120, H=16, B=8, T=60, tbptt=(15, 30), clip=5.0)
    assert result.tbptt == (15, 30)
    assert all(np.isfinite(result.losses))
    assert result.factor > 3.0
    assert np.median(result.losses[-20:]) < 0.05


def test_adding_problem_beats_predicting_the_mean():
    result = train_adding(steps=1500, T=10, H=32, B=32)
    assert np.mean(result.losses[-100:]) < 0.05  # predicting the mean scores 1/6


def test_adding_batch_has_two_markers_and_their_sum():
    x, y = adding_batch(np.random.default_rng(0), 4, 9)
    assert x.shape == (4, 9, 2) and y.shape == (4, 1)
    assert (x[..., 1].sum(axis=1) == 2).all()
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * x[..., 1]).sum(axis=1))


def test_plot_writes_a_png(tmp_path):
    fake = TrainResult("sine", tuple(np.geomspace(1, 0.01, 100)), (5, 5), 1.0)
    assert fake.factor == pytest.approx(np.median(fake.losses[:20]) / np.median(fake.losses[-20:]))
    plot([fake, fake], tmp_path / "training.png")
    assert (tmp_path / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_section_writes_verified_modules(tmp_path, monkeypatch):
    import symrnn.codegen.demo as demo
    from symrnn import Spec
    from symrnn.checks.verify import codegen_section

    monkeypatch.setattr(demo, "training_section", lambda spec, out: "## Training (stub)")
    text = codegen_section(Spec(), tmp_path)
    assert (tmp_path / "bptt_numpy.py").exists() and (tmp_path / "bptt_torch.py").exists()
    assert text.count(": ok;") == 2 and "## Training (stub)" in text
    for spec in (Spec(cell="gru"), Spec(cell="lstm", layout="torch")):
        gated = codegen_section(spec, tmp_path)
        assert gated.count(": ok;") == 2, gated
        assert f"'cell': {spec.cell!r}" in (tmp_path / "bptt_torch.py").read_text()
    assert "torch.nn" in gated  # the torch.nn.LSTM oracle for the torch layout
    skipped = codegen_section(Spec(hidden_size="H"), tmp_path)
    assert "skipped for this spec: code generation expected integer sizes" in skipped
