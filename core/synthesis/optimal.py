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
import time
from dataclasses import dataclass, replace

import z3

from redist.core.errors import RedistError
from redist.core.model.axes import prime_cuts
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.ops import AllExchange, AllGather, AllPermute, AllSlice, AllToAll, Collective
from redist.core.plans.plan import Plan, padded_volume
from redist.core.semantics.costs import lower_bound_bytes
from redist.core.smt import typing_rules as T

PERMUTE_ENUMERATE_DEVICES = 64
DEFAULT_TIMEOUT_MS = 120_000
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
                                     key=lambda a: val[a][1])) for d in range(rank)))


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


def _expressible(plan: Plan, problem: Problem) -> bool:
    """Is every atom of the plan a run of `problem`'s atoms (so the plan is one of the
    plans the constraints describe)?"""
    cuts = dict(problem.atoms().cuts)
    return all(set(q) <= set(cuts.get(name, (1,))) for name, q in plan.problem.atoms().cuts)


def _now() -> float:
    return time.monotonic()


def _stopped(shown: Plan, when: str, timeout_ms: int) -> OptimalResult:
    return OptimalResult(shown, f"the search was stopped at its deadline ({timeout_ms / 1000:g} "
                         f"s) {when}" + ("; returning the normal plan" if shown.steps else ""),
                         found=False)


def optimal(problem: Problem, budget: int | None = None, max_steps: int | None = None,
            timeout_ms: int = DEFAULT_TIMEOUT_MS, base_plan: Plan | None | bool = True,
            exchange: bool = False) -> OptimalResult:
    """The cheapest plan of at most K steps within the bound (or budget). `base_plan`:
    True computes the normal plan as a floor (optimal is then never worse), a Plan is used
    as that floor, None skips it (when `normal` itself falls back to this search)."""
    from redist.core.synthesis.synthesize import normal

    # One deadline for the whole search (the floor plan, building the constraints, the
    # solver): `timeout_ms` is what the user waits, not only what z3 gets.
    deadline = _now() + timeout_ms / 1000
    limit = problem.bound_bytes if budget is None else budget
    if limit < 1:
        raise RedistError("--budget must be a positive number of bytes")
    if base_plan is True:
        base_plan = normal(problem).plan
    base_fig = base_plan.figures() if base_plan else None
    steps_base = len(base_plan.steps) if base_plan else 3
    k_max = max(4, steps_base + 1) if max_steps is None else max_steps
    if not 1 <= k_max <= 16:
        raise RedistError("--max-steps must be between 1 and 16")
    finer = problem.refined(prime_cuts(problem.base, problem.atoms()))
    if len(finer.mesh.names) > MAX_PRIME_ATOMS or finer.mesh == problem.mesh:
        return _solve(problem, budget, limit, k_max, base_plan, base_fig, timeout_ms, exchange,
                      deadline)
    # Whole atoms first, with a third of the time left: a smaller search that answers
    # quickly; then prime atoms (sub-axes) with the rest. Prime atoms multiply the
    # variables, so a smaller mesh could otherwise be the slower one, and give up where a
    # larger one (too many primes to split) answers.
    coarse = _solve(problem, budget, limit, k_max, base_plan, base_fig, timeout_ms, exchange,
                    _now() + (deadline - _now()) / 3)
    fine = _solve(finer, budget, limit, k_max, base_plan, base_fig, timeout_ms, exchange,
                  deadline)
    if fine.proved_optimal or not fine.feasible or not (coarse.proved_optimal
                                                         or not coarse.feasible):
        return fine
    return replace(coarse, proved_optimal=False, note=(
        f"{coarse.note} — among plans on whole axes; with axes split into sub-axes the "
        f"solver gave up within the time left ({fine.note})"))


