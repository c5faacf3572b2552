"""The two-mesh forms of `redist plan`, `redist verify` and `redist run` (DESIGN §15)."""

from __future__ import annotations

import argparse

from redist.core.cross.plan import CrossPlan
from redist.core.cross.planjson import cross_plan_to_json, is_cross
from redist.core.errors import RedistError
from redist.core.plans.report import human_bytes


def two_meshes(args: argparse.Namespace) -> bool:
    """Is this a two-mesh problem: --dst-mesh given, or a two-mesh --plan file?"""
    if getattr(args, "dst_mesh", None) is not None:
        return True
    path = getattr(args, "plan_file", None)
    if path:
        from redist.core.plans.planjson import read_doc
        return is_cross(read_doc(path))
    if "@" in (getattr(args, "mesh", None) or ""):
        raise RedistError(f"--mesh {args.mesh!r:.60} places the mesh on ranks (@): that is "
                          "for a two-mesh problem, give --dst-mesh too")
    return False


def table(plan: CrossPlan) -> str:
    cp = plan.problem
    fig = plan.figures()
    mid = plan.mid
    rows = [f"problem     {cp.src} on {cp.a} -> {cp.dst} on {cp.b}, shape "
            f"{'x'.join(map(str, cp.shape))} {cp.dtype}",
            f"step 1      transfer -> {mid.show(mid.src)} on the dst mesh: "
            f"{len(plan.transfer.pairs)} pairs, {human_bytes(fig.step_volume[0])} moved"]
    lays = plan.b_plan.layouts()
    from redist.core.ops import describe
    for k, s in enumerate(plan.b_plan.steps):
        rows.append(f"step {k + 2}      {describe(s, mid.show_axes)} -> "
                    f"{mid.show(lays[k + 1])}: {human_bytes(fig.step_volume[k + 1])} moved")
    senders = {a for a, b in plan.transfer.pairs if a != b}
    rows += [
        f"cross-mesh  {human_bytes(fig.cross_mesh_bytes)} from outside the dst mesh (lower "
        f"bound {human_bytes(fig.cross_mesh_lower_bound_bytes)}), {len(senders)} senders",
        f"volume      {human_bytes(fig.volume_bytes)} in all (lower bound "
        f"{human_bytes(fig.lower_bound_bytes)}), {fig.collectives} communicating steps",
        f"peak        {human_bytes(fig.runtime_peak_bytes)} per rank at most, each rank "
        + ("within its bound (the larger of its two blocks) -> memory-efficient"
           if fig.memory_efficient else
           "within its proved peak; a rank of both meshes holds both blocks during the "
           "transfer -> NOT within the bound"),
    ]
    return "\n".join(rows)


def cmd_plan(args: argparse.Namespace) -> int:
    from redist.cli import EXIT_CLAIM, EXIT_OK, emit_json, say
    from redist.core.cross.synthesize import certified_cross
    from redist.runtime.cross_launch import problem_from_args

    if args.method == "naive":
        raise RedistError("--method naive: two-mesh problems have the normal and optimal "
                          "methods")
    cp = problem_from_args(args, None)
    note = None
    if args.method == "optimal":
        from redist.core.cross.optimal import optimal_cross
        o = optimal_cross(cp, budget=args.budget, max_steps=args.max_steps)
        plan, verdict, budget, note = o.plan, o.verdict, o.budget, o.note
    else:
        plan, verdict, budget = certified_cross(cp)
    say(args, table(plan))
    if note:
        say(args, f"method      optimal; {note}")
    say(args, "")
    say(args, verdict.table())
    doc = cross_plan_to_json(plan)
    doc["verdict"] = verdict.to_json()
    if getattr(args, "certificate", None):
        from redist.core.smt.certificate import write_certificate
        say(args, "certificate written to "
            + write_certificate(plan, verdict, args.certificate, budget))
    emit_json(doc, args.json)
    return EXIT_OK if verdict.all_proved else EXIT_CLAIM


def cmd_verify(args: argparse.Namespace, doc: dict) -> int:
    from redist.cli import EXIT_CLAIM, EXIT_OK, emit_json, say
    from redist.core.cross.planjson import cross_plan_from_json
    from redist.core.cross.verify import verify_cross
    from redist.core.plans.planjson import claimed_verdict

    plan = cross_plan_from_json(doc)
    claimed = claimed_verdict(doc)
    verdict = verify_cross(plan, args.budget)
    if plan.typing_error() is None:
        say(args, table(plan))
        say(args, "")
    say(args, verdict.table())
    ours = {r.claim: r.status for r in verdict.results}
    disagree = [c for c, s in claimed.items() if ours.get(c) != s]
    for c in disagree:
        say(args, f"REJECTED: the file says {c} is {claimed[c]!r:.20}, recomputed: "
                  f"{ours.get(c, 'no such claim')}")
    emit_json(verdict.to_json(), args.json)
    return EXIT_OK if verdict.all_proved and not disagree else EXIT_CLAIM
