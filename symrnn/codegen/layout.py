"""Where a step plan's values live in generated code: buffers, slices, stacked parameters.

Array conventions: inputs are batch-first (B, T, ·); internal buffers are time-major.
A state s has ``{S}S`` (T+1, B, H) with ``HS[t]`` = h_t for t = 0..T; a stored value v
(a gate, tanh(c_t), a recurrent product) has ``{V}S`` (T, B, ·) with ``IS[t - 1]`` = i_t.
The adjoint of a state is ``delta`` (first state) or ``delta_{s}`` (T, B, H).

Parameters.  torch's stacked tensors (weight_ih, weight_hh, bias_ih, bias_hh; see
:attr:`symrnn.engine.cells.CellDef.stacks`) are what the code multiplies by.  With
``layout = "torch"`` they are the module's parameters; with ``"notes"`` the module
takes per-gate parameters and stacks them on entry (a stack with one member is that
parameter itself, so the Elman code multiplies by W_hh).  A per-gate parameter inside
code is a row slice of its stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from symrnn.codegen import ir
from symrnn.codegen.plan import Product, StepPlan, base_of
from symrnn.engine.graph import Network

__all__ = ["Layout", "buffer", "delta_name", "carry_name", "state_arg", "HEAD"]

N, Idx, op = ir.Name, ir.Index, ir.op
HEAD = ("W_hy", "b_y")


def buffer(base: str) -> str:
    """The buffer of a state or stored value: HS, CS, IS, TANH_CS, ..."""
    return f"{base.upper()}S"


def delta_name(net: Network, state: str) -> str:
    return "delta" if state == net.readout else f"delta_{state}"


def carry_name(net: Network, state: str) -> str:
    return "carry" if state == net.readout else f"carry_{state}"


def state_arg(state: str) -> str:
    """The argument holding a state's initial value: h → h0, c_l1 → c0_l1, h_reverse →
    h0_reverse."""
    base, sep, rest = state.partition("_")
    return f"{base}0{sep}{rest}"


def _rows(first: int, stop: int, H: int, total: int) -> str | None:
    return None if (first, stop) == (0, total) else f"{first * H}:{stop * H}"


@dataclass(frozen=True)
class Layout:
    """Names of the parameters as the module takes them and as the code uses them."""

    plan: StepPlan

    @property
    def net(self) -> Network:
        return self.plan.network

    @property
    def torch(self) -> bool:
        return self.net.spec.layout == "torch"

    @property
    def H(self) -> int:
        return int(self.net.sizes.H)

    def members(self, stack: str) -> tuple[str | None, ...]:
        return self.net.stacks[stack]

    def present(self, stack: str) -> bool:
        return any(m is not None for m in self.members(stack))

    def module_params(self) -> list[str]:
        """PARAM_NAMES: torch's stacks (torch layout) or per-gate names, then the head."""
        head = [n for n in HEAD if n in self.net.params]
        if self.torch:
            return [s for s in self.net.stacks if self.present(s)] + head
        return [n for n in self.net.params if n not in HEAD] + head

    def cell_params(self) -> list[str]:
        """PARAM_NAMES without the head: what a layer function takes."""
        return [n for n in self.module_params() if n not in HEAD]

    def stack_code(self, stack: str) -> ir.Node:
        """The stacked tensor as code reads it (a name)."""
        members = [m for m in self.members(stack) if m is not None]
        if not self.torch and len(self.members(stack)) == 1:
            return N(members[0])
        return N(stack)

    def build_stacks(self) -> list[ir.Stmt]:
        """Notes layout: stack the per-gate parameters on entry (zeros for absent biases)."""
        if self.torch:
            return []
        out = []
        for stack, members in self.net.stacks.items():
            if len(members) == 1 or not self.present(stack):
                continue
            parts = tuple(N(m) if m is not None else op("zeros", ir.Tuple((N("H"),)),
                                                         N("dtype"), N("device"))
                          for m in members)
            out.append(ir.Assign(N(stack), op("cat0", ir.Tuple(parts)),
                                 f"[{'; '.join(m or '0' for m in members)}]"))
        return out

    def product_weight(self, product: Product) -> ir.Node:
        code = self.stack_code(product.stack)
        rows = _rows(*product.rows, self.H, len(self.members(product.stack)))
        return code if rows is None else Idx(code, rows)

    def product_bias(self, product: Product) -> ir.Node | None:
        members = self.members(product.bias_stack)[product.rows[0]:product.rows[1]]
        if all(m is None for m in members):
            return None
        code = self.stack_code(product.bias_stack)
        rows = _rows(*product.rows, self.H, len(self.members(product.bias_stack)))
        return code if rows is None else Idx(code, rows)

    def params(self) -> dict[str, ir.Node]:
        """Per-gate parameter → code (itself in the notes layout, a row slice in torch's)."""
        out: dict[str, ir.Node] = {n: N(n) for n in HEAD if n in self.net.params}
        for stack, members in self.net.stacks.items():
            for k, name in enumerate(members):
                if name is None:
                    continue
                if not self.torch:
                    out[name] = N(name)
                    continue
                rows = _rows(k, k + 1, self.H, len(members))
                out[name] = N(stack) if rows is None else Idx(N(stack), rows)
        return out

    def product_of(self, weight: str) -> Product:
        return next(p for p in self.plan.products for s in p.slots if s.weight == weight)

    def slot_range(self, product: Product, weight: str) -> str | None:
        """The columns of ``weight``'s slot in the product's (B, width) result."""
        first = product.rows[0]
        k = next(s.index for s in product.slots if s.weight == weight) - first
        width = product.rows[1] - first
        return _rows(k, k + 1, self.H, width)


def stored_products(plan: StepPlan) -> set[str]:
    """Products whose per-step result the reverse pass reads (kept as ``{NAME}S``)."""
    stored = set(plan.stored())
    return {p.name for p in plan.products
            if any(base_of(s.symbol) in stored for s in p.slots)}


__all__ += ["stored_products"]
