"""Cheap checks of the runtime's pairing and offset arithmetic: who sends to whom in a
permute, the pairwise schedule of the in-place all-to-all, the in-place block transpose
(through a scratch of any size), compaction and expansion, and whole steps of the runtime
(slice, permute, in-place all-to-all, in-place gather) executed by one thread per rank
over an in-process stand-in for MPI (rendezvous Isend/Irecv, MPI_IN_PLACE Allgather(v)
read through MPI's own datatypes; a deadlock fails at once), against the reference
simulator — on odd and prime rank counts and uneven chunks; one short mpiexec run."""

from __future__ import annotations

import itertools
import math
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from mpi4py import MPI

from redist.core.errors import TypingError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.ops import AllGather, AllPermute, AllSlice, AllToAll, apply, step_volume
from redist.core.ops.common import mixed_radix
from redist.core.plans import simulator
from redist.core.plans.plan import Plan
from redist.core.semantics.blocks import block_ids, permute_sources
from redist.core.synthesis.exhaustive import same_blocks
from redist.runtime import alloc, execute, inplace, waiting
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

def _odd_mesh_and_layout(draw, max_devices: int, max_rank: int) -> tuple[Mesh, Layout]:
    """A mesh of 1-3 axes of odd or prime sizes, and a random layout of it."""
    sizes = draw(st.lists(ODD_SIZES, min_size=1, max_size=3)
                 .filter(lambda s: math.prod(s) <= max_devices))
    mesh = Mesh(tuple(zip("xyz", sizes, strict=False)))
    rank = draw(st.integers(1, max_rank))
    dims = [[] for _ in range(rank)]
    for a in draw(st.permutations(mesh.names)):
        d = draw(st.integers(-1, rank - 1))
        if d >= 0:
            dims[d].append(a)
    return mesh, Layout(tuple(tuple(d) for d in dims))


@st.composite
def permutes(draw):
    mesh, before = _odd_mesh_and_layout(draw, max_devices=60, max_rank=2)
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
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 5), st.integers(1, 40),
       st.sampled_from(["i4", "f8"]))
def test_transpose_blocks_is_a_block_transpose(rows, cols, block, chunk, dt):
    """Every R, C, B and every scratch size: tiles through the scratch, tiles permuted by
    cycles, remainder rows merged in, lanes of blocks larger than the scratch."""
    x = np.arange(rows * cols * block).astype(dt)
    want = x.reshape(rows, cols, block).transpose(1, 0, 2).reshape(-1).copy()
    scratch = np.full(chunk, -1, dtype=dt)
    inplace.transpose_blocks(x, rows, cols, block, scratch)
    assert np.array_equal(x, want)


@pytest.mark.parametrize("rows,cols,block,chunk", [
    (1, 5, 64, 16), (5, 1, 64, 16), (2, 3, 64, 16), (7, 5, 32, 8), (256, 256, 1, 1),
    (300, 7, 3, 50), (7, 300, 3, 50), (40, 3, 2, 7), (64, 64, 4, 2), (64, 64, 4, 4096)])
def test_transpose_allocates_nothing_beyond_its_scratch(rows, cols, block, chunk):
    """The working-memory figure counts the block and one chunk: a transpose allocates no
    buffer besides the caller's scratch (its flags live in the scratch's tail, or, in a
    scratch too small for them, cycles are found by walking them). tracemalloc sees only
    NumPy's view headers."""
    import tracemalloc
    x = np.arange(rows * cols * block, dtype="i4")
    want = x.reshape(rows, cols, block).transpose(1, 0, 2).reshape(-1).copy()
    scratch = np.empty(chunk, dtype="i4")
    inplace.transpose_blocks(x.copy(), rows, cols, block, scratch)   # first-call caches
    tracemalloc.start()
    try:
        inplace.transpose_blocks(x, rows, cols, block, scratch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(x, want)
    assert peak <= 1536, peak


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


@FAST
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.data())
def test_compact_box_keeps_a_box_at_the_front(shape, data):
    """Any box of any shape (the slice's crop of every dim at once): the box's elements in
    C order at the front, and nothing written past them."""
    lo = [data.draw(st.integers(0, n)) for n in shape]
    keep = [data.draw(st.integers(0, n - a)) for n, a in zip(shape, lo, strict=True)]
    x = np.arange(int(np.prod(shape)), dtype=np.int64)
    want = x.reshape(shape)[tuple(slice(a, a + k) for a, k in zip(lo, keep, strict=True))]
    want = want.reshape(-1).copy()
    tail = x[want.size:].copy()
    inplace.compact_box(x, tuple(shape), lo, keep)
    assert np.array_equal(x[:want.size], want)
    assert np.array_equal(x[want.size:], tail)


