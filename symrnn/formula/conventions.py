"""How a user's BPTT function is called and what it returns: :class:`Conventions`.

symrnn's own convention: column vectors, h_t = f(W_hh h_{t-1} + W_xh x_t + b_h),
L = Σ_t L_t over one sequence, h_0 a constant input drawn at random.  A function
written another way declares how, and the checker translates (it never edits the
function).  Every field has today's default, so ``Conventions()`` is Karpathy's
min-char-rnn ``lossFun(inputs, targets, hprev)`` with vector inputs.

Arrays the function receives (n: a vector's size, B: ``batch``):

* ``vectors="column"``: per-step vectors (n, B); weights as symrnn's (W @ h).
  ``"row"``: (B, n) with ``batch_axis=0``, or (n,) with ``batch_axis=None`` (B = 1);
  the function computes h @ W' + x @ U' + b', so every weight it receives (and every
  gradient it returns) is symrnn's transposed.  ``"1d"``: (n,) vectors with symrnn's
  weights (W @ h, B = 1).  Biases take the vectors' form, or (n,) with ``bias_ndim=1``.
* ``sequence="list"``: a list of per-step arrays; ``"stacked"`` (= ``"time_major"``):
  one array, time on axis 0, (T, …); ``"batch_first"``: (B, T, n) (row vectors with
  ``batch_axis=0``).  A many_to_one function gets its one target y_T (stacked forms) or
  the list [None, …, y_T].
* ``input_kind="index"``: x_t is a one-hot column (D = the vocabulary) and the function
  gets the integer index (an int, or B ints), so W_xh is its input map: an embedding
  table that it indexes (``W_xh[:, i]``, or ``E[i]`` with E = W_xhᵀ in row layout) and
  whose gradient is W_xh's.  ``"one_hot"``: the same one-hot x_t as vectors.
  ``target_kind="index"``: class indices (cross-entropy).
* ``initial_state``: the keyword of h_0 (a string, for one-state cells), a mapping
  {state: keyword} (``{"h": "hprev", "c": "cprev"}``; states h, c, h_l1, h_reverse, …)
  or None (the function takes none).  ``initial_value``: ``"random"`` (drawn, as
  today), ``"zero"`` (the function starts from h_0 = 0), an (H,) array for every state,
  or a mapping {state: array}.
* ``params`` maps symrnn's names to keywords: per-gate names (W_xi, W_hf, b_o …), the
  notes' aliases (W, U, b, V, c), or torch's stacked names (weight_ih, weight_hh,
  bias_ih, bias_hh, with _l{k} and _reverse; weight_ih_l0 = weight_ih), which hold
  the gates' (H, ·) blocks top to bottom in ``gate_order`` (default the cell's: ifgo for
  LSTM, run for GRU; letters z = u and c = g accepted, so Keras' ``"ifco"`` and torch's
  GRU ``"rzn"`` read as written).  The table of which gate sits in which stack is
  :attr:`symrnn.engine.graph.Network.stacks`, the one the code generator uses.
* ``biases``: None (as the spec says), ``"one"`` or ``"two"`` (b_ih and b_hh, as torch:
  the spec is checked with ``layout="torch"``, whose two gradients are each ∂L/∂b).

What the function computes: ``time`` and ``batch_reduction`` (``"sum"`` or
``"mean"``); ``tbptt=(k1, k2)`` (every k1 steps, the chunk's losses backpropagated
through the last k2 steps, the earlier state a constant) and ``clip`` (global norm over
every parameter gradient) / ``clip_value`` (elementwise), applied to the gradients as
the function returns them (after the means); ``returned``: ``"gradient"``,
``"negative_gradient"`` (−∂L/∂θ) or ``"update"`` (−lr · ∂L/∂θ, with ``lr``).

``dtype="float32"``: arrays are passed as float32 and compared with ``rtol = 1e-4,
atol = 1e-5`` (:data:`TOLERANCES`): float32 rounds at 6e-8, and a T ≤ 10-step BPTT on
H ≤ 8 accumulates at most a few hundred roundings (≈1e-5 relative), while the slips the
checker is for change entries by far more than 1e-4.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from symrnn.errors import SpecError
from symrnn.formula.problem import ATOL, RTOL

__all__ = ["Conventions", "TOLERANCES", "KARPATHY", "GATE_ALIASES"]

KARPATHY = {"W_xh": "Wxh", "W_hh": "Whh", "W_hy": "Why", "b_h": "bh", "b_y": "by"}
"""min-char-rnn's keyword names for the Elman parameters."""

GATE_ALIASES = {"z": "u", "c": "g"}
"""Other libraries' gate letters: torch/Keras call the GRU's update gate z, Keras the
LSTM candidate c."""

TOLERANCES = {"float64": (RTOL, ATOL), "float32": (1e-4, 1e-5)}
"""(rtol, atol) by the function's dtype (see the module doc for float32's)."""

