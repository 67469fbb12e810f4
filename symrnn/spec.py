"""Model specification: what RNN to derive, as a frozen, validated dataclass.

A :class:`Spec` names the cell, the hidden activation, the output head, the
loss, the topology, the sizes and whether biases are present.  Sizes are
either positive integers (concrete) or symbol names such as ``"H"``
(symbolic).  Validation happens at construction; every problem raises
:class:`~symrnn.errors.SpecError` naming the field, the value, the allowed
values and the closest match.

Loss conventions (column vectors, one sequence):

* ``mse``: L = ½ Σ_t ‖ŷ_t − y_t‖²
* ``cross_entropy``: L = −Σ_t y_tᵀ log softmax(z_t), targets are
  probability vectors (one-hot class labels in practice); needs the
  ``softmax`` head.

Cells: ``elman`` (h_t = f(W_hh h_{t-1} + W_xh x_t + b_h)); ``lstm`` (gates i, f, g, o,
no peepholes); ``gru`` (reset applied after the recurrent product, as torch.nn.GRU and
cuDNN: n = tanh(W_xn x + b_n + r ⊙ (W_hn h + b_hn))); ``gru_v1`` (reset applied before
it, as Cho et al. 2014 and TensorFlow's GRUBlockCell: n = tanh(W_xn x + W_hn (r ⊙ h) +
b_n)).  Both GRUs keep h_t = (1 − u_t) ⊙ n_t + u_t ⊙ h_{t-1} (u is torch's z).

Layouts: ``notes`` (one bias per gate, per-gate parameter names) or ``torch`` (two biases
per gate, and generated code takes torch's stacked weight_ih, weight_hh, bias_ih,
bias_hh; see :attr:`symrnn.engine.cells.CellDef.stacks`).

Topologies: ``many_to_many`` puts a loss at every step, ``many_to_one`` at
the last step only; ``one_to_many`` reads one input x_1 and puts a loss at every step,
its later inputs set by ``feed``: ``zeros`` (x_t = 0 for t ≥ 2), ``repeat`` (x_t = x_1)
or ``feedback`` (x_t = ŷ_{t−1}, free running: the gradient flows back through the fed
output, so D = O); ``encoder_decoder`` runs an encoder over x_1..x_{T_x} (no loss) whose
final states (h, and c for LSTM) are the initial states of a decoder with its own
parameters (suffix ``_dec``), which reads the previous targets y_0..y_{T_y−1} (teacher
forcing, given as data: y_0 is the start vector) and carries the loss on y_1..y_{T_y}.

``bidirectional`` adds a reverse recurrence over the same inputs (t = T..1) with its own
parameters (torch's suffix ``_reverse``: W_hh_reverse, h_reverse); the head and the next
layer read the concatenation [h_t; h_reverse_t], written as a sum over column blocks,
W [h; h_reverse] = W h + W_rev h_reverse (W_hy_rev, W_xi_rev_l1: the columns of torch's
weight that multiply the reverse half).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from symrnn.errors import SpecError, suggest
from symrnn.ops import ACTIVATIONS

__all__ = [
    "Spec",
    "DEFAULT_SPEC",
    "CELLS",
    "ACTIVATIONS",
    "HEADS",
    "LOSSES",
    "TOPOLOGIES",
    "LAYOUTS",
    "FEEDS",
    "check_T",
    "load_spec",
]

CELLS = ("elman", "lstm", "gru", "gru_v1")
LAYOUTS = ("notes", "torch")
HEADS = ("identity", "sigmoid", "softmax")
LOSSES = ("mse", "cross_entropy")
TOPOLOGIES = ("many_to_many", "many_to_one", "one_to_many", "encoder_decoder")
FEEDS = ("zeros", "repeat", "feedback")

_SIZE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_CHOICES = {
    "cell": CELLS,
    "activation": ACTIVATIONS,
    "head": HEADS,
    "loss": LOSSES,
    "topology": TOPOLOGIES,
    "layout": LAYOUTS,
    "feed": FEEDS,
}
_SIZES = ("hidden_size", "input_size", "output_size")
MAX_LAYERS = 8
"""Deepest stack a spec may ask for (every layer adds equations to every derivation)."""

Size = int | str

SPEC_FILE_LIMIT = 1 << 20
"""Largest spec file read (bytes): a spec is a few lines; this refuses /dev/zero and the like."""


@dataclass(frozen=True)
class Spec:
    """An RNN to derive.  Construct it directly, from TOML, or from CLI flags."""

    cell: str = "elman"
    activation: str = "tanh"
    head: str = "identity"
    loss: str = "mse"
    topology: str = "many_to_many"
    hidden_size: Size = 3
    input_size: Size = 2
    output_size: Size = 2
    bias: bool = True
    layout: str = "notes"
    """'notes': one bias per gate (b_h, b_i, ...); 'torch': two per gate (b_x*, b_h*), as
    torch.nn.RNN/LSTM/GRU store bias_ih and bias_hh, and generated modules take torch's
    stacked parameters weight_ih, weight_hh, bias_ih, bias_hh."""
    num_layers: int = 1
    """Stacked layers: layer l's input at step t is layer l−1's h_t; the head reads the top
    layer.  Layer 0 keeps the single-layer names, layer l ≥ 1 adds ``_l{l}`` (W_hh_l1,
    h_l1, weight_hh_l1 as in torch)."""
    bidirectional: bool = False
    """A reverse recurrence per layer besides the forward one (torch's bidirectional=True)."""
    feed: str = "zeros"
    """one_to_many only: the inputs after x_1 ('zeros', 'repeat' or 'feedback')."""

    def __post_init__(self) -> None:
        for field, allowed in _CHOICES.items():
            value = getattr(self, field)
            if value not in allowed:
                raise SpecError(
                    f"unknown {field} {value!r}{suggest(value, allowed)} "
                    f"(allowed: {', '.join(allowed)})"
                )
        for field in _SIZES:
            object.__setattr__(self, field, _check_size(field, getattr(self, field)))
        if not isinstance(self.bias, bool):
            raise SpecError(f"bias must be true or false, got {self.bias!r}")
        if isinstance(self.num_layers, bool) or not isinstance(self.num_layers, int) \
                or not 1 <= self.num_layers <= MAX_LAYERS:
            raise SpecError(f"num_layers must be an integer from 1 to {MAX_LAYERS}, "
                            f"got {self.num_layers!r}")
        self._check_architecture()
        if self.loss == "cross_entropy" and self.head != "softmax":
            raise SpecError(
                f"loss 'cross_entropy' needs head 'softmax', got head {self.head!r} "
                "(use loss 'mse' for identity or sigmoid heads)"
            )
        if self.cell != "elman" and self.activation != "tanh":
            raise SpecError(
                f"cell {self.cell!r} uses sigmoid gates and a tanh candidate; "
                f"activation must be 'tanh', got {self.activation!r}"
            )

    def _check_architecture(self) -> None:
        if not isinstance(self.bidirectional, bool):
            raise SpecError(f"bidirectional must be true or false, got {self.bidirectional!r}")
        if self.feed != "zeros" and self.topology != "one_to_many":
            raise SpecError(f"feed {self.feed!r} applies to topology 'one_to_many' only "
                            f"(got topology {self.topology!r})")
        if self.feed == "feedback" and self.bidirectional:
            raise SpecError("feed 'feedback' with bidirectional: the reverse recurrence "
                            "would need the outputs of steps it precedes (x_t = ŷ_{t-1}); "
                            "use a unidirectional network, or feed 'zeros' or 'repeat'")
        if self.feed == "feedback" and self.input_size != self.output_size:
            raise SpecError(f"feed 'feedback' feeds ŷ_t back as x_(t+1), so input_size must "
                            f"equal output_size; got {self.input_size} and {self.output_size}")
        if self.topology == "encoder_decoder" and self.bidirectional:
            raise SpecError("encoder_decoder with a bidirectional encoder: its final state "
                            "[h; h_reverse] is 2H wide and the decoder's H wide; not "
                            "supported (use a unidirectional encoder)")

    @property
    def is_concrete(self) -> bool:
        """True when every size is an integer."""
        return all(isinstance(getattr(self, f), int) for f in _SIZES)

    def replace(self, **changes: Any) -> Spec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "spec") -> Spec:
        """Build from a mapping (a parsed TOML table); unknown keys are errors."""
        fields = {f.name for f in dataclasses.fields(cls)}
        normalized: dict[str, Any] = {}
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise SpecError(
                    f"unknown field {key!r} in {source}{suggest(name, fields)} "
                    f"(allowed: {', '.join(sorted(fields))})"
                )
            normalized[name] = value
        return cls(**normalized)

    @classmethod
    def from_toml(cls, path: str | Path) -> Spec:
        """Load a spec from a TOML file; a ``[spec]`` table or top-level keys."""
        if str(path) == "":
            raise SpecError("spec file: expected a path to a TOML file, got ''")
        if "\x00" in str(path):
            raise SpecError(f"spec file path {str(path)!r} contains a NUL character")
        path = Path(path)
        if path.exists() and not path.is_dir():
            if not path.is_file():
                raise SpecError(f"spec file {str(path)!r} is not a regular file")
            if path.stat().st_size > SPEC_FILE_LIMIT:
                raise SpecError(f"spec file {str(path)!r} is {path.stat().st_size} bytes, over "
                                f"the {SPEC_FILE_LIMIT} bytes a spec may have")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SpecError(f"spec file not found: {str(path)!r}") from None
        except IsADirectoryError:
            raise SpecError(f"spec file {str(path)!r} is a folder, expected a TOML file") from None
        except PermissionError:
            raise SpecError(f"spec file {str(path)!r} is not readable (permission denied)") \
                from None
        except UnicodeDecodeError as err:
            raise SpecError(f"spec file {str(path)!r} is not UTF-8 text (byte {err.start}: "
                            f"{err.reason}); TOML files are UTF-8") from None
        except OSError as err:
            raise SpecError(f"spec file {str(path)!r} cannot be read: "
                            f"{err.strerror or err}") from None
        except tomllib.TOMLDecodeError as err:
            raise SpecError(f"spec file {str(path)!r} is not valid TOML: {err}") from None
        table = data.get("spec", data)
        if not isinstance(table, Mapping):
            raise SpecError(f"[spec] in {path} must be a table")
        return cls.from_mapping(table, source=str(path))



