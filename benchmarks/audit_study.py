"""How good are the plans XLA compiles for a resharding? (issue 20, DESIGN §16)

    python -m benchmarks.audit_study [--problems 300] [--seed 1]

Random reshardings on 8 host CPU devices (meshes 2x4, 4x2, 2x2x2, 8x1, 8; ranks 1-4;
extents divisible by the src and dst splits, as JAX requires, often not by 8), each
compiled by XLA (the jitted identity with in/out shardings) and audited: XLA's plan
reconstructed from the HLO and its five claims proved or refuted, beside redist's
normal-form plan for the same problem. Counts how often XLA's plan is at the lower bound
of volume, within the memory bound, gathers the whole array (full rematerialization),
or cannot be expressed. Writes results/audit-study-<date>.json and .md.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import jax  # noqa: E402

from redist.audit import audit_hlo, compiled_hlo  # noqa: E402
from redist.core.model.problem import Problem  # noqa: E402
from redist.core.model.syntax import parse_mesh  # noqa: E402

from . import report as report_io  # noqa: E402
from .jax_vs_xla import random_layout  # noqa: E402

MESHES = ["x=2,y=4", "x=4,y=2", "x=2,y=2,z=2", "x=8,y=1", "x=8"]
FACTORS = [1, 1, 2, 3, 5]
MAX_ELEMENTS = 1 << 16


def random_problem(rng: random.Random) -> Problem:
    mesh = parse_mesh(rng.choice(MESHES))
    rank = rng.randint(1, 4)
    while True:
        src = random_layout(rng, list(mesh.names), rank)
        dst = random_layout(rng, list(mesh.names), rank)
        if src != dst:
            break
    shape = []
    for d in range(rank):
        split = math.lcm(src.shards(mesh, d), dst.shards(mesh, d))
        shape.append(split * rng.choice(FACTORS) * rng.choice([1, 2, 4]))
    while math.prod(shape) > MAX_ELEMENTS:
        k = max(range(rank), key=lambda j: shape[j])
        split = math.lcm(src.shards(mesh, k), dst.shards(mesh, k))
        shape[k] = max(split, shape[k] // 2 // split * split)
    return Problem(mesh, tuple(shape), "float32", src, dst)


def whole_array(plan) -> bool:
    """Does an intermediate layout of the plan hold the whole array on every device?"""
    lays = plan.layouts()
    return any(all(not d for d in lay.dims) for lay in lays[1:-1])


def study(p: Problem) -> dict:
    hlo = compiled_hlo(p)
    t0 = time.perf_counter()
    a = audit_hlo(p, hlo)
    seconds = time.perf_counter() - t0
    r = a.redist.plan.figures()
    row = {"mesh": str(p.base), "shape": list(p.shape), "src": str(p.show(p.src)),
           "dst": str(p.show(p.dst)), "audit_s": seconds,
           "xla_collectives_hlo": len(a.xla.collective_lines),
           "redist": {"volume": r.volume_bytes, "lower_bound": r.lower_bound_bytes,
                      "peak_over_bound": r.peak_bytes / r.bound_bytes,
                      "collectives": r.collectives, "verified": a.redist.verified,
                      "steps": [s.op for s in a.redist.plan.steps]}}
    if a.xla.plan is None:
        row["xla"] = None
        row["inexpressible"] = [{"line": i.line[:300], "why": i.why}
                                for i in a.xla.inexpressible]
        return row
    x = a.xla.plan.figures()
    assert a.verdict is not None
    # XLA's volume is what its collectives receive (a permute may send more than the
    # all_permute step's minimal pairing would); `plan_volume` is the steps' figure.
    row["xla"] = {"volume": sum(a.xla.hlo_volume), "plan_volume": x.volume_bytes,
                  "lower_bound": x.lower_bound_bytes, "peak_over_bound":
                  x.peak_bytes / x.bound_bytes, "collectives": x.collectives,
                  "steps": [s.op for s in a.xla.plan.steps],
                  "claims": {c.claim: c.status for c in a.verdict.results},
                  "whole_array": whole_array(a.xla.plan)}
    return row


def pct(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.0f}%)" if total else "0"


def report(rows: list[dict], meta: dict) -> str:
    n = len(rows)
    got = [r for r in rows if r["xla"] is not None]
    lost = [r for r in rows if r["xla"] is None]
    at_lb = sum(r["xla"]["volume"] == r["xla"]["lower_bound"] for r in got)
    mem_ok = sum(r["xla"]["peak_over_bound"] <= 1 for r in got)
    whole = sum(r["xla"]["whole_array"] for r in got)
    proved = sum(all(s == "proved" for s in r["xla"]["claims"].values()) for r in got)
    unknown = sum(any(s == "unknown" for s in r["xla"]["claims"].values()) for r in got)
    refuted = Counter(c for r in got for c, s in r["xla"]["claims"].items() if s == "refuted")
    hlo_differs = sum(r["xla"]["plan_volume"] != r["xla"]["volume"] for r in got)
    red_lb = sum(r["redist"]["volume"] == r["redist"]["lower_bound"] for r in rows)
    red_mem = sum(r["redist"]["peak_over_bound"] <= 1 for r in rows)
    red_ok = sum(r["redist"]["verified"] for r in rows)
    over = sorted(r["xla"]["peak_over_bound"] for r in got if r["xla"]["peak_over_bound"] > 1)
    ratios = [r["xla"]["volume"] / r["xla"]["lower_bound"] for r in got
              if r["xla"]["lower_bound"]]
    rratios = [r["redist"]["volume"] / r["redist"]["lower_bound"] for r in got
               if r["redist"]["lower_bound"]]
    better = sum(r["redist"]["volume"] < r["xla"]["volume"] for r in got)
    worse = sum(r["redist"]["volume"] > r["xla"]["volume"] for r in got)
    whole_rows = [r for r in got if r["xla"]["whole_array"]]
    whole_refuted = sum(r["xla"]["claims"]["memory_efficient"] == "refuted"
                        for r in whole_rows)
    whole_alt = sum(r["redist"]["peak_over_bound"] <= 1 and r["redist"]["verified"]
                    for r in whole_rows)
    why = Counter(r["inexpressible"][0]["why"].split(":")[0] for r in lost)
    lines = [f"# Auditing XLA's resharding plans — {meta['date']}", "",
             f"Machine: {meta['machine']} (shared with other jobs); JAX {meta['jax']}, "
             f"{meta['devices']}.", "", f"Command: `{meta['command']}`", "",
             "Each problem is compiled by XLA (jitted identity with in/out shardings), its "
             "HLO reconstructed as a redist plan and its five claims decided by z3; beside "
             "it redist's normal-form plan for the same problem.", "",
             "| | XLA's plan | redist's plan |", "|---|---|---|",
             f"| problems | {n} | {n} |",
             f"| reconstructed, every claim decided | {pct(len(got), n)} | - |",
             f"| inexpressible (collective or local step named with its HLO line) | "
             f"{pct(len(lost), n)} | - |",
             f"| all five claims proved | {pct(proved, len(got))} | {pct(red_ok, n)} |",
             f"| at the lower bound of volume | {pct(at_lb, len(got))} | {pct(red_lb, n)} |",
             f"| within the memory bound | {pct(mem_ok, len(got))} | {pct(red_mem, n)} |",
             f"| gathers the whole array (full rematerialization) | {pct(whole, len(got))} | "
             f"0 |",
             f"| volume / lower bound, geo-mean (problems that move data) | "
             f"{_geo(ratios):.2f} | {_geo(rratios):.2f} |", "",
             f"- claims refuted on XLA's plans: "
             f"{', '.join(f'{c} {k}' for c, k in sorted(refuted.items())) or 'none'}; "
             f"unknown: {unknown}",
             "- XLA's peak over the bound where it exceeds it: "
             + (f"median {statistics.median(over):.2f}, max {over[-1]:.2f} ({len(over)} "
                "problems)" if over else "never"),
             f"- full rematerializations: {len(whole_rows)}, memory claim refuted (with a "
             f"counterexample) on {whole_refuted}, redist's certified plan within the bound "
             f"on {whole_alt}",
             f"- redist moves less than XLA on {better} problems, more on {worse}",
             f"- XLA's collectives receive more than the reconstructed steps' figure (a "
             f"collective-permute that also sends blocks a device already holds): "
             f"{hlo_differs}; XLA's volume above is what its collectives receive",
             f"- inexpressible, by reason: "
             f"{'; '.join(f'{k} ({v})' for k, v in why.most_common()) or 'none'}",
             f"- audit time per problem (reconstruct + prove + synthesize and prove redist's "
             f"plan; compile excluded): median "
             f"{statistics.median(r['audit_s'] for r in rows):.2f} s", ""]
    if lost:
        lines += ["## Inexpressible", ""]
        for r in lost[:20]:
            lines.append(f"- {r['mesh']} {'x'.join(map(str, r['shape']))} {r['src']} -> "
                         f"{r['dst']}: {r['inexpressible'][0]['why']}  \n"
                         f"  `{r['inexpressible'][0]['line'][:160]}`")
        lines.append("")
    lines += ["## Problems where XLA's plan exceeds the memory bound", "",
              "| mesh | shape | src -> dst | XLA steps | XLA peak/bound | XLA vol/LB | "
              "redist steps | redist vol/LB |", "|---|---|---|---|---|---|---|---|"]
    for r in got:
        if r["xla"]["peak_over_bound"] > 1:
            lb = r["xla"]["lower_bound"] or 1
            lines.append(f"| {r['mesh']} | {'x'.join(map(str, r['shape']))} | {r['src']} -> "
                         f"{r['dst']} | {'+'.join(r['xla']['steps'])} | "
                         f"{r['xla']['peak_over_bound']:.2f} | {r['xla']['volume'] / lb:.2f} | "
                         f"{'+'.join(r['redist']['steps'])} | "
                         f"{r['redist']['volume'] / lb:.2f} |")
    return "\n".join(lines) + "\n"


def _geo(xs: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in xs) / len(xs)) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    if len(jax.devices()) < 8:
        raise SystemExit("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
    rng = random.Random(args.seed)
    rows = []
    for k in range(args.problems):
        p = random_problem(rng)
        rows.append(study(p))
        if (k + 1) % 25 == 0:
            print(f"... {k + 1}/{args.problems}", flush=True)
    info = report_io.meta("audit_study", jax=jax.__version__,
                          devices=f"{len(jax.devices())} {jax.devices()[0].platform} devices")
    report_io.write(args.out, "audit-study", info, {"rows": rows}, report(rows, info))


if __name__ == "__main__":
    main()
