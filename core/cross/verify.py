"""The five claims of DESIGN §4 for a two-mesh plan, over the union of both meshes' ranks
(DESIGN §15), as SMT obligations (the negated claims; `unsat` proves them).

- well_typed: the transfer's rule (checked by its code: pairs, blocks, coverage, counted
  per device) and the B plan's steps, by the SMT typing rules of the one-mesh plans.
- reaches_dst: the B plan's last layout equals dst.
- element_correct: for a symbolic B device and dst index, the B steps' source maps and then
  the transfer's lead to an A device and local index holding the same global element.
- memory_efficient: per rank, the transfer's working bytes within its bound (its A or B
  block, the larger; 0 for a mesh it is not in), and the B plan's sizes within the
  smallest bound of a B rank (every B rank runs them), or within a budget.
- no_discard: no valid element that reaches a slice on B is dropped by it (stronger than
  needed: every element on B after the transfer came through it).
"""

from __future__ import annotations

from dataclasses import replace

import z3

from redist.core import args
from redist.core.ops import transfer as T
from redist.core.ops.common import global_index, mixed_radix
from redist.core.smt.obligations import (
    CLAIMS,
    Obligation,
    _chain,
    _memory,
    _over_bitvectors,
    _reaches_dst,
    _symbolic_point,
    _well_typed,
)
from redist.core.smt.verify import DEFAULT_TIMEOUT_MS, Verdict, solve
from redist.core.smt.z3algebra import Z3

from .plan import CrossPlan, min_b_bound


def obligations(plan: CrossPlan, budget: int | None = None) -> list[Obligation]:
    err = plan.typing_error()
    b_lays, b_err = plan.b_plan.typed_prefix()
    if err is not None and b_err is None:
        # The transfer's rule failed (its code's answer): a trivially sat obligation whose
        # model is explained by the error.
        text = str(err)
        well = Obligation("well_typed", [z3.BoolVal(True)], lambda m: text)
    else:
        well = _well_typed(plan.b_plan, b_lays, b_err)
        if b_err is not None:                  # numbered with the transfer as step 1
            well = replace(well, note=str(err))
    if err is not None:
        why = "not posed: the plan is not well-typed"
        return [well] + [Obligation(c, [], lambda m: "", note=why) for c in CLAIMS[1:]]
    return [well, _reaches_dst(plan.b_plan, b_lays),
            _over_bitvectors(_element_correct(plan, b_lays)),
            _memory_claim(plan, b_lays, budget), _over_bitvectors(_no_discard(plan, b_lays))]


def _element_correct(plan: CrossPlan, b_lays) -> Obligation:
    cp, mid = plan.problem, plan.mid
    pa = cp.a_problem
    shape = cp.shape
    coords, index, bounds = _symbolic_point(plan.b_plan, mid.dst, "")
    points, in_range, _ = _chain(plan.b_plan, b_lays, len(plan.b_plan.steps), coords, index)
    cm, im = points[-1]
    a_pos, a_coords, a_index = T.source(cp, mid, plan.transfer, cm, im, Z3)
    n_src = pa.src.local_shape(pa.mesh, shape)
    in_range.append(z3.And(a_pos >= 0, a_pos < pa.mesh.num_devices,
                           *[z3.And(a_index[d] >= 0, a_index[d] < n_src[d])
                             for d in range(len(shape))]))
    want = global_index(mid.mesh, shape, mid.dst, coords, index)
    got = global_index(pa.mesh, shape, pa.src, a_coords, a_index)
    ok = z3.And(*in_range, *[want[d] == got[d] for d in range(len(shape))])
    valid = [want[d] < shape[d] for d in range(len(shape))]

    def explain(m: z3.ModelRef) -> str:
        c = {a: m.eval(v, model_completion=True).as_long() for a, v in coords.items()}
        i = tuple(m.eval(v, model_completion=True).as_long() for v in index)
        rank = cp.b.devices[mid.mesh.device(c)]
        g = tuple(m.eval(w, model_completion=True).as_long() for w in want)
        src = m.eval(a_pos, model_completion=True).as_long()
        who = (f"rank {cp.a.devices[src]}" if 0 <= src < len(cp.a.devices)
               else "no pair of the transfer")
        return (f"rank {rank} (dst mesh device {mid.mesh.device(c)}), local index {i}: "
                f"expected global element {g}, which {who} does not deliver")
    return Obligation("element_correct", bounds + valid + [z3.Not(ok)], explain)


def _memory_claim(plan: CrossPlan, b_lays, budget: int | None) -> Obligation:
    cp = plan.problem
    fig = plan.figures()
    limit_b = min_b_bound(cp) if budget is None else budget
    b_ob = _memory(plan.b_plan, b_lays, limit_b)
    facts, negated = b_ob.assertions[:-1], b_ob.assertions[-1]
    b_within = negated.arg(0)
    over = []
    for r, work, bound in zip(fig.ranks, fig.transfer_per_rank, fig.bound_per_rank,
                              strict=True):
        limit = bound if budget is None else budget
        over.append((r, work, limit))
    t_within = z3.And(*[z3.IntVal(w) <= z3.IntVal(lim) for _, w, lim in over])
    what = "bound" if budget is None else "budget"

    def explain(m: z3.ModelRef) -> str:
        bad = [(r, w, lim) for r, w, lim in over if w > lim]
        if bad:
            r, w, lim = max(bad, key=lambda x: x[1] - x[2])
            return (f"step 1 (transfer): rank {r} holds {w} bytes (its A block and its block "
                    f"on B) over its {what} {lim} by {w - lim}")
        return "on B: " + b_ob.explain(m)
    return Obligation("memory_efficient", facts + [z3.Not(z3.And(t_within, b_within))],
                      explain)


def _no_discard(plan: CrossPlan, b_lays) -> Obligation:
    from redist.core.ops import AllSlice

    b = plan.b_plan
    mesh, shape = b.problem.mesh, b.problem.shape
    asserts, cases, boxes = [], [], []
    for k, step in enumerate(b.steps, start=1):
        if not isinstance(step, AllSlice):
            continue
        coords, index, box = _symbolic_point(b, b_lays[k - 1], f"s{k}")
        boxes += box
        held = global_index(mesh, shape, b_lays[k - 1], coords, index)
        n_after = b_lays[k].local_shape(mesh, shape)
        dropped = []
        for d, new in enumerate(step.axes):
            if new:
                off = mixed_radix(mesh, new, coords) * n_after[d]
                dropped.append(z3.Or(index[d] < off, index[d] >= off + n_after[d]))
        hit = z3.Bool(f"discard_s{k}")
        asserts.append(hit == z3.And(*box, *[held[d] < shape[d] for d in range(len(shape))],
                                     z3.Or(*dropped)))
        cases.append(hit)
    return Obligation("no_discard", boxes + asserts
                      + [z3.Or(*cases) if cases else z3.BoolVal(False)],
                      lambda m: "a slice on B drops an element the transfer brought")


def verify_cross(plan: CrossPlan, budget: int | None = None,
                 timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Verdict:
    """Prove or refute the five claims for a two-mesh plan."""
    args.instance(plan, CrossPlan, "verify_cross", "plan", "a CrossPlan")
    args.positive_int(budget, "verify_cross", "budget", "a positive integer (bytes)",
                      optional=True)
    obs = obligations(plan, budget)
    assert tuple(o.claim for o in obs) == CLAIMS
    return Verdict(tuple(solve(o, timeout_ms) for o in obs))
