"""Claim 3 (element-correct) for a pending src (DESIGN §14): every valid dst element is the
sum of exactly one copy of each src contribution, none missing, none twice.

A src contribution to global element g is the addend of one U-group member: it is named by
its coordinates u on the pending axes U of src (devices that differ only in replicated axes
hold the same addend, so a second copy of one is a double count). A dst that keeps pending
axes W ⊆ U must hold on device c the partial sum over the members whose W coordinates are
c's: the contributions (u, g) with u|W = c|W, over every u on U \\ W.

Following the source maps back from a dst point, each reduction step contributes a
summation coordinate k over its group (addends.py); the composed map sends each tuple s of
those coordinates to one src (device, local index). The claim is that this map is a
bijection onto the needed contributions, stated over symbolic devices, indices and two
symbolic tuples s, s':
  - every s lands in range, on global element g_dst(c, i), with W coordinates c's;
  - s != s' lands on different contributions (no addend twice);
  - the number of tuples equals the number of needed contributions (with injectivity:
    none missing; both are products of concrete sizes, written into the obligation).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import z3

from redist.core.model.layout import Layout
from redist.core.ops import addend, summed_axes
from redist.core.ops.common import global_index
from redist.core.plans.plan import Plan
from redist.core.semantics.algebra import NUMPY
from redist.core.smt.z3algebra import Z3

MAX_EXPLAIN = 1 << 12       # summation tuples replayed to name a missing or doubled addend


def _reductions(plan: Plan) -> list[tuple[int, tuple[str, ...]]]:
    """(step number, summed axes) of each reducing step."""
    return [(m, summed_axes(st)) for m, st in enumerate(plan.steps, start=1) if summed_axes(st)]


def _back(plan: Plan, lays: list[Layout], coords, index, ks: dict[int, dict], alg):
    """Follow the addend maps from (coords, index) after the last step to src, with the
    summation coordinates `ks` (per step number). Returns the src point and per step the
    in-range condition (a list of per-dim pairs (value, extent))."""
    mesh, shape = plan.problem.mesh, plan.problem.shape
    c, i = coords, index
    ranges = []
    for m in range(len(plan.steps), 0, -1):
        c, i = addend(plan.steps[m - 1], mesh, shape, lays[m - 1], lays[m], c, i,
                      ks.get(m, {}), alg)
        ranges.append((m, list(zip(i, lays[m - 1].local_shape(mesh, shape), strict=True))))
    return c, i, ranges


def element_correct(plan: Plan, lays: list[Layout], symbolic_point: Callable
                    ) -> tuple[list[z3.BoolRef], Callable[[z3.ModelRef], str]]:
    """The negated claim (assertions) and the explanation of a model."""
    p = plan.problem
    mesh, shape = p.mesh, p.shape
    coords, index, bounds = symbolic_point(plan, p.dst, "")
    want = global_index(mesh, shape, p.dst, coords, index)
    valid = [want[d] < shape[d] for d in range(len(shape))]
    reds = _reductions(plan)
    kbounds, sides = [], []
    for tag in ("a", "b"):
        ks = {m: {a: z3.Int(f"k{tag}{m}_{a}") for a in axes} for m, axes in reds}
        kbounds += [z3.And(v >= 0, v < mesh.size(a)) for m in ks for a, v in ks[m].items()]
        c0, i0, ranges = _back(plan, lays, coords, index, ks, Z3)
        got = global_index(mesh, shape, p.src, c0, i0)
        ok = z3.And(*[z3.And(v >= 0, v < n) for _, dims in ranges for v, n in dims],
                    *[want[d] == got[d] for d in range(len(shape))],
                    *[c0[a] == coords[a] for a in p.dst.sum])
        sides.append((ks, c0, ok))
    (ka, ca, ok_a), (kb, cb, _) = sides
    distinct = z3.Or(*[ka[m][a] != kb[m][a] for m in ka for a in ka[m]])
    same = z3.And(*[ca[a] == cb[a] for a in p.src.sum])
    tuples = math.prod(mesh.size(a) for _, axes in reds for a in axes)
    needed = math.prod(mesh.size(a) for a in p.src.sum if a not in p.dst.sum)
    wrong = z3.Or(z3.Not(ok_a), z3.And(distinct, same),
                  z3.IntVal(tuples) != z3.IntVal(needed))

    def explain(model: z3.ModelRef) -> str:
        c = {a: model.eval(v, model_completion=True).as_long() for a, v in coords.items()}
        i = [model.eval(v, model_completion=True).as_long() for v in index]
        return explain_point(plan, lays, c, i)
    return bounds + valid + kbounds + [wrong], explain


def explain_point(plan: Plan, lays: list[Layout], c: dict[str, int], i: list[int]) -> str:
    """Replay every summation tuple for one dst device and index: the first addend out of
    range or of the wrong element, else a missing or doubled addend, named."""
    p = plan.problem
    mesh, shape = p.mesh, p.shape
    dev = mesh.device(c)
    head = f"device {dev} {p.base.describe(dev)}, local index {tuple(i)}"
    want = tuple(int(x) for x in global_index(mesh, shape, p.dst, c, i))
    reds = _reductions(plan)
    free = [a for a in p.src.sum if a not in p.dst.sum]
    seen: dict[tuple[int, ...], list[str]] = {}
    choices = [[(m, a, v) for v in range(mesh.size(a))] for m, axes in reds for a in axes]
    if math.prod(len(c) for c in choices) > MAX_EXPLAIN:
        return f"{head}: the addends for global element {want} do not match the sum"
    for combo in itertools.product(*choices):
        ks: dict[int, dict[str, int]] = {}
        for m, a, v in combo:
            ks.setdefault(m, {})[a] = v
        c0, i0, ranges = _back(plan, lays, c, i, ks, NUMPY)
        c0 = {a: int(v) for a, v in c0.items()}
        i0 = [int(v) for v in i0]
        for m, dims in ranges:
            if any(not 0 <= int(v) < n for v, n in dims):
                return (f"{head}: at step {m} an addend would come from local index "
                        f"{tuple(int(v) for v, _ in dims)}, outside the local shape "
                        f"{tuple(n for _, n in dims)}")
        src_dev = mesh.device(c0)
        where = f"device {src_dev} {p.base.describe(src_dev)} local index {tuple(i0)}"
        got = tuple(int(x) for x in global_index(mesh, shape, p.src, c0, i0))
        if got != want:
            return (f"{head}: expected a sum for global element {want}, the plan adds the "
                    f"addend of element {got} (from {where})")
        off = [a for a in p.dst.sum if c0[a] != c[a]]
        if off:
            return (f"{head}: the partial sum kept over {_axes(p, p.dst.sum)} adds the "
                    f"addend of {_member(c0, off)} (from {where}), not of this device's "
                    f"{_member(c, off)}")
        seen.setdefault(tuple(c0[a] for a in free), []).append(where)
    for u, froms in seen.items():
        if len(froms) > 1:
            return (f"{head}: the addend of {_member(dict(zip(free, u, strict=True)), free)} "
                    f"to global element {want} is added {len(froms)} times (from "
                    + " and ".join(froms[:3]) + ")")
    total = math.prod(mesh.size(a) for a in free)
    for u in itertools.product(*[range(mesh.size(a)) for a in free]):
        if u not in seen:
            return (f"{head}: global element {want} lacks the addend of "
                    f"{_member(dict(zip(free, u, strict=True)), free)} (the plan adds "
                    f"{len(seen)} of the {total} addends over {_axes(p, tuple(free))})")
    return f"{head}: the addends for global element {want} do not match the sum"


def _member(coords: dict[str, int], axes: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f"{a}={coords[a]}" for a in axes) or "the only member"


def _axes(p, axes: tuple[str, ...]) -> str:
    return "{" + ",".join(p.show_axes(tuple(axes))) + "}"
