"""Plan synthesis: naive (gather all, then slice) and normal form (DESIGN §5).

Normal form is *slices -> all-to-alls (then at most one permute) -> one gather*. Local
size falls, stays flat, then rises, so its peak is max(src, dst). The synthesizer is a
best-first search over layouts, phase by phase:

  phase 0  slice a replicated axis that dst shards, minor-most into any dim it divides;
  phase 1  all_to_all any minor-most suffix of a dim to another dim;
  finish   permute (if needed) to a layout that is dst plus extra minor-most axes,
           then gather those extras in one step.

Costs rank (bytes over the bound, non-normal-form, volume, collectives). When
divisibility rules out every normal-form plan, the search may also gather mid-way; the
best such plan is returned with `reason` saying why it is not memory-efficient.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

from redist.core.errors import RedistError
from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.plans.plan import Plan
from redist.core.semantics.blocks import changed_devices
from redist.core.semantics.collectives import AllGather, AllPermute, AllSlice, AllToAll, Collective

MAX_EXPANSIONS = 20_000


@dataclass(frozen=True)
class Synthesis:
    plan: Plan
    method: str
    reason: str | None = None   # why the plan is not memory-efficient, if it is not


def naive(problem: Problem) -> Plan:
    """Gather every sharded axis, then slice to dst: the baseline."""
    steps: list[Collective] = []
    if problem.src.used_axes():
        steps.append(AllGather(problem.src.dims))
    if problem.dst.used_axes():
        steps.append(AllSlice(problem.dst.dims))
    return Plan(problem, tuple(steps))


def normal(problem: Problem) -> Synthesis:
    plan = _search(problem, problem.src, problem.dst)
    if plan is None:
        return Synthesis(naive(problem), "naive", "the search budget ran out before any plan "
                         "was found; fell back to the naive plan, which is not "
                         "memory-efficient")
    fig = plan.figures()
    reason = None
    if not fig.memory_efficient:
        reason = (f"no normal-form plan exists: divisibility of the local extents forbids "
                  f"it; this plan peaks at {fig.peak_bytes} bytes per device, "
                  f"{fig.peak_bytes - fig.bound_bytes} over the bound {fig.bound_bytes}")
    elif not is_normal_form(plan):
        reason = ("no normal-form plan exists: divisibility of the local extents forbids "
                  "it; this plan stays within the bound but gathers before it has finished "
                  "moving data" + (", and then slices some of what it received"
                                   if slices_after_communication(plan) else ""))
    return Synthesis(plan, "normal", reason)


def is_normal_form(plan: Plan) -> bool:
    """slices -> all-to-alls/permutes -> gathers, consecutive permutes fused (DESIGN §5)."""
    phase = 0
    rank = {AllSlice: 0, AllToAll: 1, AllPermute: 1, AllGather: 2}
    for k, step in enumerate(plan.steps):
        if rank[type(step)] < phase or (k and isinstance(step, AllPermute)
                                        and isinstance(plan.steps[k - 1], AllPermute)):
            return False
        phase = rank[type(step)]
    return True


def slices_after_communication(plan: Plan) -> bool:
    seen_comm = False
    for step in plan.steps:
        if isinstance(step, AllSlice) and seen_comm:
            return True
        seen_comm |= not isinstance(step, AllSlice)
    return False


def normalize(plan: Plan) -> Synthesis:
    """A normal-form plan from the plan's src to the layout it reaches."""
    end = plan.final_layout
    p = plan.problem
    return normal(Problem(p.mesh, p.shape, p.dtype, p.src, end))


# --- search ------------------------------------------------------------------------

_State = tuple[int, Layout]           # (phase, layout); phase 2 = left normal form


@dataclass
class _Ctx:
    problem: Problem
    dst: Layout
    dst_axes: frozenset[str]
    item: int
    _local: dict[Layout, int] = field(default_factory=dict)

    def local(self, lay: Layout) -> int:
        if lay not in self._local:
            self._local[lay] = lay.local_size(self.problem.mesh, self.problem.shape) * self.item
        return self._local[lay]