@FAST
@given(st.integers(1, 7), st.integers(0, 6), st.data())
def test_expand_spreads_rows_to_their_stride(outer, row, data):
    """The inverse of compact (the gather's slot placement, the pads): row a of the
    front moves to a*stride + offset; the gaps keep what they held except where rows
    passed."""
    stride = data.draw(st.integers(max(row, 1), row + 5))
    offset = data.draw(st.integers(0, stride - row))
    n = outer * stride
    x = np.arange(n, dtype=np.int64) + 1000
    front = x[:outer * row].copy()
    inplace.expand(x, outer, row, stride, offset)
    got = x.reshape(outer, stride)[:, offset:offset + row]
    assert np.array_equal(got, front.reshape(outer, row))
    if row:                                    # nothing written past the last row
        assert np.array_equal(x[(outer - 1) * stride + offset + row:],
                              np.arange(n, dtype=np.int64)[(outer - 1) * stride + offset
                                                           + row:] + 1000)


# --- whole runtime steps, one thread per rank, MPI in process -----------------------------

class Deadlock(Exception):
    pass


WAIT_LIMIT = 20.0           # seconds: a stand-in that waits longer fails (never hangs)


class _Req:
    def __init__(self, world: _World, key: tuple, buf: np.ndarray, me: int, send: bool):
        self.world, self.key, self.buf, self.me, self.send = world, key, buf, me, send
        self.done = False
        self.unpack = None

    def Wait(self) -> None:
        self.world.wait([self], self.me)


class _World:
    """Point-to-point between ranks with rendezvous semantics: a send completes only when
    a matching receive takes its bytes (copied then, from the sender's live buffer, so a
    sender that reuses its buffer too early is caught). Matching happens when the second
    of the two is posted, so only waits block; when every rank still running waits on a
    request nobody can complete, that is a deadlock, raised at once on every rank."""

    def __init__(self, ranks: int) -> None:
        self.cond = threading.Condition()
        self.sends: dict[tuple, list[_Req]] = {}
        self.recvs: dict[tuple, list[_Req]] = {}
        self.blocked: dict[int, list[_Req]] = {}
        self.alive = ranks
        self.dead = False
        self.sent = 0                          # bytes of the messages matched so far

    def post(self, req: _Req) -> _Req:
        with self.cond:
            mine, other = (self.sends, self.recvs) if req.send else (self.recvs, self.sends)
            if other.get(req.key):
                peer = other[req.key].pop(0)
                s, r = (req, peer) if req.send else (peer, req)
                assert s.buf.dtype == r.buf.dtype, "peers disagree on the type"
                assert s.buf.size <= r.buf.size, f"message truncated on {req.key}"
                r.buf[:s.buf.size] = s.buf
                self.sent += s.buf.nbytes
                if r.unpack is not None:           # a derived receive type
                    r.unpack()
                s.done = r.done = True
                self.cond.notify_all()
            else:
                mine.setdefault(req.key, []).append(req)
        return req

    def wait(self, reqs: list[_Req], me: int) -> None:
        end = time.monotonic() + WAIT_LIMIT
        with self.cond:
            try:
                self.blocked[me] = reqs
                while not all(q.done for q in reqs):
                    # stuck: every rank still running waits, none of them can go on
                    stuck = len(self.blocked) == self.alive and not any(
                        all(q.done for q in w) for w in self.blocked.values())
                    if self.dead or stuck:
                        self.dead = True
                        self.cond.notify_all()
                        todo = [q.key for q in reqs if not q.done]
                        raise Deadlock(f"rank {me} waits for {todo} forever")
                    if not self.cond.wait(max(0.0, end - time.monotonic())):
                        self.dead = True
                        raise Deadlock(f"rank {me}: no progress in {WAIT_LIMIT} s")
            finally:
                del self.blocked[me]

    def finish(self) -> None:
        with self.cond:
            self.alive -= 1
            self.cond.notify_all()


