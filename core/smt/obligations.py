"""The five claims of DESIGN §4 as SMT obligations: each is the *negation* of its claim,
so `unsat` proves the claim and a model is a counterexample.

Claims 3 and 5 are stated over symbolic device coordinates and local indices through the
source maps (semantics.py) and the layout semantics (global_index), independently of
the typing-rule code; one query covers every device and element, whatever the mesh size.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import z3

from redist.core.errors import TypingError
from redist.core.model.layout import Layout
from redist.core.ops import AllSlice, source, summed_axes
from redist.core.ops.common import global_index, mixed_radix
from redist.core.plans.plan import Plan
from redist.core.semantics.algebra import NUMPY
from redist.core.semantics.working import runtime_limit
from redist.core.smt import pending
from redist.core.smt import typing_rules as T
from redist.core.smt.bitvec import IntView, Untranslatable, to_bitvec
from redist.core.smt.standard import standard_smt2
from redist.core.smt.z3algebra import Z3

_ALIAS = re.compile(r"([$?])x\d+")

CLAIMS = ("well_typed", "reaches_dst", "element_correct", "memory_efficient", "no_discard")
TITLES = {
    "well_typed": "every step satisfies its typing rule",
    "reaches_dst": "the last layout equals dst",
    "element_correct": "every dst element comes from the right src element",
    "memory_efficient": "every local size stays within the bound, the runtime's working "
                        "memory within it plus one chunk (and padding)",
    "no_discard": "no received element is dropped by a later slice",
}


@dataclass
class Obligation:
    claim: str
    assertions: list[z3.BoolRef]
    explain: Callable[[z3.ModelRef], str]   # a refutation, in words, from a model
    expect_sat: bool = False                # a sat-check (for a refuted typing rule)
    note: str | None = None                 # set when the claim was not posed
    # Set when `assertions` are the bit-vector restatement (bitvec.py): the integer
    # obligation it stands for, and the width.
    integer: list[z3.BoolRef] | None = None
    width: int | None = None

    def smt2(self) -> str:
        """SMT-LIB2 text, reproducible. z3 orders and names shared subterms by internal AST
        ids, which depend on everything the process built before; translating into a
        fresh context assigns ids by traversal alone, and the names are renumbered. The
        text is then made standard (no one-argument `+`, `and`, ...) so that every SMT-LIB
        solver accepts it, cvc5 included."""
        ctx = z3.Context()
        s = z3.Solver(ctx=ctx)
        s.add(*[a.translate(ctx) for a in self.assertions])
        names: dict[str, str] = {}

        def rename(m: re.Match) -> str:
            return names.setdefault(m.group(0), f"{m.group(1)}t{len(names)}")
        return standard_smt2(_ALIAS.sub(rename, s.to_smt2()))


def obligations(plan: Plan, budget_bytes: int | None = None) -> list[Obligation]:
    lays, err = plan.typed_prefix()
    out = [_well_typed(plan, lays, err)]
    if err is not None:
        why = "not posed: the plan is not well-typed"
        return out + [Obligation(c, [], lambda m: "", note=why) for c in CLAIMS[1:]]
    return out + [_reaches_dst(plan, lays), _over_bitvectors(_element_correct(plan, lays)),
                  _memory(plan, lays, budget_bytes), _over_bitvectors(no_discard(plan, lays))]


def no_discard(plan: Plan, lays: list[Layout], legacy: bool = False) -> Obligation:
    """no_discard in one chain of source maps shared by every slice (linear in the plan)
    when two or more slices follow another step, where one chain per slice would make it
    quadratic; otherwise (or with `legacy`, for certificates written before) one chain per
    slice, the text certificates have always recorded."""
    late = sum(1 for m, s in enumerate(plan.steps) if isinstance(s, AllSlice)
               and any(not isinstance(t, AllSlice) for t in plan.steps[:m]))
    return _no_discard(plan, lays) if legacy or late < 2 else _no_discard_shared(plan, lays)


def _over_bitvectors(ob: Obligation) -> Obligation:
    """The symbolic claims over bit-vectors, overflow included (bitvec.py): the same
    statement, answered in time that depends on the plan's length, not on the sizes."""
    try:
        bv, width = to_bitvec(ob.assertions)
    except Untranslatable:
        return ob
    return replace(ob, assertions=bv, integer=ob.assertions, width=width,
                   explain=lambda m: ob.explain(IntView(m)))


