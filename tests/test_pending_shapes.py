"""The plan shapes synthesis reaches pending sums with besides slices -> one reduce-scatter
(DESIGN §14): replicated axes sliced first so that replicas reduce disjoint parts; moves
and reductions in any order when no reduce-first plan fits the bound (uneven extents);
a reduce-scatter of a block smaller than one chunk per piece. And the lower bound they
are measured against."""

import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mpi_util import memory_rows

from redist.core.model.coerce import problem
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.ops.reduce_scatter import ReduceScatter
from redist.core.plans import simulator
from redist.core.plans.plan import Plan
from redist.core.semantics.working import chunk_elements
from redist.core.smt.verify import verify
from redist.core.synthesis.exhaustive import exhaustive
from redist.core.synthesis.synthesize import normal, synthesize_plan

from strategies import problems

NAMES = "abcd"


@st.composite
def replicated_pure(draw):
    """Pure pending -> sharded on a rank-2 array whose src also replicates some axes: dst
    is src with the pending axes appended to dim 0 (dim 1 is free for the replicas)."""
    n = draw(st.integers(2, 3))
    sizes = draw(st.lists(st.sampled_from([2, 3, 4]), min_size=n, max_size=n)
                 .filter(lambda s: math.prod(s) <= 24))
    mesh = Mesh(tuple(zip(NAMES, sizes, strict=False)))
    roles = draw(st.permutations(["pending", "replica"] + draw(st.lists(
        st.sampled_from(["pending", "replica", "dim0", "dim1"]), min_size=n - 2,
        max_size=n - 2))))
    pick = lambda role: tuple(a for a, r in zip(mesh.names, roles, strict=True)  # noqa: E731
                              if r == role)
    src = Layout((pick("dim0"), pick("dim1")), pick("pending"))
    dst = Layout((pick("dim0") + pick("pending"), pick("dim1")))
    k = draw(st.integers(1, 2))
    shape = (mesh.num_devices * k, mesh.num_devices * 2)
    return Problem(mesh, shape, draw(st.sampled_from(["int32", "float32"])), src, dst)


@settings(max_examples=8, deadline=None)
@given(replicated_pure())
def test_replicas_reduce_disjoint_parts_at_the_lower_bound(p):
    """Slice the replicated axes, reduce-scatter, gather them back: the plan moves exactly
    the lower bound (each element: one message per addend it lacks, one per replica)."""
    plan = normal(p).plan
    fig = plan.figures()
    assert fig.volume_bytes == fig.lower_bound_bytes > 0
    g = math.prod(p.mesh.size(a) for a in p.src.sum)
    reps = p.mesh.num_devices // (p.dst.shards(p.mesh, 0) * p.dst.shards(p.mesh, 1))
    assert fig.lower_bound_bytes == (g + reps - 2) * math.prod(p.shape) * p.itemsize
    assert verify(plan).all_proved
    assert simulator.wrong_device(plan) is None


def test_replicated_axis_is_sliced_before_the_reduce_scatter():
    p = problem("r=2,y=4", "64,32", "float32", "[{},{}]+{y}", "[{y},{}]")
    plan = normal(p).plan
    assert [s.op for s in plan.steps] == ["all_slice", "reduce_scatter", "all_gather"]
    fig = plan.figures()
    # one reduce-scatter per replica moves 3/4 of every addend twice: 6 elements per
    # element of the array; sliced first, 4 (3 addends + 1 replica)
    assert fig.volume_bytes == fig.lower_bound_bytes == 4 * 64 * 32 * 4


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(problems(generous="uneven", max_axes=3, max_devices=8, max_rank=2, pending=True,
                distinct=False, max_elements=512))
