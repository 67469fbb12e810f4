"""How derivation time scales with T: rolled (once, any T) vs unrolled vs scalar sympy.diff.

Prints three Markdown tables:

1. the rolled BPTT recurrence per cell: derived from one generic step, so
   its cost does not depend on T at all;
2. the unrolled matrix-form gradients for T = 1, 2, 4, ..., 64 (linear in T);
3. for comparison, SymPy's own route at hidden = 2: expand the unrolled loss
   to scalars and ``sympy.diff`` it with respect to every parameter entry
   (T <= 5; it grows about 4x per step), and symrnn's scalar oracle, which
   differentiates the same loss in common-subexpression form.

Each time is the median of ``--repeats`` runs with SymPy's cache cleared
before every run.  Usage: ``python bench/derive_scaling.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import sympy
from sympy.core.cache import clear_cache

from symrnn import Spec, derive_recurrence, derive_unrolled
from symrnn.checks.evaluate import run_forward
from symrnn.checks.oracle import explicit_symbols
from symrnn.checks.proof import prove_unrolled
from symrnn.engine.graph import unroll

TARGETS = {"rolled elman": 0.5, "rolled lstm": 3.0, "unrolled T=64": 10.0}


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        clear_cache()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive_sympy_diff(spec: Spec, T: int) -> int:
    """Fully expanded scalar loss (no CSE), sympy.diff for every parameter entry."""
    program = unroll(spec, T)
    env = {}
    leaves = [*program.params.values(), *program.initial_states.values()]
    for eq in program.equations:
        for sym in eq.rhs.free_symbols:
            if isinstance(sym, sympy.MatrixSymbol) and sym not in env:
                if sym.name[:2] in ("x_", "y_") or sym in leaves:
                    env[sym] = explicit_symbols(sym)
    env = run_forward(program.equations, env)
    loss = sum(env[L][0, 0] for L in program.losses)
    derivatives = [sympy.diff(loss, s) for sym in leaves for s in env[sym]]
    return len(derivatives)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-naive-T", type=int, default=5)
    args = parser.parse_args()

    print("### Rolled recurrence (derived once, valid for every T)\n")
    print("| cell | time (s) | target |")
    print("|---|---:|---:|")
    for cell in ("elman", "lstm", "gru"):
        seconds = timed(lambda c=cell: derive_recurrence(Spec(cell=c)), args.repeats)
        target = TARGETS.get(f"rolled {cell}")
        bound = f"< {target:.1f}" if target else ""
        print(f"| {cell} | {seconds:.3f} | {bound} |")

    print("\n### Unrolled matrix-form gradients, Elman tanh (default spec)\n")
    print("| T | time (s) | time / T (ms) |")
    print("|---:|---:|---:|")
    for T in (1, 2, 4, 8, 16, 32, 64):
        seconds = timed(lambda T=T: derive_unrolled(Spec(), T), args.repeats)
        print(f"| {T} | {seconds:.3f} | {1000 * seconds / T:.1f} |")

    print("\n### Scalar route at hidden = 2 (input 2, output 2), every parameter entry\n")
    print("| T | expanded loss + sympy.diff (s) | symrnn oracle, CSE + proof (s) |")
    print("|---:|---:|---:|")
    spec = Spec(hidden_size=2)
    for T in range(1, args.max_naive_T + 1):
        naive = timed(lambda T=T: naive_sympy_diff(spec, T), 1)
        oracle = timed(lambda T=T: prove_unrolled(spec, T).raise_if_failed(), 1)
        print(f"| {T} | {naive:.2f} | {oracle:.2f} |")


if __name__ == "__main__":
    main()