_SELF_COPY = threading.Lock()


def _region(buf: np.ndarray, disp: int, count: int, dtype) -> np.ndarray:
    """The bytes `count` items of an MPI datatype describe at `disp` extents into buf,
    packed by MPI itself (a copy to self on COMM_SELF), so derived types are read as MPI
    reads them."""
    lb, ext = dtype.Get_extent()
    out = np.empty(dtype.Get_size() * count, dtype=np.uint8)
    src = buf.reshape(-1).view(np.uint8)[disp * ext:]
    with _SELF_COPY:
        MPI.COMM_SELF.Sendrecv([src, count, dtype], 0, 0, [out, out.size, MPI.BYTE], 0, 0)
    return out


def _store(buf: np.ndarray, disp: int, count: int, dtype, data: np.ndarray) -> None:
    lb, ext = dtype.Get_extent()
    dst = buf.reshape(-1).view(np.uint8)[disp * ext:]
    with _SELF_COPY:
        MPI.COMM_SELF.Sendrecv([data, data.size, MPI.BYTE], 0, 0, [dst, count, dtype], 0, 0)


class _Comm:
    """The part of an MPI communicator the permute, the in-place all-to-all and the
    in-place gather use: Isend, Irecv (basic or derived types; requests with Wait, and
    MPI.Request.Waitall/Testall through `_MPIShim`), Allgather(v) with MPI_IN_PLACE."""

    def __init__(self, world: _World, members: list[int], me: int) -> None:
        self.world, self.members, self.me = world, members, me
        self.collectives = 0

    def Get_rank(self) -> int:
        return self.me

    def Get_size(self) -> int:
        return len(self.members)

    def _buf(self, msg) -> np.ndarray:
        arr, t = msg
        assert arr.flags.c_contiguous and t.Get_size() == arr.itemsize, "bad message"
        return arr.reshape(-1)

    def Isend(self, msg, dest: int, tag: int) -> _Req:
        me = self.members[self.me]
        key = (tuple(self.members), me, self.members[dest], tag)
        # [buf, count, derived type]: packed as MPI reads it
        buf = _region(msg[0], 0, msg[1], msg[2]) if len(msg) == 3 else self._buf(msg)
        return self.world.post(_Req(self.world, key, buf, me, True))

    def Irecv(self, msg, source: int, tag: int) -> _Req:
        me = self.members[self.me]
        key = (tuple(self.members), self.members[source], me, tag)
        if len(msg) != 3:
            return self.world.post(_Req(self.world, key, self._buf(msg), me, False))
        arr, count, t = msg                   # a derived type: unpacked as MPI writes it
        req = _Req(self.world, key, np.empty(t.Get_size() * count, dtype=np.uint8), me, False)
        req.unpack = lambda: _store(arr, 0, count, t, req.buf)
        return self.world.post(req)

    def Allgather(self, inplace, msg) -> None:
        buf, count, t = msg
        self.Allgatherv(inplace, [buf, [count] * len(self.members),
                                  [count * k for k in range(len(self.members))], t])

    def Allgatherv(self, inplace, msg) -> None:
        assert inplace is _MPIShim.IN_PLACE, "the gather runs in place"
        buf, counts, displs, t = msg
        g, me = len(self.members), self.me
        self.collectives += 1
        tag = ("gather", self.collectives)
        mine = _region(buf, displs[me], counts[me], t)
        got = {k: np.empty_like(_region(buf, displs[k], counts[k], t))
               for k in range(g) if k != me}
        reqs = [self.Irecv([got[k], MPI.BYTE], k, tag) for k in got]
        reqs += [self.Isend([mine, MPI.BYTE], k, tag) for k in got]
        self.world.wait(reqs, self.members[me])
        for k, data in got.items():
            _store(buf, displs[k], counts[k], t, data)


