"""Synthesis methods (DESIGN §5) and the default portfolio.

`normal` (the default) keeps the cheapest of several candidates, ranked by (bytes over
the bound, discarded transfers, leaving normal form, volume, collectives):

  1. the A* search (search.py) on the problem's own atoms;
  2. unless that is already ideal (normal form, within the bound, at the lower bound), the
     same search with every axis split into prime factors, so that it can move the part of
     an axis an extent can take (DESIGN §10), and the greedy planner (greedy.py);
  3. if no candidate stays within the bound, an exhaustive search of every plan within the
     bound (exhaustive.py), within a budget: it finds one, or proves none exists.
The naive plan is always a candidate (ranked last unless it is the only one in bound).

The result says which candidate won. Every plan is lifted back to canonical refs and
re-read (so equal plans compare equal whatever atoms the search used).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from redist.core.errors import RedistError
from redist.core.model.axes import prime_cuts
from redist.core.model.problem import Problem
from redist.core.ops import (
    AllExchange,
    AllGather,
    AllPermute,
    AllReduce,
    AllSlice,
    AllToAll,
    ReduceScatter,
)
from redist.core.ops.all_exchange import holds_one_buffer
from redist.core.plans.plan import Plan, padded_volume
from redist.core.plans.planjson import plan_from_json, plan_to_json
from redist.core.plans.report import human_bytes
from redist.core.semantics.costs import lower_bound_bytes
from redist.core.synthesis.blockcounts import unreachable_dim
from redist.core.synthesis.choice import MARGIN, choose
from redist.core.synthesis.costmodel import CostModel
from redist.core.synthesis.costmodel import load as load_cost_model
from redist.core.synthesis.exhaustive import exhaustive
from redist.core.synthesis.greedy import greedy
from redist.core.synthesis.pending import reduce_first
from redist.core.synthesis.search import clock, search

# Budgets are counts (deterministic: the same problem always gets the same plan); the
# clock only stops a search that a slow machine makes take far longer than usual. It
# counts this process's CPU seconds (search.clock): a machine shared with other jobs is
# slower by the wall clock, and that must not change the plan.
FIRST_EXPANSIONS = 1_500           # the A* search on the problem's own atoms
SPLIT_EXPANSIONS = 250             # the same on prime atoms
SPLIT_MAX_ATOMS = 8
SINGLE_CUTS = 24                   # refinements by one cut tried when primes are too many
FALLBACK_STATES = 8_000            # the exhaustive search when no candidate fits the bound
FALLBACK_MAX_ATOMS = 8
# The same search on a pending problem whose plans fit but miss the lower bound (small
# meshes only: each state costs a few volume figures, counted device by device)
CLOSER_MAX_DEVICES = 64
CLOSER_STATES = 500
CLOSER_SECONDS = 1.0
SAFETY_SECONDS = 5.0
TOTAL_SECONDS = 10.0               # all phases together, on the same safety clock


@dataclass(frozen=True)
class Synthesis:
    plan: Plan
    method: str                 # which synthesizer produced the plan
    reason: str | None = None   # why the plan is not memory-efficient or not normal form
    note: str | None = None     # what else is worth knowing (e.g. what optimal proved)
    candidates: tuple[tuple[Plan, str], ...] = ()   # every plan the portfolio compared


OBJECTIVES = ("bytes", "time", "collectives")


def objective_key(plan: Plan, objective: str, model: CostModel | None = None) -> tuple:
    """How candidates are ranked: staying within the bound, keeping every byte received and
    normal form first, then by `objective` — bytes (the default: volume, then
    collectives), collectives (then volume), or time (the cost model's prediction:
    latency per collective plus bytes over bandwidth, calibrated or given)."""
    k = rank_key(plan)
    if objective == "bytes":
        return k
    if objective == "collectives":
        return k[:3] + (k[4], k[3])
    if objective == "time":
        return k[:3] + ((model or load_cost_model()).seconds(plan), k[3], k[4])
    raise RedistError(f"unknown objective {objective!r} (expected bytes, time or "
                      "collectives)")


def canonical(plan: Plan) -> Plan:
    """The same plan on the coarsest atoms its refs need."""
    return plan_from_json(plan_to_json(plan, with_figures=False))


def naive(problem: Problem) -> Plan:
    """Gather every sharded axis (then all-reduce what dst does not keep pending), then
    slice to dst: the baseline."""
    steps: list = []
    if problem.src.used_axes():
        steps.append(AllGather(problem.src.dims))
    reduced = tuple(a for a in problem.src.sum if a not in problem.dst.sum)
    if reduced:
        steps.append(AllReduce(reduced))
    if problem.dst.used_axes():
        steps.append(AllSlice(problem.dst.dims))
    return Plan(problem, tuple(steps))


def is_normal_form(plan: Plan) -> bool:
    """slices -> reductions -> all-to-alls/permutes -> gathers, consecutive permutes fused
    (DESIGN §5, §14)."""
    phase = 0
    rank = {AllSlice: 0, ReduceScatter: 1, AllReduce: 1, AllToAll: 2, AllPermute: 2,
            AllGather: 3}
    for k, step in enumerate(plan.steps):
        r = rank.get(type(step), 2)
        if r < phase or (k and isinstance(step, AllPermute)
                         and isinstance(plan.steps[k - 1], AllPermute)):
            return False
        phase = r
    return True


def slices_after_communication(plan: Plan) -> bool:
    seen_comm = False
    for step in plan.steps:
        if isinstance(step, AllSlice) and seen_comm:
            return True
        seen_comm |= not isinstance(step, AllSlice)
    return False


def rank_key(plan: Plan) -> tuple:
    """(bytes over the bound, discards, not normal form, volume, collectives): the search's
    own cost order, so a candidate's key is an incumbent for the next search."""
    fig = plan.figures()
    return (max(0, fig.peak_bytes - fig.bound_bytes), int(slices_after_communication(plan)),
            int(not is_normal_form(plan)), fig.volume_bytes, fig.collectives)


