"""The bit-vector restatement of the symbolic claims (core/smt/bitvec.py) answers exactly
as the integer obligation it stands for, and a wrap is never read as a proof."""

import z3
from hypothesis import HealthCheck, given, settings

from redist.core import ops
from redist.core.ops import AllToAll
from redist.core.plans.plan import Plan
from redist.core.semantics.blocks import changed_count, changed_devices
from redist.core.smt import obligations as O
from redist.core.smt.bitvec import IntView, Untranslatable, to_bitvec
from redist.core.smt.verify import solve

from strategies import random_plans

SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def answer(assertions) -> z3.CheckSatResult:
    s = z3.Solver()
    s.add(*assertions)
    return s.check()


def symbolic(plan: Plan):
    return [o for o in O.obligations(plan) if o.claim in ("element_correct", "no_discard")]


@SETTINGS
@given(random_plans(generous="uneven", max_len=4, sub_axes=True))
def test_bitvector_and_integer_obligations_agree(plan):
    for ob in symbolic(plan):
        assert ob.integer is not None and ob.width is not None
        assert answer(ob.assertions) == answer(ob.integer)


@SETTINGS
@given(random_plans(generous=True, max_len=4))
def test_a_wrong_source_map_is_refuted_with_an_integer_counterexample(plan):
    """With the all_to_all map broken, both encodings answer alike, and a bit-vector model
    satisfies the integer obligation (it is a real counterexample, not a wrap)."""
    real = ops.source

    def broken(step, mesh, shape, before, after, coords, index, alg):
        c, i = real(step, mesh, shape, before, after, coords, index, alg)
        if isinstance(step, AllToAll):
            i[step.dst_dim] = index[step.dst_dim]
        return c, i
    O.source = broken
    try:
        ob = symbolic(plan)[0]
    finally:
        O.source = real
    s = z3.Solver()
    s.add(*ob.assertions)
    got = s.check()
    assert got == answer(ob.integer)
    if got == z3.sat:
        view = IntView(s.model())
        assert all(z3.is_true(view.eval(a, model_completion=True)) for a in ob.integer)


def test_a_too_narrow_width_answers_sat_never_unsat_and_verify_falls_back():
    x = z3.Int("x")
    ints = [z3.And(x >= 0, x < 1000), z3.Not((x * 9) / 9 == x)]   # true over integers
    assert answer(ints) == z3.unsat
    wide, w = to_bitvec(ints)
    assert w >= 14 and answer(wide) == z3.unsat
    narrow, _ = to_bitvec(ints, width=13)                # 9*999 wraps at 13 bits
    assert answer(narrow) == z3.sat
    ob = O.Obligation("element_correct", narrow, lambda m: "", integer=ints, width=13)
    assert solve(ob).status == "proved"                  # by the integer obligation


def test_outside_the_fragment_is_declined():
    x, y = z3.Ints("x y")
    box = z3.And(x >= 0, x < 8)
    for bad in ([box, z3.Not(x - 1 < 8)],                # subtraction
                [box, z3.Not(x + y < 20)],               # y has no bounds
                [z3.And(x < 8), z3.Not(x < 8)],          # no lower bound on x
                [box, z3.Not(x + -3 < 8)]):              # negative constant
        try:
            to_bitvec(bad)
        except Untranslatable:
            continue
        raise AssertionError(f"translated {bad}")


@SETTINGS
@given(random_plans(generous="uneven", max_len=4, sub_axes=True))
def test_changed_count_agrees_with_every_device(plan):
    """The permute volume counted from prime digits equals the count over every device."""
    lays, _ = plan.typed_prefix()
    mesh = plan.problem.mesh
    for a, b in zip(lays, lays[1:], strict=False):
        assert changed_count(mesh, a, b) == int(changed_devices(mesh, a, b).sum())
