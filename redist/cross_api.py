"""The Python interface between two meshes (DESIGN §15).

    from redist import synthesize_between
    r = synthesize_between("fsdp=4,tp=2@0-7", "tp=4@8-11", (64, 64), "bfloat16",
                           "[{fsdp},{tp}]", "[{},{tp}]")
    r.plan.figures().cross_mesh_bytes, r.verdict.all_proved

A mesh is text (`x=2@0-3`, without `@`: ranks 0..n-1), a PlacedMesh, a Mesh (ranks
0..n-1), a jax.sharding.Mesh (its devices' ids are the ranks) or a torch DeviceMesh (its
mesh tensor holds the ranks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redist.core.cross.coerce import between
from redist.core.cross.plan import CrossPlan
from redist.core.errors import RedistError
from redist.core.smt.verify import Verdict


@dataclass(frozen=True)
class BetweenResult:
    plan: CrossPlan
    verdict: Verdict
    budget: int | None        # what the memory claim is proved against (None: the bounds)
    note: str | None = None   # optimal: what was proved about the plan (and what was not)

    @property
    def verified(self) -> bool:
        return self.verdict.all_proved


def synthesize_between(src_mesh: Any, dst_mesh: Any, shape: Any, dtype: Any, src: Any,
                       dst: Any, world: int | None = None, method: str = "normal", *,
                       budget: int | None = None, steps: int | None = None
                       ) -> BetweenResult:
    """Synthesize the two-mesh plan and prove its five claims before returning it.
    method="optimal" searches the two-mesh plans exhaustively (core/cross/optimal.py;
    `budget` bytes per rank instead of the bounds, at most `steps` steps) and `note` says
    what it proved."""
    from redist.core import args
    from redist.core.cross.synthesize import certified_cross

    where = "synthesize_between"
    if method not in ("normal", "optimal"):
        raise RedistError(f"{where}: method must be 'normal' or 'optimal', not "
                          f"{method!r:.40}")
    args.positive_int(budget, where, "budget", "a positive integer (bytes)", optional=True)
    args.positive_int(steps, where, "steps", "a positive integer", optional=True)
    cp = between(src_mesh, dst_mesh, shape, dtype, src, dst, world)
    if method == "optimal":
        from redist.core.cross.optimal import optimal_cross
        o = optimal_cross(cp, budget=budget, max_steps=steps)
        return BetweenResult(o.plan, o.verdict, o.budget, o.note)
    if budget is not None or steps is not None:
        raise RedistError(f"{where}: budget and steps are options of method='optimal'")
    plan, verdict, budget = certified_cross(cp)
    return BetweenResult(plan, verdict, budget)
