"""Where a weight-sync case's time goes, rank by rank (issue 21): per repetition, every
rank's timestamps (CLOCK_MONOTONIC, one clock for all ranks of this machine) from the
barrier that starts the repetition: barrier exit, start of the data movement (redist:
after its plan checks), transfer posted, transfer done, end. Methods, interleaved in one
MPI job: redist (user path, `redistribute_cross`), redist-spin (the same with MPI's spinning
waits) and bcast (per-tile send + broadcast, weight_sync_mpi.Baselines).

    python -m benchmarks.weight_sync_timeline [--case dp8-tp8] [--mib 8] [--repeat 11]

Writes benchmarks/results/weight_sync_timeline.{json,md}. Shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from redist.runtime.launch import find_mpiexec

from . import report as report_io
from .weight_sync import CASES, save, shape_for

METHODS = ("redist", "redist-spin", "bcast")
MARKS = ("t0", "start", "posted", "moved", "end")


def job(spec: dict, reps: int) -> None:
    """One rank of the MPI job; rank 0 prints one JSON line."""
    from mpi4py import MPI

    import redist.runtime.cross as rc
    from redist.core.cross.coerce import between
    from redist.core.cross.synthesize import certified_cross
    from redist.runtime.arrays import sample_block
    from redist.runtime.memory import MemoryTracker

    from .weight_sync_mpi import Baselines

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    cp = between(spec["a"], spec["b"], spec["shape"], spec["dtype"], spec["src"], spec["dst"],
                 comm.Get_size())
    plan, budget = comm.bcast(certified_cross(cp)[::2] if rank == 0 else None, root=0)
    base = Baselines(plan, comm)
    naps = rc.napping(comm)
    marks: dict[str, float] = {}
    post, wait = rc._post, rc._wait

    def timed_post(*a, **k):
        out = post(*a, **k)
        marks["posted"] = time.perf_counter()
        return out

    def timed_wait(*a, **k):
        wait(*a, **k)
        marks["moved"] = time.perf_counter()
    rc._post, rc._wait = timed_post, timed_wait
    messages = sum(1 for a, b in plan.transfer.pairs if a != b and rank in (a, b))
    rows: dict[str, list] = {m: [] for m in METHODS}
    for rep in range(reps + 1):                              # rep 0 warms up
        for m in METHODS:
            local = (sample_block(cp.a_problem.mesh, cp.shape, cp.a_problem.src,
                                  cp.a.position[rank], cp.dtype) if rank in cp.a else None)
            marks.clear()
            comm.Barrier()
            marks["t0"] = time.perf_counter()
            if m == "bcast":
                marks["start"] = marks["t0"]
                out = base.bcast(local, MemoryTracker())[0]
            else:
                rc._naps[comm.py2f()] = naps and m == "redist"
                out, stats = rc.redistribute_cross([local], plan, comm, donate=True,
                                                   budget=budget)
                rc._naps[comm.py2f()] = naps
            marks["end"] = time.perf_counter()
            if m != "bcast":
                marks["start"] = marks["end"] - stats.seconds
            del local, out
            got = comm.gather(dict(marks), root=0)
            if rank == 0 and rep:
                zero = min(g["t0"] for g in got)
                rows[m].append([{k: (v - zero) * 1e3 for k, v in g.items()} for g in got])
    msgs = comm.gather(messages, root=0)
    if rank == 0:
        print(json.dumps({"rows": rows, "messages": msgs, "naps": naps}), flush=True)


def summary(rows: list) -> dict:
    """Medians over repetitions: the benchmark's time (the slowest rank's own interval from
    its start), the barrier-exit skew, the plan checks' time and per-rank marks."""
    def med(f):
        return statistics.median(f(r) for r in rows)
    n = len(rows[0])
    return {
        "time_ms": med(lambda r: max(g["end"] - g["start"] for g in r)),
        "skew_ms": med(lambda r: max(g["t0"] for g in r)),
        "checks_ms": med(lambda r: max(g["start"] - g["t0"] for g in r)),
        "last_end_ms": med(lambda r: max(g["end"] for g in r)),
        "per_rank": {k: [statistics.median(r[i][k] for r in rows) if k in rows[0][i] else None
                         for i in range(n)] for k in MARKS},
    }


def report(case: str, spec: dict, res: dict, info: dict) -> str:
    lines = [f"# Weight sync timeline — {case} — {info['date']}", "",
             f"Machine: {info['machine']}. {info['note']}", "",
             f"Command: `{info['command']}`", "",
             f"`{spec['src']}` on `{spec['a']}` -> `{spec['dst']}` on `{spec['b']}`, shape "
             f"{spec['shape']} {spec['dtype']}. Transfer messages per rank: {res['messages']}. "
             f"Napping waits here: {'on' if res['naps'] else 'off'}.", "",
             "Medians over the repetitions, ms. time: the benchmark's measure (the slowest "
             "rank's own interval from its start); skew: the last rank's barrier exit after "
             "the first's; checks: redist's plan checks (hash agreement, verdict), the most "
             "any rank spent in them (not in time); last end: from the first barrier exit.", "",
             "| method | time | skew | checks | last end |", "|---|---|---|---|---|"]
    for m in METHODS:
        s = res["summary"][m]
        lines.append(f"| {m} | {s['time_ms']:.1f} | {s['skew_ms']:.1f} | {s['checks_ms']:.1f} | "
                     f"{s['last_end_ms']:.1f} |")
    for m in METHODS:
        pr = res["summary"][m]["per_rank"]
        n = len(pr["t0"])
        lines += ["", f"## {m}: per rank (ms from the first barrier exit)", "",
                  "| mark | " + " | ".join(str(r) for r in range(n)) + " |",
                  "|---|" + "---|" * n]
        for k in MARKS:
            if any(v is not None for v in pr[k]):
                lines.append(f"| {k} | " + " | ".join("" if v is None else f"{v:.1f}"
                                                      for v in pr[k]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="dp8-tp8", choices=sorted(CASES))
    ap.add_argument("--mib", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        job(json.loads(args.job), args.repeat)
        return
    from redist.core.cross.model import parse_placed_mesh
    _, a, src, b, dst = CASES[args.case]
    spec = {"a": a, "b": b, "src": src, "dst": dst, "shape": shape_for(args.case, args.mib),
            "dtype": "bfloat16"}
    ranks = max(parse_placed_mesh(a).devices + parse_placed_mesh(b).devices) + 1
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([find_mpiexec(), "-n", str(ranks), sys.executable, "-m",
                        "benchmarks.weight_sync_timeline", "--repeat", str(args.repeat),
                        "--job", json.dumps(spec)],
                       capture_output=True, text=True, cwd=here, timeout=3600)
    if r.returncode != 0:
        sys.exit(f"timeline failed: {(r.stderr.strip().splitlines() or ['?'])[-1][:300]}")
    res = json.loads(next(x for x in r.stdout.splitlines() if x.startswith("{")))
    res["summary"] = {m: summary(res["rows"][m]) for m in METHODS}
    info = report_io.meta("weight_sync_timeline", note=(
        f"Shared machine: 2 cores, other engineers' jobs running; {ranks} MPI ranks."))
    save(args.out, "weight_sync_timeline", info,
         [{"case": args.case, "spec": spec, **res}], report(args.case, spec, res, info))


if __name__ == "__main__":
    main()
