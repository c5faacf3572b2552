"""Runtime benchmark (issue 10): DESIGN §9 cases and random problems on 8 MPI ranks
(paper-1d: 6), float32 arrays of 64 MiB and 1 GiB, side by side in one run: the portable
plan, one all_exchange, the plan `--collectives mpi` chooses, and one direct Alltoallv that
moves exactly the lower-bound bytes; measured peak over bound by the runtime's count and by
tracemalloc; the chosen plan's predicted time against its measured time.

    python -m benchmarks.runtime_bench [--sizes 64,1024] [--random 30] [--repeat 5]

Writes DIR/runtime-<date>.json and .md. The machine has 2 cores: 8 ranks are
oversubscribed, so times compare methods side by side, they are not absolute.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys

from redist.core.model.layout import Layout
from redist.core.model.syntax import parse_mesh
from redist.runtime.launch import find_mpiexec

from . import report as report_io

# name: mesh, src, dst, rank
CASES = {
    "transpose": ("x=2,y=4", "[{x},{y}]", "[{y},{x}]", 2),
    "replace-axis": ("x=2,y=4", "[{x},{}]", "[{},{y}]", 2),
    "paper-1d": ("x=2,y=3", "[{x}]", "[{y}]", 1),
    "gather-all": ("x=2,y=2,z=2", "[{x},{y},{z}]", "[{},{},{}]", 3),
    "swap-3d": ("x=2,y=2,z=2", "[{x,y},{z},{}]", "[{},{z},{y,x}]", 3),
    "reorder": ("x=4,y=2", "[{x,y},{}]", "[{y,x},{}]", 2),
}
MESHES = ["x=2,y=4", "x=4,y=2", "x=2,y=2,z=2", "x=8"]


def shape_for(rank: int, mib: int, devices: int) -> str:
    """float32 extents divisible by the device count (x12 for paper-1d's 6), ~mib MiB."""
    unit = math.lcm(devices, 12) if rank == 1 else devices
    elements = mib * 2**20 // 4
    per = max(unit, int(elements ** (1 / rank)) // unit * unit)
    shape = [per] * rank
    shape[-1] = max(unit, elements // math.prod(shape[:-1]) // unit * unit)
    return ",".join(map(str, shape))


def _layout(rng: random.Random, mesh, rank: int) -> str:
    dims: list[list[str]] = [[] for _ in range(rank)]
    for a in rng.sample(list(mesh.names), len(mesh.names)):
        d = rng.randint(-1, rank - 1)
        if d >= 0:
            dims[d].append(a)
    return str(Layout(tuple(tuple(d) for d in dims)))


def random_cases(n: int, seed: int) -> dict:
    rng = random.Random(seed)
    out = {}
    while len(out) < n:
        mesh = parse_mesh(rng.choice(MESHES))
        rank = rng.randint(1, 4)

        src, dst = _layout(rng, mesh, rank), _layout(rng, mesh, rank)
        if src != dst:
            out[f"random-{len(out)}"] = (str(mesh), src, dst, rank)
    return out


def run_case(name: str, spec: tuple, size_mib: int, repeat: int) -> list[dict]:
    mesh, src, dst, rank = spec
    ranks = parse_mesh(mesh).num_devices
    shape = shape_for(rank, size_mib, ranks)
    cmd = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "benchmarks.mpi_bench",
           mesh, shape, src, dst, str(repeat)]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=here, timeout=3600)
    if r.returncode != 0:
        # one case failing (e.g. killed for memory) must not lose the others: report it
        tail = r.stderr.strip().splitlines()[-1:] or ["no message (killed: likely out of "
                                                      "memory)"]
        print(f"{name} at {size_mib} MiB failed (exit {r.returncode}): {tail[0]}",
              file=sys.stderr, flush=True)
        return [{"case": name, "size_mib": size_mib, "failed": f"exit {r.returncode}: "
                 f"{tail[0][:300]}", "mesh": mesh, "src": src, "dst": dst}]
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        row.update(case=name, size_mib=size_mib, ranks=ranks, shape=shape, src=src, dst=dst,
                   mesh=mesh)
    return rows


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in xs) / len(xs)) if xs else float("nan")