_COLLECTIVE = _Comm.Allgatherv


class _MPIShim:
    """execute's `MPI` while a step runs on threads: Waitall and IN_PLACE on the stand-in,
    the rest (datatypes) the real mpi4py."""
    IN_PLACE = object()

    class Request:
        @staticmethod
        def Waitall(reqs: list[_Req]) -> None:
            if reqs:
                reqs[0].world.wait(reqs, reqs[0].me)

        @staticmethod
        def Testall(reqs: list[_Req]) -> bool:
            # blocks until done, so that the stand-in still sees a deadlock as one
            _MPIShim.Request.Waitall(reqs)
            return True

    def __getattr__(self, name: str):
        return getattr(MPI, name)


class _MeshComm:
    naps = False                               # threads: waits are the stand-in's

    def __init__(self, world: _World, mesh: Mesh, rank: int) -> None:
        self.world, self.mesh, self.rank = world, mesh, rank
        self.coords = mesh.coords(rank)
        self.cart = _Comm(world, list(range(mesh.num_devices)), rank)
        self._groups: dict = {}

    def group(self, axes: tuple[str, ...]) -> _Comm:
        if axes not in self._groups:          # cached, as groups.MeshComm does
            mine = {a: v for a, v in self.coords.items() if a not in axes}
            members = [d for d in range(self.mesh.num_devices)
                       if all(self.mesh.coords(d)[a] == v for a, v in mine.items())]
            members.sort(key=lambda d: mixed_radix(self.mesh, axes, self.mesh.coords(d)))
            self._groups[axes] = _Comm(self.world, members, members.index(self.rank))
        return self._groups[axes]


def on_threads(world: _World, ranks: int, body) -> list:
    """body(r) on one thread per rank over the stand-in; its results, by rank. A rank
    that fails or hangs fails the test in the main thread."""
    out: list = [None] * ranks
    errors: list = []

    def rank_main(r: int) -> None:
        try:
            out[r] = body(r)
        except BaseException as e:       # surfaced in the main thread
            errors.append((r, e))
        finally:
            world.finish()
    threads = [threading.Thread(target=rank_main, args=(r,), daemon=True)
               for r in range(ranks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_LIMIT + 10)
    assert not any(t.is_alive() for t in threads), "a rank hangs"
    assert not errors, errors[0]
    return out


def run_threaded(plan: Plan, stack: np.ndarray, k: int, own: bool,
                 sent: list | None = None) -> list[np.ndarray]:
    """Step k of `plan` on every rank at once, from the padded blocks in `stack`; the
    bytes its messages carried are appended to `sent`."""
    p = plan.problem
    lays = plan.layouts()
    world = _World(p.mesh.num_devices)

    def body(r: int) -> np.ndarray:
        held = Held(np.ascontiguousarray(stack[r]).copy(), own)
        return execute.run_step(plan.steps[k], _MeshComm(world, p.mesh, r), p.shape, lays[k],
                                lays[k + 1], held, MemoryTracker())
    out = on_threads(world, p.mesh.num_devices, body)
    if sent is not None:
        sent.append(world.sent)
    return out


def check_step_against_simulator(plan: Plan, own: bool = True) -> None:
    p = plan.problem
    x = np.arange(math.prod(p.shape), dtype=np.int64).reshape(p.shape)
    stacks = simulator.run(plan, x)
    lays = plan.layouts()
    for k in range(len(plan.steps)):
        sent: list[int] = []
        got = run_threaded(plan, stacks[k], k, own, sent)
        if plan.steps[k].op in ("all_permute", "all_to_all", "all_gather"):
            # what goes on the wire is the volume figure: valid elements only (issue 18)
            assert sent[0] // stacks[k].itemsize == step_volume(
                p, plan.steps[k], lays[k], lays[k + 1]) // p.itemsize, plan.steps[k]
        valid = simulator.valid_mask(p.mesh, p.shape, lays[k + 1])
        for r, block in enumerate(got):
            assert block.shape == stacks[k + 1][r].shape, (k, r)
            assert block.flags.c_contiguous, (k, r)     # every buffer in a plan (module doc)
            assert np.array_equal(block[valid[r]], stacks[k + 1][r][valid[r]]), \
                (k, r, plan.steps[k])


