"""Where the time of a plan chosen between the portable plan and one all_exchange goes
(issue 16, the cost model's equal-memory choice): both plans of a runtime_bench case,
called as users call them (`redistribute_with_stats`), phase by phase, beside one direct
Alltoallv, taking turns in one MPI job (benchmarks/turns.py), with the cost model's
charge for each step next to it. `total` is the call's time (turns.timed_call: the
slowest rank's, from after the plan checks); `execute` is api.execute (the steps and
the buffer handling around them).

    python -m benchmarks.exchange_phases [--cases gather-all,transpose] [--reps 5]

Phases, per rank (wall seconds inside the runtime's functions; the busiest rank's and the
median rank's, then the median over repetitions): per step of a plan (`step <op>`,
execute.run_step or fused_all_to_all) and within them `grow` (execute._resize), `compact`
(inplace.compact_box), `order` (execute._piece_order: its transposes), `transpose`
(inplace.transpose_blocks, also inside `order`), `waits` (execute.wait_all: a round's
messages, or a chunk handoff inside `swap`), `swap` (execute._swap), `arrange`
(execute._arrange_slots and inplace.permute_blocks). Writes
DIR/exchange-phases-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from . import report as report_io

METHODS = ("portable", "exchange", "direct")


def rank_main(mesh_t: str, shape_t: str, src_t: str, dst_t: str, reps: int) -> None:
    from mpi4py import MPI

    from redist.core.model.problem import Problem
    from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape
    from redist.core.ops.all_exchange import AllExchange
    from redist.core.plans.plan import Plan
    from redist.core.synthesis.synthesize import normal
    from redist.runtime import api, execute, inplace
    from redist.runtime.arrays import sample_block

    from . import turns

    comm = MPI.COMM_WORLD
    problem = Problem(parse_mesh(mesh_t), parse_shape(shape_t), "float32",
                      parse_layout(src_t), parse_layout(dst_t))
    plans = {"portable": normal(problem).plan,
             "exchange": Plan(problem, (AllExchange(problem.dst),))}
    expected = sample_block(problem.mesh, problem.shape, problem.dst, comm.Get_rank(),
                            "float32")
    now: dict[str, float] = {}

    def timed(label, f):
        def g(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                name = label(*a) if callable(label) else label
                now[name] = now.get(name, 0.0) + time.perf_counter() - t
                now[name + " calls"] = now.get(name + " calls", 0) + 1
        return g
    execute.run_step = timed(lambda step, *a: f"step {step.op}", execute.run_step)
    api.execute = timed("execute", api.execute)
    execute.fused_all_to_all = timed("step all_to_all (fused)", execute.fused_all_to_all)
    execute._resize = timed("grow", execute._resize)
    execute._piece_order = timed("order", execute._piece_order)
    execute.wait_all = timed("waits", execute.wait_all)
    execute._swap = timed("swap", execute._swap)
    execute._arrange_slots = timed("arrange", execute._arrange_slots)
    inplace.compact_box = timed("compact", inplace.compact_box)
    inplace.transpose_blocks = timed("transpose", inplace.transpose_blocks)
    inplace.permute_blocks = timed("arrange", inplace.permute_blocks)
    # api imports run_step and fused_all_to_all by name: patch its references too.
    api.run_step, api.fused_all_to_all = execute.run_step, execute.fused_all_to_all
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}

    def call(method: str, trace: bool) -> tuple:
        now.clear()
        how = (turns.direct(plans["portable"], comm) if method == "direct"
               else turns.redistribute(plans[method], comm))
        r = turns.timed_call(problem, comm, expected, how, trace)
        every = comm.gather(dict(now))
        if comm.Get_rank() == 0 and not trace:
            keys = sorted({k for e in every for k in e})
            # The busiest rank's (the cost model's device), and the median rank's.
            runs[method].append({k: max(e.get(k, 0) for e in every) for k in keys}
                                | {f"{k} (median rank)": statistics.median(e.get(k, 0)
                                                                           for e in every)
                                   for k in keys if not k.endswith(" calls")}
                                | {"total": r[0]})
        return r
    done = turns.take_turns(METHODS, reps, call)
    if comm.Get_rank() == 0:
        out = {"steps": {m: [s.op for s in p.steps] for m, p in plans.items()},
               "methods": {}}
        for m in METHODS:
            rows = runs[m][len(runs[m]) - reps:]          # rep 0 warmed up
            keys = sorted({k for r in rows for k in r})
            out["methods"][m] = {k: statistics.median(r.get(k, 0) for r in rows)
                                 for k in keys} | {"all_match": done["matched"][m]}
        print(json.dumps(out), flush=True)


def predicted(mesh_t: str, shape_t: str, src_t: str, dst_t: str) -> dict:
    """Per plan, the cost model's charge per step (seconds), as `redist run` reads it."""
    from redist.core.model.problem import Problem
    from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape
    from redist.core.ops.all_exchange import AllExchange
    from redist.core.plans.plan import Plan
    from redist.core.synthesis.costmodel import load, step_load
    from redist.core.synthesis.synthesize import normal
    problem = Problem(parse_mesh(mesh_t), parse_shape(shape_t), "float32",
                      parse_layout(src_t), parse_layout(dst_t))
    model = load()
    out = {}
    for name, plan in (("portable", normal(problem).plan),
                       ("exchange", Plan(problem, (AllExchange(problem.dst),)))):
        lays = plan.layouts()
        out[name] = [(s.op, model.charge(step_load(plan, s, lays[k], lays[k + 1])))
                     for k, s in enumerate(plan.steps)]
    return out


