"""`--method optimal` between two meshes (core/cross/optimal.py): every plan it returns is
proved (five claims), never worse than the normal plan, never beaten by another search of
the same space, and its note never claims more than what was searched."""

import json

import pytest
from hypothesis import given, settings
from test_bad_input import run_cli
from test_cross import cross_problems, problem

from redist.core.cross.optimal import cost, fits, layouts, optimal_cross
from redist.core.cross.plan import CrossPlan, min_b_bound
from redist.core.cross.synthesize import choose_pairs, synthesize_cross
from redist.core.errors import RedistError, TypingError
from redist.core.ops import AllSlice
from redist.core.ops import transfer as T
from redist.core.synthesis.exhaustive import exhaustive
from redist.cross_api import synthesize_between

COLOCATED = ("x=4@0-3", "y=2@0-1", (8, 6), "[{x},{}]", "[{},{y}]")


def other_search(cp):
    """The cheapest plan found another way: for every layout the transfer can fill, the
    one-mesh exhaustive search's cheapest plan on B from it (plans that slice on B left
    out: they drop what the transfer brought)."""
    pb = cp.b_problem
    found = []
    for mid in layouts(pb.mesh, len(cp.shape)):
        try:
            mp = pb.with_ends(mid, pb.dst)
            pairs = choose_pairs(cp, mp)
            T.check(cp, mp, pairs)
        except (RedistError, TypingError):
            continue
        b = exhaustive(mp, limit=min_b_bound(cp)).plan
        if b is None or any(isinstance(s, AllSlice) for s in b.steps):
            continue
        plan = CrossPlan(cp, pairs, b)
        if fits(plan, None):
            found.append(cost(plan))
    return min(found, default=None)


@settings(max_examples=6, deadline=None)
@given(cross_problems())
def test_optimal_is_proved_never_worse_and_not_beaten(cp):
    r = optimal_cross(cp)
    assert r.verdict.all_proved, r.verdict.table()
    normal = synthesize_cross(cp)
    fig = r.plan.figures()
    if fits(normal, None):
        assert fits(r.plan, None) and fig.memory_efficient and r.budget is None
        assert cost(r.plan) <= cost(normal)
    if r.proved_optimal:
        assert r.note.startswith("proved optimal among plans of one transfer")
        other = other_search(cp)
        assert other is None or cost(r.plan) <= other
    else:
        assert "proved optimal" not in r.note


def test_colocated_optimal_stays_within_the_bound_where_normal_does_not():
    cp = problem(*COLOCATED)
    normal = synthesize_cross(cp)
    assert not normal.figures().memory_efficient        # ranks 0, 1 hold both blocks
    r = optimal_cross(cp)
    fig = r.plan.figures()
    assert r.proved_optimal and r.verdict.all_proved and r.budget is None
    assert fig.memory_efficient and fig.cross_mesh_bytes == fig.cross_mesh_lower_bound_bytes
    assert [s.op for s in r.plan.steps] == ["transfer", "all_to_all"]
    assert "cross-mesh 96 bytes, then volume 240 bytes, then 2 communicating steps" in r.note


def test_what_is_not_proved_is_said():
    cp = problem(*COLOCATED)
    # One step: the transfer alone cannot stay within the bound here (proved in the space).
    one = optimal_cross(cp, max_steps=1)
    assert not one.proved_optimal and len(one.plan.steps) == 1
    assert one.note.startswith("no plan within the bound exists among the plans of one "
                               "transfer alone")
    assert one.verdict.all_proved and one.budget == one.plan.figures().runtime_peak_bytes
    # No search budget: nothing proved, the normal plan returned (proved against its peak).
    cut = optimal_cross(cp, max_states=0)
    assert not cut.proved_optimal and cut.note.startswith("not proved: the search's budget")
    assert cut.plan == synthesize_cross(cp) and cut.verdict.all_proved
    # A budget instead of the bounds.
    tight = optimal_cross(cp, budget=cp.b_block_bytes() * 2)
    assert tight.budget == cp.b_block_bytes() * 2 and "within the budget" in tight.note
    with pytest.raises(RedistError, match="--max-steps must be between 1 and 16"):
        optimal_cross(cp, max_steps=17)


def test_cli_and_api_optimal_between_meshes():
    a, b, shape, src, dst = COLOCATED
    code, out, err = run_cli(["plan", "--mesh", a, "--dst-mesh", b, "--shape", "8,6",
                              "--src", src, "--dst", dst, "--method", "optimal"])
    assert code == 0, err
    assert "method      optimal; proved optimal among plans" in out
    assert "-> memory-efficient" in out and "all five claims proved" in out
    code, out, err = run_cli(["plan", "--mesh", a, "--dst-mesh", b, "--shape", "8,6",
                              "--src", src, "--dst", dst, "--method", "naive"])
    assert code == 2 and err.strip().startswith("redist: error: --method naive")
    assert len(err.strip().splitlines()) == 1
    r = synthesize_between(a, b, shape, "float32", src, dst, method="optimal", steps=4)
    assert r.verified and r.note.startswith("proved optimal") and "up to 3 steps" in r.note
    with pytest.raises(RedistError, match="method must be 'normal' or 'optimal'"):
        synthesize_between(a, b, shape, "float32", src, dst, method="naive")
    with pytest.raises(RedistError, match="options of method='optimal'"):
        synthesize_between(a, b, shape, "float32", src, dst, budget=100)


def test_optimal_runs_on_mpi_within_the_bound_where_normal_cannot():
    # Colocated FSDP8 -> TP4 on ranks 0-3: the normal plan's ranks 0-3 send to each other
    # in a cycle and hold both blocks; optimal's transfer + all_to_all stays within the
    # bound, measured on every rank.
    code, out, err = run_cli(["run", "--np", "8", "--mesh", "fsdp=8@0-7", "--dst-mesh",
                              "tp=4@0-3", "--shape", "64,64", "--src", "[{fsdp},{}]",
                              "--dst", "[{},{tp}]", "--method", "optimal", "--repeat", "1",
                              "--json", "-"])
    assert code == 0, err
    r = json.loads(out)
    assert r["all_match"] and r["elements_checked"] == 64 * 64
    fig = r["plan"]["figures"]
    assert fig["memory_efficient"] and [s["op"] for s in r["plan"]["steps"]] == [
        "transfer", "all_to_all"]
    proved = dict(zip(fig["ranks"], fig["peak_per_rank"], strict=True))
    assert all(m <= proved[k] for k, m in enumerate(r["peak_bytes_per_rank"]))
