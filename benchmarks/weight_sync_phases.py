"""Where the weight sync's time goes (issue 21): per phase (transfer | fan-out on the dst
mesh), the first version of the two-mesh plan and runtime ("before"), today's ("after") and
the per-tile broadcast, side by side in one 16-rank MPI job per case.

    python -m benchmarks.weight_sync_phases [--mib 8] [--repeat 7] [--cases ...]

Writes benchmarks/results/weight_sync_phases.json and .md. Shared 2-core machine: compare
within a case only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from redist.runtime.launch import find_mpiexec

from . import report as report_io
from .weight_sync import CASES, save, shape_for


def run_case(name: str, mib: int, repeat: int) -> dict:
    _, a, src, b, dst = CASES[name]
    spec = {"a": a, "b": b, "src": src, "dst": dst, "shape": shape_for(name, mib),
            "dtype": "bfloat16"}
    cmd = [find_mpiexec(), "-n", "16", sys.executable, "-m",
           "benchmarks.weight_sync_phases_mpi", json.dumps(spec), str(repeat)]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=here, timeout=3600)
    if r.returncode != 0:
        return {"case": name, "failed": (r.stderr.strip().splitlines() or ["?"])[-1][:300]}
    row = json.loads(next(x for x in r.stdout.splitlines() if x.startswith("{")))
    row.update(case=name, spec=spec)
    return row


def report(rows: list[dict], info: dict) -> str:
    lines = [f"# Weight sync: where the time goes — {info['date']}", "",
             f"Machine: {info['machine']}. {info['note']}", "",
             f"Command: `{info['command']}`", "",
             "Medians over the repetitions of the slowest rank, in ms. *transfer* and "
             "*fan-out* are timed with a barrier between them; *whole* is the method run "
             "without one. before: the first version (mid on the largest divisible dim; "
             "receive into the mid block, then the one-mesh all_gather grows it by realloc "
             "and moves it into its slot; bfloat16 as a contiguous 2-byte MPI type, one "
             "subarray dim per array dim). after: today's (mid dim by cost: fewer messages, "
             "contiguous gather pieces; receive straight into the slot of the dst block, "
             "Allgather in place; a native 16-bit type, subarray dims merged). bcast: whole "
             "tile to one replica, then a broadcast (today's MPI types).", "",
             "| case | method | mid | messages | transfer | fan-out | whole | vs bcast "
             "(whole) | all match |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['case']} | FAILED {r['failed']} ||||||||")
            continue
        med = r["median_ms"]
        for m in ("before", "after", "bcast"):
            mid = r.get(f"mid_{m}", "-")
            lines.append(
                f"| {r['case']} | {m} | `{mid}` | {r[f'messages_{m}']} | "
                f"{med[m]['transfer']:.1f} | {med[m]['fan_out']:.1f} | {med[m]['whole']:.1f} | "
                f"{med[m]['whole'] / med['bcast']['whole']:.2f}x | "
                f"{'yes' if r['all_match'][m] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--cases", default="ep-pp-tp-dp,fsdp-tp-replicas")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    rows = []
    for name in args.cases.split(","):
        print(f"... {name}", file=sys.stderr, flush=True)
        rows.append(run_case(name, args.mib, args.repeat))
    info = report_io.meta("weight_sync_phases", note=(
        "Shared machine: 2 cores, other engineers' jobs running; 16 MPI ranks oversubscribe "
        "them 8x, so only ratios within one job mean anything."))
    save(args.out, "weight_sync_phases", info, rows, report(rows, info))


if __name__ == "__main__":
    main()
