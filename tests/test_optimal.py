"""Optimal synthesis (DESIGN §5): never worse than normal on volume, proved optimal,
infeasible budgets answered, plans verified."""

import subprocess
import sys

from hypothesis import HealthCheck, given, settings

from redist.api import synthesize
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.synthesis.optimal import optimal
from redist.core.synthesis.synthesize import normal

from cases import CASES, case
from strategies import problems


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(problems(generous=True, max_axes=3, max_rank=3, max_devices=8))
def test_optimal_never_worse_than_normal_and_verifies(problem):
    o = optimal(problem)
    n = normal(problem).plan.figures()
    f = o.plan.figures()
    assert f.peak_bytes <= f.bound_bytes
    assert (f.volume_bytes, f.collectives) <= (n.volume_bytes, n.collectives)
    assert o.proved_optimal and "proved optimal" in o.note
    r = synthesize(problem, "optimal")
    assert r.verified, r.verdict.table()


def test_every_design_case_is_proved_optimal():
    for name in CASES:
        o = optimal(case(name))
        assert o.proved_optimal, name
        assert o.plan.figures().volume_bytes <= normal(case(name)).plan.figures().volume_bytes


def test_budget_too_small_is_an_answer_not_an_error():
    p = case("replace-axis")
    small = p.bound_bytes // 4 - 1      # below even the slice-first local size
    o = optimal(p, budget=small)
    assert not o.feasible and "no plan within the budget" in o.note


def test_budget_equal_to_the_bound_is_feasible():
    p = case("replace-axis")
    assert optimal(p, budget=p.bound_bytes).feasible


def test_cli_optimal_reports_what_was_proved():
    r = subprocess.run([sys.executable, "-m", "redist.cli", "plan", "--mesh", "x=2,y=3",
                        "--shape", "6", "--src", "[{x}]", "--dst", "[{y}]", "--method",
                        "optimal"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "proved optimal among plans of up to" in r.stdout
    assert "all five claims proved" in r.stdout


def test_cli_optimal_infeasible_budget_exits_1_with_answer():
    r = subprocess.run([sys.executable, "-m", "redist.cli", "plan", "--mesh", "x=2,y=4",
                        "--shape", "64,64", "--src", "[{x},{}]", "--dst", "[{},{y}]",
                        "--method", "optimal", "--budget", "100"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "no plan within the budget of 100 bytes exists" in r.stdout


def test_the_deadline_covers_building_the_constraints_and_the_solver(monkeypatch):
    """--timeout bounds the whole search: with a clock that advances one second per look,
    a 3 s search stops while building its constraints and never reaches the solver; the
    normal plan is returned and the note says why."""
    import itertools

    import z3

    from redist.core.synthesis import optimal as opt_mod

    ticks = itertools.count()
    monkeypatch.setattr(opt_mod, "_now", lambda: float(next(ticks)))
    solved = []
    monkeypatch.setattr(z3.Optimize, "check", lambda self, *a: solved.append(1))
    problem = case("transpose")
    o = optimal(problem, timeout_ms=3000, max_steps=8)
    assert not o.found and not o.proved_optimal and solved == []
    assert "stopped at its deadline (3 s) while building the constraints of step" in o.note
    assert o.plan == normal(problem).plan


def test_the_solver_gets_only_what_is_left_of_the_deadline(monkeypatch):
    import z3

    from redist.core.synthesis import optimal as opt_mod

    clock = iter([100.0] + [107.5] * 1000)      # 7.5 s pass before the solver starts
    monkeypatch.setattr(opt_mod, "_now", lambda: next(clock))
    given_ms = []
    real_set = z3.Optimize.set
    monkeypatch.setattr(z3.Optimize, "set", lambda self, k, v: (given_ms.append((k, v)),
                                                                 real_set(self, k, v)))
    optimal(case("transpose"), timeout_ms=10_000)
    # Two searches (whole axes, then sub-axes): the first gets a third of what is left of
    # the deadline, the second the rest (the fake clock stands still in between).
    assert given_ms == [("timeout", 833), ("timeout", 2500)]


def test_a_normal_plan_at_the_lower_bound_in_one_collective_needs_no_solver(monkeypatch):
    """One all-to-all (or gather) moving exactly the lower bound: nothing moves less or
    uses fewer collectives, so optimal says so at once on any mesh size, without z3."""
    from redist.core.synthesis import optimal as opt_mod

    def no_solver(*a, **k):
        raise AssertionError("the solver was called")
    monkeypatch.setattr(opt_mod, "_solve", no_solver)
    for mesh in ("x=4,y=4,z=4", "x=8,y=8,z=8"):
        for src, dst in (("[{x},{}]", "[{},{x}]"), ("[{x,y},{}]", "[{x},{}]")):
            p = Problem(parse_mesh(mesh), (64, 64), "bfloat16", parse_layout(src),
                        parse_layout(dst))
            o = optimal(p, timeout_ms=60_000)
            f = o.plan.figures()
            assert o.proved_optimal and "proved optimal among plans of up to" in o.note
            assert f.volume_bytes == f.lower_bound_bytes and f.collectives == 1
    # A budget below the normal plan's peak, or a plan above the lower bound, still asks z3.
    p = Problem(parse_mesh("x=2,y=2"), (8, 8), "bfloat16", parse_layout("[{x},{}]"),
                parse_layout("[{},{x}]"))
    try:
        optimal(p, budget=p.bound_bytes // 2)
    except AssertionError as e:
        assert "solver was called" in str(e)
    else:
        raise AssertionError("a budget below the plan's peak skipped the solver")