@example(problem("x=2,y=2", "2", "float32", "[{}]+{y}", "[{x,y}]"))
def test_plans_with_reductions_anywhere_are_proved(p):
    """The exhaustive search with reductions (the fallback when no reduce-first plan fits):
    any plan it returns proves all five claims and delivers the sums; when it explores
    everything without one, the default planner's plan does not prove all five either
    (over the bound, or within it but dropping received data: `x=2,y=2`, 2 elements,
    `[{}]+{y} -> [{x,y}]` has only all_reduce + all_slice), and it says why."""
    r = exhaustive(p, max_states=400)
    if r.plan is not None:
        assert verify(r.plan).all_proved
        assert simulator.wrong_device(r.plan) is None
    elif r.complete:
        s = synthesize_plan(p)
        assert not (s.plan.figures().memory_efficient and verify(s.plan).all_proved)
        assert s.reason and s.reason.startswith(("no plan within the bound",
                                                 "no normal-form plan was found"))


def test_none_within_the_bound_is_reported_with_the_best_plan_and_its_peak():
    """47 elements over a=6 do not nest in 18 blocks: no plan of the collectives and
    reductions stays within the bound, and the planner says so (DESIGN §11)."""
    s = synthesize_plan(problem("a=6,b=3", "47", "float32", "[{a}]+{b}", "[{a,b}]"))
    fig = s.plan.figures()
    assert not fig.memory_efficient
    assert s.reason.startswith("no plan within the bound exists (an exhaustive search")
    assert f"peaks at {fig.peak_bytes} bytes per device" in s.reason
    assert simulator.wrong_device(s.plan) is None


def test_lower_bound_counts_one_message_per_missing_addend_and_replica():
    # no replicas: the reduce-scatter bound, (G-1) per element
    p = problem("x=2,y=4", "64,32", "float32", "[{x},{}]+{y}", "[{x,y},{}]")
    assert normal(p).plan.figures().lower_bound_bytes == 3 * 64 * 32 * 4
    # r replicates: (G-1) + (R-1) per element
    p = problem("r=3,y=2", "12", "int32", "[{}]+{y}", "[{y}]")
    assert normal(p).plan.figures().lower_bound_bytes == (1 + 2) * 12 * 4


def test_tiny_reduce_scatter_holds_one_chunk_of_scratch():
    """A block of fewer elements than 16 per piece, cut into pieces that are not
    contiguous: the runtime reduces piece by piece through one chunk (not one element per
    piece), so the figure is the block plus one chunk and the plan fits."""
    p = problem("a=8", "3,8", "int32", "[{},{}]+{a}", "[{},{a}]")
    plan = Plan(p, (ReduceScatter(((), ("a",))),))
    fig = plan.figures()
    assert fig.working_bytes == ((24 + chunk_elements(24)) * 4,)
    assert fig.memory_efficient and verify(plan).all_proved


def test_runtime_holds_what_the_new_shapes_prove(tmp_path):
    """On 8 MPI ranks: tiny reduce-scatters (piece by piece) and a slice-first plan; each
    rank's count of its buffers equals the proved peak, and the sums are exact."""
    plans = [Plan(problem("a=8", "3,8", "int32", "[{},{}]+{a}", "[{},{a}]"),
                  (ReduceScatter(((), ("a",))),)),
             synthesize_plan(problem("a=2,b=4", "5,3", "int32", "[{a},{}]+{b}",
                                     "[{a},{b}]")).plan,
             synthesize_plan(problem("r=2,y=4", "16,8", "int32", "[{},{}]+{y}",
                                     "[{y},{}]")).plan]
    for row in memory_rows(tmp_path, plans):
        assert all(rank["ok"] for rank in row["ranks"]), row
        assert max(rank["counted"] for rank in row["ranks"]) == row["proved"], row


