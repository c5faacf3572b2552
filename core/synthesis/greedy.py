"""A greedy planner in the order slice -> all-to-all -> permute -> gather, on atoms.

It follows the idea of production partitioners' resharding (a fixed order of collective
kinds, each applied where it directly helps), written here independently: it is the
baseline the benchmarks compare against, and one of the candidates `synthesize` keeps
the cheapest of, so no plan redist returns moves more than this one.
"""

from __future__ import annotations

import time

from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.ops import AllSlice, AllToAll, Collective
from redist.core.plans.plan import Plan
from redist.core.synthesis.search import Ctx, _finishes, merge_steps

MAX_ROUNDS = 8


def greedy(problem: Problem) -> Plan | None:
    """None if the greedy order gets stuck (the candidates that remain then decide)."""
    ctx = Ctx(problem, time.monotonic() + 5.0)
    dst = problem.dst
    cur = problem.src
    steps: list[Collective] = []
    # 1. Slice every atom dst needs that nobody holds into its dst dim, in dst's order.
    for a in dst.used_axes():
        if a in cur.used_axes():
            continue
        d = dst.dim_of(a)
        step = AllSlice(tuple((a,) if e == d else () for e in range(cur.rank)))
        nxt = ctx.typed(step, cur)
        if nxt is not None:
            steps.append(step)
            cur = nxt
    # 2. All-to-all suffixes that belong in another dim: in order first, then any.
    for in_order in (True, False):
        for _ in range(MAX_ROUNDS):
            move = _next_all_to_all(ctx, cur, in_order)
            if move is None:
                break
            steps.append(move[0])
            cur = move[1]
    # 3./4. Permute to dst plus extras, then gather the extras.
    tails = _finishes(ctx, cur)
    if not tails:
        return None
    best = None
    for tail in tails:
        vol, before = 0, cur
        for move, after in tail:
            vol += ctx.volume(move, before, after)
            before = after
        if best is None or vol < best[0]:
            best = (vol, tail)
    assert best is not None
    return Plan(problem, merge_steps(tuple(steps) + tuple(m for m, _ in best[1])))


def _next_all_to_all(ctx: Ctx, cur: Layout, in_order: bool):
    """The first all_to_all of a minor-most suffix whose atoms all belong to one other dst
    dim (and, if in_order, land exactly where dst wants them)."""
    dst = ctx.dst
    for s in range(cur.rank):
        dim = cur.dims[s]
        for k in range(len(dim), 0, -1):
            moved = dim[len(dim) - k:]
            targets = {dst.dim_of(a) for a in moved}
            if len(targets) != 1 or None in targets:
                continue
            t = targets.pop()
            if t == s:
                continue
            after = cur.dims[t] + moved
            if in_order and dst.dims[t][: len(after)] != after:
                continue
            step = AllToAll(s, t, moved)
            nxt = ctx.typed(step, cur)
            if nxt is not None:
                return step, nxt
    return None
