"""Exhaustive search over every plan of the four portable collectives (and, on a pending
sum, the two reductions) that stays within a memory limit (cheapest first: volume, then
collectives).

States are layouts of the problem's atoms (and whether data has moved yet: slices come
before every communicating step, so no received element is ever sliced away). Moves:
slice any replicated atom into any dim, gather any minor-most suffix, all-to-all any
suffix to any other dim, and permute to *every* layout with the same blocks per dim; on a
pending sum dst does not keep, reduce-scatter any one such axis onto any dim, or
all-reduce it (so a plan may move, then reduce, or reduce onto another dim, then move).
Because the limit bounds every layout on the way, the reachable states are finite; when
the search runs out of states without reaching dst, no plan within the limit exists on
these atoms (with atoms split into prime factors: on any sub-axes). It is the fallback of
`normal` when the normal-form search finds nothing within the bound, and the bounded
search the plan-quality benchmark measures the default planner against.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.ops import (
    AllGather,
    AllPermute,
    AllReduce,
    AllSlice,
    AllToAll,
    ReduceScatter,
    step_volume,
)
from redist.core.plans.plan import Plan
from redist.core.synthesis.search import Ctx, clock, dst_slices, merge_steps

MAX_STATES = 200_000
MAX_PERMUTE_TARGETS = 5_000


@dataclass(frozen=True)
class ExhaustiveResult:
    plan: Plan | None        # the cheapest plan within the limit, if one was found
    complete: bool           # every reachable state was explored with every move (None plan:
                             # none exists; a plan: none costs less)
    states: int


def exhaustive(problem: Problem, limit: int | None = None, deadline: float | None = None,
               max_states: int = MAX_STATES, valid: bool = False) -> ExhaustiveResult:
    """`valid`: rank by the valid bytes the figures count (each step's volume counted
    device by device: slower) instead of padded buffers; the plan returned is then the
    one of least volume as the figures count it, among every plan of these moves within
    the limit (of any length)."""
    ctx = Ctx(problem, deadline if deadline is not None else clock() + 10.0)
    cut: list[bool] = []        # a layout had more permute targets than were tried
    volume = ((lambda step, before, after: step_volume(problem, step, before, after))
              if valid else ctx.volume)
    limit = problem.bound_bytes if limit is None else limit
    src, dst = problem.src, problem.dst
    if ctx.local(src) > limit:
        return ExhaustiveResult(None, True, 0)
    tie = itertools.count()
    start = (src, False)
    heap = [((0, 0), next(tie), start, ())]
    best = {start: (0, 0)}
    explored = 0
    while heap:
        cost, _, state, steps = heapq.heappop(heap)
        lay, moved = state
        if lay == dst:
            # cheapest first: no plan of these moves costs less (unless a layout's permute
            # targets were cut short)
            return ExhaustiveResult(Plan(problem, merge_steps(steps)), not cut, explored)
        if best.get(state, cost) < cost:
            continue
        explored += 1
        if explored > max_states or clock() > ctx.deadline:
            return ExhaustiveResult(None, False, explored)
        for step, nxt in _moves(ctx, lay, moved, cut):
            if ctx.local(nxt) > limit:
                continue
            vol = volume(step, lay, nxt)
            c = (cost[0] + vol, cost[1] + bool(vol))
            key = (nxt, moved or bool(vol))
            if c < best.get(key, (math.inf, 0)):
                best[key] = c
                heapq.heappush(heap, (c, next(tie), key, steps + (step,)))
    return ExhaustiveResult(None, not cut, explored)


def _moves(ctx: Ctx, lay: Layout, moved: bool, cut: list[bool]):
    mesh = ctx.problem.mesh
    rank = lay.rank
    used = set(lay.used_axes()) | set(lay.sum)
    candidates: list = []
    if not moved:
        for a in mesh.names:
            if a not in used:
                for d in range(rank):
                    candidates.append(AllSlice(tuple((a,) if e == d else () for e in
                                                     range(rank))))
        candidates += list(dst_slices(ctx.dst, lay, used))
    todo = tuple(a for a in lay.sum if a not in ctx.dst.sum)
    # one axis at a time, and all at once (a dim held whole may take several axes in one
    # step where it cannot take them one by one: DESIGN §11)
    for axes in dict.fromkeys([(a,) for a in todo] + [todo] if todo else []):
        candidates.append(AllReduce(axes))
        candidates += [ReduceScatter(tuple(axes if e == d else () for e in range(rank)))
                       for d in range(rank)]
    for d in range(rank):
        for k in range(1, len(lay.dims[d]) + 1):
            suffix = lay.dims[d][len(lay.dims[d]) - k:]
            candidates.append(AllGather(tuple(suffix if e == d else () for e in range(rank))))
            candidates += [AllToAll(d, t, suffix) for t in range(rank) if t != d]
    for step in candidates:
        nxt = ctx.typed(step, lay)
        if nxt is not None:
            yield step, nxt
    targets = list(itertools.islice(same_blocks(mesh, lay), MAX_PERMUTE_TARGETS + 1))
    if len(targets) > MAX_PERMUTE_TARGETS:
        cut.append(True)
        targets.pop()
    for target in targets:
        if target != lay:
            step = AllPermute(target)
            if ctx.typed(step, lay) is not None:
                yield step, target


def same_blocks(mesh, lay: Layout):
    """Every layout with lay's number of blocks in each dim."""
    need = [lay.shards(mesh, d) for d in range(lay.rank)]

    def fill(d: int, free: tuple[str, ...]):
        if d == len(need):
            yield ()
            return
        for r in range(len(free) + 1):
            for combo in itertools.permutations(free, r):
                if math.prod(mesh.size(a) for a in combo) == need[d]:
                    rest = tuple(a for a in free if a not in combo)
                    for tail in fill(d + 1, rest):
                        yield (combo,) + tail
    for dims in fill(0, tuple(a for a in mesh.names if a not in lay.sum)):
        yield lay.with_dims(dims)
