"""Normal-form synthesis as a best-first (A*) search over layouts of atoms (DESIGN §5).

Normal form is *slices -> all-to-alls (then at most one permute) -> one gather*: local
size falls, stays flat, then rises, so the peak is max(src, dst). The search runs phase
by phase:

  phase 0  slice a replicated atom into any dim whose blocks it splits locally: atoms dst
           needs, and *spare* atoms (in neither end's way) that make the permute that
           follows cheaper and are gathered at the end;
  phase 1  all_to_all any minor-most suffix of a dim to another dim;
  finish   permute (if needed) to dst plus extra minor-most atoms per dim, with the same
           blocks per dim, then gather the extras in one step.

Costs rank (bytes over the bound, slices after communication, leaving normal form,
volume, collectives). When extents rule out every normal-form plan, the search may also
gather mid-way (leaving normal form); such plans come back with `reason` saying why.

The estimate of what remains is admissible: gathers must still bring the local size up
to dst's; an atom in the wrong dim must still move; and no plan moves less than the
problem's lower bound in total.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field

from redist.core.errors import TypingError
from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.ops import (
    AllGather,
    AllPermute,
    AllSlice,
    AllToAll,
    Collective,
    apply,
    step_volume,
)
from redist.core.plans.plan import Plan
from redist.core.semantics.blocks import changed_devices
from redist.core.semantics.costs import lower_bound_bytes

MAX_EXPANSIONS = 2_000           # layouts expanded: the budget (deterministic)
MAX_GOALS = 48                 # finish candidates tried per layout


@dataclass
class Ctx:
    """What the search reuses: the problem, dst's facts, and cached sizes and costs."""
    problem: Problem
    deadline: float
    lower_bound: int | None = None     # given when known (it is the same on every refinement)
    dst: Layout = field(init=False)
    dst_atoms: frozenset[str] = field(init=False)
    _local: dict = field(default_factory=dict)
    _typed: dict = field(default_factory=dict)
    _volume: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dst = self.problem.dst
        self.dst_atoms = frozenset(self.dst.used_axes())
        if self.lower_bound is None:
            self.lower_bound = lower_bound_bytes(self.problem)

    @property
    def devices(self) -> int:
        return self.problem.mesh.num_devices

    def local(self, lay: Layout) -> int:
        if lay not in self._local:
            self._local[lay] = self.problem.local_bytes(lay)
        return self._local[lay]

    def typed(self, step: Collective, lay: Layout) -> Layout | None:
        key = (step, lay)
        if key not in self._typed:
            try:
                self._typed[key] = apply(step, self.problem.mesh, self.problem.shape, lay)
            except TypingError:
                self._typed[key] = None
        return self._typed[key]

    def volume(self, step: Collective, before: Layout, after: Layout) -> int:
        key = (step, before)
        if key not in self._volume:
            # padded bytes: an upper bound of the valid bytes the figures count, from
            # sizes alone (counting valid bytes goes device by device)
            self._volume[key] = step_volume(self.problem, step, before, after, valid=False)
        return self._volume[key]


def _with(lay: Layout, d: int, dim: tuple[str, ...]) -> Layout:
    return Layout(lay.dims[:d] + (dim,) + lay.dims[d + 1:])


