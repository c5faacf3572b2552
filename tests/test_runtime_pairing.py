"""Cheap checks of the runtime's pairing and offset arithmetic (no mpiexec): who sends to
whom in a permute, the pairwise schedule of the in-place all-to-all, the in-place block
transpose and compaction, and whole steps of the runtime executed by one thread per rank
over an in-process stand-in for MPI point-to-point, against the reference simulator — on
odd and prime rank counts and uneven chunks."""

from __future__ import annotations

import itertools
import math
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from redist.core.errors import TypingError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.plans import simulator
from redist.core.plans.plan import Plan
from redist.core.semantics.blocks import block_ids, permute_sources
from redist.core.semantics.collectives import AllPermute, AllSlice, AllToAll, apply
from redist.core.semantics.sourcemap import mixed_radix
from redist.core.synthesis.exhaustive import same_blocks
from redist.runtime import execute, inplace
from redist.runtime.groups import pair_rounds
from redist.runtime.memory import Held, MemoryTracker

FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
ODD_SIZES = st.sampled_from([2, 3, 5, 6, 7])


# --- pair_rounds -------------------------------------------------------------------------

@pytest.mark.parametrize("g", range(1, 18))
def test_pair_rounds_meet_every_pair_once_and_mutually(g):
    rounds = [pair_rounds(g, me) for me in range(g)]
    assert len({len(r) for r in rounds}) == 1               # everyone runs the same rounds
    met = set()
    for r in range(len(rounds[0])):
        for me in range(g):
            partner = rounds[me][r]
            if partner is None:
                continue
            assert partner != me and 0 <= partner < g
            assert rounds[partner][r] == me                 # mutual: both post the swap
            met.add(frozenset((me, partner)))
    assert met == {frozenset(p) for p in itertools.combinations(range(g), 2)}
    # as few rounds as possible: g - 1 (g even), g (g odd, one idle member per round)
    assert len(rounds[0]) == (g - 1 if g % 2 == 0 else g) if g > 1 else len(rounds[0]) == 0


# --- permute_sources ---------------------------------------------------------------------

@st.composite
def permutes(draw):
    sizes = draw(st.lists(ODD_SIZES, min_size=1, max_size=3)
                 .filter(lambda s: math.prod(s) <= 60))
    mesh = Mesh(tuple(zip("xyz", sizes, strict=False)))
    rank = draw(st.integers(1, 2))
    dims = [[] for _ in range(rank)]
    for a in draw(st.permutations(mesh.names)):
        d = draw(st.integers(-1, rank - 1))
        if d >= 0:
            dims[d].append(a)
    before = Layout(tuple(tuple(d) for d in dims))
    targets = list(itertools.islice(same_blocks(mesh, before), 200))
    return mesh, before, draw(st.sampled_from(targets))


@FAST
@given(permutes())
def test_permute_sources_pair_holders_with_needers(case):
    mesh, before, after = case
    src = permute_sources(mesh, before, after)
    held, need = block_ids(mesh, before), block_ids(mesh, after)
    n = mesh.num_devices
    assert sorted(src) == list(range(n))                    # a permutation: one send each
    for r in range(n):
        assert (held[src[r]] == need[r]).all()              # the sender holds what r needs
        if (held[r] == need[r]).all():
            assert src[r] == r                              # who holds its block keeps it
    # the rest are paired in ascending device order, block by block
    by_block: dict = {}
    for r in range(n):
        if src[r] != r:
            by_block.setdefault(tuple(need[r]), []).append(src[r])
    assert all(v == sorted(v) for v in by_block.values())


def test_permute_sources_by_hand_on_three_devices():
    """x=3 replicated, then [{x}] -> [{x}] reversed? A permute to the same blocks with x
    replaced by a replicated y of the same size: (x, y) needs block y, held by (y, *)."""
    mesh = Mesh((("x", 3), ("y", 3)))
    src = permute_sources(mesh, Layout((("x",),)), Layout((("y",),)))
    # device 3x + y needs block y; holders of block y are devices 3y + k; those with
    # k == y keep theirs; the others pair in ascending order
    assert src == [0, 3, 6, 1, 4, 7, 2, 5, 8]


# --- in-place building blocks against NumPy ----------------------------------------------