def search_key(plan: Plan) -> tuple:
    """rank_key with the volume counted as the searches count it (padded buffers)."""
    k = rank_key(plan)
    return k[:3] + (padded_volume(plan),) + k[4:]


def _ideal(plan: Plan | None) -> bool:
    if plan is None:
        return False
    fig = plan.figures()
    return (fig.memory_efficient and is_normal_form(plan)
            and fig.volume_bytes == fig.lower_bound_bytes)


def normal(problem: Problem, objective: str = "bytes",
           model: CostModel | None = None) -> Synthesis:
    if objective not in OBJECTIVES:
        objective_key(naive(problem), objective)           # the error names it
    if set(problem.src.sum) - set(problem.dst.sum):
        return _reduce_first(problem, objective, model)
    t0 = clock()
    candidates: list[tuple[Plan, str]] = [(naive(problem), "naive")]
    end = t0 + TOTAL_SECONDS

    def deadline() -> float:
        return min(clock() + SAFETY_SECONDS, end)
    first = search(problem, deadline=deadline(), max_expansions=FIRST_EXPANSIONS)
    if first is not None:
        candidates.append((first, "normal"))
    # The greedy plan on the problem's own atoms, computed first: when it is ideal with one
    # collective no plan ranks before it by bytes or collectives, so the split searches
    # (each one a search on a refined mesh) are skipped. It is listed after them, as before.
    coarse = greedy(problem)
    done = (coarse is not None and objective != "time" and _ideal(coarse)
            and coarse.figures().collectives <= 1)
    if not _ideal(first) and not done:
        finer = problem.refined(prime_cuts(problem.base, problem.atoms()))
        if finer.mesh != problem.mesh and _splitting_may_help(problem, first):
            # Every atom split into primes when that stays small; else one cut at a time
            # (the part of one axis an extent or another axis can take), so that the
            # number of searches grows with the axes' divisors, not with the devices.
            splits = ([finer] if len(finer.mesh.names) <= SPLIT_MAX_ATOMS
                      else _single_cuts(problem))
            for prob in splits:
                # prune by the incumbent only when bytes rank first, in the search's own
                # units (padded bytes): a key of valid bytes would prune plans that move
                # fewer valid bytes than the incumbent but more padded ones
                best = min((search_key(p) for p, _ in candidates[1:]), default=None) \
                    if objective == "bytes" else None
                split = search(prob, deadline=deadline(), max_expansions=SPLIT_EXPANSIONS,
                               incumbent=best, lower_bound=lower_bound_bytes(problem))
                if split is not None:
                    candidates.append((split, "normal, with axes split into sub-axes"))
                    if _ideal(split) and split.figures().collectives <= 1 \
                            and objective != "time":
                        break           # nothing ranks before it (as for the greedy plan)
        for g in (coarse, greedy(finer) if finer.mesh != problem.mesh else None):
            if g is not None:
                candidates.append((g, "greedy (slice, all-to-all, permute, gather)"))
    elif coarse is not None:
        candidates.append((coarse, "greedy (slice, all-to-all, permute, gather)"))
    note = None
    if min(rank_key(p)[0] for p, _ in candidates) > 0:
        found, note = _fallback(problem, deadline())
        if found is not None:
            candidates.append((found, "exhaustive (the normal-form search found no plan "
                                      "within the bound)"))
    plan, method = min(candidates, key=lambda c: (objective_key(c[0], objective, model),
                                                  len(c[0].steps), c[1] == "naive"))
    plan = canonical(plan)
    if objective != "bytes":
        method += f" (objective: {objective})"
    return Synthesis(plan, method, _reason(plan, note), note, tuple(candidates))