def test_t1_on_uneven_extents_and_a_wrong_addend_map_is_caught(monkeypatch):
    """T1pu (proofs/pending_soundness.py): every accepted step on uneven extents reads each
    member's addend of the right valid element; an addend map off by one piece on uneven
    extents is caught."""
    from dataclasses import replace

    from redist.core.ops import OPS
    from redist.core.ops import reduce_scatter as rs_module
    from redist.proofs.pending_soundness import t1_pending_uneven
    cases, failures = t1_pending_uneven(((2,), (3,)))
    assert cases > 50 and not failures, failures[:3]
    real = rs_module.addend

    def broken(step, mesh, shape, before, after, coords, index, k, alg):
        c, i = real(step, mesh, shape, before, after, coords, index, k, alg)
        return c, [v + 1 for v in i]
    monkeypatch.setitem(OPS, "reduce_scatter", replace(OPS["reduce_scatter"], addend=broken))
    cases, failures = t1_pending_uneven(((3,),), max_rank=1)
    assert failures and any("ReduceScatter" in f for f in failures)


@pytest.mark.parametrize("mesh,pairs", [
    ("a=2,b=3", [("[{a}]", "[{b}]"), ("[{a}]", "[{a,b}]"), ("[{b}]", "[{b,a}]"),
                 ("[{a,b}]", "[{b,a}]"), ("[{a}]+{b}", "[{a,b}]"), ("[{b}]+{a}", "[{b,a}]"),
                 ("[{}]+{a,b}", "[{b,a}]")]),
    ("a=6,b=3", [("[{a}]", "[{a,b}]"), ("[{b}]", "[{a}]"), ("[{a}]+{b}", "[{a,b}]"),
                 ("[{a}]+{b}", "[{b,a}]")]),
])
def test_a_dim_whose_blocks_cannot_be_reached_means_no_plan_fits(mesh, pairs):
    """The block-count proof (synthesis/blockcounts.py) is sound: whenever it says dst's
    blocks are out of reach within the bound, the exhaustive search of every plan within
    it, on prime sub-axes, finds none (complete). Every extent from 5 to 47, both ways
    (about half of these problems have no plan within the bound)."""
    from redist.core.model.axes import prime_cuts
    from redist.core.synthesis.blockcounts import unreachable_dim
    fired = 0
    for n in range(5, 48, 3):
        for a, b in pairs:
            for src, dst in ((a, b), (b, a)) if "+" not in a else ((a, b),):
                p = problem(mesh, str(n), "int32", src, dst)
                if unreachable_dim(p, p.bound_bytes) is not None:
                    fired += 1
                    r = exhaustive(p.refined(prime_cuts(p.base, p.atoms())), max_states=2_000)
                    assert r.plan is None, (n, src, dst)
    assert fired >= 20


def test_two_by_101_has_no_plan_within_the_bound_by_block_counts():
    """2x101 on a=2,c=8,d=4: dim 1 has 2 blocks of 51 and dst wants 4; 51 is odd, every
    atom has size 2, and holding dim 1 whole takes 101 elements over a bound of 51, so no
    plan gets there within the bound (the exhaustive search runs out of budget first)."""
    from redist.core.synthesis.blockcounts import unreachable_dim
    p = problem("a=2,b=1,c=8,d=4", "2,101", "float32", "[{c(1)4,d(1)2},{d(2)2}]+{a}",
                "[{c(1)4,d(1)2},{d(2)2,a}]")
    assert unreachable_dim(p, p.bound_bytes) == (1, 2, 4)
    # with room for a whole dim 1, the count is reachable (through 1 block)
    assert unreachable_dim(p, 101 * 4) is None


def test_the_cheapest_plan_within_the_bound_by_valid_bytes():
    """(15,25,4) on a=b=c=3: the reduce-first plan moves 37,120 bytes; the exhaustive
    search ranked by valid bytes finds 36,960, the least of every plan within the bound
    (complete), and the default planner takes it."""
    p = problem("a=3,b=3,c=3", "15,25,4", "float32", "[{},{},{a}]+{b}", "[{},{},{a,b}]")
    r = exhaustive(p, valid=True)
    assert r.complete and r.plan.figures().volume_bytes == 36960
    assert exhaustive(p).plan.figures().volume_bytes > 36960       # padded ranking
    s = normal(p)
    assert s.plan.figures().volume_bytes == 36960 and verify(s.plan).all_proved