@FAST
@given(st.integers(1, 7), st.integers(1, 7), st.integers(1, 5), st.sampled_from(["i4", "f8"]))
def test_transpose_blocks_is_a_block_transpose(rows, cols, block, dt):
    x = np.arange(rows * cols * block).astype(dt)
    want = x.reshape(rows, cols, block).transpose(1, 0, 2).reshape(-1).copy()
    inplace.transpose_blocks(x, rows, cols, block)
    assert np.array_equal(x, want)


@pytest.mark.parametrize("rows,cols,block,itemsize", [
    (1, 5, 64, 4), (5, 1, 64, 4), (2, 3, 64, 4), (7, 5, 32, 8), (16, 16, 16, 2)])
def test_transpose_scratch_is_what_it_allocates(rows, cols, block, itemsize):
    """The memory figure counts the transpose's scratch: one block and a flag per block,
    nothing when the transpose is trivial (as tracemalloc sees it, within object headers)."""
    import tracemalloc
    want = 0 if rows == 1 or cols == 1 else block * itemsize + rows * cols
    assert inplace.scratch_bytes(rows, cols, block, itemsize) == want
    x = np.zeros(rows * cols * block, dtype=f"i{itemsize}")
    tracemalloc.start()
    try:
        inplace.transpose_blocks(x, rows, cols, block)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert want <= peak + 64 and peak <= want + 1024, (want, peak)


@FAST
@given(st.integers(1, 6), st.integers(1, 9), st.data(), st.integers(1, 4))
def test_compact_keeps_a_range_at_the_front(outer, length, data, inner):
    lo = data.draw(st.integers(0, length - 1))
    hi = data.draw(st.integers(lo + 1, length))
    x = np.arange(outer * length * inner, dtype=np.int64)
    want = x.reshape(outer, length, inner)[:, lo:hi, :].reshape(-1).copy()
    tail = x[want.size:].copy()
    inplace.compact(x, outer, length, lo, hi, inner)
    assert np.array_equal(x[:want.size], want)
    assert np.array_equal(x[want.size:], tail)        # nothing written past what it keeps


# --- whole runtime steps, one thread per rank, point-to-point in process ------------------

class Deadlock(Exception):
    pass


class _World:
    """Mailboxes between ranks: what Sendrecv_replace posts, its peer takes. A wrong peer
    leaves ranks waiting for messages nobody sends: when every rank still running waits
    and none has its message, that is a deadlock, raised at once on every waiting rank."""

    def __init__(self, ranks: int) -> None:
        self.cond = threading.Condition()
        self.boxes: dict[tuple[int, int, int], list] = {}
        self.waiting: dict[int, tuple[int, int, int]] = {}
        self.alive = ranks
        self.dead = False

    def send(self, key: tuple[int, int, int], arr: np.ndarray) -> None:
        with self.cond:
            self.boxes.setdefault(key, []).append(arr)
            self.cond.notify_all()

    def recv(self, key: tuple[int, int, int], me: int) -> np.ndarray:
        with self.cond:
            self.waiting[me] = key
            try:
                while not self.boxes.get(key):
                    stuck = len(self.waiting) == self.alive and not any(
                        self.boxes.get(k) for k in self.waiting.values())
                    if self.dead or stuck:
                        self.dead = True
                        self.cond.notify_all()
                        raise Deadlock(f"rank {me} waits for {key} forever")
                    self.cond.wait(5)
                return self.boxes[key].pop(0)
            finally:
                del self.waiting[me]

    def finish(self) -> None:
        with self.cond:
            self.alive -= 1
            self.cond.notify_all()


class _Comm:
    """The part of an MPI communicator the permute and in-place all-to-all use."""

    def __init__(self, world: _World, members: list[int], me: int) -> None:
        self.world, self.members, self.me = world, members, me

    def Get_rank(self) -> int:
        return self.me

    def Get_size(self) -> int:
        return len(self.members)

    def Sendrecv_replace(self, buf, dest, sendtag, source, recvtag) -> None:
        arr = buf[0] if isinstance(buf, (list, tuple)) else buf
        me = self.members[self.me]
        self.world.send((me, self.members[dest], sendtag), arr.copy())
        got = self.world.recv((self.members[source], me, recvtag), me)
        assert got.shape == arr.shape, "peers disagree on the chunk size"
        arr[...] = got


