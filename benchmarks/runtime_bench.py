"""Runtime benchmark (issues 10, 16): DESIGN §9 cases and random problems on 8 MPI ranks
(paper-1d: 6), float32 arrays of 64 MiB and 1 GiB, side by side in one run: the portable
plan (and the same with out-of-place all-to-alls), one all_exchange, the plan
`--collectives mpi` chooses, and one direct Alltoallv that moves exactly the lower-bound
bytes; proved peak and measured peak (the runtime's count and tracemalloc's); the cost
model's predicted times against the measured ones.

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
from redist.runtime.launch import INTERPRETER_BYTES, find_mpiexec

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


def phases_case(module: str, name: str, mib: int, reps: int) -> dict:
    """Run `python -m benchmarks.<module> --rank-side MESH SHAPE SRC DST REPS` on the
    ranks of case `name` (these names; random-K with seed 1) and return the JSON line its
    rank 0 printed, with the case's mesh, shape and layouts (the phase benchmarks)."""
    mesh, src, dst, rank = (CASES | random_cases(4, 1))[name]
    ranks = parse_mesh(mesh).num_devices
    shape = shape_for(rank, mib, ranks)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([find_mpiexec(), "-n", str(ranks), sys.executable, "-m",
                        f"benchmarks.{module}", "--rank-side", mesh, shape, src, dst, str(reps)],
                       capture_output=True, text=True, cwd=here, timeout=3600)
    if r.returncode != 0:
        sys.exit(f"{module}: {name} failed (exit {r.returncode}): {r.stderr[-800:]}")
    got = json.loads(next(x for x in r.stdout.splitlines() if x.startswith("{")))
    return got | {"mesh": mesh, "shape": shape, "src": src, "dst": dst}


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in xs) / len(xs)) if xs else float("nan")


def chosen_seconds(c: dict, portable: dict) -> float:
    """Where the chosen plan is the portable plan, run through the same call, the same code
    is timed twice in turns: its time is the median of both methods' repetitions pooled (a
    ratio of the two medians measures only noise: up to 1.2x at idle)."""
    pooled = c.get("times_s", []) + portable.get("times_s", [])
    return statistics.median(pooled) if c.get("same_as_portable") and pooled else c["median_s"]


def ratio_error(portable: dict, exchange: dict) -> float:
    """The cost model's error on the ratio exchange/portable of a case's times:
    predicted ratio over the measured one (median of the repetitions' paired ratios: the
    two took turns), as a factor minus one, whichever way it errs."""
    pairs = list(zip(portable.get("times_s", []), exchange.get("times_s", []), strict=False))
    measured = (statistics.median(b / a for a, b in pairs) if pairs
                else exchange["median_s"] / portable["median_s"])
    predicted = exchange["predicted_s"] / portable["predicted_s"]
    return math.exp(abs(math.log(predicted / measured))) - 1


