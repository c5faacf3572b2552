"""Runs of consecutive all-to-alls that the runtime executes as one (docs/runtime.md).

Steps k..k+m-1 of a plan that are all `all_to_all` with the same src_dim s and dst_dim t
move, in turn, the suffixes A_1, A_2, ..., A_m of dim s (A_1 minor-most) to the minor end
of dim t. Together they are one exchange over the group of A_m ∪ ... ∪ A_1: dim s loses
the suffix (A_m, ..., A_1), dim t gains (A_1, ..., A_m), and member c sends to member c'
the piece of its block whose index along t is c''s number over (A_1, ..., A_m), which
lands at c's number over (A_m, ..., A_1) along s. Ranked by the latter (the group's order),
the sent pieces are a permutation of the members: an in-place all-to-all of G = Π|A_i|
whose send order is permuted (execute.fused_all_to_all).

Received per device: (G-1)/G of the block, against Σ_i (|A_i|-1)/|A_i| for the m steps
(two steps of g=2: 3/4 of the block instead of 1), 2 local block transposes instead of 2m,
and G-1 swaps of L/G instead of Σ (|A_i|-1) swaps of L/|A_i|. The working memory is one
block and one chunk, the chunk of each step (all-to-alls keep the local size).

Fused only where nothing is padded (every extent divides in the layouts before and after
the run; the ones between then divide too) and the in-place path runs: the decision is
the same on every rank (the fused run's communicator is created collectively).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from redist.core.model.layout import Layout
from redist.core.ops import AllToAll
from redist.core.ops.common import pads
from redist.core.plans.plan import Plan

# "0" runs every all-to-all of a run on its own (benchmarks compare both).
FUSE_ALL_TO_ALLS = os.environ.get("REDIST_FUSE", "1") != "0"


@dataclass(frozen=True)
class Run:
    """Steps [start, stop) of a plan, all-to-alls from src_dim to dst_dim, run as one."""
    start: int
    stop: int
    src_dim: int
    dst_dim: int
    group: tuple[str, ...]     # the moved suffix of src_dim, major -> minor (the group order)
    pieces: tuple[str, ...]    # the same axes as they end in dst_dim (the pieces' order)


def fused_runs(plan: Plan, inplace: bool = True) -> list[Run]:
    """The runs of two or more consecutive all-to-alls the runtime fuses (none if
    REDIST_FUSE=0 or the all-to-alls run out of place)."""
    if not (FUSE_ALL_TO_ALLS and inplace):
        return []
    p = plan.problem
    lays = plan.layouts()
    out: list[Run] = []
    k = 0
    while k < len(plan.steps):
        stop = k
        while stop < len(plan.steps) and _continues(plan.steps[k], plan.steps[stop]):
            stop += 1
        if stop - k >= 2 and not pads(p, lays[k]) and not pads(p, lays[stop]):
            out.append(_run(plan.steps[k:stop], k, lays[k]))
            k = stop
        else:
            k += 1
    return out


def _continues(first, step) -> bool:
    return (isinstance(first, AllToAll) and isinstance(step, AllToAll)
            and (step.src_dim, step.dst_dim) == (first.src_dim, first.dst_dim))


def _run(steps, start: int, before: Layout) -> Run:
    s, t = steps[0].src_dim, steps[0].dst_dim
    moved = sum(len(st.axes) for st in steps)
    group = before.dims[s][len(before.dims[s]) - moved:]
    pieces = tuple(a for st in steps for a in st.axes)
    return Run(start, start + len(steps), s, t, group, pieces)


def wire_bytes(plan: Plan, run: Run) -> int:
    """Bytes the fused run receives, summed over all devices: every device keeps one of
    its G pieces of the block and receives the other G - 1 (nothing is padded)."""
    p = plan.problem
    g = math.prod(p.mesh.size(a) for a in run.group)
    block = plan.layouts()[run.start].local_size(p.mesh, p.shape) * p.itemsize
    return p.mesh.num_devices * (g - 1) * (block // g)
