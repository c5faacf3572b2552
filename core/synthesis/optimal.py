"""Optimal synthesis (DESIGN §5, `--method optimal`): the typing rules (smt_typing.py),
the memory bound and normal-form ordering as constraints over K symbolic steps; z3
minimises volume, then collectives.

Volume terms are exact and linear: a gather adds D·(L_after - L_before), an all-to-all
moves D·(L - L/G), a permute moves L on every device whose block changes, counted device
by device (coordinates are concrete). Above PERMUTE_EXACT_DEVICES devices a permute is
charged as if every device changed, and optimality is then not claimed.
"""

from __future__ import annotations

from dataclasses import dataclass

import z3

from redist.core.errors import RedistError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.plans.plan import Plan
from redist.core.semantics.collectives import AllGather, AllPermute, AllSlice, AllToAll, Collective
from redist.core.smt import typing_rules as T
from redist.core.synthesis.search import normal

PERMUTE_EXACT_DEVICES = 64
DEFAULT_TIMEOUT_MS = 120_000


@dataclass(frozen=True)
class OptimalResult:
    plan: Plan
    note: str                   # what was proved about the plan
    reason: str | None = None   # why it is not within the bound/budget, if it is not
    proved_optimal: bool = False
    feasible: bool = True


def _block_term(mesh: Mesh, lv: T.LayoutVars, coords: dict[str, int], d: int) -> z3.ArithRef:
    """b_d(c) under a symbolic layout: Σ_a [D[a]=d]·c[a]·(product of sizes of the axes
    after a in dim d)."""
    total: z3.ArithRef = z3.IntVal(0)
    for a in mesh.names:
        if coords[a] == 0:
            continue
        stride: z3.ArithRef = z3.IntVal(coords[a])
        for b, size in mesh.axes:
            if b != a and size > 1:
                stride = z3.If(z3.And(lv.D[b] == lv.D[a], lv.P[b] > lv.P[a]), stride * size,
                               stride)
        total = total + z3.If(lv.D[a] == d, stride, 0)
    return total


def _divide_by_moved(mesh: Mesh, size: z3.ArithRef, flags: dict[str, z3.BoolRef]) -> z3.ArithRef:
    for a, s in mesh.axes:
        if s > 1:
            size = z3.If(flags[a], size / s, size)
    return size


def _decode_layout(m: z3.ModelRef, mesh: Mesh, rank: int, lv: T.LayoutVars) -> Layout:
    val = {a: (m.eval(lv.D[a], model_completion=True).as_long(),
               m.eval(lv.P[a], model_completion=True).as_long()) for a in mesh.names}
    return Layout(tuple(tuple(sorted((a for a in mesh.names if val[a][0] == d),
                                     key=lambda a: val[a][1])) for d in range(rank)))


def _decode_step(m: z3.ModelRef, mesh: Mesh, rank: int, sv: T.StepVars, before: Layout,
                 after: Layout) -> Collective | None:
    kind = m.eval(sv.kind, model_completion=True).as_long()
    if kind == T.NOOP:
        return None
    if kind == T.SLICE:
        return AllSlice(tuple(after.dims[d][len(before.dims[d]):] for d in range(rank)))
    if kind == T.GATHER:
        return AllGather(tuple(before.dims[d][len(after.dims[d]):] for d in range(rank)))
    if kind == T.A2A:
        s = m.eval(sv.src_dim, model_completion=True).as_long()
        t = m.eval(sv.dst_dim, model_completion=True).as_long()
        return AllToAll(s, t, before.dims[s][len(after.dims[s]):])
    return AllPermute(after)


