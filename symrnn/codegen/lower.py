"""Lowering: a spec's derivation → the code trees of ``forward`` and ``backward``.

:func:`lower` derives the spec (:func:`symrnn.engine.derive.derive`), arranges its
cell's step for code (:func:`symrnn.codegen.plan.plan`: products, stored values, the
step's reverse pass) and hands both to :mod:`symrnn.codegen.forward`,
:mod:`symrnn.codegen.backward` and :mod:`symrnn.codegen.streaming`.  Any cell whose
step the plan can read is supported; only symbolic sizes are refused.
Nothing in the result is written by hand per spec: a wrong rule in the
rule table gives a wrong recurrence and so wrong generated code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from symrnn.codegen import ir
from symrnn.codegen.backward import head_reads, lower_backward
from symrnn.codegen.forward import lower_forward, packs
from symrnn.codegen.layout import Layout, buffer, stored_products
from symrnn.codegen.plan import StepPlan, plan
from symrnn.codegen.streaming import lower_streamed
from symrnn.engine.derive import Recurrence, derive
from symrnn.errors import SpecError
from symrnn.spec import Spec

__all__ = ["Options", "Lowered", "lower", "check_supported"]


@dataclass(frozen=True)
class Options:
    """Truncation (k1, k2) and clipping (global norm, elementwise value)."""

    tbptt: tuple[int, int] | None = None
    clip: float | None = None
    clip_value: float | None = None

    def __post_init__(self) -> None:
        if self.tbptt is not None:
            k1, k2 = self.tbptt
            if not (isinstance(k1, int) and isinstance(k2, int) and 1 <= k1 <= k2):
                raise SpecError(
                    f"tbptt expected integers 1 <= k1 <= k2 (forward k1 steps, "
                    f"backpropagate k2 steps), got k1={k1!r}, k2={k2!r}"
                )
        for name in ("clip", "clip_value"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float))
                                          and math.isfinite(value) and value > 0):
                raise SpecError(f"{name} expected a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class Lowered:
    spec: Spec
    options: Options
    recurrence: Recurrence
    plan: StepPlan
    layout: Layout
    forward: ir.FunctionDef
    backward: ir.FunctionDef
    buffers: frozenset[str]
    """Names of preallocated arrays: targets the in-place pass may write into."""
    streamed: ir.FunctionDef | None = None
    """``loss_and_grad_streamed`` under TBPTT: one window of states held, not T."""


def check_supported(spec: Spec) -> None:
    """Raise SpecError for specs the code generator does not handle."""
    if not spec.is_concrete:
        raise SpecError(
            "code generation expected integer sizes, got "
            f"H={spec.hidden_size}, D={spec.input_size}, O={spec.output_size}"
        )


def lower(spec: Spec, options: Options | None = None, *, layer: bool = False) -> Lowered:
    """``layer``: the layer functions (no head; seeded from above), see
    :mod:`symrnn.codegen.compose`."""
    options = options or Options()
    check_supported(spec)
    rec = derive(spec).recurrence
    step = plan(spec)
    layout = Layout(step)
    last = spec.topology == "many_to_one"
    backward, buffers = lower_backward(spec, rec, step, layout, last, options.tbptt,
                                       options.clip, options.clip_value, layer)
    forward = lower_forward(spec, step, layout, last, [] if layer else head_reads(rec), layer)
    buffers |= {buffer(s) for s in step.states} | {buffer(b) for b in step.stored()}
    buffers |= {buffer(p) for p in stored_products(step)} | {buffer(p.base)
                                                             for p in packs(step, layout)}
    streamed = None
    if options.tbptt is not None:
        streamed = lower_streamed(spec, rec, step, layout, options.tbptt, options.clip,
                                  options.clip_value)
        rings = [*step.states, *step.stored(), *stored_products(step),
                 *(p.base for p in packs(step, layout))]
        buffers |= {f"ring_{name}" for name in rings}
    return Lowered(spec, options, rec, step, layout, forward, backward, frozenset(buffers),
                   streamed)
