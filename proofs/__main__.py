"""`python -m redist.proofs [--quick] [--processes N]`: discharge the general theorems,
print a report (progress on stderr), exit 1 if any is not proved."""

from __future__ import annotations

import argparse
import sys
import time

from .theorems import run_all


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m redist.proofs", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller bounds (seconds, not minutes)")
    ap.add_argument("--processes", type=int, default=None,
                    help="worker processes for independent cases (default: one per core)")
    args = ap.parse_args()
    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)
    results = run_all(quick=args.quick, on_progress=progress, processes=args.processes)
    for r in results:
        print(r.line())
        print(f"        {r.statement}")
        for f in r.failures[:10]:
            print(f"        FAILED: {f}")
    return 0 if all(r.proved for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
