"""Synthesis / verification / certification / optimal-synthesis benchmark (issues 2, 3).

    python -m benchmarks.smt_bench [--problems 1000] [--verify 500] [--optimal 100]

Random problems on meshes of 1-6 axes (up to 4096 devices) and arrays of rank 1-4:
median and p99 time to synthesize (normal), to verify (all five claims), to write and
check a certificate (z3 only, and z3 + cvc5), and to synthesize optimally on small
meshes, with the share of problems where optimal moved less than normal. Writes
results/smt-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time

from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.smt.certificate import check_certificate, write_certificate
from redist.core.smt.verify import verify
from redist.core.synthesis.optimal import optimal
from redist.core.synthesis.synthesize import normal

NAMES = "abcdef"


def random_problem(rng: random.Random, max_axes: int, max_devices: int,
                   sizes: tuple[int, ...] = (1, 2, 3, 4, 8)) -> Problem:
    while True:
        n = rng.randint(1, max_axes)
        mesh_sizes = [rng.choice(sizes) for _ in range(n)]
        if math.prod(mesh_sizes) <= max_devices:
            break
    mesh = Mesh(tuple(zip(NAMES, mesh_sizes, strict=False)))
    rank = rng.randint(1, 4)

    def layout() -> Layout:
        dims: list[list[str]] = [[] for _ in range(rank)]
        for a in rng.sample(mesh.names, len(mesh.names)):
            d = rng.randint(-1, rank - 1)
            if d >= 0:
                dims[d].append(a)
        return Layout(tuple(tuple(d) for d in dims))
    src, dst = layout(), layout()
    # Extents divisible by every axis product, times a small factor (a generous shape).
    shape = tuple(mesh.num_devices * rng.choice((1, 2, 4)) for _ in range(rank))
    return Problem(mesh, shape, "float32", src, dst)


def stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"n": len(xs), "median_ms": statistics.median(xs) * 1e3,
            "p99_ms": xs[min(len(xs) - 1, int(0.99 * len(xs)))] * 1e3,
            "max_ms": xs[-1] * 1e3}


def timed(fn, *a, **k):
    t0 = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--verify", type=int, default=500)
    ap.add_argument("--optimal", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out: dict = {}

    probs = [random_problem(rng, 6, 4096) for _ in range(args.problems)]
    syn_t, plans, not_me = [], [], 0
    for k, p in enumerate(probs):
        s, dt = timed(normal, p)
        syn_t.append(dt)
        plans.append(s.plan)
        not_me += s.reason is not None
        if k % 200 == 0:
            print(f"synthesized {k}/{len(probs)}", file=sys.stderr, flush=True)
    out["synthesize_normal"] = stats(syn_t) | {"not_memory_efficient": not_me,
                                               "max_devices": max(p.mesh.num_devices
                                                                  for p in probs)}
    ver_t, cert_t, check_z3, check_both, unproved = [], [], [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for k, plan in enumerate(plans[: args.verify]):
            v, dt = timed(verify, plan)
            ver_t.append(dt)
            unproved += not v.all_proved
            path = os.path.join(tmp, f"c{k}")
            _, dt = timed(write_certificate, plan, v, path)
            cert_t.append(dt)
            r, dt = timed(check_certificate, path, use_cvc5=False)
            check_z3.append(dt)
            if k < args.verify // 5:
                r2, dt2 = timed(check_certificate, path, use_cvc5=True)
                check_both.append(dt2)
            if k % 100 == 0:
                print(f"verified {k}/{args.verify}", file=sys.stderr, flush=True)
    out["verify"] = stats(ver_t) | {"not_all_proved": unproved}
    out["certificate_write"] = stats(cert_t)
    out["certificate_check_z3"] = stats(check_z3)
    out["certificate_check_z3_cvc5"] = stats(check_both)

    opt_t, beat, savings, proved = [], 0, [], 0
    for k in range(args.optimal):
        p = random_problem(rng, 3, 16, sizes=(1, 2, 3, 4))
        o, dt = timed(optimal, p)
        opt_t.append(dt)
        nv = normal(p).plan.figures().volume_bytes
        ov = o.plan.figures().volume_bytes
        proved += o.proved_optimal
        if ov < nv:
            beat += 1
            savings.append(1 - ov / nv)
        if k % 20 == 0:
            print(f"optimal {k}/{args.optimal}", file=sys.stderr, flush=True)
    out["synthesize_optimal"] = stats(opt_t) | {
        "proved_optimal": proved, "optimal_moved_less": beat,
        "share_optimal_moved_less": beat / max(1, args.optimal),
        "median_saving_when_less": statistics.median(savings) if savings else 0.0,
        "max_saving": max(savings) if savings else 0.0}

    date = datetime.date.today().isoformat()
    meta = {"date": date, "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
            "command": "python -m benchmarks.smt_bench " + " ".join(sys.argv[1:])}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"smt-{date}.json"), "w") as f:
        json.dump({"meta": meta, "results": out}, f, indent=1)
    lines = [f"# Synthesis and verification benchmark — {date}", "",
             f"Machine: {meta['machine']}. Command: `{meta['command']}`", "",
             "Random problems: meshes of 1-6 axes with sizes in {1,2,3,4,8} (up to 4096 "
             "devices), rank 1-4, random src/dst; optimal on meshes of <= 3 axes, <= 16 "
             "devices.", "", "| what | n | median ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for key, val in out.items():
        if val.get("n"):
            lines.append(f"| {key} | {val['n']} | {val['median_ms']:.1f} | {val['p99_ms']:.1f}"
                         f" | {val['max_ms']:.1f} |")
    o = out["synthesize_optimal"]
    not_me = out["synthesize_normal"]["not_memory_efficient"]
    share = 100 * o["share_optimal_moved_less"]
    lines += ["", f"Normal plans not memory-efficient: {not_me}; plans not fully proved: "
              f"{out['verify']['not_all_proved']}.",
              f"Optimal: proved optimal in {o['proved_optimal']}/{o['n']}; moved less than "
              f"normal in {o['optimal_moved_less']}/{o['n']} ({share:.0f}%), median saving "
              f"{100 * o['median_saving_when_less']:.1f}% (max {100 * o['max_saving']:.1f}%) "
              "when it did."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, f"smt-{date}.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
