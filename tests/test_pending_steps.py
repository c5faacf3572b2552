"""reduce_scatter and all_reduce (DESIGN §14): typing rules, addend maps, bytes, file form,
the five claims and certificates, reduce-first synthesis and the lower bound."""

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mpi_util import mpirun
from test_runtime import PATHS, run_jobs

from redist.core.errors import TypingError
from redist.core.model.coerce import problem
from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout
from redist.core.ops import AllGather, AllPermute, AllSlice, AllToAll, apply
from redist.core.ops import reduce_scatter as rs_module
from redist.core.ops.all_reduce import AllReduce
from redist.core.ops.reduce_scatter import ReduceScatter
from redist.core.plans import simulator
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import dumps, loads, plan_to_json
from redist.core.smt.certificate import check_certificate, write_certificate
from redist.core.smt.verify import verify
from redist.core.synthesis.synthesize import synthesize_plan

from strategies import meshes_of, problems, random_steps

ISSUE = ("x=2,y=4", "64,32", "float32", "[{x},{}]+{y}", "[{x,y},{}]")


def _p(*args):
    return problem(*args)


def test_typing_rules_of_the_reductions_and_of_the_steps_that_carry_the_sum():
    p = _p(*ISSUE)
    m, n, src = p.mesh, p.shape, p.src
    assert apply(ReduceScatter((("y",), ())), m, n, src) == parse_layout("[{x,y},{}]")
    assert apply(ReduceScatter(((), ("y",))), m, n, src) == parse_layout("[{x},{y}]")
    assert apply(AllReduce(("y",)), m, n, src) == parse_layout("[{x},{}]")
    # the others carry the pending set, and refuse to name a pending axis
    assert apply(AllGather((("x",), ())), m, n, src) == parse_layout("[{},{}]+{y}")
    assert apply(AllToAll(0, 1, ("x",)), m, n, src) == parse_layout("[{},{x}]+{y}")
    for step, message in [
        (ReduceScatter((("x",), ())), "axis 'x' is not a pending-sum axis"),
        (AllReduce(("x",)), "axis 'x' is not a pending-sum axis"),
        (AllSlice(((), ("y",))), "pending-sum axis"),
        (AllPermute(parse_layout("[{x},{}]")), "pending"),
        (AllPermute(parse_layout("[{y},{}]")), "pending"),
    ]:
        with pytest.raises(TypingError, match=message):
            apply(step, m, n, src)


