"""Print the gradient-regime acceptance figures (issue 6); exit 1 if one fails.

    .venv/bin/python bench/regimes_acceptance.py [--seeds 5] [--H 32] [--T 200]

Every figure is measured with the generated NumPy backward code
(``symrnn.compile``); the criteria are in ``symrnn/regimes/acceptance.py``.
"""

from __future__ import annotations

import argparse
import sys
import time

from symrnn.regimes.acceptance import all_checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lyapunov-seeds", type=int, default=30)
    parser.add_argument("--H", type=int, default=32)
    parser.add_argument("--T", type=int, default=200)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    checks = all_checks(seeds=args.seeds, H=args.H, T=args.T,
                        lyapunov_seeds=args.lyapunov_seeds)
    for check in checks:
        print(check.text())
        print()
    passed = sum(c.passed for c in checks)
    print(f"{passed}/{len(checks)} acceptance checks passed "
          f"in {time.perf_counter() - start:.1f} s")
    return 0 if passed == len(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