# --- claims 1, 2, 4: the concrete plan against the SMT typing rules ----------------------

def _pinned(plan: Plan, lays: list[Layout]):
    mesh, shape = plan.problem.mesh, plan.problem.shape
    lvs = [T.layout_vars(mesh, str(k)) for k in range(len(lays))]
    facts = [f for k, lay in enumerate(lays) for f in T.layout_facts(mesh, lvs[k], lay)]
    return mesh, shape, lvs, facts


def _well_typed(plan: Plan, lays: list[Layout], err: TypingError | None) -> Obligation:
    mesh, shape, lvs, facts = _pinned(plan, lays)
    rank = len(shape)
    svs = [T.step_vars(mesh, str(k + 1)) for k in range(len(plan.steps))]
    n_ok = len(lays) - 1                   # steps whose typing succeeded
    has_sum = bool(plan.problem.src.sum)   # the encoding of pending sums (DESIGN §14)
    facts += [f for k in range(min(len(plan.steps), n_ok + 1))
              for f in T.step_facts(mesh, rank, svs[k], plan.steps[k], has_sum)]
    rules = [f for lv in lvs for f in T.wellformed(mesh, shape, lv, has_sum)]
    rules += [r for k in range(n_ok) for r in
              [T.transition(mesh, shape, svs[k], lvs[k], lvs[k + 1], has_sum)]
              + T.listed_order(mesh, plan.steps[k], lvs[k], lvs[k + 1], rank)]
    if err is None:
        return Obligation("well_typed", facts + [z3.Not(z3.And(*rules))],
                          lambda m: "the SMT typing rules reject a step the typing code "
                                    "accepted (an internal inconsistency)")
    # Refuted by the typing code; the solver confirms that *no* layout satisfies the
    # failing step's rule (unsat of this sat-check).
    nxt = T.layout_vars(mesh, str(n_ok + 1))
    check = facts + rules + T.wellformed(mesh, shape, nxt, has_sum) + [
        T.transition(mesh, shape, svs[n_ok], lvs[n_ok], nxt, has_sum)] + T.listed_order(
        mesh, plan.steps[n_ok], lvs[n_ok], nxt, rank)
    return Obligation("well_typed", check, lambda m: str(err), expect_sat=True,
                      note=str(err))


def _reaches_dst(plan: Plan, lays: list[Layout]) -> Obligation:
    mesh = plan.problem.mesh
    last = T.layout_vars(mesh, "last")
    dst = T.layout_vars(mesh, "dst")
    facts = T.layout_facts(mesh, last, lays[-1]) + T.layout_facts(mesh, dst, plan.problem.dst)
    return Obligation("reaches_dst", facts + [z3.Not(T.same_layout(mesh, last, dst))],
                      lambda m: f"the plan ends at {plan.problem.show(lays[-1])}, not at dst "
                                f"{plan.problem.show(plan.problem.dst)}")


