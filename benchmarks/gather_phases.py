"""Where a gather's time goes (issue 16, random-3): the portable plan of a runtime_bench
case, called as users call it (`redistribute_with_stats`), phase by phase, beside the
same plan with the grown slots zero-filled first (the runtime before this change) and one
direct Alltoallv, taking turns in one MPI job (benchmarks/turns.py).

    python -m benchmarks.gather_phases [--cases random-3,random-0,gather-all] [--reps 7]

Phases, per rank (median over ranks and repetitions): `grow` (execute._resize: mremap of
the runtime's own mapping, runtime/alloc.py, and the zero fill where asked), `place`
(inplace.expand: the block moved into its slot), `messages` (execute.gather_in_slots:
the messages and their waits), with the minor page faults of each (getrusage), and
whether the block's address changed (mremap may move the pages: no copy, no fault; a
copy shows as faults in `grow`). Writes
DIR/gather-phases-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

from . import report as report_io

METHODS = ("plan", "plan-zeroed", "direct")
PHASES = (("grow", "_resize"), ("place", "expand"), ("messages", "gather_in_slots"))


def rank_main(mesh_t: str, shape_t: str, src_t: str, dst_t: str, reps: int) -> None:
    import functools

    from mpi4py import MPI

    from redist.core.model.problem import Problem
    from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape
    from redist.core.synthesis.synthesize import normal
    from redist.runtime import execute, inplace
    from redist.runtime.arrays import sample_block

    from . import turns

    comm = MPI.COMM_WORLD
    problem = Problem(parse_mesh(mesh_t), parse_shape(shape_t), "float32",
                      parse_layout(src_t), parse_layout(dst_t))
    plan = normal(problem).plan
    expected = sample_block(problem.mesh, problem.shape, problem.dst, comm.Get_rank(),
                            "float32")
    faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # noqa: E731
    now: dict[str, float] = {}
    zeroed = [False]

    def timed(label: str, f):
        def g(*a, **k):
            t, p = time.perf_counter(), faults()
            try:
                return f(*a, **k)
            finally:
                now[label] = now.get(label, 0.0) + time.perf_counter() - t
                now[label + " faults"] = now.get(label + " faults", 0) + faults() - p
        return g
    grow = execute._resize

    def resize(box, n, mem, zero=True):
        start = box[-1].__array_interface__["data"][0]
        out = grow(box, n, mem, zero or zeroed[0])
        now["moved"] = float(out.__array_interface__["data"][0] != start)
        return out
    execute._resize = timed("grow", resize)
    inplace.expand = timed("place", inplace.expand)
    execute.gather_in_slots = timed("messages", execute.gather_in_slots)
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}

    def plan_run(zero: bool, box: list) -> tuple:
        zeroed[0] = zero
        return turns.redistribute(plan, comm)(box)

    def call(method: str, trace: bool) -> tuple:
        now.clear()
        how = (turns.direct(plan, comm) if method == "direct"
               else functools.partial(plan_run, method == "plan-zeroed"))
        r = turns.timed_call(problem, comm, expected, how, trace)
        every = comm.gather(dict(now, total=r[0]))
        if comm.Get_rank() == 0 and not trace:
            runs[method].append({k: statistics.median(e.get(k, 0) for e in every)
                                 for k in every[0]} | {"total": r[0]})
        return r
    done = turns.take_turns(METHODS, reps, call)
    if comm.Get_rank() == 0:
        out = {"steps": [s.op for s in plan.steps], "methods": {}}
        for m in METHODS:
            rows = runs[m][len(runs[m]) - reps:]          # rep 0 warmed up
            out["methods"][m] = {k: statistics.median(r.get(k, 0) for r in rows)
                                 for k in rows[0]} | {"all_match": done["matched"][m]}
        print(json.dumps(out), flush=True)


def main() -> None:
    from .runtime_bench import phases_case
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="random-3,random-0,gather-all")
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    info = report_io.meta("gather_phases", load_average=str(os.getloadavg()))
    result, lines = {}, []
    for name in a.cases.split(","):
        got = phases_case("gather_phases", name, a.mib, a.reps)
        mesh, shape, src, dst = got["mesh"], got["shape"], got["src"], got["dst"]
        result[name] = got
        direct = got["methods"]["direct"]["total"]
        lines.append(f"\n## {name}: mesh {mesh}, shape {shape}, `{src}` -> `{dst}` "
                     f"({'+'.join(got['steps'])})\n")
        lines.append("| method | total ms | / direct | grow ms (faults) | moved | place ms | "
                     "messages ms | all match |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for m, v in got["methods"].items():
            ms = lambda k, v=v: f"{1e3 * v.get(k, 0):.1f}"  # noqa: E731
            lines.append(f"| {m} | {ms('total')} | {v['total'] / direct:.2f} | {ms('grow')} "
                         f"({v.get('grow faults', 0):.0f}) | {v.get('moved', 0):.0f} | "
                         f"{ms('place')} | {ms('messages')} | {v['all_match']} |")
    info["load_average_after"] = str(os.getloadavg())
    text = (f"# Gather phases — {info['date']}\n\nCommand: `{info['command']}`; load "
            f"average before {info['load_average']}, after {info['load_average_after']} "
            "(a shared 2-core machine: ratios within a case's job only).\n\n"
            "Medians over ranks, then over repetitions (the methods taking turns, rep 0 "
            "discarded, the last traced and not timed). `plan-zeroed`: the new slots "
            "zero-filled first, as before this change; `moved`: the block's address changed "
            "(median over ranks).\n" + "\n".join(lines) + "\n")
    report_io.write(a.out, "gather-phases", info, {"cases": result}, text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rank-side"]:
        rank_main(*sys.argv[2:6], int(sys.argv[6]))
    else:
        main()