_CHOICES = {"vectors": ("column", "row", "1d"),
            "sequence": ("list", "stacked", "time_major", "batch_first"),
            "target_kind": ("vector", "index"), "input_kind": ("vector", "index", "one_hot"),
            "time": ("sum", "mean"), "batch_reduction": ("sum", "mean"),
            "batch_axis": (None, 0), "biases": (None, "one", "two"), "bias_ndim": (None, 1),
            "returned": ("gradient", "negative_gradient", "update"),
            "dtype": ("float64", "float32")}


@dataclass(frozen=True)
class Conventions:
    """How a user's BPTT function is called and what it returns (see the module doc)."""

    params: Mapping[str, str] = field(default_factory=lambda: dict(KARPATHY))
    inputs: str = "inputs"
    targets: str = "targets"
    initial_state: str | Mapping[str, str] | None = "hprev"
    returns: tuple[str, ...] = ("loss", "W_xh", "W_hh", "W_hy", "b_h", "b_y", "_")
    vectors: str = "column"
    batch_axis: int | None = None
    sequence: str = "list"
    target_kind: str = "vector"
    time: str = "sum"
    initial_state_constant: bool = True
    input_kind: str = "vector"
    batch: int = 1
    batch_reduction: str = "sum"
    initial_value: str | np.ndarray | Mapping[str, np.ndarray] = "random"
    biases: str | None = None
    bias_ndim: int | None = None
    gate_order: str | None = None
    tbptt: tuple[int, int] | None = None
    clip: float | None = None
    clip_value: float | None = None
    returned: str = "gradient"
    lr: float | None = None
    dtype: str = "float64"

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise SpecError(f"conventions.{name}: expected one of {allowed}, "
                                f"got {getattr(self, name)!r}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise SpecError(f"conventions.batch: expected a positive integer, got "
                            f"{self.batch!r}")
        if self.batch > 1 and self.flat:
            raise SpecError(f"conventions.batch = {self.batch} needs a batch axis: 1-D "
                            "vectors hold one sequence (use vectors='column', or 'row' "
                            "with batch_axis=0)")
        if self.sequence == "batch_first" and not (self.vectors == "row"
                                                   and self.batch_axis == 0):
            raise SpecError("conventions.sequence 'batch_first' stacks (B, T, n) arrays: "
                            "it needs vectors='row' with batch_axis=0")
        self._check_numbers()

    def _check_numbers(self) -> None:
        object.__setattr__(self, "returns", tuple(self.returns))
        if self.tbptt is not None:
            from symrnn.codegen.lower import Options

            if not isinstance(self.tbptt, tuple | list):
                raise SpecError(f"conventions.tbptt: expected (k1, k2), got {self.tbptt!r}")
            object.__setattr__(self, "tbptt", tuple(self.tbptt))
            if len(self.tbptt) != 2:
                raise SpecError(f"conventions.tbptt: expected (k1, k2), got {self.tbptt!r}")
            Options(tbptt=self.tbptt)  # the code generator's rule, 1 <= k1 <= k2
        for name in ("clip", "clip_value", "lr"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not (
                    isinstance(value, int | float) and np.isfinite(value) and value > 0)):
                raise SpecError(f"conventions.{name}: expected a finite number > 0, "
                                f"got {value!r}")
        if (self.returned == "update") != (self.lr is not None):
            raise SpecError("conventions: returned='update' (−lr · gradient) needs lr, and "
                            f"lr applies to it only (got returned={self.returned!r}, "
                            f"lr={self.lr!r})")
        if isinstance(self.initial_value, str) and self.initial_value not in ("random",
                                                                             "zero"):
            raise SpecError("conventions.initial_value: expected 'random', 'zero', an "
                            f"array or a mapping state -> array, got {self.initial_value!r}")

    # ------------------------------------------------------------- what is compared

    @property
    def flat(self) -> bool:
        """Per-step vectors are 1-D (n,)."""
        return self.vectors == "1d" or (self.vectors == "row" and self.batch_axis is None)

    @property
    def tolerance(self) -> tuple[float, float]:
        return TOLERANCES[self.dtype]

    @property
    def sign(self) -> float:
        """What the function returns per unit of gradient: 1, −1 or −lr."""
        return {"gradient": 1.0, "negative_gradient": -1.0}.get(self.returned,
                                                                -float(self.lr or 0.0))

    def loss_factor(self, T: int) -> int:
        """L_symrnn / L_function: T for a mean over time, times B for a mean over batch."""
        return (T if self.time == "mean" else 1) * (self.batch if
                                                     self.batch_reduction == "mean" else 1)

    def clip_thresholds(self, T: int) -> tuple[float | None, float | None]:
        """(clip, clip_value) on the summed gradient g: the function clips g / f (f: the
        loss factor), and clip(g / f) = clip_{f·G}(g) / f for both kinds."""
        factor = self.loss_factor(T)
        return tuple(None if c is None else c * factor for c in (self.clip, self.clip_value))

    @property
    def plain(self) -> bool:
        """One sequence, full BPTT, no clipping: the engine's unrolled gradient applies as is
        (and the diagnosis can compare against its variants)."""
        return self.batch == 1 and self.tbptt is None and self.clip is None \
            and self.clip_value is None

    def state_keywords(self, states: tuple[str, ...]) -> dict[str, str]:
        """Free initial state → the function's keyword (those it takes)."""
        if self.initial_state is None:
            return {}
        if isinstance(self.initial_state, str):
            if len(states) != 1:
                raise SpecError(f"the network has initial states {', '.join(states)}: give "
                                "conventions.initial_state as a mapping {state: keyword}, "
                                "e.g. {'h': 'hprev', 'c': 'cprev'}")
            return {states[0]: self.initial_state}
        out = {}
        for key, keyword in self.initial_state.items():
            state = key[:-2] if key.endswith("_0") else key
            if state not in states:
                raise SpecError(f"conventions.initial_state names {key!r}; the network's "
                                f"initial states are {', '.join(states)}")
            out[state] = keyword
        return out

    def initial_values(self, states: tuple[str, ...], H: int) -> dict[str, np.ndarray]:
        """state → the fixed h_0 the function uses (empty: drawn at random)."""
        value = self.initial_value
        if isinstance(value, str):
            return {} if value == "random" else {s: np.zeros((H, 1)) for s in states}
        table = value if isinstance(value, Mapping) else {s: value for s in states}
        out = {}
        for key, array in table.items():
            state = key[:-2] if key.endswith("_0") else key
            array = np.asarray(array, dtype=float)
            if state not in states or array.size != H:
                raise SpecError(f"conventions.initial_value: expected (H,) = ({H},) arrays "
                                f"for states {', '.join(states)}, got {key!r} with shape "
                                f"{array.shape}")
            out[state] = array.reshape(H, 1)
        return out

    # ------------------------------------------------------------- arrays passed in

    def _cast(self, array: np.ndarray) -> np.ndarray:
        return np.array(array, dtype=self.dtype)

    def vector_in(self, columns: list[np.ndarray]) -> np.ndarray:
        """One step's vector for the batch (B columns (n, 1)) in the function's form."""
        block = np.hstack(columns)
        if self.vectors == "column":
            return self._cast(block)
        return self._cast(block.ravel() if self.flat else block.T)

    def bias_in(self, column: np.ndarray) -> np.ndarray:
        if self.bias_ndim == 1 or self.flat:
            return self._cast(column.ravel())
        return self._cast(column if self.vectors == "column" else column.T)

    def param_in(self, value: np.ndarray, is_bias: bool) -> np.ndarray:
        if is_bias:
            return self.bias_in(value)
        return self._cast(value.T if self.vectors == "row" else value)

    def index_in(self, columns: list[np.ndarray]):
        """One step's class indices: an int (B = 1) or an array of B ints."""
        indices = [int(np.argmax(c)) for c in columns]
        return indices[0] if self.batch == 1 else np.array(indices)

    def sequence_in(self, steps: list):
        if self.sequence == "list":
            return steps
        return np.stack(steps, axis=1 if self.sequence == "batch_first" else 0)

    def grad_out(self, name: str, value, shape: tuple[int, int]) -> np.ndarray:
        """A returned gradient in symrnn's (column) orientation and ``shape``."""
        arr = np.asarray(value, dtype=float)
        if self.vectors == "row" and arr.ndim == 2:
            arr = arr.T
        if arr.size != shape[0] * shape[1]:
            raise SpecError(f"gradient for {name}: expected {shape[0] * shape[1]} entries "
                            f"(shape {shape}), got shape {arr.shape}")
        return arr.reshape(shape)

    def describe(self) -> tuple[str, ...]:
        """Verdict notes: the declared conventions that differ from symrnn's own."""
        rtol, atol = self.tolerance
        items = [
            (self.initial_value is not None and not isinstance(self.initial_value, str),
             "the given initial state(s)"),
            (isinstance(self.initial_value, str) and self.initial_value == "zero",
             "zero initial state(s) (h_0 = 0)"),
            (self.input_kind != "vector", f"{self.input_kind} inputs (x_t one-hot)"),
            (self.batch > 1, f"a batch of {self.batch} sequences, loss "
                             f"{'averaged' if self.batch_reduction == 'mean' else 'summed'}"
                             " over the batch"),
            (self.tbptt is not None, f"truncated BPTT k1, k2 = {self.tbptt}"),
            (self.clip is not None, f"gradients clipped to global norm {self.clip}"),
            (self.clip_value is not None, f"gradients clipped to [-{self.clip_value}, "
                                          f"{self.clip_value}]"),
            (self.returned != "gradient", "returns " + ("-gradient" if self.lr is None
                                                        else f"-{self.lr} * gradient")),
            (self.dtype == "float32", f"float32, compared with rtol {rtol:g}, atol {atol:g}"),
        ]
        return tuple(f"conventions: {text}" for on, text in items if on)