@pytest.fixture
def tiny_chunks(monkeypatch):
    """The in-place paths, in chunks of a few elements (so chunk offsets are crossed),
    on the in-process stand-in for MPI."""
    monkeypatch.setattr(execute, "CHUNK_CAP_BYTES", 24)
    monkeypatch.setattr(execute, "INPLACE_ALL_TO_ALL", True)
    shim = _MPIShim()          # the steps' calls and their waits (waiting.py)
    monkeypatch.setattr(execute, "MPI", shim)
    monkeypatch.setattr(waiting, "MPI", shim)
    return monkeypatch


@st.composite
def p2p_steps(draw, kind: str):
    """One step of this kind on a mesh of odd/prime sizes, with even or uneven
    extents."""
    mesh, lay = _odd_mesh_and_layout(draw, max_devices=15, max_rank=3)
    rank = len(lay.dims)
    shape = tuple(draw(st.integers(1, 3 * max(2, lay.shards(mesh, d)))) for d in range(rank))
    if draw(st.booleans()):            # even: every extent a multiple of the device count
        shape = tuple(mesh.num_devices * draw(st.integers(1, 2)) for _ in range(rank))
    options: dict[str, list] = {"all_to_all": [], "all_permute": [], "all_slice": [],
                                "all_gather": []}
    for s in range(rank):
        for j in range(len(lay.dims[s])):
            options["all_to_all"] += [AllToAll(s, t, lay.dims[s][j:])
                                      for t in range(rank) if t != s]
        for a in (a for a in mesh.names if a not in lay.used_axes()):
            options["all_slice"].append(AllSlice(tuple((a,) if e == s else ()
                                                       for e in range(rank))))
    # gathers of one dim's suffix, and of suffixes of every dim at once (Allgatherv)
    for cut in itertools.product(*(range(len(d) + 1) for d in lay.dims)):
        if any(cut) and (sum(map(bool, cut)) == 1 or all(cut)):
            options["all_gather"].append(AllGather(tuple(
                d[len(d) - c:] if c else () for d, c in zip(lay.dims, cut, strict=True))))
    options["all_permute"] = [AllPermute(t) for t in
                              itertools.islice(same_blocks(mesh, lay), 30) if t != lay]
    good: dict[str, list] = {}
    for op, steps in options.items():
        for step in steps:
            try:
                after = apply(step, mesh, shape, lay)
            except TypingError:
                continue
            good.setdefault(op, []).append((step, after))
    assume(kind in good)
    step, after = draw(st.sampled_from(good[kind]))
    return Plan(Problem(mesh, shape, "int32", lay, after), (step,))