def report(all_rows: list[dict], meta: dict) -> str:
    failed = [r for r in all_rows if "failed" in r]
    rows = [r for r in all_rows if "failed" not in r]
    for r in rows:
        if r["method"] == "chosen":
            portable = next(q for q in rows if (q["case"], q["size_mib"], q["method"]) ==
                            (r["case"], r["size_mib"], "portable"))
            r["median_s"] = chosen_seconds(r, portable)
    by = {(r["case"], r["size_mib"], r["method"]): r for r in rows}
    keys = sorted({(r["case"], r["size_mib"]) for r in rows}, key=lambda k: (k[1], k[0]))
    lines = [f"# Runtime benchmark — {meta['date']}", "",
             f"Machine: {meta['machine']}. {meta['note']}", "",
             f"Command: `{meta['command']}`; cost model: {rows[0]['model'] if rows else '-'}",
             ""]
    if not keys:
        return "\n".join(lines + ["No case ran."] + [f"- {r['case']} at {r['size_mib']} MiB: "
                                                     f"{r['failed']}" for r in failed]) + "\n"
    vs_best, vs_direct, inplace, errors, over, proved_ratio = [], [], [], [], [], []
    choice = []          # both fit the bound: chosen over the faster of portable, exchange
    ratio_errors = []    # ... and the model's error on the ratio of their times
    exch = []            # in-place exchanges: (over the Alltoallw one, over direct)
    for key in keys:
        p, o, x, c, d = (by[key + (m,)] for m in
                         ("portable", "portable-oop", "exchange", "chosen", "direct"))
        vs_best.append(c["median_s"] / min(p["median_s"], d["median_s"]))
        vs_direct.append(c["median_s"] / d["median_s"])
        if "all_to_all" in p["steps"]:
            inplace.append(p["median_s"] / o["median_s"])
        for r in (p, x):
            errors.append(abs(r["predicted_s"] - r["median_s"]) / r["median_s"])
        for r in (p, c):
            if r["peak_counted"] > r["proved_peak"] or \
                    r["peak_traced"] > r["proved_peak"] + INTERPRETER_BYTES:
                over.append(f"{key[0]} at {key[1]} MiB ({r['method']})")
        proved_ratio.append(c["proved_peak"] / c["bound_bytes"])
        if x.get("exchange_fits"):
            choice.append(c["median_s"] / min(p["median_s"], x["median_s"]))
            ratio_errors.append(ratio_error(p, x))
        xo = by.get(key + ("exchange-oop",))
        if x.get("exchange_in_place") and xo:
            exch.append((x["median_s"] / xo["median_s"], x["median_s"] / d["median_s"]))
    lines += [
        "## Summary", "",
        f"- measured peak within the proved peak (runtime count ≤ proved; tracemalloc ≤ "
        f"proved + {INTERPRETER_BYTES >> 10} KiB of interpreter objects), portable and chosen "
        f"plans: {len(keys) - len({o.rsplit(' (', 1)[0] for o in over})}/{len(keys)} cases"
        + (f"; over: {', '.join(over)}" if over else ""),
        f"- chosen plan's proved peak over bound: max {max(proved_ratio):.3f}; cases ≤ 1.07: "
        f"{sum(v <= 1.07 for v in proved_ratio)}/{len(proved_ratio)}",
        f"- chosen plan's time over the faster of (portable plan, direct Alltoallv): geo-mean "
        f"{geomean(vs_best):.2f}x, max {max(vs_best):.2f}x; within 1.1x: "
        f"{sum(v <= 1.1 for v in vs_best)}/{len(vs_best)}; over the direct Alltoallv: "
        f"geo-mean {geomean(vs_direct):.2f}x",
        f"- in-place over out-of-place portable plan (cases with an all-to-all): geo-mean "
        f"{geomean(inplace):.2f}x, max {max(inplace, default=float('nan')):.2f}x",
        f"- where the exchange also fits the bound (plus a chunk): chosen over the faster of "
        f"(portable, exchange) on {len(choice)} cases"
        + (f", max {max(choice):.2f}x, within 1.1x: {sum(v <= 1.1 for v in choice)}/"
           f"{len(choice)}" if choice else ""),
        f"- cost model's error on the exchange/portable time ratio (the choice margin's "
        f"statistic, core/synthesis/choice.py), same cases: median "
        f"{statistics.median(ratio_errors) if ratio_errors else float('nan'):.0%}, max "
        f"{max(ratio_errors, default=float('nan')):.0%}",
        f"- in-place exchange (its class: {len(exch)} cases) over the one-Alltoallw "
        f"exchange: geo-mean {geomean([a for a, _ in exch]):.2f}x; over the direct Alltoallv: "
        f"geo-mean {geomean([b for _, b in exch]):.2f}x",
        f"- cost model, |predicted − measured| / measured (portable and exchange): median "
        f"{statistics.median(errors):.0%}, within 25%: {sum(e <= 0.25 for e in errors)}/"
        f"{len(errors)}",
        *([f"- failed: {r['case']} at {r['size_mib']} MiB ({r['mesh']} {r['src']} -> "
           f"{r['dst']}): {r['failed']}" for r in failed]),
        "", "## Per case", "",
        "Times in ms (median); `chosen (portable)`: the portable plan, its time the median "
        "of both columns' repetitions pooled; `pred.` the cost model's; peaks over the "
        "bound: proved / "
        "runtime count / tracemalloc. The exchange's is its figure: where it exceeds 1.0625 "
        "it is not memory-efficient and only `--collectives mpi` with a budget may choose it.",
        "",
        "`exchange`: in place in rounds (marked `ip`) where its class holds, else one "
        "Alltoallw; `exch. oop`: always one Alltoallw (input and output at once).", "",
        "| case | size | portable plan | portable | pred. | out of place | exchange | pred. "
        "| exch. oop | direct | chosen | chosen/best | peak portable | peak exchange "
        "| peak chosen | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in keys:
        p, o, x, c, d = (by[key + (m,)] for m in
                         ("portable", "portable-oop", "exchange", "chosen", "direct"))

        def pk(r: dict) -> str:
            b = r["bound_bytes"]
            return (f"{r['proved_peak'] / b:.3f} / {r['peak_counted'] / b:.3f} / "
                    f"{r['peak_traced'] / b:.3f}")
        best = min(p["median_s"], d["median_s"])
        xo = by.get(key + ("exchange-oop",))              # absent in older result files
        ok = all(r["all_match"] for r in (p, o, x, d, c) + ((xo,) if xo else ()))
        xo_ms = f"{xo['median_s'] * 1e3:.1f}" if xo else "-"
        lines.append(
            f"| {key[0]} | {key[1]} MiB | {'+'.join(p['steps']) or '-'} | "
            f"{p['median_s'] * 1e3:.1f} | {p['predicted_s'] * 1e3:.1f} | "
            f"{o['median_s'] * 1e3:.1f} | {x['median_s'] * 1e3:.1f}"
            f"{' ip' if x.get('exchange_in_place') else ''} | "
            f"{x['predicted_s'] * 1e3:.1f} | {xo_ms} | {d['median_s'] * 1e3:.1f} | "
            f"{c['median_s'] * 1e3:.1f} ({c['chosen_is']}) | {c['median_s'] / best:.2f} | "
            f"{pk(p)} | {pk(x)} | {pk(c)} | {'ok' if ok else 'MISMATCH'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,1024")
    ap.add_argument("--random", type=int, default=30, help="random problems (8 ranks)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", default=",".join(CASES),
                    help="named cases to run (default all); random-K names pick among "
                         "the --random ones (default: all of those)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--calibrate", action="store_true",
                    help="run `redist calibrate` first and predict (and choose) with that "
                         "model: calibrated on the same machine under the same load")
    args = ap.parse_args()
    if args.calibrate:
        path = os.path.join(args.out, f"runtime-costmodel-{report_io.meta('')['date']}.json")
        os.makedirs(args.out, exist_ok=True)
        # (under load the calibration can outlast calibrate's default 600 s)
        subprocess.run([sys.executable, "-m", "redist", "calibrate", "--np", "8", "--out", path,
                        "--timeout", "3600"],
                       check=True)
        os.environ["REDIST_COST_MODEL"] = path          # the cases' jobs inherit it
    names = [n for n in args.cases.split(",") if n]
    drawn = random_cases(args.random, args.seed)
    unknown = [n for n in names if n not in CASES and n not in drawn]
    if unknown:
        ap.error(f"unknown case {unknown[0]!r}: named cases are {', '.join(CASES)}, random "
                 f"ones random-0..random-{args.random - 1}")
    cases = {n: CASES[n] for n in names if n in CASES}
    picked = [n for n in names if n in drawn]
    cases.update({n: drawn[n] for n in picked} if picked else drawn)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for k, (name, spec) in enumerate(cases.items()):
            print(f"[{k + 1}/{len(cases)}] {name} at {size} MiB ...", file=sys.stderr,
                  flush=True)
            rows += run_case(name, spec, size, args.repeat)
    info = report_io.meta(
        "runtime_bench",
        note="8 MPI ranks (paper-1d: 6) oversubscribed on 2 cores, shared-memory MPICH (PyPI "
             "wheel); the methods take turns within each repetition (order rotating); medians "
             "over the repetitions, rep 0 discarded; the last repetition runs under "
             "tracemalloc (not timed).")
    report_io.write(args.out, "runtime", info, {"rows": rows}, report(rows, info))

if __name__ == "__main__":
    main()