def _memory(plan: Plan, lays: list[Layout], budget: int | None) -> Obligation:
    mesh, shape, lvs, facts = _pinned(plan, lays)
    p = plan.problem
    limit = p.bound_bytes if budget is None else budget
    sizes = [T.local_size(mesh, shape, lv) * p.itemsize for lv in lvs]
    what = "bound" if budget is None else "budget"
    # The MPI runtime's bytes while a step runs: its larger block (symbolic) plus what the
    # runtime adds to it (scratch, or the other block of an exchange), which may reach the
    # limit plus one chunk of it (core.semantics.working).
    work = plan.figures().working_bytes
    pads = plan.figures().padding_bytes             # pieces past the end (DESIGN §11)
    local = [p.local_bytes(lay) for lay in lays]
    extra = [w - max(local[k], local[k + 1]) for k, w in enumerate(work)]
    slack = runtime_limit(limit, p.itemsize) - limit
    held = [z3.If(sizes[k] >= sizes[k + 1], sizes[k], sizes[k + 1]) + extra[k]
            for k in range(len(work))]

    def explain(m: z3.ModelRef) -> str:
        vals = [m.eval(s, model_completion=True).as_long() for s in sizes]
        k = max(range(len(vals)), key=lambda j: vals[j])
        if vals[k] > limit:
            where = "src" if k == 0 else f"after step {k}"
            return (f"{where}: {vals[k]} bytes per device exceeds the {what} {limit} by "
                    f"{vals[k] - limit}")
        runs = [m.eval(h, model_completion=True).as_long() for h in held]
        k = max(range(len(runs)), key=lambda j: runs[j] - pads[j])
        return (f"step {k + 1} ({plan.steps[k].op}): the runtime holds {runs[k]} bytes per "
                f"device while it runs, over the {what} {limit} plus one chunk {slack}"
                + (f" plus padding {pads[k]}" if pads[k] else "")
                + f" by {runs[k] - limit - slack - pads[k]}")
    within = [s <= limit for s in sizes] + [h <= limit + slack + pad
                                             for h, pad in zip(held, pads, strict=True)]
    return Obligation("memory_efficient", facts + [z3.Not(z3.And(*within))], explain)


# --- claims 3, 5: symbolic devices and indices through the source maps -----------------

def _symbolic_point(plan: Plan, layout: Layout, tag: str):
    mesh, shape = plan.problem.mesh, plan.problem.shape
    coords = {a: z3.Int(f"c{tag}_{a}") for a in mesh.names}
    index = [z3.Int(f"i{tag}_{d}") for d in range(len(shape))]
    local = layout.local_shape(mesh, shape)
    bounds = [z3.And(coords[a] >= 0, coords[a] < s) for a, s in mesh.axes]
    bounds += [z3.And(index[d] >= 0, index[d] < local[d]) for d in range(len(shape))]
    return coords, index, bounds


def _chain(plan: Plan, lays: list[Layout], upto: int, coords, index):
    """Follow the source maps back from (coords, index) after step `upto` to src. Returns
    the points visited (after step k, for k = upto..0) and per step its in-range and
    device-changed conditions."""
    mesh, shape = plan.problem.mesh, plan.problem.shape
    points = [(coords, index)]
    in_range, moved = [], []
    for k in range(upto, 0, -1):
        c, i = points[-1]
        c2, i2 = source(plan.steps[k - 1], mesh, shape, lays[k - 1], lays[k], c, i, Z3)
        n = lays[k - 1].local_shape(mesh, shape)
        in_range.append(z3.And(*[z3.And(i2[d] >= 0, i2[d] < n[d]) for d in range(len(n))]))
        if summed_axes(plan.steps[k - 1]):
            moved.append(z3.BoolVal(True))  # a sum holds what the group's others sent
        else:
            moved.append(z3.Or(*[c2[a] != c[a] for a in mesh.names]) if mesh.names
                         else z3.BoolVal(False))
        points.append((c2, i2))
    return points, in_range, moved


def _element_correct(plan: Plan, lays: list[Layout]) -> Obligation:
    if plan.problem.src.sum:
        assertions, explain = pending.element_correct(plan, lays, _symbolic_point)
        return Obligation("element_correct", assertions, explain)
    p = plan.problem
    mesh, shape = p.mesh, p.shape
    coords, index, bounds = _symbolic_point(plan, p.dst, "")
    points, in_range, _ = _chain(plan, lays, len(plan.steps), coords, index)
    c0, i0 = points[-1]
    want = global_index(mesh, shape, p.dst, coords, index)
    got = global_index(mesh, shape, p.src, c0, i0)
    ok = z3.And(*in_range, *[want[d] == got[d] for d in range(len(shape))])
    # Every valid dst element (padding is never data, DESIGN §11).
    valid = [want[d] < shape[d] for d in range(len(shape))]

    def explain(m: z3.ModelRef) -> str:
        return _explain_point(plan, lays, m, coords, index)
    return Obligation("element_correct", bounds + valid + [z3.Not(ok)], explain)


