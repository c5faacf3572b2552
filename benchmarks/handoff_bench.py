"""What a chunk handoff of the in-place all-to-all costs, with and without ranks sharing
cores (issue 16): the exchange phase (pairwise swaps through one chunk of a 16th of the
block, runtime.execute._swap) against one Alltoall of the same blocks, on 2 ranks (one
core each on a 2-core machine) and on 8 (4 per core), with MPI's spinning wait and with
naps, and two alternatives: the chunk cut into two half-chunk slots (double buffering,
same memory) and a chunk 4x larger (more memory than the proof allows; for reference).

    python -m benchmarks.handoff_bench [--mib 8] [--reps 7] [--rounds 2]

Writes DIR/handoff-<date>.json and .md. Each configuration runs --rounds times, the
configurations alternating; the table gives the median over rounds of each job's median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from redist.runtime.launch import find_mpiexec

from . import report as report_io

CONFIGS = [(2, 2), (8, 2), (8, 8)]          # (ranks, group size)


def run(ranks: int, g: int, mib: int, reps: int) -> dict:
    cmd = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "benchmarks.handoff_mpi",
           str(mib), str(g), str(reps)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode or not lines:
        raise SystemExit(f"handoff_bench: {' '.join(cmd)} failed: {r.stderr[-500:]}")
    return json.loads(lines[-1])


def report(rows: list[dict], info: dict) -> str:
    out = [f"# Chunk handoffs — {info['date']}", "",
           f"Machine: {info['machine']}. {info['note']}", "",
           f"Command: `{info['command']}`", "",
           "Milliseconds (median over rounds of each job's median; in brackets: over the "
           "Alltoall of the same job, median over rounds).", ""]
    variants = list(rows[0]["ms"])
    out.append("| ranks | g | messages per rank | " + " | ".join(variants) + " |")
    out.append("|---" * (3 + len(variants)) + "|")
    for ranks, g in CONFIGS:
        runs = [r for r in rows if (r["ranks"], r["g"]) == (ranks, g)]
        if not runs:
            continue
        cells = []
        for v in variants:
            ms = statistics.median(r["ms"][v] for r in runs)
            ratio = statistics.median(r["ms"][v] / r["ms"]["Alltoall"] for r in runs)
            cells.append(f"{ms:.1f} ({ratio:.2f}x)")
        out.append(f"| {ranks} | {g} | {runs[0]['messages']} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=8, help="MiB per rank (default 8)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    rows = []
    for k in range(args.rounds):
        for ranks, g in CONFIGS:
            print(f"[round {k + 1}/{args.rounds}] {ranks} ranks, g={g} ...", file=sys.stderr,
                  flush=True)
            rows.append(run(ranks, g, args.mib, args.reps))
    info = report_io.meta(
        "handoff_bench",
        note="MPICH (PyPI wheel), shared memory; the variants take turns within each "
             "repetition; rep 0 discarded. 2 ranks have a core each only if nothing else "
             "runs on the machine.")
    report_io.write(args.out, "handoff", info, {"rows": rows}, report(rows, info))


if __name__ == "__main__":
    main()
