"""Verification time against plan length and device count (issue 18): random well-typed
plans (random walks of all-to-alls, permutes, slices and gathers) of up to `--steps` steps
on 4-axis meshes up to 2^18 devices and on 8 devices, each verified with the five claims.

    python -m benchmarks.verify_scale [--plans 6] [--steps 16,64] [--seed 1]

Writes results/verify-scale-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

from redist.core.errors import TypingError
from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.ops import AllGather, AllPermute, AllSlice, AllToAll, apply
from redist.core.plans.plan import Plan
from redist.core.smt.verify import verify

from . import report as report_io

MESHES = [("dp=32,fsdp=128,cp=8,tp=8", "65536,65536", "[{fsdp,cp},{tp}]"),
          ("a0=4,a1=4,a2=8,a3=8", "8192,28672", "[{a0,a1},{a2,a3}]"),
          ("x=2,y=2,z=2", "64,64", "[{x},{y}]")]


def candidates(mesh, lay: Layout):
    rank = lay.rank
    used = set(lay.used_axes())
    for s in range(rank):
        for k in range(1, len(lay.dims[s]) + 1):
            for t in range(rank):
                if t != s:
                    yield AllToAll(s, t, lay.dims[s][len(lay.dims[s]) - k:])
        if lay.dims[s]:
            yield AllGather(tuple(lay.dims[s][-1:] if e == s else () for e in range(rank)))
    for a in mesh.names:
        if a not in used:
            for d in range(rank):
                yield AllSlice(tuple((a,) if e == d else () for e in range(rank)))
    where = [(d, i) for d, dim in enumerate(lay.dims) for i in range(len(dim))]
    for (d, i) in where:
        for (e, j) in where:
            if (d, i) < (e, j):
                dims = [list(x) for x in lay.dims]
                dims[d][i], dims[e][j] = dims[e][j], dims[d][i]
                yield AllPermute(Layout(tuple(tuple(x) for x in dims)))


def random_plan(rng: random.Random, mesh_text: str, shape: str, src_text: str,
                steps: int) -> Plan:
    mesh = parse_mesh(mesh_text)
    shp = tuple(int(x) for x in shape.split(","))
    src = parse_layout(src_text)
    lay, out = src, []
    while len(out) < steps:
        opts = []
        for c in candidates(mesh, lay):
            try:
                opts.append((c, apply(c, mesh, shp, lay)))
            except TypingError:
                pass
        step, lay = rng.choice(opts)
        out.append(step)
    return Plan(Problem(mesh, shp, "bfloat16", src, lay), tuple(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plans", type=int, default=6)
    ap.add_argument("--steps", default="16,64")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = []
    for mesh, shape, src in MESHES:
        for n in (int(x) for x in args.steps.split(",")):
            for _ in range(args.plans):
                plan = random_plan(rng, mesh, shape, src, n)
                t0 = time.perf_counter()
                v = verify(plan)
                dt = time.perf_counter() - t0
                ec = v.get("element_correct")
                rows.append({"mesh": mesh, "devices": plan.problem.mesh.num_devices,
                             "steps": n, "seconds": dt, "element_correct": ec.status,
                             "element_correct_seconds": ec.seconds,
                             "statuses": {r.claim: r.status for r in v.results}})
                print(f"{mesh} {n} steps: {dt:.2f} s, element_correct {ec.status}",
                      flush=True)
    info = report_io.meta("verify_scale")
    lines = [f"# Verification time by plan length — {info['date']}", "",
             f"Machine: {info['machine']} (shared with other jobs). Command: "
             f"`{info['command']}`", "",
             "| mesh | devices | steps | plans | unknown | median s | max s |",
             "|---|---|---|---|---|---|---|"]
    for mesh, _, _ in MESHES:
        for n in sorted({r["steps"] for r in rows}):
            rs = [r for r in rows if r["mesh"] == mesh and r["steps"] == n]
            t = [r["seconds"] for r in rs]
            unk = sum(r["element_correct"] != "proved" for r in rs)
            lines.append(f"| {mesh} | {rs[0]['devices']} | {n} | {len(rs)} | {unk} | "
                         f"{statistics.median(t):.2f} | {max(t):.2f} |")
    report_io.write(args.out, "verify-scale", info, {"rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
