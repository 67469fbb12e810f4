"""Wall time of ``check_formula`` (what ``symrnn check`` runs) per cell and T.

    .venv/bin/python bench/bench_check.py            # T = 1..5, H = D = O = 4
    .venv/bin/python bench/bench_check.py --T 3 --repeats 1

For every cell (elman, lstm, gru, gru_v1) one correct formula and one wrong
one, each written as people write them: a δ recursion with diag(·) (elman), the
fully unrolled sum of products of Wᵀ diag(1 − h_j²) (elman Π),
the notes' gate adjoints δ^{o,c,f,i,g}_t (lstm), the issue's GRU δ recursion
that never finished symbolically (gru), gate adjoints of the reset-before GRU
(gru_v1).  The wrong formulas carry one broken definition, so their time
includes locating it, the diagnosis and the scalar case.  Default settings
of the CLI (budget 5 s, 3 instances).  Each cell of the table is the median
of ``--repeats`` runs in seconds; the last columns say what the symbolic step
did at the largest T (for the correct formula) and what the diagnosis named.
A last line times the slowest row through the command line (a fresh process).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from symrnn.formula import check_formula
from symrnn.spec import Spec
from symrnn.testing.textbook import GRU_V1_DEFS, GRU_V1_GRAD, LSTM_DEFS, LSTM_GRAD

ELMAN = [r"\delta_t = V^\top e_t + W^\top \operatorname{diag}(1 - h_{t+1}^2) \delta_{t+1}",
         r"dL/dW = \sum_t \operatorname{diag}(1 - h_t^2) \delta_t h_{t-1}^T"]
LSTM = [*LSTM_DEFS, LSTM_GRAD]
GRU = [
    r"\delta_t = W_hy^T e_t + \delta_{t+1} * u_{t+1}"
    r" + W_hn^T (\delta_{t+1} * (1 - u_{t+1}) * (1 - n_{t+1}^2) * r_{t+1})"
    r" + W_hu^T (\delta_{t+1} * (h_t - n_{t+1}) * u_{t+1} * (1 - u_{t+1}))"
    r" + W_hr^T (\delta_{t+1} * (1 - u_{t+1}) * (1 - n_{t+1}^2) * (W_hn h_t + b_hn)"
    r" * r_{t+1} * (1 - r_{t+1}))",
    r"dL/dW_hn = \sum_t (\delta_t * (1 - u_t) * (1 - n_t^2) * r_t) h_{t-1}^T"]
GRU_V1 = [*GRU_V1_DEFS, GRU_V1_GRAD]
PRODUCT = [r"\frac{\partial L}{\partial W} = \sum_{t=1}^{T} \sum_{k=1}^{t} \left(\left("
           r"\prod_{j=k+1}^{t} W^\top \operatorname{diag}(1 - h_j^2)\right) V^\top e_t "
           r"\odot (1 - h_k^2)\right) h_{k-1}^\top"]

CASES = {  # row → (cell, correct lines, (line to break, old, new))
    "elman": ("elman", ELMAN, (1, r"\operatorname{diag}(1 - h_t^2) ", "")),
    "elman Π": ("elman", PRODUCT, (0, "sum_{k=1}", "sum_{k=2}")),
    "lstm": ("lstm", LSTM, (3, "c_{t-1}", "c_t")),
    "gru": ("gru", GRU, (0, r"W_hn^T (\delta", r"W_hn (\delta")),
    "gru_v1": ("gru_v1", GRU_V1, (2, "(h_{t-1} - n_t)", "(n_t - h_{t-1})")),
}
"""``elman Π``: the unrolled sum with products of W^T diag(1 - h_j^2), which took
17.6 s at T = 3 and did not finish at T = 5 before the polynomial comparison."""


def formulas(row: str) -> dict[str, str]:
    _, lines, (k, old, new) = CASES[row]
    broken = list(lines)
    assert old in broken[k], (row, old)
    broken[k] = broken[k].replace(old, new)
    return {"correct": "; ".join(lines), "wrong": "; ".join(broken)}


def timed(formula: str, spec: Spec, T: int, repeats: int):  # noqa: N803
    times, verdict = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        verdict = check_formula(formula, spec, T=T)
        times.append(time.perf_counter() - start)
    return statistics.median(times), verdict


def cli_time(formula: str, cell: str, T: int, size: int, repeats: int) -> float:  # noqa: N803
    args = [sys.executable, "-m", "symrnn", "check", formula, "--cell", cell, "--T", str(T),
            "--hidden-size", str(size), "--input-size", str(size), "--output-size", str(size)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(args, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=5, help="largest T (rows run 1..T)")
    parser.add_argument("--size", type=int, default=4, help="H = D = O")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.T < 2:
        parser.error("--T must be at least 2: a broken recursion changes nothing at T = 1")
    steps = range(1, args.T + 1)
    print(f"check_formula wall time, seconds (median of {args.repeats}), "
          f"H = D = O = {args.size}, default budget")
    print(f"{'row':8} {'formula':8} " + " ".join(f"{'T=' + str(t):>6}" for t in steps)
          + "  at the largest T")
    slowest = (0.0, None)
    for row, (cell, _, _) in CASES.items():
        spec = Spec(cell=cell, hidden_size=args.size, input_size=args.size,
                    output_size=args.size)
        for kind, formula in formulas(row).items():
            times = []
            for T in steps:
                seconds, verdict = timed(formula, spec, T, args.repeats)
                times.append(seconds)
                slowest = max(slowest, (seconds, (formula, cell, T)), key=lambda s: s[0])
            assert verdict.status == kind, (cell, kind, verdict.to_text())
            what = (f"symbolic: {verdict.symbolic}" if verdict.ok else
                    "diagnosis: " + (", ".join(verdict.diagnosis_classes) or "none"))
            print(f"{row:8} {kind:8} " + " ".join(f"{s:6.2f}" for s in times) + f"  {what}")
    seconds, (formula, cell, T) = slowest
    print(f"slowest row through the CLI ({cell}, T = {T}, a fresh process, median of "
          f"{args.repeats}): {cli_time(formula, cell, T, args.size, args.repeats):.2f} s")


if __name__ == "__main__":
    main()
