"""Plan quality on pending sums (issue 19): random problems whose src carries a pending sum
(sub-axes, uneven extents, meshes up to 4,096 devices), dst keeping part of it or none.
For each: the default planner's plan, whether all five claims are proved, whether it is
within the memory bound (or, when a complete exhaustive search shows no plan within it
exists, counted apart with the best plan's peak), and its volume against the lower bound
of docs/pending.md; and the pure pending-to-sharded problems (dst = src with the pending
axes added to its dims).

    python -m benchmarks.pending_quality [--problems 60] [--large 20] [--seed 1]

Writes results/pending-quality-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

from redist.core.errors import RedistError
from redist.core.model.axes import prime_cuts
from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.plans.plan import own_budget
from redist.core.smt.verify import verify
from redist.core.synthesis.exhaustive import exhaustive
from redist.core.synthesis.search import clock
from redist.core.synthesis.synthesize import normal

from . import report as report_io
from .plan_quality import random_problem


def pending_problem(rng: random.Random, axes: int, max_devices: int, sizes, sub_axes: bool,
                    uneven: bool, pure: bool) -> Problem | None:
    """A random problem with some replicated src refs made pending; dst keeps each of
    them pending with probability 1/4 (none for `pure`: then dst is src with them added
    to its dims)."""
    p = random_problem(rng, axes, max_devices, sizes, sub_axes, uneven)
    src, dst = p.show(p.src), p.show(p.dst)
    free = [a for a in p.base.names if not any(r == a or r.startswith(a + "(")
                                                for r in src.used_axes())]
    pend = [a for a in free if p.base.size(a) > 1 and rng.random() < 0.7]
    if not pend:
        return None
    if pure:
        dims = [list(d) for d in src.dims]
        for a in pend:
            dims[rng.randrange(len(dims))].append(a)
        return Problem(p.base, p.shape, p.dtype, Layout(src.dims, tuple(pend)),
                       Layout(tuple(tuple(d) for d in dims)))
    keep = tuple(a for a in pend if a not in dst.used_axes()
                 and not any(r.startswith(a + "(") for r in dst.used_axes())
                 and rng.random() < 0.25)
    return Problem(p.base, p.shape, p.dtype, Layout(src.dims, tuple(pend)),
                   Layout(dst.dims, keep))


def measure(p: Problem, settle: bool = False) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    s = normal(p)
    t1, c1 = time.perf_counter(), time.process_time()
    v = verify(s.plan)
    fig = s.plan.figures()
    # No plan within the bound exists (a complete exhaustive search): the best plan's other
    # four claims, and memory against its own peak, as `redist plan` proves it.
    none_exists = bool(s.note and s.note.endswith("none exists"))
    own = verify(s.plan, own_budget(s.plan)).all_proved if none_exists else None
    # `settle`, above the lower bound within the bound (small meshes): the least volume of every
    # plan within the bound (portable steps and reductions, any length, prime sub-axes),
    # by valid bytes; complete = proved least among those plans.
    least = None
    if settle and fig.memory_efficient and fig.volume_bytes > fig.lower_bound_bytes \
            and p.mesh.num_devices <= 64:
        finer = p.refined(prime_cuts(p.base, p.atoms()))
        ex = exhaustive(finer if len(finer.mesh.names) <= 8 else p, valid=True,
                        max_states=20_000, deadline=clock() + 30)
        least = {"volume": ex.plan.figures().volume_bytes if ex.plan else None,
                 "complete": ex.complete, "states": ex.states}
    return {"problem": f"{p.base} {p.shape} {p.show(p.src)} -> {p.show(p.dst)}",
            "devices": p.mesh.num_devices, "steps": [st.op for st in s.plan.steps],
            "proved": v.all_proved, "within_bound": fig.memory_efficient,
            "none_within_bound": none_exists, "proved_at_own_peak": own,
            "peak": fig.runtime_peak_bytes, "bound": fig.bound_bytes,
            "caveat": s.reason, "volume": fig.volume_bytes, "lower_bound": fig.lower_bound_bytes,
            "ratio": fig.volume_ratio, "synth_s": round(t1 - t0, 3),
            "synth_cpu_s": round(c1 - c0, 3),
            "verify_s": round(time.perf_counter() - t1, 3), "least_within_bound": least}


def _least(r: dict) -> bool:
    least = r.get("least_within_bound")
    return bool(least and least["complete"] and least["volume"] == r["volume"])


def _cheaper(r: dict) -> bool:
    least = r.get("least_within_bound")
    return bool(least and least["volume"] is not None and least["volume"] < r["volume"])


def _shown(r: dict) -> str:
    if r.get("none_within_bound"):
        return "no plan within the bound exists (proved: " + r["caveat"].split(" (", 1)[1] \
            .split("); this plan", 1)[0] + ")"
    if not r["within_bound"]:
        return "not within the bound, not proved impossible: " + (r["caveat"] or "")
    least = r.get("least_within_bound")
    if _least(r):
        return (f"least volume of every plan within the bound (exhaustive search, "
                f"{least['states']} layouts, complete): the lower bound is not reachable "
                "with these steps")
    if _cheaper(r):
        return f"a plan within the bound moves {least['volume']} bytes (not found by default)"
    return "not settled: the exhaustive search stopped at its budget" if least else "-"


def summarize(rows: list[dict], title: str) -> list[str]:
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    at = sum(1 for r in rows if r["volume"] == r["lower_bound"])
    none = [r for r in rows if r.get("none_within_bound")]
    over = ", ".join(f"{r['peak'] / r['bound']:.2f}" for r in none)
    above = [r for r in rows if r["within_bound"] and r["volume"] > r["lower_bound"]]
    return [f"## {title}", "", f"- problems: {len(rows)}",
            f"- all five claims proved: {sum(r['proved'] for r in rows)}",
            f"- within the memory bound: {sum(r['within_bound'] for r in rows)}",
            f"- no plan within the bound exists (complete exhaustive search): {len(none)}; "
            f"of these, the best plan's claims proved at its own peak: "
            f"{sum(bool(r['proved_at_own_peak']) for r in none)}"
            + (f" (peak / bound: {over})" if none else ""),
            f"- neither within the bound nor proved impossible: "
            f"{sum(1 for r in rows if not r['within_bound'] and not r.get('none_within_bound'))}",
            f"- at the lower bound of volume: {at}",
            f"- within the bound but above the lower bound: {len(above)}"
            + (f"; of these, proved to move the least of every plan within the bound "
               f"(complete exhaustive search, any length, valid bytes): "
               f"{sum(1 for r in above if _least(r))}; a cheaper plan exists for "
               f"{sum(1 for r in above if _cheaper(r))}"
               if any(r.get("least_within_bound") for r in above) else ""),
            f"- volume / lower bound: median {statistics.median(ratios):.3f}, "
            f"max {max(ratios):.3f}" if ratios else "- volume / lower bound: -",
            f"- synthesis median {statistics.median(r['synth_s'] for r in rows):.2f} s "
            f"({statistics.median(r['synth_cpu_s'] for r in rows):.2f} s of CPU, max "
            f"{max(r['synth_cpu_s'] for r in rows):.2f} s), "
            f"verification median {statistics.median(r['verify_s'] for r in rows):.2f} s",
            ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=60)
    ap.add_argument("--large", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default=None,
                    help="measure only these sets (comma-separated: small, pure, large, "
                         "'large pure'); every problem is still drawn, so the same seed "
                         "gives the same problems")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    names = ("small", "pure", "large", "large pure")
    only = names if args.only is None else tuple(n.strip() for n in args.only.split(","))
    if not set(only) <= set(names):
        ap.error(f"--only: unknown set among {args.only!r} (expected {', '.join(names)})")
    sets: dict[str, list[dict]] = {"small": [], "pure": [], "large": [], "large pure": []}
    plan = [("small", args.problems, (4, 64, (1, 2, 3, 4, 6, 8), True, True)),
            ("pure", args.problems, (4, 64, (1, 2, 3, 4, 6, 8), True, True)),
            ("large", args.large, (6, 4096, (1, 2, 4, 8, 16), True, False)),
            ("large pure", args.large, (6, 4096, (1, 2, 4, 8, 16), True, False))]
    for name, n, (axes, devices, sizes, subs, uneven) in plan:
        while len(sets[name]) < n:
            try:
                p = pending_problem(rng, axes, devices, sizes, subs, uneven, "pure" in name)
            except RedistError:
                continue                   # sub-axes that do not nest: not a problem
            if p is not None:
                sets[name].append(measure(p, settle=name == "pure") if name in only
                                  else None)
        print(f"{name}: {n} done", file=sys.stderr, flush=True)
    sets = {name: rows for name, rows in sets.items() if name in only}
    info = report_io.meta("pending_quality")
    lines = [f"# Plan quality on pending sums — {info['date']}", "",
             f"Machine: {info['machine']} (shared with other jobs). Command: "
             f"`{info['command']}`", "",
             "Volumes in bytes received over all devices; the lower bound is what any plan "
             "must receive (docs/pending.md: one value per dst element, one send per addend "
             "whose holders do not keep its element, and per element one message fewer "
             "than the devices holding its sum plus the addends none of them holds).", ""]
    titles = {"small": "Meshes of up to 64 devices, sub-axes, uneven extents",
              "pure": "Pure pending -> sharded, up to 64 devices",
              "large": "Meshes of up to 6 axes and 4,096 devices, sub-axes",
              "large pure": "Pure pending -> sharded, up to 4,096 devices"}
    for name, rows in sets.items():
        lines += summarize(rows, titles[name])
    lines += ["## Pure pending -> sharded problems not at the lower bound", "",
              "| problem | ratio | what was shown |", "|---|---|---|"]
    lines += [f"| {r['problem']} | {r['ratio']:.3f} | {_shown(r)} |"
              for name in ("pure", "large pure") for r in sets.get(name, ())
              if r["volume"] != r["lower_bound"]]
    lines.append("")
    worst = sorted((r for rows in sets.values() for r in rows if r["ratio"]),
                   key=lambda r: -r["ratio"])[:6]
    lines += ["## Largest ratios", "", "| problem | steps | ratio | proved |", "|---|---|---|---|"]
    lines += [f"| {r['problem']} | {' '.join(r['steps'])} | {r['ratio']:.3f} | {r['proved']} |"
              for r in worst]
    report_io.write(args.out, "pending-quality", info, {"rows": sets}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
