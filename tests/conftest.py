"""Shared fixtures and the spec corpus for the test suite."""

from __future__ import annotations

import itertools

from symrnn.spec import ACTIVATIONS, HEADS, LOSSES, TOPOLOGIES, Spec

# Every valid combination of activation × head × loss × topology (32 of them).
SPEC_COMBOS = [
    (act, head, loss, topo)
    for act, head, loss, topo in itertools.product(ACTIVATIONS, HEADS, LOSSES, TOPOLOGIES)
    if not (loss == "cross_entropy" and head != "softmax")
]


def combo_spec(combo, **sizes) -> Spec:
    act, head, loss, topo = combo
    return Spec(activation=act, head=head, loss=loss, topology=topo, **sizes)


def combo_id(combo) -> str:
    return "-".join(combo)
