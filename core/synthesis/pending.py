"""Synthesis on pending sums (DESIGN §14): reduce first, then move.

The normal form extended: slices -> reduce-scatters -> all-to-alls/permutes -> gathers.
Reducing early shrinks every later step, and a reduce-scatter onto the dim dst shards an
axis by leaves nothing to move for it. Each prefix of semantics/reductions.py (slices,
one reduce-scatter, one all-reduce) is tried; the rest of the way, from the prefix's end
to dst, is the sum-free synthesis (the pending axes dst keeps are carried, and no step may
name them). The cheapest by the objective wins; an all-reduce is kept only where it costs
less than a reduce-scatter and a gather (ties go to fewer collectives).
"""

from __future__ import annotations

from collections.abc import Callable

from redist.core.errors import TypingError
from redist.core.model.axes import refine
from redist.core.model.problem import Problem, lower_layout
from redist.core.ops import AllSlice, map_names
from redist.core.ops.all_reduce import AllReduce
from redist.core.ops.reduce_scatter import ReduceScatter
from redist.core.plans.plan import Plan
from redist.core.semantics.reductions import Prefix, prefixes


def prefix_steps(prefix: Prefix) -> tuple:
    steps: list = []
    if any(prefix.sliced):
        steps.append(AllSlice(prefix.sliced))
    if any(prefix.scattered):
        steps.append(ReduceScatter(prefix.scattered))
    if prefix.reduced:
        steps.append(AllReduce(prefix.reduced))
    return tuple(steps)


def join(problem: Problem, head: tuple, rest: Plan) -> Plan:
    """head (on problem's atoms) then rest (from head's end; on its own atoms, which
    synthesis may have split finer or merged coarser): both on the common refinement."""
    if rest.problem.mesh == problem.mesh:
        return Plan(problem, head + rest.steps)
    atoms = refine(problem.base, problem.mesh.names + rest.problem.mesh.names)
    fine = Problem(atoms.mesh, problem.shape, problem.dtype,
                   lower_layout(atoms, problem.show(problem.src)),
                   lower_layout(atoms, problem.show(problem.dst)), base=problem.base)
    steps = tuple(map_names(s, lambda axes: atoms.lower_all(problem.show_axes(axes)))
                  for s in head + rest.steps)
    return Plan(fine, steps)


def _slice_first(plan: Plan, k: int) -> Plan | None:
    """The plan with its step k, a slice right after the reductions, moved to the front
    (slices before reductions: they shrink the sum, and a slice after a reduction drops
    received data), if that is well-typed and still reaches dst."""
    if k == 0 or k >= len(plan.steps) or not isinstance(plan.steps[k], AllSlice):
        return None
    steps = (plan.steps[k],) + plan.steps[:k] + plan.steps[k + 1:]
    moved = Plan(plan.problem, steps)
    lays, err = moved.typed_prefix()
    return moved if err is None and lays[-1] == plan.problem.dst else None


def reduce_first(problem: Problem, rest: Callable[[Problem], tuple[Plan, str]],
                 key: Callable[[Plan], tuple]) -> list[tuple[Plan, str]]:
    """Candidate plans: each prefix, then `rest` (the sum-free synthesis: a plan and how
    it was found) from its end to dst; ranked by `key`, best first."""
    out = []
    for prefix in prefixes(problem):
        head = prefix_steps(prefix)
        start = Plan(problem, head)
        lays, err = start.typed_prefix()
        if err is not None:
            continue
        try:
            tail, how = rest(problem.with_ends(lays[-1], problem.dst))
        except TypingError:
            continue
        plan = join(problem, head, tail)
        what = ", ".join(s.op for s in head) or "nothing"
        out.append((plan, f"reduce first ({what}), then {how}"))
        hoisted = _slice_first(plan, len(head))
        if hoisted is not None:
            out.append((hoisted, f"reduce first ({what}; the rest's slice before it), "
                                 f"then {how}"))
    out.sort(key=lambda c: (key(c[0]), len(c[0].steps)))
    return out