class _MeshComm:
    def __init__(self, world: _World, mesh: Mesh, rank: int) -> None:
        self.world, self.mesh, self.rank = world, mesh, rank
        self.coords = mesh.coords(rank)
        self.cart = _Comm(world, list(range(mesh.num_devices)), rank)

    def group(self, axes: tuple[str, ...]) -> _Comm:
        mine = {a: v for a, v in self.coords.items() if a not in axes}
        members = [d for d in range(self.mesh.num_devices)
                   if all(self.mesh.coords(d)[a] == v for a, v in mine.items())]
        members.sort(key=lambda d: mixed_radix(self.mesh, axes, self.mesh.coords(d)))
        return _Comm(self.world, members, members.index(self.rank))


def run_threaded(plan: Plan, stack: np.ndarray, k: int) -> list[np.ndarray]:
    """Step k of `plan` on every rank at once, from the padded blocks in `stack`."""
    p = plan.problem
    lays = plan.layouts()
    world = _World(p.mesh.num_devices)
    out: list = [None] * p.mesh.num_devices
    errors: list = []

    def rank_main(r: int) -> None:
        try:
            mc = _MeshComm(world, p.mesh, r)
            held = Held(np.ascontiguousarray(stack[r]).copy(), True)
            out[r] = execute.run_step(plan.steps[k], mc, p.shape, lays[k], lays[k + 1], held,
                                      MemoryTracker())
        except BaseException as e:       # surfaced in the main thread
            errors.append((r, e))
        finally:
            world.finish()
    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(len(out))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    return out