def optimal(problem: Problem, budget: int | None = None, max_steps: int | None = None,
            timeout_ms: int = DEFAULT_TIMEOUT_MS) -> OptimalResult:
    mesh, shape, item = problem.mesh, problem.shape, problem.itemsize
    rank, ndev = len(shape), mesh.num_devices
    limit = problem.bound_bytes if budget is None else budget
    if limit < 1:
        raise RedistError("--budget must be a positive number of bytes")
    base = normal(problem)
    base_fig = base.plan.figures()
    k_max = max(4, len(base.plan.steps) + 1) if max_steps is None else max_steps
    if not 1 <= k_max <= 16:
        raise RedistError("--max-steps must be between 1 and 16")
    exact = ndev <= PERMUTE_EXACT_DEVICES

    lvs = [T.layout_vars(mesh, f"o{k}") for k in range(k_max + 1)]
    svs = [T.step_vars(mesh, f"o{k + 1}") for k in range(k_max)]
    opt = z3.Optimize()
    opt.set("timeout", timeout_ms)
    opt.add(*T.layout_facts(mesh, lvs[0], problem.src), *T.layout_facts(mesh, lvs[-1],
                                                                       problem.dst))
    sizes = [T.local_size(mesh, shape, lv) for lv in lvs]
    for k, lv in enumerate(lvs):
        opt.add(*T.wellformed(mesh, shape, lv), sizes[k] * item <= limit)
    comm_kinds = (T.GATHER, T.A2A, T.PERMUTE)
    volumes, colls = [], []
    for k, sv in enumerate(svs):
        before, after = lvs[k], lvs[k + 1]
        opt.add(T.transition(mesh, shape, sv, before, after))
        if k + 1 < k_max:   # no-ops only at the end; no two slices/gathers/permutes in a row
            nxt = svs[k + 1].kind
            opt.add(z3.Implies(sv.kind == T.NOOP, nxt == T.NOOP))
            for kind in (T.SLICE, T.GATHER, T.PERMUTE):
                opt.add(z3.Not(z3.And(sv.kind == kind, nxt == kind)))
        for j in range(k):  # slices come before every communicating step (no discard)
            opt.add(z3.Implies(sv.kind == T.SLICE, z3.And(*[svs[j].kind != c
                                                            for c in comm_kinds])))
        lb = sizes[k]
        if exact:
            changed = z3.Sum([z3.If(z3.And(*[_block_term(mesh, before, mesh.coords(c), d) ==
                                             _block_term(mesh, after, mesh.coords(c), d)
                                             for d in range(rank)]), 0, lb)
                              for c in range(ndev)]) if rank else z3.IntVal(0)
        else:
            changed = ndev * lb
        vol = z3.If(sv.kind == T.GATHER, ndev * (sizes[k + 1] - lb),
                    z3.If(sv.kind == T.A2A, ndev * (lb - _divide_by_moved(mesh, lb, sv.moved)),
                          z3.If(sv.kind == T.PERMUTE, changed, 0))) * item
        volumes.append(vol)
        colls.append(z3.If(z3.Or(*[sv.kind == c for c in comm_kinds]), 1, 0))
    total_volume = z3.Sum(volumes) if volumes else z3.IntVal(0)
    total_colls = z3.Sum(colls) if colls else z3.IntVal(0)
    opt.minimize(total_volume)
    opt.minimize(total_colls)
    answer = opt.check()
    what = "bound" if budget is None else "budget"
    if answer == z3.unsat:
        return OptimalResult(base.plan, f"no plan within the {what} of {limit} bytes exists "
                             f"with up to {k_max} steps (proved: the constraints are unsat)",
                             base.reason or f"shown instead: the normal plan, peak "
                             f"{base_fig.peak_bytes} bytes", feasible=False)
    if answer == z3.unknown:
        return OptimalResult(base.plan, f"the solver gave up ({opt.reason_unknown()}); "
                             "returning the normal plan", base.reason)
    m = opt.model()
    lays = [_decode_layout(m, mesh, rank, lv) for lv in lvs]
    steps = [_decode_step(m, mesh, rank, svs[k], lays[k], lays[k + 1]) for k in range(k_max)]
    plan = Plan(problem, tuple(s for s in steps if s is not None))
    fig = plan.figures()
    model_volume = m.eval(total_volume, model_completion=True).as_long()
    if exact and fig.volume_bytes != model_volume:
        raise AssertionError(f"optimal: model volume {model_volume} != plan volume "
                             f"{fig.volume_bytes}")
    base_fits = base_fig.peak_bytes <= limit
    if base_fits and (base_fig.volume_bytes, base_fig.collectives) < (fig.volume_bytes,
                                                                      fig.collectives):
        # Only possible with the approximate permute cost: never worse than normal.
        return OptimalResult(base.plan, "the normal plan moves less than the best plan "
                             "under the approximate permute cost; returning it", base.reason)
    if exact:
        note = (f"proved optimal among plans of up to {k_max} steps within the {what}: "
                f"volume {fig.volume_bytes} bytes, then {fig.collectives} collectives")
    else:
        note = (f"best found with permutes charged on all {ndev} devices (exact costs only up "
                f"to {PERMUTE_EXACT_DEVICES} devices); optimality not claimed")
    if base_fits:
        saved = base_fig.volume_bytes - fig.volume_bytes
        note += f"; {saved} bytes less than the normal plan" if saved else \
            "; same volume as the normal plan"
    return OptimalResult(plan, note, None, proved_optimal=exact)