def _explain_point(plan: Plan, lays: list[Layout], m: z3.ModelRef, coords, index) -> str:
    """Replay the chain concretely for the model's device and index."""
    p = plan.problem
    mesh, shape = p.mesh, p.shape
    c = {a: m.eval(v, model_completion=True).as_long() for a, v in coords.items()}
    i = [m.eval(v, model_completion=True).as_long() for v in index]
    dev = mesh.device(c)
    want = [int(x) for x in global_index(mesh, shape, p.dst, c, i)]
    cc, ii = dict(c), list(i)
    for k in range(len(plan.steps), 0, -1):
        cc, ii = source(plan.steps[k - 1], mesh, shape, lays[k - 1], lays[k], cc, ii, NUMPY)
        cc = {a: int(v) for a, v in cc.items()}
        ii = [int(v) for v in ii]
        n = lays[k - 1].local_shape(mesh, shape)
        if any(not 0 <= ii[d] < n[d] for d in range(len(n))):
            return (f"device {dev} {p.base.describe(dev)}, local index {tuple(i)}: at step {k} "
                    f"the value would come from local index {tuple(ii)} of device "
                    f"{mesh.device(cc)}, outside its local shape {n}")
    got = [int(x) for x in global_index(mesh, shape, p.src, cc, ii)]
    return (f"device {dev} {p.base.describe(dev)}, local index {tuple(i)}: expected global element "
            f"{tuple(want)}, the plan delivers {tuple(got)} (from device {mesh.device(cc)} "
            f"local index {tuple(ii)})")


def _no_discard(plan: Plan, lays: list[Layout]) -> Obligation:
    """For each slice step m: no device c and local index j before it such that the slice
    drops j while the value at j crossed the network to reach c."""
    mesh, shape = plan.problem.mesh, plan.problem.shape
    cases, asserts, probes, boxes = [], [], [], []
    for m_idx, step in enumerate(plan.steps, start=1):
        if not isinstance(step, AllSlice):
            continue
        tag = f"s{m_idx}"
        coords, index, box = _symbolic_point(plan, lays[m_idx - 1], tag)
        # The box (0 <= v < K, never empty) also stands alone: each probe's variables are
        # its own, so this changes no answer and bounds every variable (bitvec.py).
        boxes += box
        held = global_index(mesh, shape, lays[m_idx - 1], coords, index)
        bounds = box + [held[d] < shape[d] for d in range(len(shape))]   # valid data only
        n_after = lays[m_idx].local_shape(mesh, shape)
        dropped = _dropped(mesh, step, n_after, coords, index)
        _, _, moved = _chain(plan, lays, m_idx - 1, coords, index)
        hit = z3.Bool(f"discard_{tag}")
        asserts.append(hit == z3.And(*bounds, z3.Or(*dropped), z3.Or(*moved) if moved
                                     else z3.BoolVal(False)))
        cases.append(hit)
        probes.append((m_idx, hit, coords, index))

    def explain(m: z3.ModelRef) -> str:
        for m_idx, hit, coords, index in probes:
            if z3.is_true(m.eval(hit, model_completion=True)):
                c = {a: m.eval(v, model_completion=True).as_long() for a, v in coords.items()}
                i = tuple(m.eval(v, model_completion=True).as_long() for v in index)
                return (f"step {m_idx} (all_slice) drops local index {i} on device "
                        f"{mesh.device(c)} {plan.problem.base.describe(mesh.device(c))}, which "
                        "that device received from "
                        "another device earlier")
        return "a received element is dropped by a slice"
    return Obligation("no_discard", boxes + asserts
                      + [z3.Or(*cases) if cases else z3.BoolVal(False)], explain)


def _dropped(mesh, step: AllSlice, n_after, coords, index) -> list[z3.BoolRef]:
    """Per dim the slice cuts: the local index lies outside the part this device keeps."""
    out = []
    for d, new in enumerate(step.axes):
        if new:
            off = mixed_radix(mesh, new, coords) * n_after[d]
            out.append(z3.Or(index[d] < off, index[d] >= off + n_after[d]))
    return out