def _check_size(field: str, value: Any) -> Size:
    if isinstance(value, bool):
        raise SpecError(f"{field} must be a positive integer or a symbol name, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise SpecError(f"{field} must be a positive integer, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            return _check_size(field, int(text))
        if text.isascii() and text.startswith("-") and text[1:].isdigit():
            raise SpecError(f"{field} must be a positive integer, got {text}")
        if _SIZE_NAME.match(text):
            return text
    raise SpecError(
        f"{field} must be a positive integer or a symbol name like 'H', got {value!r}"
    )


def check_T(T: Any) -> int:
    """Validate a sequence length: a positive integer."""
    if isinstance(T, bool) or not isinstance(T, int):
        try:
            T = int(str(T))
        except ValueError:
            raise SpecError(f"T must be a positive integer, got {T!r}") from None
    if T < 1:
        raise SpecError(f"T must be a positive integer (T >= 1), got {T}")
    return T


DEFAULT_SPEC = Spec()


def load_spec(path: str | Path | None = None, **overrides: Any) -> Spec:
    """The spec from a TOML file (or the default), with flag overrides applied."""
    base = Spec.from_toml(path) if path is not None else DEFAULT_SPEC
    changes = {k: v for k, v in overrides.items() if v is not None}
    return base.replace(**changes) if changes else base
