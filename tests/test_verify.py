"""The SMT checker against broken plans, and against the simulator and typing rules."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from redist.core import ops
from redist.core.model.dtypes import same_bits
from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.ops import AllExchange, AllGather, AllPermute, AllSlice, AllToAll
from redist.core.ops.all_exchange import in_place, in_slots
from redist.core.plans import simulator
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import loads, plan_to_json
from redist.core.semantics.working import chunk_elements, runtime_limit
from redist.core.smt.verify import verify
from redist.core.synthesis.synthesize import naive, normal

from cases import case
from helpers import brute_discarded, global_array
from strategies import problems, random_plans

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def statuses(v):
    return {r.claim: r.status for r in v.results}


def test_gather_with_axes_in_wrong_order_is_ill_typed():
    p = Problem(parse_mesh("x=2,y=2"), (8, 8), "float32", parse_layout("[{x,y},{}]"),
                parse_layout("[{},{}]"))
    v = verify(Plan(p, (AllGather((("y", "x"), ())),)))
    assert v.get("well_typed").status == "refuted"
    assert "not the minor-most suffix" in v.get("well_typed").detail
    assert v.get("well_typed").answer == "unsat"      # the SMT rules agree: no next layout
    assert not v.all_proved


def test_missing_step_fails_reaches_dst_and_element_correct_with_confirmed_counterexample():
    p = case("reorder", "16,16")
    plan = normal(p).plan
    assert [type(s) for s in plan.steps] == [AllPermute]
    broken = Plan(p, ())
    v = verify(broken)
    assert v.get("reaches_dst").status == "refuted"
    r = v.get("element_correct")
    assert r.status == "refuted"
    # "device D (x=.., y=..), local index (i, j): expected global element (a, b), the plan
    # delivers (c, d)": the simulator must confirm both numbers.
    dev = int(r.detail.split()[1])
    idx = tuple(int(t) for t in r.detail.split("local index (")[1].split(")")[0].split(","))
    want = tuple(int(t) for t in r.detail.split("expected global element (")[1]
                 .split(")")[0].split(","))
    got = tuple(int(t) for t in r.detail.split("delivers (")[1].split(")")[0].split(","))
    x = global_array(broken)
    final = simulator.run(broken, x)[-1]
    assert final[(dev, *idx)] == x[got] != x[want]
    expected = simulator.shards(p.mesh, p.shape, p.dst, x)
    assert expected[(dev, *idx)] == x[want]


def test_slice_after_gather_is_a_discarded_transfer():
    p = case("replace-axis", "16,16")
    plan = naive(p)            # gather x, then slice y: received rows are dropped
    v = verify(plan)
    r = v.get("no_discard")
    assert r.status == "refuted" and "step 2 (all_slice) drops" in r.detail
    assert brute_discarded(plan)


def test_permute_to_a_different_local_shape_is_ill_typed():
    p = case("transpose", "16,16")
    v = verify(Plan(p, (AllPermute(parse_layout("[{y},{x}]")),)))
    assert v.get("well_typed").status == "refuted"
    assert "local shape" in v.get("well_typed").detail


def test_budget_exceeded_reports_step_and_bytes():
    p = case("replace-axis")
    plan = normal(p).plan
    fig = plan.figures()
    budget = fig.peak_bytes - 1000
    v = verify(plan, memory_budget=budget)
    r = v.get("memory_efficient")
    assert r.status == "refuted"
    assert "src" in r.detail and f"by {fig.peak_bytes - budget}" in r.detail
    assert verify(plan, memory_budget=fig.peak_bytes).get("memory_efficient").status == "proved"


def test_hand_edited_json_dst_is_caught():
    p = case("transpose", "16,16")
    doc = plan_to_json(normal(p).plan, with_figures=False)
    doc["dst"] = [["x"], ["y"]]           # claims to end where it started
    v = verify(loads(json.dumps(doc)))
    assert statuses(v)["reaches_dst"] == "refuted"
    assert statuses(v)["element_correct"] == "refuted"


def test_wrong_semantics_would_be_caught(monkeypatch):
    """If the all_to_all source map were wrong, the checker refutes element-correctness
    and the simulator (same map) shows the same wrong element."""
    real = ops.source

    def broken(step, mesh, shape, before, after, coords, index, alg):
        c, i = real(step, mesh, shape, before, after, coords, index, alg)
        if isinstance(step, AllToAll):
            i[step.dst_dim] = index[step.dst_dim]        # forget the piece offset
        return c, i
    import redist.core.smt.obligations as ob
    monkeypatch.setattr(ob, "source", broken)
    monkeypatch.setattr(simulator, "source", broken)
    p = case("transpose", "16,16")
    plan = normal(p).plan
    v = verify(plan)
    assert v.get("element_correct").status == "refuted"
    x = global_array(plan)
    assert not np.array_equal(simulator.run(plan, x)[-1],
                              simulator.shards(p.mesh, p.shape, p.dst, x))


@SETTINGS
@given(random_plans(generous=True, max_len=4))
def test_verify_agrees_with_simulator_and_typing(plan):
    """On random well-typed plans: claims 1-3 proved (the simulator agrees element by
    element), memory as the figures say, no_discard as element tracking says."""
    v = verify(plan)
    s = statuses(v)
    assert s["well_typed"] == s["reaches_dst"] == s["element_correct"] == "proved"
    assert (s["memory_efficient"] == "proved") == plan.figures().memory_efficient
    assert (s["no_discard"] == "refuted") == brute_discarded(plan)


@pytest.mark.parametrize("bad_step", [
    AllSlice((("x",), ())),                     # x is not replicated
    AllToAll(0, 0, ("x",)),                     # same dim
    AllToAll(0, 1, ("q",)),                     # unknown axis
    AllGather(((), ("x",))),                    # x is not in dim 1
])
def test_ill_typed_steps_are_refuted_by_code_and_solver(bad_step):
    p = case("replace-axis", "16,16")
    v = verify(Plan(p, (bad_step,)))
    r = v.get("well_typed")
    assert r.status == "refuted" and r.answer == "unsat"
    assert all(x.status != "proved" for x in v.results[1:])


def test_rank0_and_single_device_plans_verify():
    p = Problem(parse_mesh("x=1"), (), "float32", Layout(()), Layout(()))
    assert verify(Plan(p, ())).all_proved
    p = Problem(parse_mesh("x=1"), (4,), "float32", Layout(((),)), Layout((("x",),)))
    assert verify(normal(p).plan).all_proved


@SETTINGS
@given(random_plans(generous="uneven", max_len=4, sub_axes=True))
def test_verify_agrees_with_simulator_on_uneven_extents_and_sub_axes(plan):
    """Padding is never data: claims 1-3 proved on random well-typed plans, memory as the
    figures say, no_discard as element tracking (valid elements only) says."""
    v = verify(plan)
    s = statuses(v)
    assert s["well_typed"] == s["reaches_dst"] == s["element_correct"] == "proved", v.table()
    assert (s["memory_efficient"] == "proved") == plan.figures().memory_efficient
    assert (s["no_discard"] == "refuted") == brute_discarded(plan)


@SETTINGS
@given(problems(generous="uneven", sub_axes=True, max_devices=16, max_elements=1 << 12))
@example(case("transpose", "16,16"))
@example(case("swap-3d", "8,8,8"))
def test_one_exchange_is_proved_and_simulates_to_dst(p):
    """The MPI extension is checked like the portable four: one all_exchange proves the
    other four claims on any problem (sub-axes and uneven extents too), and memory exactly
    when what the runtime holds fits the bound plus one chunk: the block and one chunk
    where it runs in place in rounds (equal even blocks, no piece sent twice), the larger
    block and one chunk where it runs in slots, else input and output together (one
    Alltoallw); it moves exactly the lower bound, and the
    simulator, reading the same source map, lands every element."""
    plan = Plan(p, (AllExchange(p.dst),))
    v = verify(plan)
    fig = plan.figures()
    s = statuses(v)
    assert all(s[c] == "proved" for c in s if c != "memory_efficient"), s
    lb, la = fig.local_bytes[0], fig.local_bytes[-1]
    held = (lb + chunk_elements(lb // p.itemsize) * p.itemsize
            if in_place(p.mesh, p.shape, p.src, p.dst) else lb + la)
    if in_slots(p.mesh, p.shape, p.src, p.dst):     # in one buffer: the larger block
        ins = in_slots(p.mesh, p.shape, p.src, p.dst)
        held = max(lb, la) + chunk_elements(max(lb, la) // p.itemsize) * p.itemsize \
            * ins.scratch
    assert (s["memory_efficient"] == "proved") == (held <= runtime_limit(fig.bound_bytes,
                                                                         p.itemsize)), s
    assert fig.volume_bytes == fig.lower_bound_bytes
    x = global_array(plan)
    got = simulator.run(plan, x)[-1]
    want = simulator.shards(p.mesh, p.shape, p.dst, x)
    assert all(same_bits(a, b) for a, b in zip(got, want, strict=True))


def test_exchange_mutations_are_refuted(monkeypatch):
    """An exchange to the wrong layout fails reaches_dst; a wrong exchange source map fails
    element_correct (and the simulator shows a wrong element)."""
    p = case("transpose", "16,16")
    wrong = Plan(p, (AllExchange(parse_layout("[{x},{y}]")),))
    v = verify(loads(json.dumps(plan_to_json(wrong, with_figures=False) | {
        "dst": [["y"], ["x"]]})))
    assert statuses(v)["reaches_dst"] == "refuted"
    real = ops.source

    def broken(step, mesh, shape, before, after, coords, index, alg):
        c, i = real(step, mesh, shape, before, after, coords, index, alg)
        if isinstance(step, AllExchange):
            i[0] = index[0]                           # forget the block offset
        return c, i
    import redist.core.smt.obligations as ob
    monkeypatch.setattr(ob, "source", broken)
    monkeypatch.setattr(simulator, "source", broken)
    plan = Plan(p, (AllExchange(p.dst),))
    assert verify(plan).get("element_correct").status == "refuted"


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_ill_typed_permute_or_exchange_is_confirmed_by_the_smt_rules(data):
    """The SMT encoding pins a permute's (or exchange's) target layout, as the typing code
    does: whenever the code rejects the step, the solver finds no next layout either, so the
    refutation never reports a disagreement between the two."""
    from redist.core.errors import TypingError
    from redist.core.ops import apply

    from strategies import layouts

    p = data.draw(problems(generous=data.draw(st.sampled_from([True, "uneven"])),
                           max_axes=3, max_devices=16, max_elements=4096, distinct=False))
    target = data.draw(layouts(p.mesh, len(p.shape)))
    step = data.draw(st.sampled_from([AllPermute, AllExchange]))(target)
    try:
        apply(step, p.mesh, p.shape, p.src)
        return                                 # well-typed: not this property
    except TypingError:
        pass
    r = verify(Plan(p.with_ends(p.src, p.src), (step,))).get("well_typed")
    assert r.status == "refuted" and r.answer == "unsat", r.detail
    assert "solver:" not in r.detail


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_plans(generous="uneven", max_len=3, sub_axes=True))
def test_typing_rules_instantiated_from_templates_are_the_terms_built_anew(plan):
    """claim 1's rules come from one template per mesh and shape (z3.substitute): the very
    terms a direct build gives, so obligations and certificates are unchanged."""
    from redist.core.smt import symvars
    from redist.core.smt import typing_rules as T
    mesh, shape = plan.problem.mesh, plan.problem.shape
    sv = T.step_vars(mesh, "9")
    a, b = T.layout_vars(mesh, "7"), T.layout_vars(mesh, "8")
    for pending in (False, True):
        assert T.transition(mesh, shape, sv, a, b, pending).eq(
            T._transition(mesh, shape, sv, a, b, pending))
        got = T.wellformed(mesh, shape, a, pending)
        want = symvars._wellformed(mesh, shape, a, pending)
        assert len(got) == len(want) and all(x.eq(y) for x, y in zip(got, want, strict=True))


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(random_plans(generous="uneven", max_len=6, sub_axes=True))
def test_no_discard_one_chain_and_one_chain_per_slice_agree(plan):
    """The linear encoding (one chain shared by every slice) answers as the per-slice one,
    on plans with any number of late slices; and it is the one used from two late slices."""
    from redist.core.smt.obligations import _no_discard_shared, _over_bitvectors, no_discard
    from redist.core.smt.verify import solve

    lays, err = plan.typed_prefix()
    slices = [m for m, s in enumerate(plan.steps) if isinstance(s, AllSlice)]
    assume(err is None and slices)
    per_slice = solve(_over_bitvectors(no_discard(plan, lays, legacy=True))).status
    shared = solve(_over_bitvectors(_no_discard_shared(plan, lays))).status
    assert per_slice == shared != "unknown"