def _reduce_first(problem: Problem, objective: str, model: CostModel | None) -> Synthesis:
    """A pending sum to reduce (DESIGN §14): each reduce-first prefix, then the sum-free
    synthesis the rest of the way (synthesis/pending.py); the naive plan as a candidate."""
    def rest(q: Problem) -> tuple[Plan, str]:
        s = normal(q, objective, model)
        return s.plan, s.method
    t0 = clock()
    candidates = reduce_first(problem, rest, lambda p: objective_key(p, objective, model))
    candidates.append((naive(problem), "naive"))
    note = None
    if min(rank_key(p)[0] for p, _ in candidates) > 0:
        # No reduce-first plan fits (an uneven extent a reduce-scatter cannot split
        # locally, say): every plan within the bound, moves before reductions included.
        found, note = _fallback(problem, min(clock() + SAFETY_SECONDS, t0 + TOTAL_SECONDS))
        if found is not None:
            candidates.append((found, "exhaustive (no reduce-first plan within the bound; "
                                      "moves and reductions in any order)"))
    elif problem.mesh.num_devices <= CLOSER_MAX_DEVICES and not any(
            _ideal(p) for p, _ in candidates):
        # Within the bound but above the lower bound: on a small mesh, the cheapest plan
        # of all within the bound (moves and reductions in any order, prime sub-axes), by
        # the bytes the figures count, within a small budget. It ranks like the others.
        closer = _cheapest_within_bound(problem, min(clock() + CLOSER_SECONDS,
                                                     t0 + TOTAL_SECONDS))
        if closer is not None:
            candidates.append((closer, "exhaustive (the cheapest plan within the bound; "
                                       "moves and reductions in any order)"))
    plan, method = min(candidates, key=lambda c: (objective_key(c[0], objective, model),
                                                  len(c[0].steps), c[1] == "naive"))
    plan = canonical(plan)
    return Synthesis(plan, method, _reason(plan, note), note, tuple(candidates))


def _exhaustive_atoms(problem: Problem) -> Problem:
    """The problem on prime sub-axes, unless they are too many for the exhaustive search."""
    finer = problem.refined(prime_cuts(problem.base, problem.atoms()))
    return problem if len(finer.mesh.names) > FALLBACK_MAX_ATOMS else finer


def _cheapest_within_bound(problem: Problem, deadline: float) -> Plan | None:
    return exhaustive(_exhaustive_atoms(problem), deadline=deadline, max_states=CLOSER_STATES,
                      valid=True).plan


def _single_cuts(problem: Problem) -> list[Problem]:
    """The problem on atoms with one more cut: each atom src or dst shards split once at each
    of its proper divisors (major part first), at most SINGLE_CUTS of them."""
    out = []
    # an axis is named as itself or through a sub-axis, x(p)s
    named = {r.split("(")[0] for lay in (problem.src, problem.dst)
             for r in problem.show(lay).used_axes()}
    for name, q in problem.atoms().cuts:
        if name not in named:
            continue
        for lo, hi in zip(q, q[1:], strict=False):
            span = hi // lo
            for k in range(2, span):
                if span % k == 0:
                    out.append(problem.refined({name: set(q) | {lo * k}}))
    return out[:SINGLE_CUTS]


