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
from redist.core.smt.verify import Verdict


@dataclass(frozen=True)
class BetweenResult:
    plan: CrossPlan
    verdict: Verdict
    budget: int | None        # what the memory claim is proved against (None: the bounds)

    @property
    def verified(self) -> bool:
        return self.verdict.all_proved


def synthesize_between(src_mesh: Any, dst_mesh: Any, shape: Any, dtype: Any, src: Any,
                       dst: Any, world: int | None = None) -> BetweenResult:
    """Synthesize the two-mesh plan and prove its five claims before returning it."""
    from redist.core.cross.synthesize import certified_cross

    plan, verdict, budget = certified_cross(between(src_mesh, dst_mesh, shape, dtype, src, dst,
                                                    world))
    return BetweenResult(plan, verdict, budget)