def main() -> None:
    from .runtime_bench import phases_case
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="gather-all,transpose")
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    info = report_io.meta("exchange_phases", load_average=str(os.getloadavg()))
    result, lines = {}, []
    for name in a.cases.split(","):
        got = phases_case("exchange_phases", name, a.mib, a.reps)
        mesh, shape, src, dst = got["mesh"], got["shape"], got["src"], got["dst"]
        got["predicted"] = pred = predicted(mesh, shape, src, dst)
        result[name] = got
        direct = got["methods"]["direct"]["total"]
        lines.append(f"\n## {name}: mesh {mesh}, shape {shape}, `{src}` -> `{dst}`\n")
        lines.append("| method | total ms | / direct | predicted ms (per step) | phases ms: "
                     "busiest / median rank (calls) | all match |")
        lines.append("|---|---|---|---|---|---|")
        for m, v in got["methods"].items():
            ph = ", ".join(f"{k} {1e3 * v[k]:.1f} / {1e3 * v[k + ' (median rank)']:.1f} "
                           f"({v.get(k + ' calls', 0):.0f})" for k in v
                           if not k.endswith((" calls", "(median rank)"))
                           and k not in ("total", "all_match"))
            pr = ("-" if m not in pred else
                  f"{1e3 * sum(s for _, s in pred[m]):.1f} ("
                  + ", ".join(f"{op} {1e3 * s:.1f}" for op, s in pred[m]) + ")")
            lines.append(f"| {m} | {1e3 * v['total']:.1f} | {v['total'] / direct:.2f} | "
                         f"{pr} | {ph or '-'} | {v['all_match']} |")
    info["load_average_after"] = str(os.getloadavg())
    text = (f"# Exchange phases — {info['date']}\n\nCommand: `{info['command']}`; cost "
            f"model: the one `redist run` reads ($REDIST_COST_MODEL or the default); load "
            f"average before {info['load_average']}, after {info['load_average_after']} "
            "(a shared 2-core machine: ratios within a case's job only).\n\n"
            "Per phase the busiest rank's / the median rank's, medians over repetitions "
            "(the methods taking turns, rep 0 discarded, the last traced and not timed). "
            "Nested phases: `transpose` is also inside `order` and the in-place "
            "all-to-all; `waits` inside `swap`; every phase inside its `step`.\n"
            + "\n".join(lines) + "\n")
    report_io.write(a.out, "exchange-phases", info, {"cases": result}, text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rank-side"]:
        rank_main(*sys.argv[2:6], int(sys.argv[6]))
    else:
        main()
