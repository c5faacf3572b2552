"""The paper's evaluation, reproduced in one process (issue 9): redist's verified plan run
inside XLA (redist.jax.reshard) against XLA's own resharding (a jitted identity with
out_shardings, and jax.device_put), on the same devices, side by side.

    python -m benchmarks.jax_vs_xla [--problems 200] [--sizes 64,256] [--repeat 5]

Cases: the DESIGN §9 cases on 8 devices and random problems on 8-device meshes (2x4, 4x2,
2x2x2, 8x1, 8), ranks 1-4, float32 arrays of 64 and 256 MiB. Per case: median wall time
of each, the speed-up, XLA's compiled memory analysis (argument + temp + output bytes per
device, over the bound) for redist's program and XLA's, whether XLA's program gathers the
full array (a "rematerialization"), and whether the two plans differ (different
collectives). Writes results/jax-vs-xla-<date>.json and .md.

Without accelerators it uses 8 host CPU devices (XLA_FLAGS is set before JAX loads); on a
GPU or TPU host it uses the first 8 devices unchanged.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import argparse  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from redist.core.model.dtypes import same_bits  # noqa: E402
from redist.core.model.layout import Layout  # noqa: E402
from redist.core.model.syntax import parse_layout, parse_mesh  # noqa: E402
from redist.jax import compile_plan, plan_for, to_jax_mesh, to_named_sharding  # noqa: E402

from . import report as report_io  # noqa: E402

MESHES = ["x=2,y=4", "x=4,y=2", "x=2,y=2,z=2", "x=8,y=1", "x=8"]
DESIGN = {"transpose": ("x=2,y=4", "[{x},{y}]", "[{y},{x}]", 2),
          "replace-axis": ("x=2,y=4", "[{x},{}]", "[{},{y}]", 2),
          "gather-all": ("x=2,y=2,z=2", "[{x},{y},{z}]", "[{},{},{}]", 3),
          "swap-3d": ("x=2,y=2,z=2", "[{x,y},{z},{}]", "[{},{z},{y,x}]", 3),
          "reorder": ("x=4,y=2", "[{x,y},{}]", "[{y,x},{}]", 2)}
COLLECTIVE = re.compile(r" (all-gather|all-to-all|collective-permute|all-reduce)(-start)?\(")
GATHER_SHAPE = re.compile(r"= ([a-z0-9]+)\[([\d,]*)\][^ ]* all-gather(-start)?\(")


def shape_for(rank: int, mib: int, devices: int, rng: random.Random) -> tuple[int, ...]:
    """float32 extents, each divisible by the device count, about `mib` MiB in all."""
    elements = mib * 2**20 // 4
    per = max(devices, int(round(elements ** (1 / rank) / devices)) * devices)
    shape = [per] * rank
    shape[-1] = max(devices, elements // math.prod(shape[:-1]) // devices * devices)
    return tuple(shape)


def random_layout(rng: random.Random, names: list[str], rank: int) -> Layout:
    dims: list[list[str]] = [[] for _ in range(rank)]
    for a in rng.sample(names, len(names)):
        d = rng.randint(-1, rank - 1)
        if d >= 0:
            dims[d].append(a)
    return Layout(tuple(tuple(d) for d in dims))


def timed(fn, x, repeat: int) -> float:
    fn(x).block_until_ready()                  # compile and warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(x).block_until_ready()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def memory(compiled) -> int | None:
    m = compiled.memory_analysis()
    if m is None:
        return None
    return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes


def collectives(text: str) -> list[str]:
    return sorted(m.group(1) for m in COLLECTIVE.finditer(text))


def full_gather(text: str, shape: tuple[int, ...]) -> bool:
    return any(tuple(int(v) for v in m.group(2).split(",") if v) == shape
               for m in GATHER_SHAPE.finditer(text))


def run_case(name: str, mesh_text: str, src: Layout, dst: Layout, shape: tuple[int, ...],
             repeat: int) -> dict:
    mesh = parse_mesh(mesh_text)
    jm = to_jax_mesh(mesh, jax.devices()[:mesh.num_devices])
    x = jax.device_put(jnp.arange(math.prod(shape), dtype=jnp.float32).reshape(shape)
                       % 1021, to_named_sharding(jm, src))
    dsh = to_named_sharding(jm, dst)
    plan = plan_for(x, dsh)
    ours = compile_plan(plan, jm)
    xla = jax.jit(lambda a: a, out_shardings=dsh)
    ours_c, xla_c = ours.lower(x).compile(), xla.lower(x).compile()
    ours_t, xla_t = ours_c.as_text(), xla_c.as_text()
    y, want = ours(x), jax.device_put(x, dsh)
    ok = same_bits(np.asarray(y), np.asarray(want))
    del y, want
    bound = plan.figures().bound_bytes
    row = {"case": name, "mesh": mesh_text, "shape": list(shape), "src": str(src),
           "dst": str(dst), "steps": [s.op for s in plan.steps], "bound_bytes": bound,
           "redist_s": timed(ours, x, repeat), "xla_jit_s": timed(xla, x, repeat),
           "device_put_s": timed(lambda a: jax.device_put(a, dsh), x, repeat),
           "redist_mem": memory(ours_c), "xla_mem": memory(xla_c),
           "redist_collectives": collectives(ours_t), "xla_collectives": collectives(xla_t),
           "xla_full_gather": full_gather(xla_t, shape),
           "volume_ratio": plan.figures().volume_ratio, "all_match": ok}
    row["differ"] = row["redist_collectives"] != row["xla_collectives"]
    return row


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in xs) / len(xs)) if xs else float("nan")


def report(rows: list[dict], meta: dict) -> str:
    lines = [f"# redist inside XLA vs XLA's own resharding — {meta['date']}", "",
             f"Machine: {meta['machine']}; devices: {meta['devices']}. {meta['note']}", "",
             f"Command: `{meta['command']}`", ""]
    differ = [r for r in rows if r["differ"]]
    speed = [r["xla_jit_s"] / r["redist_s"] for r in differ]
    lines += ["## Summary", "",
              f"- cases: {len(rows)} ({len(differ)} where XLA's plan differs from redist's); "
              f"every result equal to jax.device_put: {all(r['all_match'] for r in rows)}",
              f"- speed-up of redist over XLA's jitted reshard where the plans differ: "
              f"geo-mean {geomean(speed):.2f}x, max {max(speed, default=float('nan')):.2f}x, "
              f"min {min(speed, default=float('nan')):.2f}x "
              f"(redist slower on {sum(s < 1 for s in speed)})",
              f"- over all cases: geo-mean "
              f"{geomean([r['xla_jit_s'] / r['redist_s'] for r in rows]):.2f}x vs jitted "
              f"reshard, {geomean([r['device_put_s'] / r['redist_s'] for r in rows]):.2f}x vs "
              "device_put"]
    mem = [(r["redist_mem"] / r["bound_bytes"], r["xla_mem"] / r["bound_bytes"], r)
           for r in rows if r["redist_mem"] and r["xla_mem"]]
    if mem:
        ours = sorted(m[0] for m in mem)
        theirs = sorted(m[1] for m in mem)
        remat = [m for m in mem if m[2]["xla_full_gather"]]
        lines += [f"- arg+temp+out per device over the bound: redist median "
                  f"{statistics.median(ours):.2f}, max {ours[-1]:.2f}; XLA median "
                  f"{statistics.median(theirs):.2f}, max {theirs[-1]:.2f}",
                  f"- redist needs more than XLA on {sum(a > b for a, b, _ in mem)} cases, "
                  f"less on {sum(a < b for a, b, _ in mem)}",
                  f"- XLA gathers the full array (rematerializes) on {len(remat)} cases; there "
                  f"redist needs {', '.join(f'{a:.2f}' for a, _, _ in remat[:8]) or '-'} vs "
                  f"XLA {', '.join(f'{b:.2f}' for _, b, _ in remat[:8]) or '-'} x bound"]
    lines += ["", "## Cases", "",
              "| case | mesh | shape | src -> dst | redist steps | redist ms | XLA jit ms | "
              "device_put ms | speed-up | mem/bound redist | mem/bound XLA | XLA remat |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rm = f"{r['redist_mem'] / r['bound_bytes']:.2f}" if r["redist_mem"] else "?"
        xm = f"{r['xla_mem'] / r['bound_bytes']:.2f}" if r["xla_mem"] else "?"
        lines.append(f"| {r['case']} | {r['mesh']} | {'x'.join(map(str, r['shape']))} | "
                     f"{r['src']} -> {r['dst']} | {'+'.join(r['steps']) or '-'} | "
                     f"{r['redist_s'] * 1e3:.2f} | {r['xla_jit_s'] * 1e3:.2f} | "
                     f"{r['device_put_s'] * 1e3:.2f} | {r['xla_jit_s'] / r['redist_s']:.2f} | "
                     f"{rm} | {xm} | {'yes' if r['xla_full_gather'] else ''} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument("--sizes", default="64,256", help="array sizes in MiB")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    if len(jax.devices()) < 8:
        raise SystemExit("needs 8 devices (on CPU: XLA_FLAGS=--xla_force_host_platform_"
                         "device_count=8)")
    rng = random.Random(args.seed)
    sizes = [int(s) for s in args.sizes.split(",")]
    jobs = []
    for mib in sizes:
        for name, (mesh, src, dst, rank) in DESIGN.items():
            jobs.append((name, mesh, parse_layout(src), parse_layout(dst),
                         shape_for(rank, mib, 8, rng)))
    per_size = args.problems // len(sizes)
    for mib in sizes:
        k = 0
        while k < per_size:
            mesh = parse_mesh(rng.choice(MESHES))
            rank = rng.randint(1, 4)
            src = random_layout(rng, list(mesh.names), rank)
            dst = random_layout(rng, list(mesh.names), rank)
            if src == dst:
                continue
            jobs.append((f"random-{mib}-{k}", str(mesh), src, dst,
                         shape_for(rank, mib, 8, rng)))
            k += 1
    rows = []
    t0 = time.perf_counter()
    for i, (name, mesh, src, dst, shape) in enumerate(jobs):
        print(f"[{time.perf_counter() - t0:7.1f} s] {i + 1}/{len(jobs)} {name} {mesh} "
              f"{src} -> {dst}", file=sys.stderr, flush=True)
        rows.append(run_case(name, mesh, src, dst, shape, args.repeat))
    info = report_io.meta(
        "jax_vs_xla", devices=f"{len(jax.devices())} x {jax.devices()[0].platform}",
        note="Host CPU devices share the machine's cores and memory: times compare the two "
             "programs side by side, not a real accelerator. Medians of "
             f"{args.repeat} runs after a warm-up.")
    info["machine"] += f", JAX {jax.__version__}"
    report_io.write(args.out, "jax-vs-xla", info, {"rows": rows}, report(rows, info))

if __name__ == "__main__":
    main()