def check_step_against_simulator(plan: Plan) -> None:
    p = plan.problem
    x = np.arange(math.prod(p.shape), dtype=np.int64).reshape(p.shape)
    stacks = simulator.run(plan, x)
    lays = plan.layouts()
    for k in range(len(plan.steps)):
        got = run_threaded(plan, stacks[k], k)
        valid = simulator.valid_mask(p.mesh, p.shape, lays[k + 1])
        for r, block in enumerate(got):
            assert block.shape == stacks[k + 1][r].shape, (k, r)
            assert block.flags.c_contiguous, (k, r)     # every buffer in a plan (module doc)
            assert np.array_equal(block[valid[r]], stacks[k + 1][r][valid[r]]), \
                (k, r, plan.steps[k])


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Every code path the shape allows, in place, in chunks of a few elements (so chunk
    offsets are exercised), whatever the block sizes."""
    monkeypatch.setattr(execute, "MAX_CHUNK_BYTES", 24)
    monkeypatch.setattr(execute, "MIN_CHUNK_BYTES", 24)
    monkeypatch.setattr(execute, "INPLACE_ALL_TO_ALL", True)
    monkeypatch.setattr(inplace, "can_transpose", lambda *a: True)


@st.composite
def p2p_steps(draw):
    """One all_to_all, permute or slice (the kind drawn first) on a mesh of odd/prime
    sizes, with even or uneven extents."""
    sizes = draw(st.lists(ODD_SIZES, min_size=1, max_size=3)
                 .filter(lambda s: math.prod(s) <= 15))
    mesh = Mesh(tuple(zip("xyz", sizes, strict=False)))
    rank = draw(st.integers(1, 3))
    dims = [[] for _ in range(rank)]
    for a in draw(st.permutations(mesh.names)):
        d = draw(st.integers(-1, rank - 1))
        if d >= 0:
            dims[d].append(a)
    lay = Layout(tuple(tuple(d) for d in dims))
    shape = tuple(draw(st.integers(1, 3 * max(2, lay.shards(mesh, d)))) for d in range(rank))
    if draw(st.booleans()):            # even: every extent a multiple of the device count
        shape = tuple(mesh.num_devices * draw(st.integers(1, 2)) for _ in range(rank))
    options: dict[str, list] = {"all_to_all": [], "all_permute": [], "all_slice": []}
    for s in range(rank):
        for j in range(len(lay.dims[s])):
            options["all_to_all"] += [AllToAll(s, t, lay.dims[s][j:])
                                      for t in range(rank) if t != s]
        for a in (a for a in mesh.names if a not in lay.used_axes()):
            options["all_slice"].append(AllSlice(tuple((a,) if e == s else ()
                                                       for e in range(rank))))
    options["all_permute"] = [AllPermute(t) for t in
                              itertools.islice(same_blocks(mesh, lay), 30) if t != lay]
    good: dict[str, list] = {}
    for kind, steps in options.items():
        for step in steps:
            try:
                after = apply(step, mesh, shape, lay)
            except TypingError:
                continue
            good.setdefault(kind, []).append((step, after))
    assume(good)
    step, after = draw(st.sampled_from(good[draw(st.sampled_from(sorted(good)))]))
    return Plan(Problem(mesh, shape, "int32", lay, after), (step,))


@FAST
@given(p2p_steps())
def test_runtime_steps_equal_the_simulator_on_odd_meshes_and_uneven_chunks(tiny_chunks, plan):
    check_step_against_simulator(plan)


@pytest.mark.parametrize("mesh,shape,src,step", [
    ("x=3", (7, 5), "[{x},{}]", AllToAll(0, 1, ("x",))),          # uneven both sides
    ("x=5", (10, 3), "[{x},{}]", AllToAll(0, 1, ("x",))),         # dst dim held whole
    ("x=7", (14, 14), "[{},{x}]", AllToAll(1, 0, ("x",))),
    ("x=3,y=2", (6, 4, 5), "[{x},{y},{}]", AllToAll(1, 2, ("y",))),
    ("x=3,y=5", (15, 4), "[{x,y},{}]", AllToAll(0, 1, ("x", "y"))),
    ("x=3,y=3", (9, 2), "[{x},{}]", AllPermute(Layout((("y",), ())))),
    ("x=5,y=3", (15, 3), "[{x,y},{}]", AllPermute(Layout((("y", "x"), ())))),
    ("x=3", (3, 2), "[{},{}]", AllSlice((("x",), ()))),
])
def test_runtime_steps_by_hand(tiny_chunks, mesh, shape, src, step):
    from redist.core.model.syntax import parse_layout, parse_mesh
    m = parse_mesh(mesh)
    lay = parse_layout(src)
    p = Problem(m, shape, "float32", lay, apply(step, m, shape, lay))
    check_step_against_simulator(Plan(p, (step,)))


# --- the same on real MPI: 3 ranks (prime), the in-place paths, uneven chunks ----------

def test_three_ranks_under_mpiexec_match_the_simulator(tmp_path):
    """One short mpiexec run: the stand-in above must not hide what real MPI does. Blocks
    of float64 large enough (>= 256 bytes) for the in-place all-to-all, sent in chunks of
    200 bytes (25 elements: pieces do not divide into them)."""
    from test_runtime import run_jobs

    from redist.core.model.syntax import parse_layout, parse_mesh
    from redist.core.plans.planjson import plan_to_json

    def plan(shape, src, *steps):
        m, lay = parse_mesh("x=3"), parse_layout(src)
        end = lay
        for s in steps:
            end = apply(s, m, shape, end)
        return plan_to_json(Plan(Problem(m, shape, "float64", lay, end), steps))
    plans = [
        plan((96, 192), "[{},{x}]", AllToAll(1, 0, ("x",))),
        plan((192, 100), "[{x},{}]", AllToAll(0, 1, ("x",))),        # dst dim padded
        plan((5, 2, 96), "[{},{},{x}]", AllToAll(2, 0, ("x",))),     # src dim held whole
        plan((4, 96), "[{},{}]", AllSlice((("x",), ())), AllToAll(0, 1, ("x",))),
    ]
    jobs = [{"plan": p, "gated": False, "donate": d} for p in plans for d in (True, False)]
    run_jobs(3, jobs, tmp_path, {"REDIST_CHUNK_BYTES": "200", "REDIST_INPLACE": "1"})


@pytest.mark.parametrize("rows,cols,block,itemsize,ok", [
    (1, 9, 1, 1, True), (9, 1, 1, 1, True),              # trivial: nothing moves
    (4, 4, 64, 4, True), (4, 4, 16, 4, False),           # blocks of 256 bytes and of 64
    (256, 256, 64, 4, True), (256, 257, 64, 4, False)])  # at most 2**16 blocks
def test_can_transpose(rows, cols, block, itemsize, ok):
    assert inplace.can_transpose(rows, cols, block, itemsize) is ok
