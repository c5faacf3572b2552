"""The cost model's structure (core/synthesis/costmodel.py) and calibrate's fit
(runtime/calibrate.py): its terms follow what the runtime does, and the fit recovers the
constants that made the times. No wall-clock assertion: times here are synthetic."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redist.core.errors import RedistError
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.ops import AllExchange, AllGather, AllPermute, AllSlice, AllToAll
from redist.core.ops.load import box_runs, chunk_messages
from redist.core.plans.plan import Plan
from redist.core.semantics.working import CHUNK_DIVISOR, chunk_elements
from redist.core.synthesis.costmodel import (
    KINDS,
    RUN_KINDS,
    CostModel,
    Load,
    beyond_cache,
    load,
    save,
    step_load,
)
from redist.runtime import calibrate, execute
from redist.runtime.memory import MemoryTracker


def _load_of(plan: Plan) -> Load:
    lays = plan.layouts()
    return step_load(plan, plan.steps[0], lays[0], lays[1])


def _all_to_all(g: int, shape: tuple[int, ...], src: str, dst: str, s: int, t: int) -> Plan:
    p = Problem(parse_mesh(f"a={g}"), shape, "float32", parse_layout(src), parse_layout(dst))
    return Plan(p, (AllToAll(s, t, ("a",)),))


class _CountingComm:
    """Enough of an MPI communicator for the in-place all-to-all's swaps to run alone:
    counts the messages it is asked to send (nothing moves)."""

    def __init__(self, g: int) -> None:
        self.g, self.sent = g, 0

    def Get_rank(self) -> int:
        return 0

    def Isend(self, buf, dest, tag):
        self.sent += 1

    def Irecv(self, buf, source, tag):
        return None


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])   # the same patch
@given(g=st.sampled_from([2, 3, 4, 8]), rows=st.integers(1, 6), cols=st.integers(1, 40),
       inner=st.integers(1, 3))
def test_all_to_all_messages_are_the_runtimes(monkeypatch, g, rows, cols, inner):
    """The model's message count of an in-place all-to-all is what the runtime sends:
    chunk messages of every pairwise swap (counted on the runtime's own code)."""
    monkeypatch.setattr(execute, "wait_all", lambda reqs, nap=False: None)
    plan = _all_to_all(g, (rows * g, cols * g, inner), "[{a},{},{}]", "[{},{a},{}]", 0, 1)
    want = _load_of(plan)
    comm = _CountingComm(g)
    x = np.zeros((rows, cols * g, inner), dtype=np.float32)
    execute._all_to_all_inplace(comm, x, 0, 1, g, cols, MemoryTracker())
    assert want.messages == comm.sent
    assert want.wire == (g - 1) * x.nbytes // g


def test_more_chunks_cost_more():
    """Twice the chunk messages (a group of 2 against one of 16 sends 8 and 15 messages
    of its pieces) is charged more at the same bytes; a transposed block more than one
    that needs no transpose."""
    m = CostModel()
    a = Load("all_to_all", 8, 1 << 20, copies=1 << 20)
    b = Load("all_to_all", 16, 1 << 20, copies=1 << 20)
    assert m.charge(b) > m.charge(a)
    # Same bytes over the wire, one local transpose against none.
    once = _load_of(_all_to_all(4, (32, 64), "[{a},{}]", "[{},{a}]", 0, 1))
    never = _load_of(_all_to_all(4, (4, 512), "[{},{a}]", "[{a},{}]", 1, 0))
    assert once.wire == never.wire and once.messages == never.messages
    assert once.transposes > 0 == never.transposes
    assert m.charge(once) > m.charge(never)


@pytest.mark.parametrize("n", [1, 15, 16, 160, 1 << 20, 3 << 20])
def test_chunk_messages_use_the_runtimes_chunk(n):
    """A block moved whole takes CHUNK_DIVISOR messages of a chunk (one per element when
    the block is smaller); a piece of it as many chunks as it spans."""
    assert chunk_messages(n, n) == (CHUNK_DIVISOR if n >= CHUNK_DIVISOR else n)
    assert chunk_messages(n // 4, n) == -(-(n // 4) // chunk_elements(n))
    assert chunk_messages(0, n) == 0


def test_permute_and_exchange_loads():
    mesh = parse_mesh("x=2,y=4")
    p = Problem(mesh, (1 << 12,), "float32", parse_layout("[{x,y}]"), parse_layout("[{y,x}]"))
    perm = _load_of(Plan(p, (AllPermute(p.dst),)))
    assert perm.messages == 16 and perm.wire == p.local_bytes(p.src)
    same = Problem(mesh, (1 << 12,), "float32", parse_layout("[{x,y}]"),
                   parse_layout("[{x,y}]"))
    assert _load_of(Plan(same, (AllPermute(same.dst),))).messages == 0
    for g in (2, 4, 8):
        # [{},{a}] -> [{a},{}] runs in place (every piece to one device): g - 1 pieces
        # swapped in chunk messages
        q = Problem(parse_mesh(f"a={g}"), (8, 64), "float32", parse_layout("[{},{a}]"),
                    parse_layout("[{a},{}]"))
        ex = _load_of(Plan(q, (AllExchange(q.dst),)))
        block = 8 * 64 // g
        assert ex.messages == (g - 1) * chunk_messages(block // g, block)
        assert ex.wire == (g - 1) * q.local_bytes(q.dst) // g
        # [{},{a}] -> [{},{}] (local sizes differ): in slots, a piece from each of g - 1
        # peers
        r = Problem(parse_mesh(f"a={g}"), (8, 64), "float32", parse_layout("[{},{a}]"),
                    parse_layout("[{},{}]"))
        ex = _load_of(Plan(r, (AllExchange(r.dst),)))
        assert ex.messages == g - 1 and ex.wire == (g - 1) * r.local_bytes(r.src)


def _model(draw_consts: list[float], cache_bytes: int = 8 << 20) -> CostModel:
    it = iter(draw_consts)
    lat = {k: next(it) for k in KINDS}
    spb = {k: next(it) * 1e-5 for k in KINDS}
    copy, transpose = next(it) * 1e-5, next(it) * 1e-5
    run = {k: next(it) * 1e-3 if k in RUN_KINDS else 0.0 for k in KINDS}
    return CostModel(lat, spb, copy, "truth", transpose, run, next(it), next(it) * 1e-5,
                     cache_bytes)


@settings(max_examples=8, deadline=None)
@given(st.lists(st.floats(1e-5, 1e-2), min_size=3 * len(KINDS) + 4,
                max_size=3 * len(KINDS) + 4),
       st.sampled_from(calibrate.CACHE_SIZES[1:-1]))
def test_fit_recovers_the_constants_that_made_the_times(consts, cache_bytes):
    """Rows timed exactly by a model (calibrate's own plans on 8 ranks): the fit gives the
    same constants back (the cache's size among them), and its error per kind is 0."""
    truth = _model(consts, cache_bytes)
    rows = []
    for plan in calibrate.cases(8):
        ld = _load_of(plan)
        rows.append(calibrate._row(ld, truth.charge(ld)))
    got = calibrate.fit(rows)
    for k in KINDS:
        if k != "all_slice":              # moves nothing: only its copies are charged
            assert got.latency[k] == pytest.approx(truth.latency[k], rel=1e-6), k
            assert got.seconds_per_byte[k] == pytest.approx(truth.seconds_per_byte[k],
                                                            rel=1e-6), k
    assert got.copy_seconds_per_byte == pytest.approx(truth.copy_seconds_per_byte, rel=1e-6)
    assert got.transpose_seconds_per_byte == pytest.approx(truth.transpose_seconds_per_byte,
                                                           rel=1e-6)
    for k in RUN_KINDS:
        assert got.seconds_per_run[k] == pytest.approx(truth.seconds_per_run[k], rel=1e-6)
    assert got.seconds_per_step == pytest.approx(truth.seconds_per_step, rel=1e-6)
    assert got.cache_bytes == cache_bytes
    assert got.memory_seconds_per_byte == pytest.approx(truth.memory_seconds_per_byte,
                                                        rel=1e-6)
    errors = calibrate.fit_errors(got, rows)
    assert set(errors) == set(KINDS) and max(e["max"] for e in errors.values()) < 1e-6


def test_fit_reports_its_error_per_kind():
    """Times 30% off the model on one kind: that kind's fit error shows it, the others'
    do not."""
    truth = CostModel()
    rows = []
    for k, plan in enumerate(calibrate.cases(8)):
        ld = _load_of(plan)
        wobble = 1.3 if (ld.kind == "all_permute" and k % 2) else 1.0
        rows.append(calibrate._row(ld, truth.charge(ld) * wobble))
    errors = calibrate.fit_errors(calibrate.fit(rows), rows)
    assert errors["all_permute"]["max"] > 0.1
    assert errors["all_to_all"]["max"] < 0.01


def test_calibration_never_reports_a_zero_latency():
    """Times that grow faster than linearly in bytes fit a line through 0 messages; the
    latency is never reported as 0 (issue 15)."""
    rows = [{"kind": "all_permute", "messages": 16, "wire": b, "copies": b, "transposes": 0,
             "g": 8, "seconds": t}
            for b, t in ((1 << 10, 4e-6), (1 << 16, 6e-6), (1 << 20, 400e-6),
                         (8 << 20, 9e-3))]
    assert calibrate.fit(rows).latency["all_permute"] >= calibrate.MIN_LATENCY


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 12), st.integers(1, 5))
def test_nonnegative_least_squares_meets_its_optimality_conditions(seed, m, n):
    """x >= 0; the gradient of |ax - b|^2 is >= 0 everywhere and 0 where x > 0 (KKT)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(m, n)) * 10.0 ** rng.integers(-3, 4, size=n)
    b = rng.normal(size=m)
    x = calibrate.nonnegative_least_squares(a, b)
    assert (x >= 0).all()
    scale = np.linalg.norm(a, axis=0)
    grad = a.T @ (a @ x - b) / np.where(scale == 0, 1, scale)
    assert (grad >= -1e-7).all()
    assert np.all(np.abs(grad[x > 0]) < 1e-7)


@pytest.mark.parametrize("box,within,runs", [
    ((4, 8), (4, 8), 1), ((2, 8), (4, 8), 1), ((4, 2), (4, 8), 4), ((2, 3, 5), (2, 6, 5), 2),
    ((3, 1, 5), (3, 4, 5), 3), ((0, 8), (4, 8), 0)])
def test_box_runs(box, within, runs):
    assert box_runs(box, within) == runs


def test_strided_pieces_are_charged_their_runs():
    """A gather and an exchange of the same bytes: 64-byte rows cost more than whole
    rows (MPI walks a derived datatype run by run)."""
    m = CostModel()
    for src, dst, step in (("[{},{a}]", "[{},{}]", lambda p: AllGather(((), ("a",)))),
                           ("[{},{a}]", "[{},{}]", lambda p: AllExchange(p.dst))):
        loads = [_load_of(calibrate._one(parse_mesh("a=4"), src, dst, shape, step))
                 for shape in ((4, 65533), (1 << 12, 63))]    # padded: one Alltoallw
        assert loads[0].wire == loads[1].wire and loads[1].runs > 100 * loads[0].runs
        assert m.charge(loads[1]) > m.charge(loads[0])


@pytest.mark.parametrize("old", ["redist.costmodel/1", "redist.costmodel/2",
                                 "redist.costmodel/3"])
def test_a_file_of_the_older_format_gives_the_defaults(tmp_path, old):
    f = tmp_path / "cm.json"
    f.write_text(json.dumps({"format": old, "latency": {},
                             "seconds_per_byte": {}, "copy_seconds_per_byte": 0.0}))
    m = load(str(f))
    assert m.latency == CostModel().latency and "older format" in m.source
    assert math.isclose(load(str(f)).copy_seconds_per_byte, CostModel().copy_seconds_per_byte)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=st.sampled_from([2, 4, 8]), rows=st.integers(1, 64), cols=st.integers(1, 64),
       dim=st.integers(0, 1), short=st.booleans())
def test_a_gather_holds_and_fills_its_grown_buffer(g, rows, cols, dim, short):
    """The gather's buffer grows to G blocks, this rank's block moves into its slot; the
    G - 1 new slots are zero-filled only where some block is padded (runtime/execute.py
    _gather): one block of local work when blocks are even, G when padded. Its working set
    is the output. The same for every op: working is the larger of the block before and
    after."""
    src = "[{a},{}]" if dim == 0 else "[{},{a}]"
    shape = [rows * g, cols * g]
    shape[dim] -= short and shape[dim] > g
    p = Problem(parse_mesh(f"a={g}"), tuple(shape), "float32", parse_layout(src),
                parse_layout("[{},{}]"))
    plan = Plan(p, (AllGather(p.src.dims),))
    ld = _load_of(plan)
    padded = shape[dim] % g != 0
    assert ld.copies == (g if padded else 1) * p.local_bytes(p.src)
    assert g * p.local_bytes(p.src) >= p.local_bytes(p.dst)
    assert ld.working == p.local_bytes(p.dst)
    back = _load_of(Plan(p.with_ends(p.dst, p.src), (AllSlice(p.src.dims),)))
    assert back.working == p.local_bytes(p.dst) and back.copies == p.local_bytes(p.src)


@settings(max_examples=50, deadline=None)
@given(moved=st.integers(0, 1 << 30), working=st.integers(0, 1 << 30),
       cache=st.sampled_from(calibrate.CACHE_SIZES), per_byte=st.floats(0, 1e-8))
def test_bytes_beyond_the_cache_cost_the_memory_term(moved, working, cache, per_byte):
    """The memory term adds per_byte for every byte a step moves, only where its buffers
    exceed the cache."""
    ld = Load("all_permute", 3, moved, working=working)
    base = CostModel(memory_seconds_per_byte=0.0, cache_bytes=cache)
    m = CostModel(memory_seconds_per_byte=per_byte, cache_bytes=cache)
    extra = m.charge(ld) - base.charge(ld)
    assert extra == pytest.approx(per_byte * moved if working > cache else 0.0, abs=1e-12)
    assert beyond_cache(ld, cache) == (ld.moved if working > cache else 0)


@pytest.mark.parametrize("key,value", [("memory_seconds_per_byte", -1.0),
                                       ("memory_seconds_per_byte", "x"),
                                       ("cache_bytes", float("inf")), ("cache_bytes", 1e60),
                                       ("cache_bytes", None)])
def test_a_file_with_a_bad_memory_term_is_refused(tmp_path, key, value):
    doc = CostModel().to_json()
    doc[key] = value
    f = tmp_path / "cm.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(RedistError, match="cost model"):
        load(str(f))


def test_a_saved_model_reads_back_the_same(tmp_path):
    m = CostModel(memory_seconds_per_byte=3e-10, cache_bytes=16 << 20, source="x")
    path = save(m, str(tmp_path / "cm.json"))
    back = load(path)
    assert (back.memory_seconds_per_byte, back.cache_bytes) == (3e-10, 16 << 20)
    assert back.to_json() | {"source": ""} == m.to_json() | {"source": ""}
