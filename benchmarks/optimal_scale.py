"""`--method optimal` against the mesh size (issue 18): the same problems on meshes
x=n,y=n,z=n of 8, 64, 512 and 4,096 devices, each planned by `redist.api.synthesize(...,
method="optimal")`'s two parts (the search, then verification of the plan's five
claims) in a fresh process. Reports what was proved, the plan against the lower bound, and the
CPU and wall seconds of the search and of the whole call.

    python -m benchmarks.optimal_scale [--sizes 2,4,8,16] [--rlimit N] [--families a,b]

The search is bounded by z3's resource counter, not a clock, so its answer is the same
however loaded the machine is; the CPU seconds are what the load changes least.
Writes results/optimal-scale-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from . import report as report_io

FAMILIES = [("transpose", "4096,4096", "[{x,y},{z}]", "[{z},{x,y}]"),
            ("swap", "4096,4096", "[{x},{y,z}]", "[{y,z},{x}]")]

CHILD = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from redist.core.smt.verify import verify
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.synthesis import optimal as O
mesh, shape, src, dst, rlimit = json.loads(sys.argv[1])
p = Problem(parse_mesh(mesh), tuple(int(x) for x in shape.split(",")), "bfloat16",
            parse_layout(src), parse_layout(dst))
t1, c1 = time.perf_counter(), time.process_time()
o = O.optimal(p, rlimit=rlimit or O.DEFAULT_RLIMIT)
t2, c2 = time.perf_counter(), time.process_time()
v = verify(o.plan)
t3, c3 = time.perf_counter(), time.process_time()
f = o.plan.figures()
print(json.dumps({"proved_optimal": o.proved_optimal, "found": o.found, "note": o.note,
                  "verified": v.all_proved, "volume_bytes": f.volume_bytes,
                  "lower_bound_bytes": f.lower_bound_bytes, "collectives": f.collectives,
                  "search_cpu": c2 - c1, "search_wall": t2 - t1,
                  "verify_cpu": c3 - c2, "verify_wall": t3 - t2}))
"""


def kind(row: dict) -> str:
    if row["proved_optimal"]:
        return "proved optimal"
    if row["found"]:
        return "best found, not proved"
    return "not proved (plan known kept)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2,4,8,16")
    ap.add_argument("--rlimit", type=int, default=0, help="0: the default budget")
    ap.add_argument("--families", default=",".join(f[0] for f in FAMILIES))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    rows = []
    for name, shape, src, dst in FAMILIES:
        if name not in args.families.split(","):
            continue
        for n in (int(x) for x in args.sizes.split(",")):
            mesh = f"x={n},y={n},z={n}"
            out = subprocess.run([sys.executable, "-c", CHILD,
                                  json.dumps([mesh, shape, src, dst, args.rlimit])],
                                 capture_output=True, text=True, check=True)
            row = {"family": name, "mesh": mesh, "devices": n ** 3, "shape": shape,
                   "src": src, "dst": dst, **json.loads(out.stdout.strip().splitlines()[-1])}
            rows.append(row)
            ratio = row["volume_bytes"] / row["lower_bound_bytes"]
            print(f"{name} {mesh}: {kind(row)}, {ratio:.2f}x LB, {row['collectives']} coll, "
                  f"search {row['search_cpu']:.2f} s CPU ({row['search_wall']:.2f} wall), "
                  f"verify {row['verify_cpu']:.2f} s CPU", flush=True)
            _report(args, rows)     # after every row: a long run leaves its rows so far


def _report(args, rows: list[dict]) -> None:
    info = report_io.meta("optimal_scale")
    lines = [f"# `--method optimal` by mesh size — {info['date']}", "",
             f"Machine: {info['machine']}, shared with other engineers' jobs (wall seconds "
             f"are mostly their load; CPU seconds of the process, z3 included, are the "
             f"measure). Command: `{info['command']}`", "",
             "Each row: a fresh process running what `synthesize(..., method=\"optimal\")` "
             "runs: the search (`optimal`), then verification of the five claims.", "",
             "| problem | mesh | devices | answer | volume / LB | collectives | verified | "
             "search CPU s | search wall s | verify CPU s | verify wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} `{r['src']} -> {r['dst']}` {r['shape']} bf16 | "
                     f"{r['mesh']} | {r['devices']} | {kind(r)} | "
                     f"{r['volume_bytes'] / r['lower_bound_bytes']:.2f} | {r['collectives']} | "
                     f"{'yes' if r['verified'] else 'NO'} | {r['search_cpu']:.2f} | "
                     f"{r['search_wall']:.2f} | {r['verify_cpu']:.2f} | "
                     f"{r['verify_wall']:.2f} |")
    lines += ["", "Notes (what was proved, as the search says it):", ""]
    for r in rows:
        lines.append(f"- {r['family']} on {r['mesh']}: {r['note']}")
    report_io.write(args.out, "optimal-scale", info, {"rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