def search(problem: Problem, deadline: float | None = None,
           max_expansions: int = MAX_EXPANSIONS, incumbent: tuple | None = None,
           lower_bound: int | None = None) -> Plan | None:
    """The cheapest plan the search finds between problem.src and problem.dst (normal form
    when extents allow one), or None if the budget ran out before any plan was found, or
    none beats `incumbent` (a cost tuple of a plan found before: states that cannot beat it
    are not explored)."""
    ctx = Ctx(problem, deadline if deadline is not None else time.monotonic() + 10.0,
              lower_bound)
    src, dst = problem.src, problem.dst
    bound = max(ctx.local(src), ctx.local(dst))
    mesh = problem.mesh
    dst_dim = {a: dst.dim_of(a) for a in ctx.dst_atoms}
    local_dst = ctx.local(dst)
    generous = not problem.uneven

    def h(phase: int, lay: Layout) -> tuple[int, int]:
        """(volume, collectives) still needed at least (see the module doc)."""
        now = ctx.local(lay)
        # padded sizes estimate valid bytes when the ends do not pad
        vol = max(0, ctx.devices * (local_dst - now)) if generous else 0
        coll = int(now < local_dst)
        if phase < 2:
            wrong = [mesh.size(a) for d, dim in enumerate(lay.dims) for a in dim
                     if a in dst_dim and dst_dim[a] != d]
            if wrong:
                unsliced = math.prod(mesh.size(a) for a in ctx.dst_atoms
                                     if a not in lay.used_axes())
                g = max(wrong)
                vol += ctx.devices * (now // unsliced) * (g - 1) // g if generous else 0
                coll += 1
        return vol, coll

    def est(cost: tuple, hv: tuple[int, int]) -> tuple:
        return (cost[0], cost[1], cost[2], max(cost[3] + hv[0], ctx.lower_bound),
                cost[4] + hv[1])

    def hopeless(e: tuple) -> bool:
        return incumbent is not None and e >= incumbent

    tie = itertools.count()
    # cost = (excess over bound, slices after communication, left normal form, volume,
    # collectives)
    start = (0, 0, 0, 0, 0)
    heap: list = [(est(start, h(0, src)), next(tie), start, (0, src), ctx.local(src), ())]
    if hopeless(heap[0][0]):
        return None
    best: dict = {(0, src): start}
    best_done: tuple | None = None
    expansions = 0
    while heap:
        _, _, cost, state, peak, steps = heapq.heappop(heap)
        if state == "done":
            return Plan(problem, merge_steps(steps))
        if best.get(state, cost) < cost:
            continue
        expansions += 1
        # the clock is read every expansion: one expansion on a large mesh can be slow
        if expansions > max_expansions or time.monotonic() > ctx.deadline:
            # Budget spent: the best complete plan seen so far, rather than nothing.
            return None if best_done is None else Plan(problem, merge_steps(best_done[1]))
        phase, lay = state
        for move, nxt_phase, nxt in _moves(ctx, phase, lay):
            new_peak = max(peak, ctx.local(nxt))
            vol = ctx.volume(move, lay, nxt)
            discards = isinstance(move, AllSlice) and phase == 2
            c = (max(0, new_peak - bound), max(cost[1], int(discards)),
                 max(cost[2], int(nxt_phase == 2)), cost[3] + vol, cost[4] + bool(vol))
            key = (nxt_phase, nxt)
            if c < best.get(key, (math.inf,)):
                best[key] = c
                e = est(c, h(nxt_phase, nxt))
                if not hopeless(e):
                    heapq.heappush(heap, (e, next(tie), c, key, new_peak, steps + (move,)))
        for tail in _finishes(ctx, lay):
            top, cur, vol, coll = peak, lay, cost[3], cost[4]
            for move, nxt in tail:
                v = ctx.volume(move, cur, nxt)
                vol, coll, top, cur = vol + v, coll + bool(v), max(top, ctx.local(nxt)), nxt
            c = (max(0, top - bound), cost[1], cost[2], vol, coll)
            if hopeless(c):
                continue
            moves = steps + tuple(m for m, _ in tail)
            if best_done is None or c < best_done[0]:
                best_done = (c, moves)
            heapq.heappush(heap, (c, next(tie), c, "done", top, moves))
    return None if best_done is None else Plan(problem, merge_steps(best_done[1]))


def _moves(ctx: Ctx, phase: int, lay: Layout):
    """(step, next phase, next layout) for each move allowed in `phase`."""
    rank = lay.rank
    used = set(lay.used_axes())
    if phase in (0, 2):
        for a in _sliceable(ctx, used):
            for d in range(rank):
                per = tuple((a,) if e == d else () for e in range(rank))
                step = AllSlice(per)
                nxt = ctx.typed(step, lay)
                if nxt is not None:
                    yield step, phase, nxt
        for step in dst_slices(ctx.dst, lay, used):
            nxt = ctx.typed(step, lay)
            if nxt is not None:
                yield step, phase, nxt
    for s in range(rank):
        for k in range(1, len(lay.dims[s]) + 1):
            moved = lay.dims[s][len(lay.dims[s]) - k:]
            for t in range(rank):
                if t != s:
                    step = AllToAll(s, t, moved)
                    nxt = ctx.typed(step, lay)
                    if nxt is not None:
                        yield step, max(phase, 1), nxt
    if phase < 2:
        for target in _permute_targets(ctx, lay):
            step = AllPermute(target)
            if ctx.typed(step, lay) is not None:
                yield step, 1, target
    # Leaving normal form: gather a suffix mid-plan (only useful when extents forbid every
    # normal-form plan; the cost ranks these last).
    for d in range(rank):
        for k in range(1, len(lay.dims[d]) + 1):
            gone = lay.dims[d][len(lay.dims[d]) - k:]
            step = AllGather(tuple(gone if e == d else () for e in range(rank)))
            nxt = ctx.typed(step, lay)
            if nxt is not None:
                yield step, 2, nxt


def _permute_targets(ctx: Ctx, lay: Layout):
    """Permutes worth making before an all-to-all: bring an atom to the minor end of its
    dim (so that it can move on its own), or swap an atom for a dst atom of the same size
    that belongs in that dim (renaming blocks without moving them between dims)."""
    mesh = ctx.problem.mesh
    for d, dim in enumerate(lay.dims):
        for i in range(len(dim) - 1):
            yield _with(lay, d, dim[:i] + dim[i + 1:] + (dim[i],))
    where = {a: (d, i) for d, dim in enumerate(lay.dims) for i, a in enumerate(dim)}
    for a, (d, i) in where.items():
        if a in ctx.dst_atoms and ctx.dst.dim_of(a) == d:
            continue
        for b in ctx.dst_atoms:
            if b == a or ctx.dst.dim_of(b) != d or mesh.size(b) != mesh.size(a):
                continue
            dims = [list(x) for x in lay.dims]
            dims[d][i] = b
            if b in where:
                e, j = where[b]
                dims[e][j] = a
            yield Layout(tuple(tuple(x) for x in dims))


def dst_slices(dst: Layout, lay: Layout, used: set[str]):
    """Per dim, all of dst's atoms for it that nobody holds, sliced at once: a dim held
    whole splits into any number of pieces, a partly split one may not split further one
    atom at a time (DESIGN §11)."""
    for d in range(lay.rank):
        new = tuple(a for a in dst.dims[d] if a not in used)
        if len(new) > 1:
            yield AllSlice(tuple(new if e == d else () for e in range(lay.rank)))


def _sliceable(ctx: Ctx, used: set[str]) -> list[str]:
    """Replicated atoms worth slicing: every one dst needs, and of the spare ones (dst does
    not name them) only the first of each size, since equal spare atoms are
    interchangeable."""
    mesh = ctx.problem.mesh
    out = [a for a in mesh.names if a in ctx.dst_atoms and a not in used]
    sizes = set()
    for a in mesh.names:
        if a not in ctx.dst_atoms and a not in used and mesh.size(a) not in sizes:
            sizes.add(mesh.size(a))
            out.append(a)
    return out


def _finishes(ctx: Ctx, lay: Layout) -> list[list[tuple[Collective, Layout]]]:
    """Ways to end from `lay`: permute (if needed) to dst plus extra minor-most atoms per
    dim with lay's blocks per dim, then gather the extras. The goals that change the fewest
    devices' blocks are kept (ties: all of them, to let the gather's cost decide)."""
    out = []
    for goal in _goals(ctx, lay):
        tail: list[tuple[Collective, Layout]] = []
        cur = lay
        if goal != lay:
            step = AllPermute(goal)
            if ctx.typed(step, lay) is None:
                continue
            tail.append((step, goal))
            cur = goal
        extras = tuple(goal.dims[d][len(ctx.dst.dims[d]):] for d in range(goal.rank))
        if any(extras):
            step = AllGather(extras)
            if ctx.typed(step, cur) != ctx.dst:
                continue
            tail.append((step, ctx.dst))
        out.append(tail)
    return out


def _goals(ctx: Ctx, lay: Layout) -> list[Layout]:
    """Layouts `dst_d + extras_d` (extras: atoms dst does not name) with lay's number of
    blocks in every dim; lay itself first if it is one."""
    mesh, dst = ctx.problem.mesh, ctx.dst
    if all(lay.dims[d][: len(dst.dims[d])] == dst.dims[d]
           and not set(lay.dims[d][len(dst.dims[d]):]) & ctx.dst_atoms for d in range(lay.rank)):
        return [lay]
    need = []
    for d in range(lay.rank):
        have, want = lay.shards(mesh, d), dst.shards(mesh, d)
        if have % want:
            return []
        need.append(have // want)
    if all(n == 1 for n in need):
        return [dst]
    # Spare atoms, those already in lay first (in lay's order), then the replicated ones.
    order = [a for a in lay.used_axes() if a not in ctx.dst_atoms]
    order += [a for a in mesh.names if a not in ctx.dst_atoms and a not in order]
    goals = []
    for assign in itertools.islice(_assignments(mesh, lay, order, need, 0), MAX_GOALS):
        goals.append(Layout(tuple(dst.dims[d] + assign[d] for d in range(lay.rank))))
    if len(goals) <= 1:
        return goals
    changed = [int(changed_devices(mesh, lay, g).sum()) for g in goals]
    fewest = min(changed)
    return [g for g, c in zip(goals, changed, strict=True) if c == fewest]


def _assignments(mesh, lay: Layout, spare: list[str], need: list[int], d: int):
    """Ways to give each dim d an ordered tuple of distinct spare atoms of product need[d];
    atoms already in dim d of `lay` are tried first, in their order, so that blocks stay."""
    if d == len(need):
        yield ()
        return
    if need[d] == 1:
        for tail in _assignments(mesh, lay, spare, need, d + 1):
            yield ((),) + tail
        return
    mine = [a for a in lay.dims[d] if a in spare]
    pool = mine + [a for a in spare if a not in mine]
    for r in range(1, len(pool) + 1):
        if math.prod(sorted(mesh.size(a) for a in pool)[:r]) > need[d]:
            break
        for combo in itertools.combinations(pool, r):
            if math.prod(mesh.size(a) for a in combo) == need[d]:
                rest = [a for a in spare if a not in combo]
                for tail in _assignments(mesh, lay, rest, need, d + 1):
                    yield (combo,) + tail


def merge_steps(steps: tuple[Collective, ...]) -> tuple[Collective, ...]:
    """Fuse runs of slices into one all_slice, and runs of permutes into one."""
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