def _solve(problem: Problem, budget: int | None, limit: int, k_max: int,
           base_plan: Plan | None, base_fig, timeout_ms: int, exchange: bool,
           deadline: float) -> OptimalResult:
    """One search on `problem`'s atoms, stopped at `deadline` (`timeout_ms` is the user's
    limit, for messages)."""
    from redist.core.synthesis.synthesize import canonical

    mesh, shape, item = problem.mesh, problem.shape, problem.itemsize
    rank, ndev = len(shape), mesh.num_devices
    mixed_sizes = len({s for _, s in mesh.axes}) > 1
    enumerate_devices = ndev <= PERMUTE_ENUMERATE_DEVICES

    lvs = [T.layout_vars(mesh, f"o{k}") for k in range(k_max + 1)]
    svs = [T.step_vars(mesh, f"o{k + 1}") for k in range(k_max)]
    opt = z3.Optimize()
    opt.add(*T.layout_facts(mesh, lvs[0], problem.src), *T.layout_facts(mesh, lvs[-1],
                                                                       problem.dst))
    sizes = [T.local_size(mesh, shape, lv) for lv in lvs]
    for k, lv in enumerate(lvs):
        opt.add(*T.wellformed(mesh, shape, lv), sizes[k] * item <= limit)
    comm_kinds = (T.GATHER, T.A2A, T.PERMUTE, T.EXCHANGE)
    volumes, colls = [], []
    shown = base_plan if base_plan else Plan(problem, ())
    for k, sv in enumerate(svs):
        if _now() >= deadline:
            return _stopped(shown, f"while building the constraints of step {k + 1} of "
                            f"{k_max}", timeout_ms)
        before, after = lvs[k], lvs[k + 1]
        opt.add(T.transition(mesh, shape, sv, before, after))
        if not exchange:
            opt.add(sv.kind != T.EXCHANGE)
        if k + 1 < k_max:   # no-ops only at the end; no two slices/gathers/permutes in a row
            nxt = svs[k + 1].kind
            opt.add(z3.Implies(sv.kind == T.NOOP, nxt == T.NOOP))
            for kind in (T.SLICE, T.GATHER, T.PERMUTE):
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
        vol = z3.If(sv.kind == T.GATHER, ndev * gathered,
                    z3.If(sv.kind == T.A2A, ndev * moved,
                          z3.If(sv.kind == T.PERMUTE, changed,
                                z3.If(sv.kind == T.EXCHANGE, ndev * lb, 0)))) * item
        volumes.append(vol)
        colls.append(z3.If(z3.Or(*[sv.kind == c for c in comm_kinds]), 1, 0))
    total_volume = z3.Sum(volumes) if volumes else z3.IntVal(0)
    total_colls = z3.Sum(colls) if colls else z3.IntVal(0)
    # What is known bounds the search: no plan moves less than the lower bound, and the
    # floor plan (when it fits) is a solution (exact costs only: else it may not be one).
    opt.add(total_volume >= lower_bound_bytes(problem))
    if (base_plan and base_fig.peak_bytes <= limit and len(base_plan.steps) <= k_max
            and _expressible(base_plan, problem)
            and (enumerate_devices or not mixed_sizes)):
        opt.add(total_volume <= padded_volume(base_plan))
    opt.minimize(total_volume)
    opt.minimize(total_colls)
    remaining_ms = int((deadline - _now()) * 1000)
    if remaining_ms < 1:
        return _stopped(shown, "before the solver started", timeout_ms)
    opt.set("timeout", remaining_ms)
    answer = opt.check()
    what = "bound" if budget is None else "budget"
    if answer == z3.unsat:
        return OptimalResult(shown, f"no plan within the {what} of {limit} bytes exists "
                             f"with up to {k_max} steps (proved: the constraints are unsat)",
                             f"shown instead: the normal plan, peak {base_fig.peak_bytes} bytes"
                             if base_fig else None, feasible=False, found=False)
    if answer == z3.unknown:
        return OptimalResult(shown, f"the solver gave up ({opt.reason_unknown()})"
                             + ("; returning the normal plan" if base_plan else ""),
                             found=False)
    m = opt.model()
    lays = [_decode_layout(m, mesh, rank, lv) for lv in lvs]
    decoded = [_decode_step(m, rank, svs[k], lays[k], lays[k + 1]) for k in range(k_max)]
    plan = Plan(problem, tuple(s for s in decoded if s is not None))
    fig = plan.figures()
    model_volume = m.eval(total_volume, model_completion=True).as_long()
    if not any(isinstance(s, AllExchange) for s in plan.steps) \
            and padded_volume(plan) != model_volume:
        raise AssertionError(f"optimal: model volume {model_volume} != plan volume "
                             f"{padded_volume(plan)}")
    plan = canonical(plan)
    base_fits = base_fig is not None and base_fig.peak_bytes <= limit
    if base_fits and (base_fig.volume_bytes, base_fig.collectives) < (fig.volume_bytes,
                                                                      fig.collectives):
        # Only possible when the normal plan uses a permute outside the search space
        # (mixed atom sizes on a large mesh): never worse than normal.
        return OptimalResult(base_plan, "the normal plan moves less than the best plan the "
                             "SMT search considers (permutes that keep atom sizes); returning it")
    note = (f"proved optimal among plans of up to {k_max} steps within the {what}"
            + ("" if enumerate_devices or not mixed_sizes else
               " whose permutes keep atom sizes position by position")
            + f": volume {fig.volume_bytes} bytes, then {fig.collectives} collectives"
            + ("" if not problem.uneven else
               " (minimised as padded buffers; the volume shown counts valid bytes only)"))
    if base_fits:
        saved = base_fig.volume_bytes - fig.volume_bytes
        note += f"; {saved} bytes less than the normal plan" if saved else \
            "; same volume as the normal plan"
    return OptimalResult(plan, note, None, proved_optimal=True)
