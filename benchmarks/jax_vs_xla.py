"""The paper's evaluation, reproduced in one process (issues 9 and 17): redist's verified
plan inside XLA against XLA's own resharding, on the same devices, side by side, measured
as users run them.

    python -m benchmarks.jax_vs_xla [--problems 200] [--sizes 64,256] [--repeat 5] [--seed S]

Cases: the DESIGN §9 cases on 8 devices and random problems on 8-device meshes (2x4, 4x2,
2x2x2, 8x1, 8), ranks 1-4, float32 arrays of the given sizes; meshes come from
`jax.make_mesh` with its default axis types. Per case, medians of round-robin timings
after a warm-up: the user-facing call `redist.jax.reshard(x, dst)`, the compiled program
called directly, XLA's compiled reshard (a jitted identity with out_shardings),
`jax.device_put`, and a user's jitted step with `redist.jax.reshard` against the same
step with `jax.sharding.reshard`; first-call times (planning and compiling) apart; XLA's
compiled memory analysis (argument + temp + output bytes per device, over the bound) for
both programs; whether XLA's program gathers the full array; whether the collectives
differ. Also the per-call overhead on a small array, before and after plans were cached.
Writes results/jax-vs-xla-<date>.json and .md.

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
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import redist.jax  # noqa: E402
from redist import plan_cache  # noqa: E402
from redist.core.model.layout import Layout  # noqa: E402
from redist.core.model.problem import Problem  # noqa: E402
from redist.core.model.syntax import parse_layout, parse_mesh  # noqa: E402
from redist.jax import compile_plan, plan_for, to_named_sharding  # noqa: E402

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


def timed_side_by_side(fns: dict, x, repeat: int) -> dict[str, float]:
    """Median wall time of each function, called in turn (round robin), after a warm-up:
    the programs see the same load on a shared machine."""
    for fn in fns.values():
        fn(x).block_until_ready()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn(x).block_until_ready()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def first_call(fn, x) -> float:
    t0 = time.perf_counter()
    fn(x).block_until_ready()
    return time.perf_counter() - t0


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
    """One problem as a user meets it: a mesh from jax.make_mesh (default axis types), an
    array put on it, and a reshard by redist and by XLA, eagerly and inside a jitted step."""
    mesh = parse_mesh(mesh_text)
    jm = jax.make_mesh(tuple(s for _, s in mesh.axes), mesh.names,
                       devices=jax.devices()[:mesh.num_devices])
    x = jax.device_put(jnp.arange(math.prod(shape), dtype=jnp.float32).reshape(shape)
                       % 1021, to_named_sharding(jm, src))
    dsh = to_named_sharding(jm, dst)
    problem = Problem(mesh, shape, "float32", src, dst)
    t0 = time.perf_counter()
    plan_cache.prove(problem)                # what every call cost before plans were cached
    prove_s = time.perf_counter() - t0
    redist.jax.clear_caches()
    user = lambda a: redist.jax.reshard(a, dsh)          # noqa: E731
    xla_jit = jax.jit(lambda a: a, out_shardings=dsh)    # XLA's reshard program
    step_ours = jax.jit(lambda a: redist.jax.reshard(a, dsh) * 2)
    step_xla = jax.jit(lambda a: jax.sharding.reshard(a, dsh) * 2)
    compile_s = {"redist": first_call(user, x), "xla": first_call(xla_jit, x),
                 "redist_step": first_call(step_ours, x), "xla_step": first_call(step_xla, x)}
    plan = plan_for(x, dsh)
    direct = compile_plan(plan, jm, src_spec=x.sharding.spec, dst_spec=dsh.spec)  # bare
    ours_c, xla_c = direct.lower(x).compile(), xla_jit.lower(x).compile()
    ours_t, xla_t = ours_c.as_text(), xla_c.as_text()
    want = jax.device_put(x, dsh)
    ok = all(bool(jnp.array_equal(f(x), want)) for f in (user, direct))
    ok = ok and bool(jnp.array_equal(step_ours(x), step_xla(x)))
    del want
    t = timed_side_by_side({"redist": user, "direct": direct, "xla_jit": xla_jit,
                            "device_put": lambda a: jax.device_put(a, dsh),
                            "redist_step": step_ours, "xla_step": step_xla}, x, repeat)
    bound = plan.figures().bound_bytes
    row = {"case": name, "mesh": mesh_text, "shape": list(shape), "src": str(src),
           "dst": str(dst), "steps": [s.op for s in plan.steps], "bound_bytes": bound,
           **{f"{k}_s": v for k, v in t.items()}, "prove_s": prove_s,
           **{f"compile_{k}_s": v for k, v in compile_s.items()},
           "redist_mem": memory(ours_c), "xla_mem": memory(xla_c),
           "redist_collectives": collectives(ours_t), "xla_collectives": collectives(xla_t),
           "xla_full_gather": full_gather(xla_t, shape),
           "volume_ratio": plan.figures().volume_ratio, "all_match": ok}
    row["differ"] = row["redist_collectives"] != row["xla_collectives"]
    return row


def overhead(repeat: int) -> dict:
    """The per-call cost of the user-facing call beside the compiled program, on a small
    array where the program itself is short: now (a cache hit) and before (every call
    proved its plan, as redist.jax did until plans were cached). Every call is waited for:
    XLA's CPU collectives stall with hundreds of programs in flight on few cores (XLA's own
    reshard program too)."""
    jm = jax.make_mesh((2, 4), ("x", "y"))
    x = jax.device_put(jnp.zeros((64, 64), jnp.float32), NamedSharding(jm, P("x", "y")))
    dsh = NamedSharding(jm, P("y", "x"))
    problem = Problem(parse_mesh("x=2,y=4"), (64, 64), "float32", parse_layout("[{x},{y}]"),
                      parse_layout("[{y},{x}]"))
    direct = compile_plan(plan_for(x, dsh), jm)

    def before(a):
        plan_cache.prove(problem)
        return direct(a)
    now = timed_side_by_side({"direct": direct,
                              "redist": lambda a: redist.jax.reshard(a, dsh)}, x, repeat)
    old = timed_side_by_side({"before_direct": direct, "before": before}, x, 10)
    key = (x.shape, x.dtype, x.sharding, dsh, None, "normal", None, False, None)
    t0 = time.perf_counter()
    for _ in range(10_000):
        hash(key)
    return {**{k + "_s": v for k, v in {**now, **old}.items()},
            "key_s": (time.perf_counter() - t0) / 10_000}


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in xs) / len(xs)) if xs else float("nan")


def _spread(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"geo-mean {geomean(xs):.2f}x, min {min(xs):.2f}x, max {max(xs):.2f}x"


def report(rows: list[dict], over: dict, meta: dict) -> str:
    lines = [f"# redist inside XLA vs XLA's own resharding — {meta['date']}", "",
             f"Machine: {meta['machine']}; devices: {meta['devices']}. {meta['note']}", "",
             f"Command: `{meta['command']}`", ""]
    differ = [r for r in rows if r["differ"]]
    user = [r["xla_jit_s"] / r["redist_s"] for r in rows]
    put = [r["device_put_s"] / r["redist_s"] for r in rows]
    step = [r["xla_step_s"] / r["redist_step_s"] for r in rows]
    ovh = [r["redist_s"] / r["direct_s"] - 1 for r in rows]
    lines += ["## Summary", "",
              f"- cases: {len(rows)} ({len(differ)} where XLA's collectives differ from "
              f"redist's); every result equal to jax.device_put: "
              f"{all(r['all_match'] for r in rows)}",
              f"- the user-facing call `redist.jax.reshard(x, dst)` (after a warm-up) over "
              f"XLA's compiled reshard (jit with out_shardings): {_spread(user)}; slower than "
              f"0.8x on {sum(v < 0.8 for v in user)}",
              f"- where the collectives differ: "
              f"{_spread([r['xla_jit_s'] / r['redist_s'] for r in differ])}",
              f"- over `jax.device_put(x, dst)`: {_spread(put)}",
              f"- inside a user's jitted step (`reshard(a, dst) * 2` vs "
              f"`jax.sharding.reshard(a, dst) * 2`): {_spread(step)}",
              f"- the user-facing call over the compiled program called directly: median "
              f"{statistics.median(ovh) * 100:+.1f}% (min {min(ovh) * 100:+.1f}%, max "
              f"{max(ovh) * 100:+.1f}%)",
              f"- per-call overhead on a 64x64 transpose (program alone "
              f"{over['direct_s'] * 1e6:.0f} us, median of many waited-for calls): now "
              f"{(over['redist_s'] - over['direct_s']) * 1e6:+.0f} us (the cache key itself "
              f"{over['key_s'] * 1e6:.1f} us); before plans were cached (every call proved "
              f"its plan) {(over['before_s'] - over['before_direct_s']) * 1e3:+.1f} ms",
              f"- first call (plan proved + compiled): redist median "
              f"{statistics.median(r['compile_redist_s'] for r in rows) * 1e3:.0f} ms (proving "
              f"alone {statistics.median(r['prove_s'] for r in rows) * 1e3:.0f} ms), XLA "
              f"{statistics.median(r['compile_xla_s'] for r in rows) * 1e3:.0f} ms; in a "
              f"jitted step {statistics.median(r['compile_redist_step_s'] for r in rows) * 1e3:.0f}"
              f" vs {statistics.median(r['compile_xla_step_s'] for r in rows) * 1e3:.0f} ms"]
    mem = [(r["redist_mem"] / r["bound_bytes"], r["xla_mem"] / r["bound_bytes"], r)
           for r in rows if r["redist_mem"] and r["xla_mem"]]
    if mem:
        eps = 1e-3
        lines += [f"- memory per device (argument + temp + output over the bound): redist "
                  f"needs more than XLA on {sum(a > b + eps for a, b, _ in mem)} cases, the "
                  f"same on {sum(abs(a - b) <= eps for a, b, _ in mem)}, less on "
                  f"{sum(a < b - eps for a, b, _ in mem)}; XLA gathers the full array on "
                  f"{sum(r['xla_full_gather'] for _, _, r in mem)}"]
    lines += ["", "## Cases", "",
              "Times in ms (medians). speed-up = XLA / redist.", "",
              "| case | mesh | shape | src -> dst | redist steps | reshard() | program | "
              "XLA jit | device_put | speed-up | jit step redist | jit step XLA | speed-up | "
              "mem/bound redist | mem/bound XLA | XLA remat |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rm = f"{r['redist_mem'] / r['bound_bytes']:.3f}" if r["redist_mem"] else "?"
        xm = f"{r['xla_mem'] / r['bound_bytes']:.3f}" if r["xla_mem"] else "?"
        lines.append(f"| {r['case']} | {r['mesh']} | {'x'.join(map(str, r['shape']))} | "
                     f"{r['src']} -> {r['dst']} | {'+'.join(r['steps']) or '-'} | "
                     f"{r['redist_s'] * 1e3:.2f} | {r['direct_s'] * 1e3:.2f} | "
                     f"{r['xla_jit_s'] * 1e3:.2f} | {r['device_put_s'] * 1e3:.2f} | "
                     f"{r['xla_jit_s'] / r['redist_s']:.2f} | {r['redist_step_s'] * 1e3:.2f} | "
                     f"{r['xla_step_s'] * 1e3:.2f} | "
                     f"{r['xla_step_s'] / r['redist_step_s']:.2f} | {rm} | {xm} | "
                     f"{'yes' if r['xla_full_gather'] else ''} |")
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
    over = overhead(300)
    report_io.write(args.out, "jax-vs-xla", info, {"rows": rows, "overhead": over},
                    report(rows, over, info))

if __name__ == "__main__":
    main()