@pytest.mark.parametrize("kind", ["all_to_all", "all_permute", "all_slice", "all_gather"])
def test_runtime_steps_equal_the_simulator_on_odd_meshes_and_uneven_chunks(tiny_chunks,
                                                                           kind):
    @settings(FAST, max_examples=30)
    @given(p2p_steps(kind), st.sampled_from([8, 24, 56]), st.booleans(), st.booleans())
    def check(plan, chunk_bytes, own, naps):
        tiny_chunks.setattr(execute, "CHUNK_CAP_BYTES", chunk_bytes)
        tiny_chunks.setattr(_MeshComm, "naps", naps)    # ranks sharing cores or not
        event(f"{plan.steps[0].op} on {plan.problem.mesh.num_devices} ranks")
        check_step_against_simulator(plan, own)
    check()


@pytest.mark.parametrize("mesh,shape,src,step", [
    ("x=3", (7, 5), "[{x},{}]", AllToAll(0, 1, ("x",))),          # uneven both sides
    ("x=5", (10, 3), "[{x},{}]", AllToAll(0, 1, ("x",))),         # dst dim held whole
    ("x=7", (14, 14), "[{},{x}]", AllToAll(1, 0, ("x",))),
    ("x=3,y=2", (6, 4, 5), "[{x},{y},{}]", AllToAll(1, 2, ("y",))),
    ("x=3,y=5", (15, 4), "[{x,y},{}]", AllToAll(0, 1, ("x", "y"))),
    ("x=6", (12, 30), "[{x},{}]", AllToAll(0, 1, ("x",))),       # blocks of many chunks
    ("x=3,y=3", (9, 2), "[{x},{}]", AllPermute(Layout((("y",), ())))),
    ("x=5,y=3", (15, 3), "[{x,y},{}]", AllPermute(Layout((("y", "x"), ())))),
    ("x=3,y=2", (7, 5), "[{x,y},{}]", AllPermute(Layout((("y", "x"), ())))),  # uneven
    ("x=3", (3, 2), "[{},{}]", AllSlice((("x",), ()))),
    ("x=5", (7, 3), "[{x},{}]", AllGather((("x",), ()))),          # padded, trimmed
    ("x=3,y=2", (6, 5), "[{x},{y}]", AllGather((("x",), ("y",)))),  # two dims: Allgatherv
    ("x=2,y=3", (4, 9, 2), "[{x},{y},{}]", AllGather(((), ("y",), ()))),
])
def test_runtime_steps_by_hand(tiny_chunks, mesh, shape, src, step):
    from redist.core.model.syntax import parse_layout, parse_mesh
    m = parse_mesh(mesh)
    lay = parse_layout(src)
    p = Problem(m, shape, "float32", lay, apply(step, m, shape, lay))
    check_step_against_simulator(Plan(p, (step,)))


@pytest.mark.parametrize("mode,runnable,want", [
    ("spin", 99, False), ("nap", 0, True), (None, 1, False), (None, 2, False),
    (None, 99, True)])
def test_waits_nap_only_where_asked_or_cores_are_contended(monkeypatch, mode, runnable,
                                                           want):
    """REDIST_WAIT picks; auto (unset) naps only where a node runs more ranks than the
    cores they may use, or other programs keep more than one thread beyond them runnable:
    one rank on COMM_SELF on an otherwise idle machine never does."""
    import os

    from redist.runtime import groups
    monkeypatch.setattr(groups, "runnable_threads", lambda: runnable)
    if mode is None:
        monkeypatch.delenv("REDIST_WAIT", raising=False)
    else:
        monkeypatch.setenv("REDIST_WAIT", mode)
    cores = len(os.sched_getaffinity(0))
    if mode is None and runnable == 2:
        runnable = cores + 1                 # one thread beyond the cores: not contended
        monkeypatch.setattr(groups, "runnable_threads", lambda: runnable)
    assert groups.naps(MPI.COMM_SELF) is want


def test_a_bad_wait_mode_is_a_one_line_error(monkeypatch):
    from redist.core.errors import RedistError
    from redist.runtime.groups import naps
    monkeypatch.setenv("REDIST_WAIT", "sometimes")
    with pytest.raises(RedistError, match="REDIST_WAIT='sometimes': expected one of"):
        naps(MPI.COMM_SELF)


