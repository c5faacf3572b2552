"""Optimal synthesis (DESIGN §5, `--method optimal`): the typing rules (smt/typing_rules),
the memory bound and the no-discard ordering as constraints over K symbolic steps; z3
minimises volume, then collectives.

The search runs on atoms split into prime factors when there are few enough of them, so
it may move part of an axis (DESIGN §10). Volume terms are the figures' own: a gather
receives (G-1)·L, an all-to-all (G-1) pieces, a permute L on every device whose block
changes. When every extent is divisible by the device count they are linear; otherwise
they are products of the per-dim padded extents.

A permute's unchanged devices are counted exactly. Up to PERMUTE_ENUMERATE_DEVICES devices
device by device; on larger meshes symbolically: when the permute keeps atom sizes
position by position (every permute does when all atoms have one size, e.g. meshes of
powers of two), a device keeps its block iff its coordinates on the atoms paired at equal
positions are equal, so the unchanged devices number the product of the atom sizes over
the connected components of that pairing. Components are counted by root variables: atoms
paired must share a root, and the minimisation makes as many atoms roots as the pairing
allows, which is the number of components. Larger meshes therefore only consider such
size-preserving permutes, and the note says so.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import z3

from redist.core.errors import RedistError
from redist.core.model.axes import _prime_factors
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.ops import (
    AllExchange,
    AllGather,
    AllPermute,
    AllReduce,
    AllSlice,
    AllToAll,
    Collective,
    ReduceScatter,
)
from redist.core.plans.plan import Plan, padded_volume
from redist.core.semantics.costs import lower_bound_bytes
from redist.core.smt import symvars as V
from redist.core.smt import typing_rules as T

PERMUTE_ENUMERATE_DEVICES = 64
DEFAULT_RLIMIT = 150_000_000  # z3 resource units for the whole search (about 15-20 s of CPU here)
MAX_PRIME_ATOMS = 8


@dataclass(frozen=True)
class OptimalResult:
    plan: Plan
    note: str                   # what was proved about the plan
    reason: str | None = None   # why it is not within the bound/budget, if it is not
    proved_optimal: bool = False
    feasible: bool = True
    found: bool = True          # the solver produced a plan (not the floor shown instead)


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


def _decode_layout(m: z3.ModelRef, mesh: Mesh, rank: int, lv: T.LayoutVars) -> Layout:
    val = {a: (m.eval(lv.D[a], model_completion=True).as_long(),
               m.eval(lv.P[a], model_completion=True).as_long()) for a in mesh.names}
    return Layout(tuple(tuple(sorted((a for a in mesh.names if val[a][0] == d),
                                     key=lambda a: val[a][1])) for d in range(rank)),
                  tuple(a for a in mesh.names if val[a][0] == V.PENDING))


def _decode_step(m: z3.ModelRef, rank: int, sv: T.StepVars, before: Layout,
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
    if kind == T.EXCHANGE:
        return AllExchange(after)
    if kind == V.REDUCE_SCATTER:
        return ReduceScatter(tuple(after.dims[d][len(before.dims[d]):] for d in range(rank)))
    if kind == V.ALL_REDUCE:
        return AllReduce(tuple(a for a in before.sum if a not in after.sum))
    return AllPermute(after)


def _unchanged_terms(mesh: Mesh, lv: T.LayoutVars, nx: T.LayoutVars, is_permute: z3.BoolRef,
                     tag: str) -> tuple[list[z3.BoolRef], list[tuple[z3.BoolRef, int]]]:
    """Constraints and a table [(condition, unchanged device count)] for a permute from lv
    to nx that keeps atom sizes at every position (see the module doc)."""
    names = mesh.names
    index = {a: i for i, a in enumerate(names)}
    size = dict(mesh.axes)
    root = {a: z3.Int(f"root_{tag}_{a}") for a in names}
    out = [z3.And(root[a] >= 0, root[a] <= index[a]) for a in names]

    def pair(u: str, v: str) -> z3.BoolRef:
        return z3.And(lv.D[u] >= 0, lv.D[u] == nx.D[v], lv.P[u] == nx.P[v])
    for u in names:
        same = [v for v in names if size[v] == size[u]]
        # Every sharded atom meets one of its own size at its position in the other layout.
        out.append(z3.Implies(z3.And(is_permute, lv.D[u] >= 0),
                              z3.Or(*[pair(u, v) for v in same])))
        out.append(z3.Implies(z3.And(is_permute, nx.D[u] >= 0),
                              z3.Or(*[pair(v, u) for v in same])))
        for v in names:
            if v != u:
                out.append(z3.Implies(pair(u, v), root[u] == root[v]))
    sizes = sorted(set(size.values()))
    counts = {s: z3.Sum([z3.If(root[a] == index[a], 1, 0) for a in names if size[a] == s])
              for s in sizes}
    table = []
    for ks in itertools.product(*[range(sum(1 for a in names if size[a] == s) + 1)
                                  for s in sizes]):
        cond = z3.And(*[counts[s] == k for s, k in zip(sizes, ks, strict=True)])
        table.append((cond, math.prod(s ** k for s, k in zip(sizes, ks, strict=True))))
    return out, table


def _grown(mesh: Mesh, n: z3.ArithRef, flags: dict[str, z3.BoolRef]) -> z3.ArithRef:
    """n times the sizes of the flagged atoms (one constant factor at a time: linear)."""
    for a, s in mesh.axes:
        n = z3.If(flags[a], n * s, n)
    return n


def _volume_terms(problem: Problem, sv: T.StepVars, lv: T.LayoutVars, nx: T.LayoutVars,
                  lb: z3.ArithRef, la: z3.ArithRef) -> tuple[z3.ArithRef, z3.ArithRef]:
    """Per device: (elements a gather receives, elements an all-to-all receives)."""
    mesh, shape = problem.mesh, problem.shape
    rank = len(shape)
    if problem.generous:
        # Every split is exact: G·L_before = L_after, and a piece is L/G.
        piece: z3.ArithRef = lb
        for a, s in mesh.axes:
            piece = z3.If(sv.moved[a], piece / s, piece)
        return la - lb, lb - piece
    n_b = [T.local_extent(mesh, shape[d], lv, d) for d in range(rank)]
    n_a = [T.local_extent(mesh, shape[d], nx, d) for d in range(rank)]
    grown = math.prod(_grown(mesh, n_b[d], {a: z3.And(sv.gathered[a], lv.D[a] == d)
                                            for a in mesh.names}) for d in range(rank))
    a2a: z3.ArithRef = z3.IntVal(0)
    for t in range(rank):
        others = math.prod(n_b[d] for d in range(rank) if d != t) if rank > 1 else 1
        piece_t = others * n_a[t]
        a2a = z3.If(sv.dst_dim == t, _grown(mesh, piece_t, sv.moved) - piece_t, a2a)
    return grown - lb, a2a


def _reduction_terms(problem: Problem, sv: T.StepVars, lb: z3.ArithRef,
                     la: z3.ArithRef) -> z3.ArithRef:
    """Elements all devices receive in a reduction step (0 in any other step), as the
    figures count padded buffers: a reduce-scatter (G−1) pieces of the new block each, an
    all-reduce ⌊2(G−1)·L/G⌋ each. G of an all-reduce is one constant per subset of the
    pending atoms (few: at most MAX_PRIME_ATOMS atoms), so every term stays linear."""
    mesh, ndev = problem.mesh, problem.mesh.num_devices
    scattered = _grown(mesh, la, {a: sv.reduce_dim[a] >= 0 for a in mesh.names}) - la
    pend = [a for a in mesh.names if a in problem.src.sum]
    allreduced: z3.ArithRef = z3.IntVal(0)
    for n in range(1, len(pend) + 1):
        for subset in itertools.combinations(pend, n):
            g = math.prod(mesh.size(a) for a in subset)
            allreduced = z3.If(z3.And(*[sv.allreduced[a] == (a in subset) for a in pend]),
                               ndev * ((2 * (g - 1) * lb) / g), allreduced)
    return z3.If(sv.kind == V.REDUCE_SCATTER, ndev * scattered,
                 z3.If(sv.kind == V.ALL_REDUCE, allreduced, 0))


def _expressible(plan: Plan, problem: Problem) -> bool:
    """Is every atom of the plan a run of `problem`'s atoms (so the plan is one of the
    plans the constraints describe)?"""
    cuts = dict(problem.atoms().cuts)
    return all(set(q) <= set(cuts.get(name, (1,))) for name, q in plan.problem.atoms().cuts)


def _now() -> float:
    return time.monotonic()


def _stopped(shown: Plan, when: str, timeout_ms: int) -> OptimalResult:
    return OptimalResult(shown, f"not proved: the search was stopped at its wall-clock "
                         f"deadline (--timeout {timeout_ms / 1000:g} s) {when}"
                         + ("; returning the normal plan" if shown.steps else ""),
                         found=False)


def split_atoms(problem: Problem) -> Problem | None:
    """The finer problem the second search runs on, or None when there is none: every atom
    cut after its first k prime factors (ascending; x=16 with k=1: x(1)2, x(2)8), for the
    largest k that keeps at most MAX_PRIME_ATOMS atoms (k=1 always: at most two atoms per
    axis). So the search's size follows the axes and their factors, never the devices."""
    levels = [_cut_after(problem, k) for k in range(1, MAX_PRIME_ATOMS + 1)]
    finer = levels[0]
    for f in levels[1:]:
        if len(f.mesh.names) > MAX_PRIME_ATOMS:
            break
        finer = f
    return None if finer.mesh == problem.mesh else finer


