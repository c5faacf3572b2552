"""Fused all-to-alls (runtime/fuse.py) side by side: the portable plan of a case run with
its consecutive all-to-alls fused (the default), the same plan step by step
(REDIST_FUSE=0), and one direct Alltoallv of the same problem (benchmarks/direct.py).

    python -m benchmarks.fuse_bench [--case swap-3d] [--mib 64] [--reps 7]

One mpiexec job; the three methods take turns within each repetition (order rotating),
rep 0 discarded, so their medians are taken under the same load; the last repetition of
each runs under tracemalloc (not timed). Every result is checked element by element.
Writes DIR/fuse-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import statistics
import subprocess
import sys

METHODS = ("fused", "unfused", "direct")


def rank_main(mesh_t: str, shape_t: str, src_t: str, dst_t: str, reps: int) -> None:
    from mpi4py import MPI

    from redist.core.model.problem import Problem
    from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape
    from redist.core.synthesis.synthesize import normal
    from redist.runtime import fuse
    from redist.runtime.arrays import sample_block

    from . import turns

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    problem = Problem(parse_mesh(mesh_t), parse_shape(shape_t), "float32",
                      parse_layout(src_t), parse_layout(dst_t))
    plan = normal(problem).plan
    expected = sample_block(problem.mesh, problem.shape, problem.dst, rank, "float32")

    def fused_or_not(method: str, box: list) -> tuple:
        fuse.FUSE_ALL_TO_ALLS = method == "fused"
        try:
            return turns.redistribute(plan, comm)(box)
        finally:
            fuse.FUSE_ALL_TO_ALLS = True

    def call(method: str, trace: bool) -> tuple[float, int, int, bool]:
        how = (turns.direct(plan, comm) if method == "direct"
               else functools.partial(fused_or_not, method))
        return turns.timed_call(problem, comm, expected, how, trace)

    done = turns.take_turns(METHODS, reps, call)
    times, per_rep = done["times"], done["per_rep"]
    counted, traced, matched = done["counted"], done["traced"], done["matched"]
    fig = plan.figures()
    out = {"steps": [s.op for s in plan.steps], "runs": [
        {"start": r.start, "stop": r.stop, "wire_bytes": fuse.wire_bytes(plan, r)}
        for r in fuse.fused_runs(plan)],
        "volume_bytes": fig.volume_bytes, "lower_bound_bytes": fig.lower_bound_bytes,
        "bound_bytes": fig.bound_bytes, "proved_peak": fig.runtime_peak_bytes,
        "per_rep_s": per_rep, "methods": {}}
    for m in METHODS:
        ok = comm.allreduce(matched[m], op=MPI.LAND)
        c = comm.allreduce(counted[m], op=MPI.MAX)
        t = comm.allreduce(traced[m], op=MPI.MAX)
        out["methods"][m] = {"median_s": statistics.median(times[m]), "min_s": min(times[m]),
                             "times_s": times[m], "peak_counted": c, "peak_traced": t,
                             "all_match": ok}
    if rank == 0:
        print(json.dumps(out), flush=True)


CASES = {"swap-3d": ("x=2,y=2,z=2", "[{x,y},{z},{}]", "[{},{z},{y,x}]", 3)}


def main() -> None:
    from redist.runtime.launch import find_mpiexec

    from .runtime_bench import shape_for
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="swap-3d", choices=sorted(CASES))
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--shape", help="global shape (default: ~MIB MiB, runtime_bench's)")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    mesh, src, dst, rank = CASES[a.case]
    from redist.core.model.syntax import parse_mesh
    ranks = parse_mesh(mesh).num_devices
    shape = a.shape or shape_for(rank, a.mib, ranks)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    started = datetime.datetime.now(datetime.UTC)
    r = subprocess.run([find_mpiexec(), "-n", str(ranks), sys.executable, "-m",
                        "benchmarks.fuse_bench", "--rank-side", mesh, shape, src, dst,
                        str(a.reps)], capture_output=True, text=True, cwd=here, timeout=3600)
    if r.returncode != 0:
        sys.exit(f"fuse_bench: the MPI job failed (exit {r.returncode}): {r.stderr[-800:]}")
    res = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("{")))
    res.update(case=a.case, mesh=mesh, shape=shape, src=src, dst=dst, ranks=ranks,
               mib=a.mib, reps=a.reps, started=started.isoformat(timespec="seconds"),
               load_average=os.getloadavg(), command="python -m benchmarks.fuse_bench "
               + " ".join(sys.argv[1:]))
    stem = os.path.join(a.out, f"fuse-{started.date().isoformat()}-{a.case}-"
                        f"{shape.replace(',', 'x')}")
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
    text = report(res)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(text)
    print(text)


def report(res: dict) -> str:
    ms = {m: res["methods"][m]["median_s"] * 1e3 for m in METHODS}
    ratio = {m: statistics.median(row[m] / row["direct"] for row in res["per_rep_s"])
             for m in METHODS}
    fu_un = statistics.median(row["fused"] / row["unfused"] for row in res["per_rep_s"])
    bound = res["bound_bytes"]
    lines = [
        f"# Fused all-to-alls — {res['started'][:10]}", "",
        f"Command: `{res['command']}` (every run under `nice -n 10`). Case {res['case']}: "
        f"mesh `{res['mesh']}`, shape {res['shape']} float32 ({res['mib']} MiB), "
        f"`{res['src']}` -> `{res['dst']}`, {res['ranks']} MPI ranks on a 2-core machine "
        f"shared with other engineers (load average at the end {res['load_average'][0]:.1f}); "
        f"plan {' -> '.join(res['steps'])}; {res['reps']} timed repetitions, the methods "
        "taking turns (order rotating), rep 0 discarded.", "",
        "| method | median ms | min ms | median of per-rep ratio to direct | runtime peak / "
        "bound | tracemalloc / bound | all match |", "|---|---|---|---|---|---|---|"]
    for m in METHODS:
        r = res["methods"][m]
        lines.append(f"| {m} | {ms[m]:.1f} | {r['min_s'] * 1e3:.1f} | {ratio[m]:.2f} | "
                     f"{r['peak_counted'] / bound:.3f} | {r['peak_traced'] / bound:.3f} | "
                     f"{r['all_match']} |")
    runs = "; ".join(f"steps {u['start'] + 1}-{u['stop']}: {u['wire_bytes']:,} B on the "
                     "wire" for u in res["runs"]) or "none"
    lines += ["", f"fused / unfused (median of per-rep ratios): {fu_un:.2f}. Proved peak "
              f"{res['proved_peak'] / bound:.3f}x the bound. Fused runs: {runs}; the steps' "
              f"volume figures sum to {res['volume_bytes']:,} B (lower bound "
              f"{res['lower_bound_bytes']:,} B).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rank-side"]:
        rank_main(*sys.argv[2:6], int(sys.argv[6]))
    else:
        main()