def test_the_stand_in_reports_a_deadlock_instead_of_hanging(tiny_chunks):
    """An all-to-all whose partners are not mutual (each rank swaps with the next, which
    swaps with the one after) fails loudly and at once."""
    from redist.core.model.syntax import parse_layout, parse_mesh
    m, lay = parse_mesh("x=3"), parse_layout("[{x},{}]")
    step = AllToAll(0, 1, ("x",))
    plan = Plan(Problem(m, (9, 3), "float32", lay, apply(step, m, (9, 3), lay)), (step,))
    tiny_chunks.setattr(execute, "pair_rounds", lambda g, me: [(me + 1) % g])
    with pytest.raises(AssertionError, match="Deadlock"):
        check_step_against_simulator(plan)


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
        plan((100, 7), "[{x},{}]", AllGather((("x",), ()))),           # padded, trimmed
        plan((6, 50), "[{},{x}]", AllGather(((), ("x",)))),
    ]
    jobs = [{"plan": p, "gated": False, "donate": d} for p in plans for d in (True, False)]
    run_jobs(3, jobs, tmp_path, {"REDIST_CHUNK_BYTES": "200", "REDIST_INPLACE": "1"})


@pytest.mark.parametrize("mesh,shape,src,step", [
    ("x=5", (10, 3), "[{x},{}]", AllGather((("x",), ()))),
    ("x=2,y=4", (16,), "[{x,y}]", AllGather((("x", "y"),))),
    ("x=3,y=2", (6, 4), "[{x,y},{}]", AllGather((("y",), ()))),     # a suffix of dim 0
    ("x=2,y=3", (1, 6, 4), "[{},{x,y},{}]", AllGather(((), ("x", "y"), ()))),  # after 1
])
def test_gathers_of_contiguous_slots_go_point_to_point(tiny_chunks, mesh, shape, src, step):
    """Where ranks share cores (naps) and every member's slot is one contiguous range,
    the gather posts its messages at once rather than MPI's Allgather (a ring of
    lock-step stages); the result is the simulator's and the bytes on the wire are the
    volume figure (checked inside). With a core per rank it is MPI's collective."""
    from redist.core.model.syntax import parse_layout, parse_mesh

    def no_collective(self, inplace, msg):
        raise AssertionError("a contiguous gather called MPI's Allgather(v)")
    m = parse_mesh(mesh)
    lay = parse_layout(src)
    plan = Plan(Problem(m, shape, "float32", lay, apply(step, m, shape, lay)), (step,))
    calls = []
    tiny_chunks.setattr(_Comm, "Allgatherv", lambda self, *a: calls.append(1) or
                        _COLLECTIVE(self, *a))
    check_step_against_simulator(plan)               # spinning waits: the collective
    assert calls
    tiny_chunks.setattr(_MeshComm, "naps", True)
    tiny_chunks.setattr(_Comm, "Allgatherv", no_collective)
    check_step_against_simulator(plan)


# --- the gather's grown buffer: not zeroed where every element is written -------------