def report(all_rows: list[dict], meta: dict) -> str:
    failed = [r for r in all_rows if "failed" in r]
    rows = [r for r in all_rows if "failed" not in r]
    by = {(r["case"], r["size_mib"], r["method"]): r for r in rows}
    keys = sorted({(r["case"], r["size_mib"]) for r in rows}, key=lambda k: (k[1], k[0]))
    lines = [f"# Runtime benchmark — {meta['date']}", "",
             f"Machine: {meta['machine']}. {meta['note']}", "",
             f"Command: `{meta['command']}`; cost model: {rows[0]['model'] if rows else '-'}",
             ""]
    chosen_vs_best, chosen_vs_direct, counted, traced = [], [], [], []
    p_counted, p_traced = [], []
    for key in keys:
        c, p, d = by[key + ("chosen",)], by[key + ("portable",)], by[key + ("direct",)]
        chosen_vs_best.append(c["median_s"] / min(p["median_s"], d["median_s"]))
        chosen_vs_direct.append(c["median_s"] / d["median_s"])
        counted.append(c["peak_counted"] / c["bound_bytes"])
        traced.append(c["peak_traced"] / c["bound_bytes"])
        p_counted.append(p["peak_counted"] / p["bound_bytes"])
        p_traced.append(p["peak_traced"] / p["bound_bytes"])
    if not keys:
        return "\n".join(lines + ["No case ran."] + [f"- {r['case']} at {r['size_mib']} MiB: "
                                                     f"{r['failed']}" for r in failed]) + "\n"
    lines += ["## Summary (the chosen plan)", "",
              f"- time over the faster of (portable plan, direct Alltoallv): geo-mean "
              f"{geomean(chosen_vs_best):.2f}x, max {max(chosen_vs_best):.2f}x; over the "
              f"direct Alltoallv: geo-mean {geomean(chosen_vs_direct):.2f}x",
              f"- cases within 1.1x of the faster: "
              f"{sum(v <= 1.1 for v in chosen_vs_best)}/{len(chosen_vs_best)}",
              f"- measured peak over bound, runtime's count: median "
              f"{statistics.median(counted):.2f}, max {max(counted):.2f}; tracemalloc: median "
              f"{statistics.median(traced):.2f}, max {max(traced):.2f}",
              f"- the portable plan's measured peak over bound, runtime's count: median "
              f"{statistics.median(p_counted):.2f}, max {max(p_counted):.2f}; tracemalloc: "
              f"median {statistics.median(p_traced):.2f}, max {max(p_traced):.2f}",
              *([f"- failed: {r['case']} at {r['size_mib']} MiB ({r['mesh']} {r['src']} -> "
                 f"{r['dst']}): {r['failed']}" for r in failed]),
              "", "## Per case (times in ms; peak/bound: runtime count / tracemalloc)", "",
              "| case | size | portable plan | portable | exchange | direct | chosen | chosen "
              "pred. | chosen/best | peak portable | peak exchange | peak chosen | ok |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in keys:
        p, x, d, c = (by[key + (m,)] for m in ("portable", "exchange", "direct", "chosen"))

        def pk(r: dict) -> str:
            return f"{r['peak_counted'] / r['bound_bytes']:.2f}/" \
                   f"{r['peak_traced'] / r['bound_bytes']:.2f}"
        best = min(p["median_s"], d["median_s"])
        ok = all(r["all_match"] for r in (p, x, d, c))
        lines.append(
            f"| {key[0]} | {key[1]} MiB | {'+'.join(p['steps']) or '-'} | "
            f"{p['median_s'] * 1e3:.1f} | {x['median_s'] * 1e3:.1f} | {d['median_s'] * 1e3:.1f} | "
            f"{c['median_s'] * 1e3:.1f} ({c['chosen_is']}) | {c['predicted_s'] * 1e3:.1f} | "
            f"{c['median_s'] / best:.2f} | {pk(p)} | {pk(x)} | {pk(c)} | "
            f"{'ok' if ok else 'MISMATCH'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,1024")
    ap.add_argument("--random", type=int, default=30, help="random problems (8 ranks)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    cases = {n: CASES[n] for n in args.cases.split(",") if n}
    cases.update(random_cases(args.random, args.seed))
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for k, (name, spec) in enumerate(cases.items()):
            print(f"[{k + 1}/{len(cases)}] {name} at {size} MiB ...", file=sys.stderr,
                  flush=True)
            rows += run_case(name, spec, size, args.repeat)
    info = report_io.meta(
        "runtime_bench",
        note="8 MPI ranks (paper-1d: 6) oversubscribed on 2 cores, shared-memory MPICH (PyPI "
             "wheel); medians over the repetitions, rep 0 discarded; the last repetition "
             "runs under tracemalloc (not timed).")
    report_io.write(args.out, "runtime", info, {"rows": rows}, report(rows, info))

if __name__ == "__main__":
    main()