def _splitting_may_help(problem: Problem, plan: Plan | None) -> bool:
    """Splitting atoms lets a plan move the part of an axis that an extent or another axis
    can take. With atoms all of one size (whole atoms already match each other) it is only
    tried when the whole-atom plan is not memory-efficient or not in normal form."""
    if plan is None or rank_key(plan)[:3] != (0, 0, 0):
        return True
    return len({s for _, s in problem.mesh.axes}) > 1


def _fallback(problem: Problem, deadline: float) -> tuple[Plan | None, str | None]:
    """Every plan within the bound, cheapest first, on atoms split into prime factors (so
    on any sub-axes): finds one if one exists, or says none does when the search is
    complete."""
    r = exhaustive(_exhaustive_atoms(problem), deadline=deadline, max_states=FALLBACK_STATES)
    if r.plan is not None:
        return r.plan, None
    if r.complete:
        ops = ("the four portable collectives and the two reductions" if problem.src.sum
               else "the four portable collectives")
        return None, (f"an exhaustive search of all {r.states} layouts reachable within the "
                      f"bound (every sub-axis split, {ops}) found no plan: none exists")
    stuck = unreachable_dim(problem, problem.bound_bytes)
    if stuck is not None:
        d, have, want = stuck
        return None, (f"dim {d} has {have} blocks in src and {want} in dst, and no sequence "
                      f"of steps within the bound goes from one to the other (each passes "
                      f"through blocks that do not nest, DESIGN §11, or that exceed the "
                      f"bound): none exists")
    return None, (f"the exhaustive search for a plan within the bound stopped after "
                  f"{r.states} layouts without one (its budget)")


def _reason(plan: Plan, note: str | None = None) -> str | None:
    # Say "exists" only when a complete search proved it; otherwise what was not found.
    fig = plan.figures()
    none_exists = note is not None and note.endswith("none exists")
    if not fig.memory_efficient:
        return ((f"no plan within the bound exists ({note})" if none_exists else
                 "no plan within the bound was found within the search budgets")
                + f"; this plan peaks at {fig.peak_bytes} bytes per device, "
                f"{fig.peak_bytes - fig.bound_bytes} over the bound {fig.bound_bytes}")
    if not is_normal_form(plan):
        return ("no normal-form plan was found (the extents forbid it or the search budgets "
                "ran out); this plan stays within the bound but gathers before it has "
                "finished moving data"
                + (", and then slices some of what it received"
                   if slices_after_communication(plan) else ""))
    return None


def normalize(plan: Plan) -> Synthesis:
    """A normal-form plan from the plan's src to the layout it reaches."""
    p = plan.problem
    return normal(p.with_ends(p.src, plan.final_layout))