def test_issue_example_is_one_reduce_scatter_at_the_bound_with_five_claims():
    s = synthesize_plan(_p(*ISSUE))
    assert s.plan.steps == (ReduceScatter((("y",), ())),)
    fig = s.plan.figures()
    # (G-1)/G·L·s per device, 8 devices
    assert fig.volume_bytes == 8 * 3 * (32 * 32 // 4) * 4 == fig.lower_bound_bytes
    assert fig.peak_bytes <= fig.bound_bytes
    assert verify(s.plan).all_proved


@pytest.mark.parametrize("src,dst,op,ratio", [
    # dst replicates y: one all-reduce, 2(G-1)/G of the block against the bound's one
    # received value per element
    ("[{x},{}]+{y}", "[{x},{}]", "all_reduce", 1.5),
    ("[{},{}]+{y}", "[{x,y},{}]", "reduce_scatter", 1.0),     # slice x first, then reduce
    ("[{x},{}]+{y(1)2,y(2)2}", "[{x,y(1)2},{}]+{y(2)2}", "reduce_scatter", 1.0),  # keep part
])
def test_reduce_first_plans_are_proved_and_near_the_bound(src, dst, op, ratio):
    p = _p("x=2,y=4", "64,32", "int32", src, dst)
    plan = synthesize_plan(p).plan
    assert op in [s.op for s in plan.steps]
    fig = plan.figures()
    assert fig.volume_ratio == ratio and fig.memory_efficient
    assert verify(plan).all_proved
    assert simulator.wrong_device(plan) is None


def test_all_reduce_bytes_are_twice_the_reduce_scatter_bound():
    p = _p("x=2,y=4", "64,32", "float32", "[{x},{}]+{y}", "[{x},{}]")
    ar = Plan(p, (AllReduce(("y",)),))
    rs = Plan(p, (ReduceScatter((("y",), ())), AllGather((("y",), ()))))
    L = 32 * 32 * 4
    assert ar.figures().volume_bytes == 8 * 2 * 3 * L // 4
    assert rs.figures().volume_bytes == ar.figures().volume_bytes
    assert ar.figures().collectives == 1 < rs.figures().collectives == 2
    assert verify(ar).all_proved and verify(rs).all_proved


def test_dropping_a_reduction_from_a_plan_file_is_refuted_naming_the_addend():
    doc = json.loads(dumps(synthesize_plan(_p(*ISSUE)).plan))
    doc.pop("figures")
    doc["steps"] = []
    v = verify(loads(json.dumps(doc)))
    assert not v.all_proved
    detail = v.get("element_correct").detail
    assert "lacks the addend of y=" in detail and "1 of the 4 addends" in detail
    # a reduce-scatter swapped for a slice of the pending axis: refused by its typing rule
    doc["steps"] = [{"op": "all_slice", "axes": [["y"], []]}]
    v = verify(loads(json.dumps(doc)))
    assert v.get("well_typed").status == "refuted" and "pending" in v.get("well_typed").detail


def test_a_doubled_addend_is_named(monkeypatch):
    """If the reduce-scatter's addend map read one member for all, the claim is refuted
    with the addend counted twice or more."""
    real = rs_module.addend

    def broken(step, mesh, shape, before, after, coords, index, k, alg):
        return real(step, mesh, shape, before, after, coords, index,
                    {a: 0 * v for a, v in k.items()}, alg)
    from dataclasses import replace

    from redist.core.ops import OPS
    monkeypatch.setitem(OPS, "reduce_scatter", replace(OPS["reduce_scatter"], addend=broken))
    plan = Plan(_p(*ISSUE), (ReduceScatter((("y",), ())),))
    detail = verify(plan).get("element_correct").detail
    assert "is added 4 times" in detail


def test_reduction_plans_round_trip_through_files_and_certificates(tmp_path):
    p = _p("x=2,y=4", "64,32", "float32", "[{x},{}]+{y}", "[{x},{y}]")
    plan = Plan(p, (ReduceScatter(((), ("y",))),))
    assert loads(dumps(plan)) == plan
    doc = plan_to_json(plan)
    assert doc["steps"][0] == {"op": "reduce_scatter", "axes": [[], ["y"]],
                               "layout_after": [["x"], ["y"]]}
    ar = Plan(p.with_ends(p.src, parse_layout("[{x},{}]")), (AllReduce(("y",)),))
    assert plan_to_json(ar)["steps"][0]["op"] == "all_reduce"
    d = str(tmp_path / "cert")
    write_certificate(plan, None, d)
    r = check_certificate(d)               # z3, and cvc5 (installed with the tests)
    assert r.ok and r.genuine, r.problems
    assert any("cvc5" in name for row in r.rows for name in row["answers"])


@settings(max_examples=12, deadline=None)
@given(problems(generous=True, max_axes=3, max_devices=16, max_rank=2, pending=True,
                distinct=False))
def test_random_pending_problems_get_proved_plans_within_the_bound(p):
    """Every plan delivers the sums; a plan without caveat proves all five claims (a plan
    with one, where no plan within the bound was found, has its memory claim refuted,
    never proved)."""
    s = synthesize_plan(p)
    fig = s.plan.figures()
    assert (s.reason is None) == fig.memory_efficient
    assert fig.volume_bytes >= fig.lower_bound_bytes
    v = verify(s.plan)
    assert all(r.status == "proved" for r in v.results if r.claim != "memory_efficient")
    assert v.get("memory_efficient").status == ("proved" if s.reason is None else "refuted")
    assert simulator.wrong_device(s.plan) is None


# Most drawn problems replicate some axis and are filtered out: that is expected here.
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(problems(generous=True, max_axes=3, max_devices=64, max_rank=3, pending=True,
                distinct=False, sub_axes=True), st.data())
def test_pure_pending_to_sharded_is_one_reduce_scatter_at_the_lower_bound(p, data):
    """dst = src with its pending axes appended to dims (minor-most), src without
    replicated axes: the plan is proved and moves exactly the reduce-scatter bound."""
    assume(len(p.shape) >= 1 and p.src.sum)
    src = p.show(p.src)
    dims = [list(d) for d in src.dims]
    for a in src.sum:
        dims[data.draw(st.integers(0, len(dims) - 1))].append(a)
    # blocks of at least 16 pieces' worth, so that one chunk of scratch holds a piece each
    shape = tuple(n * 16 for n in p.shape)
    q = Problem(p.base, shape, p.dtype, src, Layout(tuple(tuple(d) for d in dims)))
    # replicas of an addend each reduce it: the bound (one send per addend) is then lower
    assume(all(a in q.src.used_axes() or a in q.src.sum for a in q.mesh.names))
    plan = synthesize_plan(q).plan
    fig = plan.figures()
    assert fig.volume_bytes == fig.lower_bound_bytes > 0
    assert [s.op for s in plan.steps] == ["reduce_scatter"]
    assert verify(plan).all_proved


# ---- the MPI runtime (DESIGN §14: Reduce_scatter_block / Allreduce on group communicators)

@st.composite
def pending_jobs(draw, devices: int):
    """Synthesized plans (through the verifying entry point) and random step sequences
    with reductions (through the bare executor) on pending problems of `devices` devices;
    integer-valued data, so sums are compared exactly."""
    jobs = []
    for _ in range(6):
        mesh = draw(meshes_of(devices))
        prob = draw(problems(generous=draw(st.sampled_from([True, False, "uneven"])),
                             mesh=mesh, max_elements=2048, max_rank=3, distinct=False,
                             sub_axes=draw(st.booleans()), pending=True,
                             dtypes=("int32", "int16", "float64")))
        donate = draw(st.booleans())
        if draw(st.booleans()):
            s = synthesize_plan(prob)
            jobs.append({"plan": plan_to_json(s.plan), "gated": s.reason is None,
                         "donate": donate})
        else:
            jobs.append({"plan": plan_to_json(random_steps(draw, prob, 4)), "gated": False,
                         "donate": donate})
    return jobs


@pytest.mark.parametrize("devices,path", [(8, "derived"), (4, "small-chunks")])
def test_runtime_sums_exactly_as_the_simulator_on_pending_problems(devices, path,
                                                                  tmp_path_factory):
    @settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
    @given(pending_jobs(devices))
    def check(jobs):
        run_jobs(devices, jobs, tmp_path_factory.mktemp("mpi"), PATHS[path])
    check()


def test_redistribute_takes_each_ranks_addend_and_matches_numpy():
    r = mpirun(8, "pending_sum.py", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("8/8 ranks match NumPy's sums"), r.stdout


def test_t1_the_reductions_are_sound_for_their_addend_maps_for_all_sizes(monkeypatch):
    """T1 for pending sums (proofs/pending_soundness.py): symbolic sizes, 1-2 axes, rank
    1-2; and a wrong addend map (every member read at piece 0) is caught."""
    from redist.proofs.pending_soundness import t1_pending
    cases, proved, failures = t1_pending(max_axes=2, max_rank=2)
    assert cases > 50 and proved == cases, failures[:3]
    from dataclasses import replace

    from redist.core.ops import OPS
    real = rs_module.addend

    def broken(step, mesh, shape, before, after, coords, index, k, alg):
        c, i = real(step, mesh, shape, before, after, coords, index, k, alg)
        return c, [0 * v for v in i]
    monkeypatch.setitem(OPS, "reduce_scatter", replace(OPS["reduce_scatter"], addend=broken))
    cases, proved, failures = t1_pending(max_axes=1, max_rank=1)
    assert failures and any("ReduceScatter" in f for f in failures)


@pytest.mark.parametrize("mesh,shape,src,dst,first", [
    # the normal plan is at the lower bound in one collective: proved without the solver
    ("x=2,y=4", "64,32", "[{x},{}]+{y}", "[{x,y},{}]", ReduceScatter),
    # replicas slice, reduce disjoint parts and gather back: the solver must find it
    ("r=2,y=4", "16,4", "[{},{}]+{y}", "[{y},{}]", AllSlice),
    # dst replicates y: an all-reduce moves as much as reduce-scatter + gather, in one step
    ("x=2,y=4", "16,8", "[{x},{}]+{y}", "[{x},{}]", AllReduce),
    # dst keeps z pending, uneven extents (padded pieces)
    ("y=2,z=2", "9,2", "[{},{}]+{y,z}", "[{},{y}]+{z}", ReduceScatter),
    ("a=4", "9", "[{}]+{a}", "[{a}]", ReduceScatter),
])
def test_optimal_plans_pending_sums_no_worse_than_normal_and_proved(mesh, shape, src, dst,
                                                                      first):
    """`--method optimal` knows the reductions (DESIGN §14): its plan is proved optimal
    within its K steps, moves no more than the default plan, and all five claims hold."""
    from redist.core.synthesis.optimal import optimal
    p = _p(mesh, shape, "int32", src, dst)
    base = synthesize_plan(p).plan
    o = optimal(p, base_plan=base)
    assert o.proved_optimal and o.feasible, o.note
    fig, nfig = o.plan.figures(), base.figures()
    assert (fig.volume_bytes, fig.collectives) <= (nfig.volume_bytes, nfig.collectives)
    assert fig.volume_bytes >= fig.lower_bound_bytes
    assert isinstance(o.plan.steps[0], first)
    assert verify(o.plan).all_proved


def test_optimal_proves_no_pending_plan_fits_where_the_exhaustive_search_agrees():
    """14 elements over c(2)2 then a=2: no reduce-scatter nests within the bound. The
    SMT search (K steps) and the exhaustive one (any length) both say none exists."""
    from redist.core.synthesis.exhaustive import exhaustive
    from redist.core.synthesis.optimal import optimal, split_atoms
    p = _p("a=2,b=1,c=4", "14", "int32", "[{c(2)2}]+{a}", "[{c(2)2,a}]")
    o = optimal(p, base_plan=None)
    assert not o.feasible and "(proved: the constraints are unsat)" in o.note, o.note
    r = exhaustive(split_atoms(p) or p)
    assert r.complete and r.plan is None
    # 16 elements nest: there the same search finds the reduce-scatter and proves it
    o = optimal(_p("a=2,b=1,c=4", "16", "int32", "[{c(2)2}]+{a}", "[{c(2)2,a}]"),
                base_plan=None)
    assert o.feasible and o.proved_optimal and verify(o.plan).all_proved
    assert o.plan.steps == (ReduceScatter((("a",),)),)


@pytest.mark.parametrize("src,dst", [("[{c,d}]+{b}", "[{d,a}]+{b}"),
                                     ("[{c,d}]+{b}", "[{a,c}]+{b}")])
def test_permute_pairs_devices_only_within_their_pending_coordinates(src, dst):
    """Devices with other pending coordinates hold other addends: the pairing (what the
    MPI, JAX and PyTorch runtimes send) must agree with the source map, which keeps them
    (in ascending order alone, these pairs cross them)."""
    from redist.core.semantics.blocks import permute_sources
    p = _p("a=2,b=2,c=2,d=2", "16", "int32", src, dst)
    sources = permute_sources(p.mesh, p.src, p.dst)
    coords = [p.mesh.coords(d) for d in range(p.mesh.num_devices)]
    assert all(coords[sources[d]]["b"] == coords[d]["b"] for d in range(len(sources)))
    assert simulator.wrong_device(Plan(p, (AllPermute(p.dst),))) is None
