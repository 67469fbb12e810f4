"""Hypothesis strategies for symrnn specs, to property-test your own kernels.

``specs()`` draws valid :class:`~symrnn.spec.Spec` s with small concrete
sizes; ``elman_specs()`` only Elman cells (any activation);
``sequence_lengths()`` small T.  Example::

    from hypothesis import given
    from symrnn.testing import assert_gradient_matches, strategies as st_rnn

    @given(st_rnn.elman_specs(), st_rnn.sequence_lengths())
    def test_my_kernel(spec, T):
        assert_gradient_matches(my_bptt, spec, wrt="W_hh", T=T, conventions=...)
"""

from __future__ import annotations

from hypothesis import strategies as st

from symrnn.spec import ACTIVATIONS, CELLS, TOPOLOGIES, Spec

SEQUENCE_TOPOLOGIES = tuple(t for t in TOPOLOGIES if t in ("many_to_many", "many_to_one"))

__all__ = ["sizes", "specs", "elman_specs", "sequence_lengths"]


def sizes(max_size: int = 3) -> st.SearchStrategy[int]:
    return st.integers(min_value=1, max_value=max_size)


def sequence_lengths(max_T: int = 4) -> st.SearchStrategy[int]:  # noqa: N803
    return st.integers(min_value=1, max_value=max_T)


@st.composite
def specs(draw, cells=CELLS, max_size: int = 3, bias=None) -> Spec:
    """Any valid spec: cell, activation (tanh for gated cells), head/loss pair, sizes; the
    sequence topologies (many_to_many, many_to_one) that the checkers pose questions for."""
    cell = draw(st.sampled_from(tuple(cells)))
    activation = draw(st.sampled_from(ACTIVATIONS)) if cell == "elman" else "tanh"
    head, loss = draw(st.sampled_from((("identity", "mse"), ("sigmoid", "mse"),
                                       ("softmax", "cross_entropy"))))
    return Spec(
        cell=cell, activation=activation, head=head, loss=loss,
        topology=draw(st.sampled_from(SEQUENCE_TOPOLOGIES)),
        hidden_size=draw(sizes(max_size)), input_size=draw(sizes(max_size)),
        output_size=draw(sizes(max_size)),
        bias=draw(st.booleans()) if bias is None else bias,
    )


def elman_specs(max_size: int = 3, bias=None) -> st.SearchStrategy[Spec]:
    return specs(cells=("elman",), max_size=max_size, bias=bias)
