"""Optimal synthesis (DESIGN §5): never worse than normal on volume, proved optimal,
infeasible budgets answered, plans verified."""

import subprocess
import sys

from hypothesis import HealthCheck, given, settings

from redist.api import synthesize
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.smt.verify import verify
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


def test_a_wall_timeout_covers_building_the_constraints_and_the_solver(monkeypatch):
    """--timeout, when given, bounds the whole search: with a clock that advances one
    second per look, a 3 s search stops while building its constraints and never reaches
    the solver; the normal plan is returned and the note says why."""
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
    assert "not proved: the search was stopped at its wall-clock deadline (--timeout 3 s) " \
        "while building the constraints of step" in o.note
    assert o.plan == normal(problem).plan


def _solver_settings(monkeypatch) -> list:
    import z3

    given = []
    real_set = z3.Optimize.set
    monkeypatch.setattr(z3.Optimize, "set", lambda self, k, v: (given.append((k, v)),
                                                                 real_set(self, k, v)))
    return given


def test_the_solver_gets_only_what_is_left_of_the_wall_deadline(monkeypatch):
    from redist.core.synthesis import optimal as opt_mod

    clock = iter([100.0] + [107.5] * 1000)      # 7.5 s pass before the solver starts
    monkeypatch.setattr(opt_mod, "_now", lambda: next(clock))
    given = _solver_settings(monkeypatch)
    optimal(case("transpose"), timeout_ms=10_000, rlimit=9_000_000)
    # Two searches (whole axes, then sub-axes): the first gets a third of the resource
    # budget and of what is left of the deadline, the second the rest.
    assert given == [("rlimit", 3_000_000), ("timeout", 833), ("rlimit", 6_000_000),
                     ("timeout", 2500)]


def test_without_a_timeout_no_clock_is_read_only_the_budget_bounds_the_solver(monkeypatch):
    """No wall clock reaches z3 unless the user asks: the answer cannot depend on load."""
    from redist.core.synthesis import optimal as opt_mod

    def no_clock():
        raise AssertionError("the wall clock was read")
    monkeypatch.setattr(opt_mod, "_now", no_clock)
    given = _solver_settings(monkeypatch)
    p = Problem(parse_mesh("x=2,y=4"), (16, 16), "bfloat16", parse_layout("[{x},{y}]"),
                parse_layout("[{y},{x}]"))
    o = optimal(p, rlimit=3_000_000)
    # Which of the two searches the budget stops depends on z3's term order, which earlier
    # work in this process can change: either way the note says what was (not) proved.
    assert o.note.startswith("proved optimal") or (
        o.note.startswith("not proved") and "the solver's budget" in o.note), o.note
    assert [k for k, _ in given] == ["rlimit", "rlimit"]
    assert sum(v for _, v in given) == 3_000_000


def test_a_budget_that_runs_out_says_nothing_was_proved():
    """With almost no resource units the solver stops: the answer is the normal plan (or a
    better one it found), never called optimal, and the note says the budget ran out."""
    for name, first in (("transpose", 666), ("swap-3d", 2000)):   # two searches, one
        problem = case(name)
        o = optimal(problem, rlimit=2000)
        assert not o.proved_optimal, name
        assert o.note.startswith(f"not proved: the solver's budget ({first} z3 resource "
                                 "units) ran out searching plans of up to"), o.note
        split = "budget (1334 z3 resource units) ran out searching plans of up to 4 steps"
        assert (split in o.note) == (name == "transpose"), o.note
        n = normal(problem).plan.figures()
        f = o.plan.figures()
        assert (f.volume_bytes, f.collectives) <= (n.volume_bytes, n.collectives)
        assert verify(o.plan).all_proved       # a real plan, never a decoded empty model


def test_the_split_atoms_follow_the_axes_not_the_devices():
    """The second search's atoms: primes when they are few, else each axis cut after its
    first prime factors, at most MAX_PRIME_ATOMS; on meshes x=n,y=n,z=n of 64 to 2^18
    devices the same count, and the constraints the same size (only constants differ)."""
    from redist.core.synthesis.optimal import MAX_PRIME_ATOMS, split_atoms

    counts = []
    for n in (4, 8, 16, 64):
        p = Problem(parse_mesh(f"x={n},y={n},z={n}"), (4096, 4096), "bfloat16",
                    parse_layout("[{x,y},{z}]"), parse_layout("[{z},{x,y}]"))
        f = split_atoms(p)
        assert f is not None and len(f.mesh.names) <= MAX_PRIME_ATOMS
        assert all(f.mesh.size(a) > 1 for a in f.mesh.names)
        counts.append(len(f.mesh.names))
    assert counts == [6, 6, 6, 6]
    assert split_atoms(Problem(parse_mesh("x=2,y=2,z=2"), (8, 8), "bfloat16",
                               parse_layout("[{x,y},{z}]"), parse_layout("[{z},{x,y}]"))) is None


def test_the_constraints_do_not_grow_with_the_devices(monkeypatch):
    """Same atoms, larger sizes: the solver gets the same number of terms (tokens of its
    input), so its work follows the atoms. 16 and 4,096 devices, one search each."""
    import re

    import z3

    sizes = []
    monkeypatch.setattr(z3.Optimize, "check", lambda self, *a: (
        sizes.append(len(re.findall(r"[^\s()]+", self.sexpr()))), z3.unknown)[1])
    for n in (4, 64):
        p = Problem(parse_mesh(f"x={n},y={n}"), (4096, 4096), "bfloat16",
                    parse_layout("[{x},{y}]"), parse_layout("[{y},{x}]"))
        from redist.core.synthesis.optimal import _Search, _solve
        base = normal(p).plan
        _solve(p, _Search(None, p.bound_bytes, 4, base, base.figures(), None, False), 1000,
               None, whole=True)
    assert sizes[0] == sizes[1] > 0


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
            o = optimal(p)
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