def with_exchange(problem: Problem, portable: Synthesis, budget: int | None = None,
                  model: CostModel | None = None) -> Synthesis:
    """`--collectives mpi`: the portable plan or one all_exchange (volume at the lower
    bound), among those whose runtime memory (blocks and working memory) stays within the
    bound (or budget) plus one chunk: the exchange runs in one buffer where its class
    holds (core.ops.all_exchange.in_place and in_slots: the larger block + one chunk, as
    the portable steps), else as one Alltoallw holding its input and output at once,
    chosen only where that fits. Between two that fit, core/synthesis/choice.py decides:
    the lower runtime peak first (without a budget), then the prediction where it clears
    the model's error margin, and within it the exchange on equal memory."""
    model = model or load_cost_model()
    if problem.src == problem.dst or problem.src.sum:
        return portable                   # an exchange moves data, it does not add
    exchange = Plan(problem, (AllExchange(problem.dst),))
    limit = problem.bound_bytes if budget is None else budget

    def fits(plan: Plan) -> bool:        # the memory claim's own rule (padding allowed)
        return plan.figures().fits(limit)

    port_fits = fits(portable.plan) and portable.reason is None
    fig = exchange.figures()
    if not fits(exchange):
        if port_fits:
            return replace(portable, method=f"{portable.method}; one all_exchange would hold "
                           f"{human_bytes(fig.runtime_peak_bytes)} "
                           f"({fig.runtime_peak_bytes / limit:.2f}x the "
                           f"{'bound' if budget is None else 'budget'}) while it runs")
        # Neither fits: the exchange, whose other four claims always hold and which moves
        # the lower bound (callers may prove it against its own runtime peak).
        return Synthesis(canonical(exchange), "all_exchange (mpi collectives): neither it "
                         "nor the portable plan fits the bound",
                         f"one all_exchange holds {human_bytes(fig.runtime_peak_bytes)} "
                         f"while it runs, over the bound {human_bytes(limit)}")
    t_port = model.seconds(portable.plan)
    t_exch = model.seconds(exchange)
    if port_fits:
        pfig = portable.plan.figures()
        pick = choose(pfig.runtime_peak_bytes, fig.runtime_peak_bytes, pfig.volume_bytes,
                      fig.volume_bytes, holds_one_buffer(problem.mesh, problem.shape,
                                                         problem.src, problem.dst),
                      t_port, t_exch, budget is not None)
        if not pick.exchange:
            why = {
                "memory": f"portable collectives hold less while they run than one "
                          f"all_exchange ({human_bytes(pfig.runtime_peak_bytes)} vs "
                          f"{human_bytes(fig.runtime_peak_bytes)}; predicted "
                          f"{_ms(t_port)} vs {_ms(t_exch)})",
                "bytes": f"portable collectives move no more bytes than one all_exchange, "
                         f"which is predicted {'faster' if t_exch < t_port else 'no faster'} "
                         f"({_ms(t_exch)} vs {_ms(t_port)}) but holds its input and output "
                         f"at once",
                "time": f"portable collectives predicted faster than one all_exchange "
                        f"by more than the cost model's error margin ({MARGIN:.0%}): "
                        f"{_ms(t_port)} vs {_ms(t_exch)}",
                "margin": f"one all_exchange is predicted within the cost model's error "
                          f"margin ({MARGIN:.0%}) of the portable collectives ({_ms(t_exch)} "
                          f"vs {_ms(t_port)}) and holds more while it runs "
                          f"({human_bytes(fig.runtime_peak_bytes)} vs "
                          f"{human_bytes(pfig.runtime_peak_bytes)})",
            }[pick.rule]
            return replace(portable, method=f"{portable.method}; {why} (cost model: "
                           f"{model.source})")
        why = {
            "memory": f"it holds less while it runs than the portable plan "
                      f"({human_bytes(fig.runtime_peak_bytes)} vs "
                      f"{human_bytes(pfig.runtime_peak_bytes)})",
            "time": f"predicted faster than the portable plan by more than the cost "
                    f"model's error margin ({MARGIN:.0%}): {_ms(t_exch)} vs {_ms(t_port)} "
                    f"(cost model: {model.source})",
            "margin": f"predicted within the cost model's error margin ({MARGIN:.0%}) of "
                      f"the portable plan ({_ms(t_exch)} vs {_ms(t_port)}, cost model: "
                      f"{model.source}), holding no more: on equal memory the exchange "
                      f"(measured the faster, or within 1.1x, in 23 of 28 benchmark cases)",
        }[pick.rule]
    else:
        why = "the portable plan is not within the bound or not in normal form"
    return Synthesis(canonical(exchange), f"all_exchange (mpi collectives): {why}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def synthesize_plan(problem: Problem, method: str = "normal",
                    collectives: str = "portable", budget: int | None = None,
                    objective: str = "bytes") -> Synthesis:
    if collectives not in ("portable", "mpi"):
        raise RedistError(f"unknown collectives {collectives!r} (expected portable or mpi)")
    if method == "naive":
        plan = naive(problem)
        fig = plan.figures()
        reason = None if fig.memory_efficient else (
            f"the naive plan gathers everything first and peaks at {fig.peak_bytes} bytes "
            f"per device, {fig.peak_bytes - fig.bound_bytes} over the bound")
        return Synthesis(plan, "naive", reason)
    if method == "normal":
        s = normal(problem, objective)
        return with_exchange(problem, s, budget) if collectives == "mpi" else s
    raise RedistError(f"unknown method {method!r} (expected normal, optimal or naive)")
