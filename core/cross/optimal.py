"""`--method optimal` between two meshes (DESIGN §5, §15): a bounded exhaustive search over
plans of the two-mesh form, one transfer into some layout `mid` on B and then steps on B,
cheapest first by (cross-mesh bytes, volume, communicating steps), within the per-rank
bound (or a budget).

The space:
- mid: every layout of the dst problem's atoms of B (every subset of atoms, in every dim
  and order) that the transfer's typing rule accepts;
- the transfer's senders as the normal synthesis picks them (core/cross/synthesize.py):
  for each piece, the receiving rank itself if it holds it, else a B rank that holds it,
  else an A holder. Per piece that choice moves no byte it could save: a piece crosses
  only when no B rank holds it, and moves only when the receiver does not hold it. Which A
  holder sends does not change the three costs (it balances the senders, and on
  overlapping meshes decides whether the transfer can be staged within the bound);
- then any sequence of the portable collectives on B (gathers of minor-most suffixes of
  one or several dims, all-to-alls, permutes; no slice: on B it would drop elements the
  transfer brought, which the no_discard claim forbids), up to K - 1 of them when
  `max_steps` = K is given, every layout and every step's working memory within the
  smallest B bound, as the memory claim states them.

It is Dijkstra's search over the layouts reached on B (costs only grow, so the first plan
taken off the queue is the cheapest in the space); the normal plan, when it fits, is the
floor: once nothing cheaper is left, it is returned (proved optimal) and ties keep it. A
plan whose B part is one all_gather receives in its slots (plan.receive_bytes), so its
figures are computed whole before it is queued. The search stops after MAX_STATES
layouts; it then proves nothing and says so.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from redist.core.errors import RedistError, TypingError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.ops import AllGather, step_padding_bytes, step_volume, step_working_bytes
from redist.core.ops import transfer as T
from redist.core.plans.plan import Plan
from redist.core.semantics.working import runtime_limit
from redist.core.smt.verify import Verdict
from redist.core.synthesis.exhaustive import MAX_PERMUTE_TARGETS, _moves
from redist.core.synthesis.search import Ctx, clock

from .model import CrossProblem
from .plan import CrossPlan, b_steps_within, min_b_bound, transfer_working
from .synthesize import choose_pairs, synthesize_cross

MAX_STATES = 20_000
MAX_MIDS = 20_000


@dataclass(frozen=True)
class CrossOptimal:
    plan: CrossPlan
    verdict: Verdict
    budget: int | None          # what the memory claim is proved against (None: the bounds)
    note: str                   # what was proved about the plan, and what was not
    proved_optimal: bool


def cost(plan: CrossPlan) -> tuple[int, int, int]:
    fig = plan.figures()
    return fig.cross_mesh_bytes, fig.volume_bytes, fig.collectives


def fits(plan: CrossPlan, budget: int | None) -> bool:
    """Within every rank's bound (or the budget), as the memory claim states it."""
    fig = plan.figures()
    if budget is None:
        return fig.memory_efficient
    return all(t <= budget for t in fig.transfer_per_rank) and b_steps_within(plan.b_plan,
                                                                               budget)


def layouts(mesh: Mesh, rank: int):
    """Every layout of `mesh`'s atoms on an array of `rank` dims."""
    names = mesh.names
    for where in itertools.product(range(-1, rank), repeat=len(names)):
        groups = [[a for a, w in zip(names, where, strict=True) if w == d]
                  for d in range(rank)]
        for dims in itertools.product(*[itertools.permutations(g) for g in groups]):
            yield Layout(tuple(dims))


def _gathers(lay: Layout):
    """Gathers of minor-most suffixes of two or more dims at once (one dim at a time comes
    with the one-mesh moves)."""
    choices = [range(len(d) + 1) for d in lay.dims]
    for ks in itertools.product(*choices):
        if sum(1 for k in ks if k) >= 2:
            yield AllGather(tuple(d[len(d) - k:] for d, k in zip(lay.dims, ks, strict=True)))


def optimal_cross(cp: CrossProblem, budget: int | None = None, max_steps: int | None = None,
                  max_states: int = MAX_STATES) -> CrossOptimal:
    """The cheapest plan of the space (module doc), proved by its five claims."""
    from .verify import verify_cross

    if budget is not None and budget < 1:
        raise RedistError("--budget must be a positive number of bytes")
    if max_steps is not None and not 1 <= max_steps <= 16:
        raise RedistError("--max-steps must be between 1 and 16")
    normal = synthesize_cross(cp)
    floor = normal if fits(normal, budget) else None
    plan, note, proved = _search(cp, budget, max_steps, max_states, floor)
    if plan is None:
        plan = normal
    fig = plan.figures()
    claim_budget = budget if budget is not None else (
        None if fig.memory_efficient else fig.runtime_peak_bytes)
    return CrossOptimal(plan, verify_cross(plan, claim_budget), claim_budget, note, proved)