def test_gathers_write_every_element_they_do_not_zero(tiny_chunks):
    """An even gather grows its buffer without zeroing the new slots (execute._resize
    with zero=False: NumPy's fill touched every new page before the data came). Here
    whatever the grown buffer holds there is a sentinel: the gathered blocks still equal the
    simulator's, so each such element is written (own slot or received). Uneven gathers
    ask for zeros (their padding is not all written)."""
    real = execute._resize
    asked: list[bool] = []

    def poisoned(box, n, mem, zero=True):
        old = box[-1].size
        out = real(box, n, mem, zero)
        asked.append(zero)
        if not zero:
            out[old:] = -7
        return out
    tiny_chunks.setattr(execute, "_resize", poisoned)

    @settings(FAST, max_examples=30)
    @given(p2p_steps("all_gather"), st.booleans())
    def check(plan, naps):
        tiny_chunks.setattr(_MeshComm, "naps", naps)
        p = plan.problem
        lay = plan.layouts()[0]
        even = all(d == p.mesh.num_devices * (d // p.mesh.num_devices) and
                   lay.valid_shape(p.mesh, p.shape, 0) == lay.local_shape(p.mesh, p.shape)
                   for d in p.shape)
        asked.clear()
        check_step_against_simulator(plan, own=True)
        assert asked, "an owned block grows in place"
        if even:
            assert not any(asked)
        event("even" if even else "uneven")
    check()


@pytest.mark.parametrize("zero", [True, False])
@pytest.mark.parametrize("runtimes", [True, False])
def test_resize_keeps_the_start_and_zeroes_only_when_asked(zero, runtimes):
    """Grown then shrunk then grown again, the start is kept and new elements are zero when
    asked (also where a shrink left old bytes in the mapping's last page), counted once at
    the size it has. The runtime's own buffer stays its mapping; a NumPy buffer handed over
    is copied into one when it grows."""
    mem = MemoryTracker()
    start = np.arange(1000, dtype=np.float32) + 1
    if runtimes:
        box = [mem.empty((1000,), np.float32)]
        box[0][...] = start
    else:
        box = [mem.hold(start.copy())]
    out = execute._resize(box, 3000, mem, zero)
    assert out.size == 3000 and alloc.mapping_of(out) is not None
    assert np.array_equal(out[:1000], start)
    if zero:
        assert not out[1000:].any()
    assert mem.live == out.nbytes                 # counted once, at its new size
    out[...] = 7
    box = [out]
    del out
    out = execute._resize(box, 500, mem, zero)    # the rest of its last page keeps 7s
    assert mem.live == out.nbytes and np.array_equal(out, np.full(500, 7, np.float32))
    box = [out]
    del out
    out = execute._resize(box, 3000, mem, zero)
    assert np.array_equal(out[:500], np.full(500, 7, np.float32))
    if zero:
        assert not out[500:].any()
    assert mem.live == out.nbytes


def test_a_buffer_someone_else_still_sees_is_copied_not_moved():
    """A view of the buffer alive elsewhere: growing it in place would move its memory
    under that view, so the elements are copied (old and new counted together)."""
    mem = MemoryTracker()
    box = [mem.empty((1000,), np.int32)]
    box[0][...] = np.arange(1000)
    seen = box[0][10:20]
    out = execute._resize(box, 2000, mem)
    assert np.array_equal(seen, np.arange(10, 20)) and np.array_equal(out[:1000],
                                                                      np.arange(1000))
    assert alloc.mapping_of(out) is not alloc.mapping_of(seen.base)
    assert mem.peak == 4000 + 8000 and mem.live == 8000


def _vm_flags(addr: int) -> list[str]:
    """The VmFlags of the mapping holding `addr` (Linux /proc/self/smaps)."""
    flags, inside = [], False
    with open("/proc/self/smaps", encoding="ascii") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= addr < hi
            elif inside and head == "VmFlags:":
                flags = line.split()[1:]
    return flags


def _thp_available() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="ascii") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not alloc.MAPPED or not _thp_available() or not alloc.numpy_huge_pages(),
                    reason="huge pages as NumPy asks: Linux")
def test_the_gathers_new_slots_ask_for_huge_pages_as_numpy_does():
    """A buffer grown past NumPy's huge-page size (4 MiB) is advised like NumPy's own large
    buffers (transparent huge pages), the new part included, before anything touches it."""
    mem = MemoryTracker()
    box = [mem.empty((1 << 18,), np.float32)]     # 1 MiB: not advised yet
    out = execute._resize(box, 3 << 20, mem, zero=False)
    assert "hg" in _vm_flags(out.ctypes.data + out.nbytes * 2 // 3)   # inside the new part
