"""`redist run` for two meshes (DESIGN §15): synthesize or read the plan, prove it, launch
the world, report what was measured beside what was proved."""

from __future__ import annotations

import argparse
import sys

from redist.core.cross.model import CrossProblem, parse_placed_mesh
from redist.core.cross.plan import CrossPlan
from redist.core.cross.planjson import cross_plan_from_json, cross_plan_to_json
from redist.core.errors import RedistError
from redist.core.model.syntax import parse_layout, parse_shape
from redist.core.plans.report import human_bytes

from .launch import (
    INTERPRETER_BYTES,
    RANK_OVERHEAD_BYTES,
    available_memory,
    find_mpiexec,
    finish_run,
    first_error,
    launch_for,
)


def problem_from_args(args: argparse.Namespace, world: int | None) -> CrossProblem:
    missing = [o for o in ("mesh", "shape", "src", "dst") if getattr(args, o, None) is None]
    if missing:
        raise RedistError(f"give --plan FILE or the problem ({', '.join(missing)} missing)")
    return CrossProblem(parse_placed_mesh(args.mesh), parse_placed_mesh(args.dst_mesh),
                        parse_shape(args.shape), args.dtype or "float32",
                        parse_layout(args.src), parse_layout(args.dst), world)


def certified(args: argparse.Namespace, world: int | None
              ) -> tuple[CrossPlan, object, int | None, str]:
    """(plan, verdict, budget, where it came from)."""
    from redist.core.cross.synthesize import certified_cross
    from redist.core.cross.verify import verify_cross

    if getattr(args, "plan_file", None):
        from redist.core.plans.planjson import read_doc
        given = [o for o in ("mesh", "dst_mesh", "shape", "src", "dst", "dtype")
                 if getattr(args, o, None) is not None]
        if given:
            raise RedistError(f"--plan {args.plan_file}: a two-mesh plan file holds its "
                              f"problem; drop --{given[0].replace('_', '-')}")
        plan = cross_plan_from_json(read_doc(args.plan_file), world)
        fig = plan.figures() if plan.typing_error() is None else None
        budget = None if fig is None or fig.memory_efficient else fig.runtime_peak_bytes
        return plan, verify_cross(plan, budget), budget, f"from {args.plan_file}"
    if getattr(args, "method", "normal") == "naive":
        raise RedistError("--method naive: two-mesh problems have the normal and optimal "
                          "methods")
    if getattr(args, "method", "normal") == "optimal":
        from redist.core.cross.optimal import optimal_cross
        o = optimal_cross(problem_from_args(args, world), budget=getattr(args, "budget", None),
                          max_steps=getattr(args, "max_steps", None))
        return o.plan, o.verdict, o.budget, f"optimal; {o.note}"
    plan, verdict, budget = certified_cross(problem_from_args(args, world))
    return plan, verdict, budget, "normal (transfer, then gathers on the dst mesh)"


def run_cross_command(args: argparse.Namespace) -> int:
    plan, verdict, budget, method = certified(args, args.np)
    if args.np < plan.problem.ranks:
        raise RedistError(f"--np {args.np}: the meshes use ranks up to {plan.problem.ranks - 1}")
    fig = plan.figures()
    have = available_memory()
    need = args.np * (RANK_OVERHEAD_BYTES + 3 * fig.bound_bytes)
    if have is not None and need > have:
        raise RedistError(f"the job needs about {human_bytes(need)} of memory but "
                          f"{human_bytes(have)} is available")
    find_mpiexec(args.mpiexec)
    if not verdict.all_proved:
        why = "; ".join(f"{r.claim} {r.status}: {r.detail}" for r in verdict.results
                        if r.status != "proved")
        print(f"redist: refusing to run an unverified plan: {why}", file=sys.stderr)
        return 1
    job = {"plan": cross_plan_to_json(plan, with_figures=False), "repeat": args.repeat,
           "budget": budget}
    res = launch_for(job, args)
    if isinstance(res, int):
        return res
    if res.returncode != 0 or not isinstance(res.report, dict):
        print(f"redist: error: the MPI job failed (exit {res.returncode}): "
              f"{first_error(res.stderr)}", file=sys.stderr)
        return 2 if "redist: error" in res.stderr else 1
    r = res.report
    return finish_run(args, r, method, format_report(r, budget), r["all_match"] is True,
                      bool(over_proved(r)))


def over_proved(r: dict) -> list[int]:
    """Ranks whose measured peak (the runtime's count, or tracemalloc's beyond the
    interpreter's allowance) exceeds the proved peak of that rank."""
    fig = r["plan"]["figures"]
    proved = dict(zip(fig["ranks"], fig["peak_per_rank"], strict=True))
    return [k for k, (m, t) in enumerate(zip(r["peak_bytes_per_rank"],
                                             r["traced_peak_bytes_per_rank"], strict=True))
            if m > proved.get(k, 0) or t > proved.get(k, 0) + INTERPRETER_BYTES]


def format_report(r: dict, budget: int | None = None) -> str:
    fig = r["plan"]["figures"]
    steps = " -> ".join(s["op"] for s in r["plan"]["steps"])
    over = over_proved(r)
    limit = ("bound per rank" if budget is None else
             f"budget {human_bytes(budget)} (a rank of both meshes holds both blocks)")
    return "\n".join([
        f"ran         {steps} on {r['ranks']} MPI ranks (mesh {_placed(r['plan'], '')} -> "
        f"{_placed(r['plan'], 'dst_')}), {r['repeat']} repetitions",
        f"time        median {r['median_seconds'] * 1e3:.2f} ms, min "
        f"{r['min_seconds'] * 1e3:.2f} ms (slowest rank per repetition)",
        f"cross-mesh  {human_bytes(fig['cross_mesh_bytes'])} from outside the dst mesh "
        f"(lower bound {human_bytes(fig['cross_mesh_lower_bound_bytes'])})",
        f"volume      {human_bytes(fig['volume_bytes'])} moved in all (lower bound "
        f"{human_bytes(fig['lower_bound_bytes'])})",
        f"memory      proved peak {human_bytes(fig['runtime_peak_bytes'])} within the {limit}; "
        f"measured peak per rank {human_bytes(max(r['peak_bytes_per_rank']))} (the "
        f"runtime's count), tracemalloc {human_bytes(max(r['traced_peak_bytes_per_rank']))}"
        + (f": EXCEEDS the proved peak on ranks {over}" if over else
           ", every rank within its proved peak"),
        "elements    " + ("all match the expected dst blocks" if r["all_match"] else
                          f"{r['mismatched_elements']} MISMATCHED"),
        f"checked     {r['elements_checked']:,} elements (every dst block, replicas too)",
    ])


def _placed(doc: dict, pre: str) -> str:
    from redist.core.cross.model import format_ranks
    mesh = ",".join(f"{n}={s}" for n, s in doc[pre + "mesh"])
    return f"{mesh}@{format_ranks(tuple(doc[pre + 'devices']))}"