def _search(cp: CrossProblem, budget: int | None, max_steps: int | None, max_states: int,
            floor: CrossPlan | None) -> tuple[CrossPlan | None, str, bool]:
    pb = cp.b_problem
    dst = pb.dst
    limit_b = min_b_bound(cp) if budget is None else budget
    room = runtime_limit(limit_b, pb.itemsize)
    what = "bound" if budget is None else "budget"
    k = ("then any number of steps" if max_steps is None else "alone" if max_steps == 1
         else f"then up to {max_steps - 1} step{'s' if max_steps > 2 else ''}")
    scope = (f"among plans of one transfer {k} on the dst mesh (atoms "
             f"{' '.join(pb.mesh.names)}), senders chosen per piece as the normal method "
             f"does, within the {what}")
    ctx = Ctx(pb, clock() + 3600.0)          # sizes and typing cached; states bound the work

    def limit(r: int) -> int:
        return cp.bound(r) if budget is None else budget

    tie = itertools.count()
    heap: list = []
    best: dict = {}
    mids = 0
    for mid in layouts(pb.mesh, len(cp.shape)):
        mids += 1
        if mids > MAX_MIDS:
            return floor, (f"not proved: more than {MAX_MIDS} layouts to try for the "
                           "transfer; returning the normal plan"), False
        try:
            mp = pb.with_ends(mid, dst)
            pairs = choose_pairs(cp, mp)
            T.check(cp, mp, pairs)
        except (RedistError, TypingError):
            continue
        if ctx.local(mid) > limit_b:
            continue
        root = CrossPlan(cp, pairs, Plan(mp, ()))
        # Received into the block of mid (a B part of one all_gather is costed whole below).
        if any(transfer_working(root, r) > limit(r) for r in cp.union):
            continue
        moved = T.volume_bytes(cp, mp, pairs)
        c = (T.cross_mesh_bytes(cp, mp, pairs), moved, 1 if moved else 0)
        best[_key(mid, True, 0, max_steps)] = c
        heapq.heappush(heap, (c, next(tie), mid, True, root, ()))
    states = 0
    floor_cost = cost(floor) if floor is not None else None
    cut: list[bool] = []        # a layout had more permute targets than were tried

    def answer(plan: CrossPlan, which: str) -> tuple[CrossPlan, str, bool]:
        if cut:
            what = "the best plan found" if which == "found" else which
            return plan, _cut_note(scope, what), False
        return plan, _proved(plan, scope, states, which), True

    while heap:
        c, _, lay, at_root, root, steps = heapq.heappop(heap)
        if floor_cost is not None and c >= floor_cost:
            return answer(floor, "the normal plan")
        if lay is None or lay == dst:             # a whole plan: the cheapest left
            plan = root if lay is None else CrossPlan(cp, root.transfer,
                                                      Plan(root.mid, steps))
            if lay is not None and not fits(plan, budget):
                raise AssertionError(f"optimal_cross: {plan.steps} does not fit")
            return answer(plan, "found")
        key = _key(lay, at_root, len(steps), max_steps)
        if best.get(key, c) < c:
            continue
        states += 1
        if states > max_states:
            return floor, (f"not proved: the search's budget ({max_states} layouts) ran "
                           f"out {scope.replace('among', 'searching')}"
                           + ("; returning the normal plan" if floor else "")), False
        if max_steps is not None and len(steps) + 2 > max_steps:
            continue
        moves = list(_moves(ctx, lay, True, cut))
        moves += [(g, nxt) for g in _gathers(lay) if (nxt := ctx.typed(g, lay)) is not None]
        for step, nxt in moves:
            if ctx.local(nxt) > limit_b or step_working_bytes(pb, step, lay, nxt) > (
                    room + step_padding_bytes(pb, step, lay, nxt)):
                continue
            vol = step_volume(pb, step, lay, nxt, valid=True)
            nc = (c[0], c[1] + vol, c[2] + (1 if vol else 0))
            if at_root and nxt == dst and isinstance(step, AllGather):
                # One all_gather: it receives in its slots, so cost the whole plan.
                whole = CrossPlan(cp, root.transfer, Plan(root.mid, (step,)))
                if fits(whole, budget):
                    heapq.heappush(heap, (cost(whole), next(tie), None, False, whole, ()))
                continue
            nkey = _key(nxt, False, len(steps) + 1, max_steps)
            if nxt == dst or nc < best.get(nkey, (float("inf"),)):
                best[nkey] = nc
                heapq.heappush(heap, (nc, next(tie), nxt, False, root, steps + (step,)))
    if floor is not None:
        return answer(floor, "the normal plan")
    if cut:
        return None, _cut_note(scope, "the normal plan, proved against its own peak"), False
    return None, (f"no plan within the {what} exists {scope.replace('among', 'among the')}"
                  f" (proved by exhaustive search, {states} layout{'' if states == 1 else 's'} "
                  "expanded); returning the normal "
                  "plan, proved against its own peak"), False


def _key(lay: Layout, at_root: bool, depth: int, max_steps: int | None) -> tuple:
    """A state of the search. Right after the transfer is a state of its own: from there a
    single all_gather to dst receives in its slots (other figures), so a cheaper way to
    the same layout does not make it redundant."""
    return (lay, at_root) if max_steps is None else (lay, at_root, depth)


def _proved(plan: CrossPlan, scope: str, states: int, which: str) -> str:
    x, v, n = cost(plan)
    return (f"proved optimal {scope}: cross-mesh {x} bytes, then volume {v} bytes, then {n} "
            f"communicating step{'' if n == 1 else 's'} (exhaustive search, {states} "
            f"layout{'' if states == 1 else 's'} expanded"
            + ("; nothing in the space is cheaper than the normal plan)"
               if which == "the normal plan" else ")"))


def _cut_note(scope: str, returning: str) -> str:
    """Why a search whose permute targets were cut short proves nothing."""
    return (f"not proved: a layout had more than {MAX_PERMUTE_TARGETS} permute targets, not "
            f"all tried {scope.replace('among', 'searching')}; returning {returning}")
