"""Spec validation: every bad input is a SpecError naming field, value and choices."""

from __future__ import annotations

import re

import pytest

from symrnn.errors import SpecError
from symrnn.spec import DEFAULT_SPEC, Spec, check_T, load_spec


def test_default_spec_is_the_textbook_elman_rnn():
    assert (DEFAULT_SPEC.cell, DEFAULT_SPEC.activation, DEFAULT_SPEC.head) == (
        "elman", "tanh", "identity")
    assert (DEFAULT_SPEC.loss, DEFAULT_SPEC.topology) == ("mse", "many_to_many")
    assert DEFAULT_SPEC.is_concrete and DEFAULT_SPEC.bias


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("activation", "tnah", r"unknown activation 'tnah'; did you mean 'tanh'\?"),
        ("cell", "lstn", r"unknown cell 'lstn'; did you mean 'lstm'\?"),
        ("head", "softmx", r"did you mean 'softmax'\?"),
        ("loss", "cross_entropyy", r"did you mean 'cross_entropy'\?"),
        ("topology", "many_to_none", r"unknown topology .*allowed: many_to_many, many_to_one"),
        ("activation", "zzz", r"unknown activation 'zzz' \(allowed: tanh, relu"),
        ("cell", "gruv1", r"unknown cell 'gruv1'; did you mean 'gru_v1'\?"),
        ("cell", "gru_v2", r"did you mean 'gru_v1'\? \(allowed: elman, lstm, gru, gru_v1\)"),
        ("layout", "torhc", r"unknown layout 'torhc'; did you mean 'torch'\? "
                            r"\(allowed: notes, torch\)"),
        ("layout", "note", r"unknown layout 'note'; did you mean 'notes'\?"),
        ("layout", "tf", r"unknown layout 'tf' \(allowed: notes, torch\)"),
    ],
)
def test_unknown_names_suggest_a_close_match(field, value, message):
    with pytest.raises(SpecError, match=message):
        Spec(**{field: value})


@pytest.mark.parametrize("size", [0, -3, "0", "-1"])
def test_non_positive_sizes_are_rejected(size):
    with pytest.raises(SpecError, match="hidden_size must be a positive integer"):
        Spec(hidden_size=size)


def test_symbolic_sizes_are_names():
    spec = Spec(hidden_size="H", input_size="D", output_size=4)
    assert spec.hidden_size == "H" and not spec.is_concrete
    with pytest.raises(SpecError, match="symbol name"):
        Spec(hidden_size="H!")
    assert Spec(hidden_size="7").hidden_size == 7


def test_cross_entropy_needs_softmax():
    with pytest.raises(SpecError, match="loss 'cross_entropy' needs head 'softmax'"):
        Spec(loss="cross_entropy", head="identity")
    assert Spec(loss="cross_entropy", head="softmax").loss == "cross_entropy"


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_v1"])
def test_gated_cells_fix_their_activation(cell):
    with pytest.raises(SpecError, match=f"cell '{cell}' uses sigmoid gates.*must be 'tanh'"):
        Spec(cell=cell, activation="relu")


def test_gru_v1_is_a_cell_of_its_own():
    spec = Spec(cell="gru_v1")
    assert spec.cell == "gru_v1" and spec.activation == "tanh" and spec.layout == "notes"
    assert spec != Spec(cell="gru")


def test_layout_defaults_to_the_notes_and_accepts_torch():
    assert DEFAULT_SPEC.layout == "notes"
    for cell in ("elman", "lstm", "gru", "gru_v1"):
        spec = Spec(cell=cell, layout="torch")
        assert spec.layout == "torch" and spec.to_dict()["layout"] == "torch"
        assert spec.replace(layout="notes") == Spec(cell=cell)
    with pytest.raises(SpecError, match="unknown layout 'Torch'; did you mean 'torch'"):
        Spec(layout="Torch")  # names are case-sensitive
    with pytest.raises(SpecError, match="unknown layout None"):
        Spec(layout=None)


def test_layout_and_gru_v1_from_toml_and_overrides(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text('[spec]\ncell = "gru_v1"\nlayout = "torch"\n')
    spec = load_spec(path)
    assert (spec.cell, spec.layout) == ("gru_v1", "torch")
    assert load_spec(path, layout="notes").layout == "notes"
    assert load_spec(path, layout=None).layout == "torch"  # an unset flag keeps the file's
    assert load_spec(layout="torch") == Spec(layout="torch")
    path.write_text('[spec]\nlayuot = "torch"\n')
    with pytest.raises(SpecError, match="unknown field 'layuot'.*did you mean 'layout'"):
        load_spec(path)
    path.write_text('[spec]\nlayout = "pytorch"\n')
    with pytest.raises(SpecError, match="unknown layout 'pytorch'; did you mean 'torch'"):
        load_spec(path)


@pytest.mark.parametrize("T", [0, -1, "x", 1.5])
def test_T_must_be_positive_integer(T):
    with pytest.raises(SpecError, match="T must be a positive integer"):
        check_T(T)


def test_toml_round_trip_and_unknown_keys(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text('[spec]\nactivation = "relu"\nhidden-size = 5\nbias = false\n')
    spec = load_spec(path, head="sigmoid")
    assert (spec.activation, spec.hidden_size, spec.bias) == ("relu", 5, False)
    assert spec.head == "sigmoid"
    path.write_text('[spec]\nactivaton = "relu"\n')
    with pytest.raises(SpecError, match="unknown field 'activaton'.*did you mean 'activation'"):
        load_spec(path)
    path.write_text("[spec\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(path)
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "missing.toml")


@pytest.mark.parametrize("layers", [0, 9, -1, 1.5, True, False, "2", None])
def test_num_layers_must_be_an_integer_from_1_to_8(layers):
    with pytest.raises(SpecError, match=rf"num_layers must be an integer from 1 to 8, "
                                        rf"got {re.escape(repr(layers))}"):
        Spec(num_layers=layers)


def test_num_layers_defaults_to_one_and_accepts_the_range(tmp_path):
    assert DEFAULT_SPEC.num_layers == 1
    assert [Spec(num_layers=n).num_layers for n in (1, 2, 8)] == [1, 2, 8]
    assert Spec(num_layers=2) != DEFAULT_SPEC and Spec(num_layers=2).to_dict()["num_layers"] == 2
    path = tmp_path / "spec.toml"
    path.write_text('[spec]\ncell = "lstm"\nnum-layers = 3\n')
    assert load_spec(path).num_layers == 3
    assert load_spec(path, num_layers=2).num_layers == 2
    path.write_text('[spec]\nnum_layers = "3"\n')  # a TOML string is not an integer
    with pytest.raises(SpecError, match="num_layers must be an integer from 1 to 8, got '3'"):
        load_spec(path)