def _search(problem: Problem, src: Layout, dst: Layout) -> Plan | None:
    """A* over (phase, layout) with an admissible estimate of the remaining cost (h)."""
    ctx = _Ctx(problem, dst, frozenset(dst.used_axes()), problem.itemsize)
    bound = max(ctx.local(src), ctx.local(dst))
    mesh = problem.mesh
    ndev = mesh.num_devices
    dst_dim = {a: dst.dim_of(a) for a in ctx.dst_axes}

    def h(phase: int, lay: Layout) -> tuple[int, int]:
        """(volume, collectives) still needed at least. Local size never grows before the
        final gather, so it moves >= D·(local(dst) - local(now)). A dst axis sharded in
        the wrong dim must move by an all-to-all over a group containing it, or by the
        final permute; either costs >= D·L·(1 - 1/|a|) (for fixed other coordinates, at
        most one value of a's coordinate keeps its block), with L at least the local size
        once every remaining dst axis is sliced."""
        now = ctx.local(lay)
        vol = max(0, ndev * (ctx.local(dst) - now))
        coll = int(now < ctx.local(dst))
        if phase < 2:
            wrong = [mesh.size(a) for d, dim in enumerate(lay.dims) for a in dim
                     if a in dst_dim and dst_dim[a] != d]
            if wrong:
                unsliced = math.prod(mesh.size(a) for a in ctx.dst_axes
                                     if a not in lay.used_axes())
                g = max(wrong)
                vol += ndev * (now // unsliced) * (g - 1) // g
                coll += 1
        return vol, coll

    tie = itertools.count()
    # cost = (excess over bound, slices after communication (discards), left normal
    # form, volume, collectives)
    start_cost = (0, 0, 0, 0, 0)
    heap: list = [(_est(start_cost, h(0, src)), next(tie), start_cost, (0, src),
                   ctx.local(src), ())]
    best: dict[_State, tuple] = {(0, src): start_cost}
    best_done: tuple | None = None
    expansions = 0
    while heap:
        _, _, cost, state, peak, steps = heapq.heappop(heap)
        if state == "done":
            return Plan(problem, _merge_slices(steps))
        if best.get(state, cost) < cost:
            continue
        expansions += 1
        if expansions > MAX_EXPANSIONS:
            # Budget spent: the best complete plan seen so far (still normal form when
            # one was found), rather than nothing.
            return None if best_done is None else Plan(problem, _merge_slices(best_done[1]))
        phase, lay = state
        for move, nxt_phase, nxt in _moves(ctx, phase, lay):
            new_peak = max(peak, ctx.local(nxt))
            vol, coll = _step_cost(ctx, move, lay, nxt)
            discards = isinstance(move, AllSlice) and phase == 2
            c = (max(0, new_peak - bound), max(cost[1], int(discards)),
                 max(cost[2], int(nxt_phase == 2)), cost[3] + vol, cost[4] + coll)
            key = (nxt_phase, nxt)
            if c < best.get(key, (math.inf,)):
                best[key] = c
                heapq.heappush(heap, (_est(c, h(nxt_phase, nxt)), next(tie), c, key, new_peak,
                                      steps + (move,)))
        finish = _finish(ctx, lay)
        if finish is not None:
            tail_vol, tail_coll, top, cur = 0, 0, peak, lay
            for move, nxt in finish:
                v, k = _step_cost(ctx, move, cur, nxt)
                tail_vol, tail_coll, top, cur = tail_vol + v, tail_coll + k, max(
                    top, ctx.local(nxt)), nxt
            c = (max(0, top - bound), cost[1], cost[2], cost[3] + tail_vol, cost[4] + tail_coll)
            tail = tuple(move for move, _ in finish)
            if best_done is None or c < best_done[0]:
                best_done = (c, steps + tail)
            heapq.heappush(heap, (c, next(tie), c, "done", top, steps + tail))
    return None


def _est(cost: tuple, h: tuple[int, int]) -> tuple:
    """Priority: the cost plus the estimate (excess and normal form rank first)."""
    return (cost[0], cost[1], cost[2], cost[3] + h[0], cost[4] + h[1])


def _step_cost(ctx: _Ctx, move: Collective, before: Layout, after: Layout) -> tuple[int, int]:
    """(volume summed over devices, collectives) of one step."""
    p = ctx.problem
    if isinstance(move, AllSlice):
        return 0, 0
    n = p.mesh.num_devices
    lb = ctx.local(before)
    if isinstance(move, AllPermute):
        return int(changed_devices(p.mesh, before, after).sum()) * lb, 1
    axes = move.axes if isinstance(move, AllToAll) else [a for d in move.axes for a in d]
    g = math.prod(p.mesh.size(a) for a in axes)
    if isinstance(move, AllToAll):
        return n * (g - 1) * lb // g, 1
    return n * (g - 1) * lb, 1


def _moves(ctx: _Ctx, phase: int, lay: Layout):
    """(step, next phase, next layout) for each move allowed in `phase`."""
    mesh, shape = ctx.problem.mesh, ctx.problem.shape
    local = lay.local_shape(mesh, shape)
    rank = lay.rank
    used = set(lay.used_axes())
    if phase in (0, 2):
        for a in sorted(ctx.dst_axes - used):
            for d in range(rank):
                if local[d] % mesh.size(a) == 0:
                    per = tuple((a,) if e == d else () for e in range(rank))
                    yield AllSlice(per), phase, _with(lay, d, lay.dims[d] + (a,))
    yield from _a2a_moves(mesh, lay, local, max(phase, 1))
    # Leaving normal form: gather a suffix mid-plan (only useful when divisibility
    # forbids every normal-form plan; the cost ranks these last).
    for d in range(rank):
        for k in range(1, len(lay.dims[d]) + 1):
            gone = lay.dims[d][len(lay.dims[d]) - k:]
            per = tuple(gone if e == d else () for e in range(rank))
            yield AllGather(per), 2, _with(lay, d, lay.dims[d][: len(lay.dims[d]) - k])


def _a2a_moves(mesh, lay: Layout, local: tuple[int, ...], phase: int):
    for s in range(lay.rank):
        for k in range(1, len(lay.dims[s]) + 1):
            moved = lay.dims[s][len(lay.dims[s]) - k:]
            g = math.prod(mesh.size(a) for a in moved)
            for t in range(lay.rank):
                if t != s and local[t] % g == 0:
                    dims = list(lay.dims)
                    dims[s] = lay.dims[s][: len(lay.dims[s]) - k]
                    dims[t] = lay.dims[t] + moved
                    yield AllToAll(s, t, moved), phase, Layout(tuple(dims))


def _with(lay: Layout, d: int, dim: tuple[str, ...]) -> Layout:
    return Layout(lay.dims[:d] + (dim,) + lay.dims[d + 1:])


def _finish(ctx: _Ctx, lay: Layout) -> list[tuple[Collective, Layout]] | None:
    """Permute (if needed) to dst plus extra minor-most axes of the same local shape, then
    gather the extras; None if no such layout exists."""
    goal = _gatherable_goal(ctx, lay)
    if goal is None:
        return None
    out: list[tuple[Collective, Layout]] = []
    if goal != lay:
        out.append((AllPermute(goal), goal))
    extras = tuple(goal.dims[d][len(ctx.dst.dims[d]):] for d in range(goal.rank))
    if any(extras):
        out.append((AllGather(extras), ctx.dst))
    return out


def _gatherable_goal(ctx: _Ctx, lay: Layout) -> Layout | None:
    """The layout with lay's local shape whose dim d is dst_d followed by extra axes
    (not in dst), preferring lay itself and then the fewest devices changing block."""
    mesh = ctx.problem.mesh
    dst = ctx.dst
    if all(lay.dims[d][: len(dst.dims[d])] == dst.dims[d]
           and not set(lay.dims[d][len(dst.dims[d]):]) & ctx.dst_axes for d in range(lay.rank)):
        return lay
    need = []
    for d in range(lay.rank):
        have, want = lay.shards(mesh, d), dst.shards(mesh, d)
        if have % want:
            return None
        need.append(have // want)
    order = list(lay.used_axes()) + [a for a in mesh.names if a not in lay.used_axes()]
    spare = [a for a in order if a not in ctx.dst_axes]
    best: tuple[int, Layout] | None = None
    for assign in _assignments(mesh, spare, need, 0):
        goal = Layout(tuple(dst.dims[d] + assign[d] for d in range(lay.rank)))
        changed = int(changed_devices(mesh, lay, goal).sum())
        if best is None or changed < best[0]:
            best = (changed, goal)
    return None if best is None else best[1]


def _assignments(mesh, spare: list[str], need: list[int], d: int):
    """Ways to give each dim d an ordered tuple of distinct spare axes of product need[d]."""
    if d == len(need):
        yield ()
        return
    for r in range(len(spare) + 1):
        for combo in itertools.combinations(spare, r):
            if math.prod(mesh.size(a) for a in combo) == need[d]:
                rest = [a for a in spare if a not in combo]
                for tail in _assignments(mesh, rest, need, d + 1):
                    yield (combo,) + tail
            # size-1 axes make many equivalent combos; the first found per product is enough
        if r and math.prod(sorted(mesh.size(a) for a in spare)[:r]) > need[d]:
            break


def _merge_slices(steps: tuple[Collective, ...]) -> tuple[Collective, ...]:
    """Fuse runs of single-axis slices into one all_slice, and runs of permutes."""
    out: list[Collective] = []
    for s in steps:
        prev = out[-1] if out else None
        if isinstance(s, AllSlice) and isinstance(prev, AllSlice):
            out[-1] = AllSlice(tuple(a + b for a, b in zip(prev.axes, s.axes, strict=True)))
        elif isinstance(s, AllPermute) and isinstance(prev, AllPermute):
            out[-1] = s
        else:
            out.append(s)
    return tuple(out)


def synthesize_plan(problem: Problem, method: str = "normal") -> Synthesis:
    if method == "naive":
        plan = naive(problem)
        fig = plan.figures()
        reason = None if fig.memory_efficient else (
            f"the naive plan gathers everything first and peaks at {fig.peak_bytes} bytes "
            f"per device, {fig.peak_bytes - fig.bound_bytes} over the bound")
        return Synthesis(plan, "naive", reason)
    if method == "normal":
        return normal(problem)
    raise RedistError(f"unknown method {method!r} (expected normal, optimal or naive)")