def _no_discard_shared(plan: Plan, lays: list[Layout]) -> Obligation:
    """The same claim as _no_discard with one symbolic point S for all slices: a Boolean
    per slice m picks it (S is then a point before slice m that the slice drops), and one
    chain of source maps runs from the last slice back to src, restarting at S at the
    picked slice: position k's point is S if slice k+1 is picked, else the source of the
    point above. The chain passes step k iff a slice after k is picked; the element was
    received iff some passed step moved it between devices. One chain: terms linear in the
    plan's length. Several picks at once only restart the chain at each, so any model is
    a real discard at one of the picked slices (the explanation replays each to find it)."""
    mesh, shape = plan.problem.mesh, plan.problem.shape
    slices = [m for m, st in enumerate(plan.steps, start=1) if isinstance(st, AllSlice)]
    top = slices[-1] - 1                       # layout before the last slice
    coords = {a: z3.Int(f"cS_{a}") for a in mesh.names}
    index = [z3.Int(f"iS_{d}") for d in range(len(shape))]
    widest = [max(lays[m - 1].local_shape(mesh, shape)[d] for m in slices)
              for d in range(len(shape))]
    # Stand-alone bounds of every variable (bitvec.py); each pick narrows them to its box.
    boxes = [z3.And(coords[a] >= 0, coords[a] < n) for a, n in mesh.axes]
    boxes += [z3.And(index[d] >= 0, index[d] < widest[d]) for d in range(len(shape))]
    pick = {m: z3.Bool(f"discard_s{m}") for m in slices}
    asserts = []
    for m in slices:
        step, before = plan.steps[m - 1], lays[m - 1]
        local = before.local_shape(mesh, shape)
        held = global_index(mesh, shape, before, coords, index)
        n_after = lays[m].local_shape(mesh, shape)
        dropped = _dropped(mesh, step, n_after, coords, index)
        asserts.append(z3.Or(z3.Not(pick[m]), z3.And(   # pick -> ... (bitvec.py's fragment)
            *[index[d] < local[d] for d in range(len(shape))],
            *[held[d] < shape[d] for d in range(len(shape))], z3.Or(*dropped))))
    received = []
    point = (coords, index)                    # unused above the top: replaced there by S
    for k in range(top, 0, -1):
        # position k: S where slice k+1 is picked, else the chain from above
        if k + 1 in pick and k < top:
            c = {a: z3.If(pick[k + 1], coords[a], point[0][a]) for a in mesh.names}
            i = [z3.If(pick[k + 1], index[d], point[1][d]) for d in range(len(shape))]
        elif k == top:
            c, i = coords, index
        else:
            c, i = point
        c2, i2 = source(plan.steps[k - 1], mesh, shape, lays[k - 1], lays[k], c, i, Z3)
        passed = z3.Or(*[pick[m] for m in slices if m - 1 >= k])
        if summed_axes(plan.steps[k - 1]):
            moved: z3.BoolRef = z3.BoolVal(True)
        else:
            moved = z3.Or(*[c2[a] != c[a] for a in mesh.names]) if mesh.names \
                else z3.BoolVal(False)
        received.append(z3.And(passed, moved))
        point = (c2, i2)

    def explain(m: z3.ModelRef) -> str:
        c = {a: m.eval(v, model_completion=True).as_long() for a, v in coords.items()}
        i = tuple(m.eval(v, model_completion=True).as_long() for v in index)
        for s_idx in reversed(slices):
            if not z3.is_true(m.eval(pick[s_idx], model_completion=True)):
                continue
            cc, ii = dict(c), list(i)
            for k in range(s_idx - 1, 0, -1):
                c2, i2 = source(plan.steps[k - 1], mesh, shape, lays[k - 1], lays[k], cc, ii,
                                NUMPY)
                c2 = {a: int(v) for a, v in c2.items()}
                if summed_axes(plan.steps[k - 1]) or c2 != cc:
                    dev = mesh.device(c)
                    return (f"step {s_idx} (all_slice) drops local index {i} on device "
                            f"{dev} {plan.problem.base.describe(dev)}, which that device "
                            "received from another device earlier")
                cc, ii = c2, [int(v) for v in i2]
        return "a received element is dropped by a slice"
    return Obligation("no_discard", boxes + asserts
                      + [z3.And(z3.Or(*pick.values()), z3.Or(*received))], explain)
