"""`python -m redist.proofs [--quick]`: discharge the general theorems, print a report."""

from __future__ import annotations

import argparse
import sys

from .theorems import run_all


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m redist.proofs", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller bounds (seconds, not minutes)")
    args = ap.parse_args()
    results = run_all(quick=args.quick,
                      on_progress=lambda m: print(m, file=sys.stderr, flush=True))
    for r in results:
        print(r.line())
        print(f"        {r.statement}")
        for f in r.failures[:10]:
            print(f"        FAILED: {f}")
    return 0 if all(r.proved for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
