"""`--collectives mpi`'s choice between the portable plan and one all_exchange
(core/synthesis/choice.py, synthesize.with_exchange): memory first, then time with the
cost model's error margin; and the load of the exchange in slots (its own kind, the grown
buffer's zero fill, the piece-order transposes) that the prediction rests on."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.ops import AllExchange
from redist.core.ops.all_exchange import in_slots, load
from redist.core.ops.load import EXCHANGE_SLOTS
from redist.core.plans.plan import Plan
from redist.core.synthesis.choice import MARGIN, choose
from redist.core.synthesis.costmodel import CostModel
from redist.core.synthesis.synthesize import normal, with_exchange

FAST = settings(max_examples=60, deadline=None)
sizes = st.integers(1, 1 << 30)
seconds = st.floats(1e-6, 10.0)


def problem(mesh: str, shape: tuple[int, ...], src: str, dst: str) -> Problem:
    return Problem(parse_mesh(mesh), shape, "float32", parse_layout(src), parse_layout(dst))


@FAST
@given(sizes, sizes, sizes, sizes, st.booleans(), seconds, seconds)
def test_without_a_budget_the_plan_that_holds_less_wins_whatever_the_times(
        pp, xp, pv, xv, one, tp, tx):
    c = choose(pp, xp, pv, xv, one, tp, tx, budgeted=False)
    if pp != xp:
        assert c.exchange == (xp < pp) and c.rule == "memory"
    else:
        assert c.rule != "memory"


@FAST
@given(sizes, sizes, sizes, sizes, st.booleans(), seconds, seconds, st.booleans())
def test_the_prediction_decides_only_beyond_the_margin(
        pp, xp, pv, xv, one, tp, tx, budgeted):
    """Equal peaks, or a budget that allows trading memory: an Alltoallw exchange never
    over a portable plan moving no more bytes; otherwise the plan predicted faster by
    more than MARGIN; within it, the one that holds less, and on equal peaks the
    exchange."""
    if not budgeted:
        xp = pp
    c = choose(pp, xp, pv, xv, one, tp, tx, budgeted)
    if not one and pv <= xv:
        assert not c.exchange and c.rule == "bytes"
        return
    if tx * (1 + MARGIN) < tp:
        assert c.exchange and c.rule == "time"
    elif tp * (1 + MARGIN) < tx:
        assert not c.exchange and c.rule == "time"
    else:
        assert c.rule == "margin" and c.exchange == (xp <= pp)
    # Monotone: a cheaper prediction for the exchange never turns it down.
    if c.exchange:
        assert choose(pp, xp, pv, xv, one, tp, tx / 2, budgeted).exchange
    # A tie on equal memory takes the exchange; margin 0 is the plain comparison.
    assert choose(pp, pp, pv, xv, one, tp, tp, budgeted).exchange
    if tx != tp:
        assert choose(pp, pp, pv, xv, one, tp, tx, budgeted, margin=0.0).exchange == (tx < tp)


def test_the_margin_is_a_fraction_the_benchmark_can_justify():
    assert 0.0 < MARGIN < 1.0


def _cheap_exchange(factor: float) -> CostModel:
    """A model that charges the portable steps per byte and the exchange `factor` as
    much per byte (no latency, no fixed cost, no local work)."""
    base = CostModel(copy_seconds_per_byte=0.0, transpose_seconds_per_byte=0.0,
                     seconds_per_step=0.0, memory_seconds_per_byte=0.0)
    return CostModel({k: 0.0 for k in base.latency},
                     {k: 1e-9 * (factor if k.startswith("all_exchange") else 1.0)
                      for k in base.seconds_per_byte},
                     0.0, "test", 0.0, {k: 0.0 for k in base.seconds_per_run}, 0.0, 0.0)


def test_with_exchange_keeps_the_portable_plan_that_holds_less():
    """gather-all: the exchange in slots needs a chunk (its pieces transposed), the
    portable gather does not: the gather is kept however cheap the exchange is predicted,
    and the output says why; with a budget the time decides."""
    p = problem("x=2,y=2,z=2", (16, 16, 16), "[{x},{y},{z}]", "[{},{},{}]")
    port = normal(p)
    xfig = Plan(p, (AllExchange(p.dst),)).figures()
    assert xfig.runtime_peak_bytes > port.plan.figures().runtime_peak_bytes
    s = with_exchange(p, port, model=_cheap_exchange(1e-3))
    assert s.plan == port.plan and "hold less while they run" in s.method
    s = with_exchange(p, port, 2 * p.bound_bytes, model=_cheap_exchange(1e-3))
    assert s.plan.steps == (AllExchange(p.dst),) and "error margin" in s.method
    # Within the margin under a budget: the one that holds less (the gather).
    s = with_exchange(p, port, 2 * p.bound_bytes, model=_cheap_exchange(1.0))
    assert s.plan == port.plan and "holds more while it runs" in s.method


def test_with_exchange_needs_the_margin_to_keep_the_portable_plan_on_equal_memory():
    """transpose (both in one buffer plus one chunk: equal peaks): the portable plan only
    where predicted faster by more than the margin; a close call either way takes the
    exchange, and the output says so."""
    p = problem("x=2,y=4", (512, 512), "[{x},{y}]", "[{y},{x}]")
    port = normal(p)
    exch = Plan(p, (AllExchange(p.dst),))
    assert exch.figures().runtime_peak_bytes == port.plan.figures().runtime_peak_bytes
    rules = set()
    for factor in (0.5, 1.3, 1.6, 2.0, 3.0):
        m = _cheap_exchange(factor)
        ratio = m.seconds(exch) / m.seconds(port.plan)
        s = with_exchange(p, port, model=m)
        took = s.plan.steps == (AllExchange(p.dst),)
        assert took == (ratio <= 1 + MARGIN), (factor, ratio, s.method)
        if took and 1 / (1 + MARGIN) <= ratio:
            assert f"error margin ({MARGIN:.0%}) of the portable plan" in s.method
        rules.add("portable" if not took else "margin" if ratio >= 1 else "exchange")
    assert rules == {"exchange", "margin", "portable"}


GATHERS = [("x=2,y=2,z=2", "[{x},{y},{z}]", "[{},{},{}]", 3),
           ("x=2,y=4", "[{x},{y}]", "[{},{}]", 2),
           ("x=8", "[{x},{}]", "[{},{}]", 2),
           ("x=2,y=4", "[{x}]", "[{y}]", 1)]


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(GATHERS), st.integers(1, 4))
def test_the_exchange_in_slots_is_charged_its_own_mechanism(case, scale):
    """Its own kind; the grown part of the buffer zero-filled and every piece that moves
    slot counted as copies; the piece-order transposes of the after block where pieces
    lie across a dim (two dims or more gathered); and the charge grows with the transpose
    constant exactly by the transposed bytes (the term gather-all's time is mostly in)."""
    mesh, src, dst, rank = case
    m = parse_mesh(mesh)
    shape = tuple(8 * scale * m.num_devices for _ in range(rank))
    p = problem(mesh, shape, src, dst)
    ins = in_slots(p.mesh, p.shape, p.src, p.dst)
    assert ins is not None
    got = load(p, AllExchange(p.dst), p.src, p.dst)
    assert got.kind == EXCHANGE_SLOTS
    lb, la = p.local_bytes(p.src), p.local_bytes(p.dst)
    assert got.copies >= max(0, la - lb)              # the zero-filled growth at least
    gathered = sum(len(d) > 0 for d in p.src.dims)
    assert (got.transposes > 0) == (gathered >= 2)
    if gathered >= 2:
        assert got.transposes >= (gathered - 1) * la
    base = CostModel()
    dearer = CostModel(transpose_seconds_per_byte=base.transpose_seconds_per_byte + 1e-9)
    assert math.isclose(dearer.charge(got) - base.charge(got), 1e-9 * got.transposes)


class _OneRank:
    """A communicator of one rank for calibrate's local rows (no MPI launch)."""
    def Barrier(self) -> None:
        pass

    def allreduce(self, value: float, op: object) -> float:
        return value


def test_calibrate_times_block_transposes_alone(monkeypatch):
    """The transpose constant gets rows of its own (no message, no wire byte, no copy), in
    the cache and beyond it, that the fit reads like any other (a recovered constant)."""
    from redist.runtime import calibrate
    monkeypatch.setattr(calibrate, "SIZES", (1 << 12, 1 << 14))
    monkeypatch.setattr(calibrate, "LARGE", 1 << 16)
    monkeypatch.setattr(calibrate, "REPEAT", 1)
    rows = calibrate._transpose_rows(_OneRank(), None)
    assert [r["transposes"] for r in rows] == [1 << 12, 1 << 14, 1 << 16]
    assert all(r["messages"] == r["wire"] == r["copies"] == r["steps"] == 0 and
               r["working"] == r["transposes"] and r["seconds"] > 0 for r in rows)
    truth = CostModel(transpose_seconds_per_byte=2e-9, memory_seconds_per_byte=0.0)
    timed = [r | {"seconds": truth.charge(calibrate.row_load(r))} for r in rows]
    assert math.isclose(calibrate.fit(timed).transpose_seconds_per_byte, 2e-9, rel_tol=1e-6)
