"""Shared fixtures and the spec corpus for the test suite."""

from __future__ import annotations

import itertools
import os

import pytest
import torch
from hypothesis import settings

from symrnn.spec import ACTIVATIONS, HEADS, LOSSES, TOPOLOGIES, Spec

# CI replays a fixed sequence of examples so that a green run stays green; locally
# hypothesis explores new examples every run.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Every valid combination of activation × head × loss × single-network topology (32 of
# them); one_to_many and encoder_decoder have suites of their own (test_architectures*).
SEQUENCE_TOPOLOGIES = tuple(t for t in TOPOLOGIES if t in ("many_to_many", "many_to_one"))
SPEC_COMBOS = [
    (act, head, loss, topo)
    for act, head, loss, topo in itertools.product(ACTIVATIONS, HEADS, LOSSES,
                                                   SEQUENCE_TOPOLOGIES)
    if not (loss == "cross_entropy" and head != "softmax")
]


def combo_spec(combo, **sizes) -> Spec:
    act, head, loss, topo = combo
    return Spec(activation=act, head=head, loss=loss, topology=topo, **sizes)


def combo_id(combo) -> str:
    return "-".join(combo)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: torch's thread pool only adds contention on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """Generated modules go to the session's temporary folder, not ~/.cache."""
    monkeypatch.setenv("SYMRNN_CACHE", str(tmp_path_factory.getbasetemp() / "symrnn-cache"))