def _cut_after(problem: Problem, k: int) -> Problem:
    """`problem` with each atom cut after each of its first k prime factors."""
    cuts: dict[str, set[int]] = {}
    for name, q in problem.atoms().cuts:
        pts = set(q)
        for a, b in zip(q, q[1:], strict=False):
            at = a
            for prime in _prime_factors(b // a)[:k]:
                at *= prime
                pts.add(at)
        cuts[name] = pts
    return problem.refined(cuts)


def _atoms_text(problem: Problem) -> str:
    return " ".join(problem.mesh.names)


def optimal(problem: Problem, budget: int | None = None, max_steps: int | None = None,
            timeout_ms: int | None = None, base_plan: Plan | None | bool = True,
            exchange: bool = False, rlimit: int = DEFAULT_RLIMIT) -> OptimalResult:
    """The cheapest plan of at most K steps within the bound (or budget). `base_plan`:
    True computes the normal plan as a floor (optimal is then never worse), a Plan is used
    as that floor, None skips it (when `normal` itself falls back to this search).

    The solver's work is bounded by `rlimit` (z3's resource counter: deterministic, so the
    machine's load never changes the answer); `timeout_ms`, when given, is a wall-clock
    limit on the whole search too (the answer may then depend on the load)."""
    from redist.core.synthesis.synthesize import normal

    deadline = None if timeout_ms is None else _now() + timeout_ms / 1000
    limit = problem.bound_bytes if budget is None else budget
    if limit < 1:
        raise RedistError("--budget must be a positive number of bytes")
    if rlimit < 1:
        raise RedistError("--rlimit must be a positive number of z3 resource units")
    if base_plan is True:
        base_plan = normal(problem).plan
    base_fig = base_plan.figures() if base_plan else None
    steps_base = len(base_plan.steps) if base_plan else 3
    k_max = max(4, steps_base + 1) if max_steps is None else max_steps
    if not 1 <= k_max <= 16:
        raise RedistError("--max-steps must be between 1 and 16")
    if _at_the_floor(problem, base_plan, base_fig, limit, k_max):
        what = "bound" if budget is None else "budget"
        return OptimalResult(base_plan, (
            f"proved optimal among plans of up to {k_max} steps within the {what}, and of any "
            f"length, without the solver: the normal plan moves the lower bound "
            f"({base_fig.volume_bytes} bytes), which no plan moves less than, in "
            f"{base_fig.collectives} collective{'' if base_fig.collectives == 1 else 's'}"),
            proved_optimal=True)
    ctx = _Search(budget, limit, k_max, base_plan, base_fig, timeout_ms, exchange)
    finer = split_atoms(problem)
    if finer is None:
        return _solve(problem, ctx, rlimit, deadline, whole=True)
    # Whole atoms first, with a third of the budget: a smaller search that often answers
    # quickly; then the split atoms (sub-axes) with the rest, starting from the best plan
    # found so far. The split atoms number at most 2 per axis whatever the axes' sizes,
    # so the search's size follows the axes, not the devices.
    coarse = _solve(problem, ctx, rlimit // 3, None if deadline is None else
                    _now() + (deadline - _now()) / 3, whole=True)
    if coarse.found and coarse.feasible:
        ctx = replace(ctx, floor=coarse.plan, floor_fig=coarse.plan.figures())
    fine = _solve(finer, ctx, rlimit - rlimit // 3, deadline, whole=False)
    if fine.proved_optimal or (not fine.feasible and not coarse.found):
        return fine
    if coarse.proved_optimal and not fine.found:
        return replace(coarse, proved_optimal=False, note=(
            f"{coarse.note}; not proved with axes split into sub-axes ({fine.note})"))
    if fine.found:
        return fine
    return coarse if coarse.found else replace(coarse, note=f"{coarse.note}; {fine.note}")


@dataclass(frozen=True)
class _Search:
    """What both searches share: the limit, K, and the plan they must beat."""
    budget: int | None
    limit: int
    k_max: int
    base_plan: Plan | None          # the normal plan (reported against)
    base_fig: object
    timeout_ms: int | None
    exchange: bool
    floor: Plan | None = None       # the best plan known so far (the normal one if None)
    floor_fig: object = None


def _at_the_floor(problem: Problem, plan: Plan | None, fig, limit: int, k_max: int) -> bool:
    """Is the normal plan already optimal by (volume, collectives) with nothing to solve:
    within the limit, normal form, no discard, at most K steps, moving exactly the lower
    bound (valid bytes = the padded bytes the solver minimises: even problems only) in at
    most one collective?"""
    from redist.core.synthesis.synthesize import is_normal_form, slices_after_communication

    return (plan is not None and not problem.uneven and fig.peak_bytes <= limit
            and len(plan.steps) <= k_max and fig.collectives <= 1
            and is_normal_form(plan) and not slices_after_communication(plan)
            and fig.volume_bytes == lower_bound_bytes(problem))


_OWN_CONTEXT = threading.Lock()


@contextmanager
def _own_z3_context() -> Iterator[None]:
    """The search's terms live in a z3 context of its own, as in a fresh process. In a
    long-lived process, terms built by earlier work (other searches, proofs) change the
    order z3 sees this search's terms in, and with it how long the search takes: one
    pending-sum search that takes 1 s in a fresh process ran for over 15 minutes after
    earlier optimal searches in the same pytest worker. The templates cached by symvars and
    typing_rules hold terms of a context, so they are dropped on the way in and out."""
    from redist.core.smt import symvars, typing_rules

    def drop() -> None:
        symvars._wellformed_template.cache_clear()
        typing_rules._transition_template.cache_clear()

    with _OWN_CONTEXT:
        outer = z3.z3._main_ctx
        z3.z3._main_ctx = z3.Context()
        drop()
        try:
            yield
        finally:
            drop()
            z3.z3._main_ctx = outer


def _solve(problem: Problem, ctx: _Search, rlimit: int, deadline: float | None,
           whole: bool) -> OptimalResult:
    with _own_z3_context():
        return _solve_here(problem, ctx, rlimit, deadline, whole)


def _solve_here(problem: Problem, ctx: _Search, rlimit: int, deadline: float | None,
                whole: bool) -> OptimalResult:
    """One search on `problem`'s atoms within `rlimit` z3 resource units (and `deadline`,
    wall clock, when the user gave one). `whole`: the atoms are the problem's own axes."""
    from redist.core.synthesis.synthesize import canonical

    mesh, shape, item = problem.mesh, problem.shape, problem.itemsize
    rank, ndev = len(shape), mesh.num_devices
    k_max, limit, base_plan, base_fig = ctx.k_max, ctx.limit, ctx.base_plan, ctx.base_fig
    floor = ctx.floor or base_plan
    floor_fig = ctx.floor_fig if ctx.floor else base_fig
    mixed_sizes = len({s for _, s in mesh.axes}) > 1
    # Device by device only where the symbolic count would leave permutes out (atoms of
    # mixed sizes) and the mesh is small: elsewhere the count is by atoms, so the
    # constraints' size follows the atoms, not the devices.
    enumerate_devices = mixed_sizes and ndev <= PERMUTE_ENUMERATE_DEVICES
    what = "bound" if ctx.budget is None else "budget"
    scope = (f"among plans of up to {k_max} steps within the {what}"
             + (" on whole axes" if whole else f" on the atoms {_atoms_text(problem)}")
             + ("" if enumerate_devices or not mixed_sizes else
                " whose permutes keep atom sizes position by position"))

    lvs = [T.layout_vars(mesh, f"o{k}") for k in range(k_max + 1)]
    svs = [T.step_vars(mesh, f"o{k + 1}") for k in range(k_max)]
    opt = z3.Optimize()
    opt.add(*T.layout_facts(mesh, lvs[0], problem.src), *T.layout_facts(mesh, lvs[-1],
                                                                       problem.dst))
    # A pending sum adds the reductions to the vocabulary (DESIGN §14); other problems'
    # constraints are the ones they always were.
    pending = bool(problem.src.sum)
    sizes = [T.local_size(mesh, shape, lv) for lv in lvs]
    for k, lv in enumerate(lvs):
        opt.add(*T.wellformed(mesh, shape, lv, pending), sizes[k] * item <= limit)
    comm_kinds = (T.GATHER, T.A2A, T.PERMUTE, T.EXCHANGE) + (
        (V.REDUCE_SCATTER, V.ALL_REDUCE) if pending else ())
    volumes, colls = [], []
    shown = floor if floor else Plan(problem, ())
    for k, sv in enumerate(svs):
        if deadline is not None and _now() >= deadline:
            return _stopped(shown, f"while building the constraints of step {k + 1} of "
                            f"{k_max}", ctx.timeout_ms)
        before, after = lvs[k], lvs[k + 1]
        opt.add(T.transition(mesh, shape, sv, before, after, pending))
        if not ctx.exchange:
            opt.add(sv.kind != T.EXCHANGE)
        if k + 1 < k_max:   # no-ops only at the end; no two slices/gathers/permutes in a row
            nxt = svs[k + 1].kind
            opt.add(z3.Implies(sv.kind == T.NOOP, nxt == T.NOOP))
            # (two all-reduces in a row are one, which moves less)
            for kind in (T.SLICE, T.GATHER, T.PERMUTE) + ((V.ALL_REDUCE,) if pending else ()):
                opt.add(z3.Not(z3.And(sv.kind == kind, nxt == kind)))
        for j in range(k):  # slices come before every communicating step (no discard)
            opt.add(z3.Implies(sv.kind == T.SLICE, z3.And(*[svs[j].kind != c
                                                            for c in comm_kinds])))
        lb, la = sizes[k], sizes[k + 1]
        if not rank or not mesh.names:
            changed = z3.IntVal(0)
        elif enumerate_devices:
            changed = z3.Sum([z3.If(z3.And(*[_block_term(mesh, before, mesh.coords(c), d) ==
                                             _block_term(mesh, after, mesh.coords(c), d)
                                             for d in range(rank)]), 0, lb)
                              for c in range(ndev)])
        else:
            facts, table = _unchanged_terms(mesh, before, after, sv.kind == T.PERMUTE, str(k))
            opt.add(*facts)
            changed = z3.Sum([z3.If(cond, (ndev - count) * lb, 0) for cond, count in table])
        gathered, moved = _volume_terms(problem, sv, before, after, lb, la)
        # An exchange is charged as a permute of everything (an upper bound); it is only
        # offered when the caller asks, and its plans are re-costed exactly below.
        reduced = _reduction_terms(problem, sv, lb, la) if pending else z3.IntVal(0)
        vol = z3.If(sv.kind == T.GATHER, ndev * gathered,
                    z3.If(sv.kind == T.A2A, ndev * moved,
                          z3.If(sv.kind == T.PERMUTE, changed,
                                z3.If(sv.kind == T.EXCHANGE, ndev * lb, reduced)))) * item
        volumes.append(vol)
        colls.append(z3.If(z3.Or(*[sv.kind == c for c in comm_kinds]), 1, 0))
    total_volume = z3.Sum(volumes) if volumes else z3.IntVal(0)
    total_colls = z3.Sum(colls) if colls else z3.IntVal(0)
    # What is known bounds the search: no plan moves less than the lower bound, and the
    # best plan known (when it fits) is a solution (exact costs only: else it may not be).
    opt.add(total_volume >= lower_bound_bytes(problem))
    if (floor and floor_fig.peak_bytes <= limit and len(floor.steps) <= k_max
            and _expressible(floor, problem)
            and (enumerate_devices or not mixed_sizes)):
        # Ask only for a strictly better plan: unsat then proves the plan known optimal in
        # this space (it is in it), which z3 answers faster than by minimising.
        strict = True
        fv = padded_volume(floor)
        opt.add(z3.Or(total_volume < fv, z3.And(total_volume == fv,
                                                 total_colls < floor_fig.collectives)))
    else:
        strict = False
    opt.minimize(total_volume)
    opt.minimize(total_colls)
    opt.set("rlimit", rlimit)
    if deadline is not None:
        remaining_ms = int((deadline - _now()) * 1000)
        if remaining_ms < 1:
            return _stopped(shown, "before the solver started", ctx.timeout_ms)
        opt.set("timeout", remaining_ms)
    spent = _resource_count()
    answer = opt.check()
    spent = _resource_count() - spent
    if answer == z3.unsat and strict:
        return _proved(floor, floor.figures(), problem, scope, base_fig, limit)
    if answer == z3.unsat:
        return OptimalResult(shown, f"no plan within the {what} of {limit} bytes exists "
                             f"with up to {k_max} steps"
                             + ("" if whole else f" on the atoms {_atoms_text(problem)}")
                             + " (proved: the constraints are unsat)",
                             f"shown instead: the normal plan, peak {base_fig.peak_bytes} bytes"
                             if base_fig else None, feasible=False, found=False)
    if answer == z3.unknown:
        out_of_time = deadline is not None and _now() >= deadline
        why = (f"not proved: the search was stopped at its wall-clock deadline (--timeout "
               f"{ctx.timeout_ms / 1000:g} s)" if out_of_time else
               f"not proved: the solver's budget ({rlimit} z3 resource units) ran out"
               if spent >= rlimit else f"not proved: the solver gave up "
               f"({opt.reason_unknown()})")
        return _best_found(problem, opt, lvs, svs, shown, floor_fig, limit, why, scope)
    m = opt.model()
    plan = _decoded(m, problem, lvs, svs)
    fig = plan.figures()
    model_volume = m.eval(total_volume, model_completion=True).as_long()
    if not any(isinstance(s, AllExchange) for s in plan.steps) \
            and padded_volume(plan) != model_volume:
        raise AssertionError(f"optimal: model volume {model_volume} != plan volume "
                             f"{padded_volume(plan)}")
    plan = canonical(plan)
    floor_fits = floor_fig is not None and floor_fig.peak_bytes <= limit
    if floor_fits and (floor_fig.volume_bytes, floor_fig.collectives) < (fig.volume_bytes,
                                                                         fig.collectives):
        # Only possible when the plan known uses a permute outside the search space
        # (mixed atom sizes on a large mesh): never worse than what is known.
        return OptimalResult(floor, "not proved: the plan known moves less than the best plan "
                             "the SMT search considers (permutes that keep atom sizes); "
                             "returning it", found=False)
    return _proved(plan, fig, problem, scope, base_fig, limit)


def _proved(plan: Plan, fig, problem: Problem, scope: str, base_fig, limit: int
            ) -> OptimalResult:
    note = (f"proved optimal {scope}: volume {fig.volume_bytes} bytes, then "
            f"{fig.collectives} collectives"
            + ("" if not problem.uneven else
               " (minimised as padded buffers; the volume shown counts valid bytes only)"))
    if base_fig is not None and base_fig.peak_bytes <= limit:
        saved = base_fig.volume_bytes - fig.volume_bytes
        note += f"; {saved} bytes less than the normal plan" if saved else \
            "; same volume as the normal plan"
    return OptimalResult(plan, note, None, proved_optimal=True)


def _decoded(m: z3.ModelRef, problem: Problem, lvs, svs) -> Plan:
    rank = len(problem.shape)
    lays = [_decode_layout(m, problem.mesh, rank, lv) for lv in lvs]
    steps = [_decode_step(m, rank, svs[k], lays[k], lays[k + 1]) for k in range(len(svs))]
    return Plan(problem, tuple(s for s in steps if s is not None))


def _resource_count() -> int:
    """z3's resource counter for this process so far (a trivial check reads it)."""
    s = z3.Solver()
    s.check()
    return int(s.statistics().get_key_value("rlimit count"))


def _best_found(problem: Problem, opt: z3.Optimize, lvs, svs, shown: Plan, floor_fig,
                limit: int, why: str, scope: str) -> OptimalResult:
    """The solver stopped (`why`): the best plan it found, if it beats the plan known,
    and a note saying that nothing was proved."""
    from redist.core.synthesis.synthesize import canonical

    try:
        # z3 returns an empty model when it found none: decoded, that is no plan at all,
        # so only a well-typed plan that reaches dst counts
        plan = _decoded(opt.model(), problem, lvs, svs)
        lays, err = plan.typed_prefix()
        plan = canonical(plan) if err is None and lays[-1] == problem.dst else None
        fig = plan.figures() if plan is not None else None
    except (z3.Z3Exception, RedistError):
        plan, fig = None, None
    if plan is not None and fig.peak_bytes <= limit and (
            floor_fig is None or floor_fig.peak_bytes > limit
            or (fig.volume_bytes, fig.collectives) < (floor_fig.volume_bytes,
                                                      floor_fig.collectives)):
        return OptimalResult(plan, f"{why}; best plan found {scope}: volume "
                             f"{fig.volume_bytes} bytes, {fig.collectives} collectives "
                             "(not proved optimal)")
    return OptimalResult(shown, f"{why} {scope.replace('among', 'searching')} before finding "
                         "a plan better than the one known" + ("; returning it"
                                                              if shown.steps else ""),
                         found=False)
