"""The in-place all_exchange (core/ops/all_exchange.in_place, runtime/execute.
_exchange_in_place): which exchanges are in its class, its round schedule, its figure, and
its result, in one process against the reference simulator (the MPI runs are in
tests/test_runtime.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from redist.core.model.axes import resolve
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.ops import AllExchange, source, step_working_bytes
from redist.core.ops.all_exchange import in_place, in_slots
from redist.core.plans import simulator
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import plan_to_json
from redist.core.semantics.algebra import NUMPY
from redist.core.semantics.blocks import device_coords
from redist.core.semantics.working import chunk_elements
from redist.runtime import execute, inplace
from redist.strategies import axis_refs, layouts, meshes, meshes_of, problems

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def regrouped(draw, devices: int | None = None):
    """A problem whose dst places exactly src's axes (sub-axes too), in other dims and
    orders: mostly in the in-place class; extents fit both layouts (or not, sometimes)."""
    mesh = draw(meshes(max_axes=3, max_size=4, max_devices=24) if devices is None
                else meshes_of(devices))
    rank = draw(st.integers(1, 3))
    refs = draw(axis_refs(mesh, draw(st.booleans())))
    src = draw(layouts(mesh, rank, refs))
    used = [a for dim in src.dims for a in dim]
    dims: list[list[str]] = [[] for _ in range(rank)]
    for a in draw(st.permutations(used)):
        dims[draw(st.integers(0, rank - 1))].append(a)
    dst = Layout(tuple(tuple(d) for d in dims))
    shape = []
    for d in range(rank):
        shards = [math.prod(resolve(mesh, a).size for a in lay.dims[d]) for lay in (src, dst)]
        base = math.lcm(*shards) * draw(st.integers(1, 2))
        shape.append(base if draw(st.integers(0, 9)) else base + 1)     # sometimes uneven
    try:
        return Problem(mesh, tuple(shape), draw(st.sampled_from(["float32", "int16"])),
                       src, dst)
    except Exception:                     # sub-axes that do not nest in canonical form
        assume(False)


def any_problem():
    return st.one_of(regrouped(), problems(generous=False, max_devices=24, max_rank=3,
                                           max_elements=4096, sub_axes=True),
                     problems(generous="uneven", max_devices=12, max_rank=3,
                              max_elements=4096))


def _element_sources(p: Problem) -> tuple[np.ndarray, np.ndarray]:
    """Every after element's source (device, flat local index), element by element."""
    mesh, shape = p.mesh, p.shape
    na, nb = p.dst.local_shape(mesh, shape), p.src.local_shape(mesh, shape)
    r = len(shape)
    coords = {a: v.reshape((-1,) + (1,) * r) for a, v in device_coords(mesh).items()}
    idx = [np.arange(n).reshape((1,) + tuple(n if e == d else 1 for e in range(r)))
           for d, n in enumerate(na)]
    c, i = source(AllExchange(p.dst), mesh, shape, p.src, p.dst, coords, idx, NUMPY)
    full = (mesh.num_devices,) + tuple(na)
    dev = np.zeros(full, np.int64)
    for name, size in mesh.axes:
        dev = dev * size + np.broadcast_to(c[name], full)
    flat = np.zeros(full, np.int64)
    for d in range(r):
        flat = flat * nb[d] + np.broadcast_to(i[d], full)
    return dev.reshape(-1), flat.reshape(-1)


@FAST
@given(any_problem())
def test_in_place_class_is_exactly_the_exchanges_without_fan_out(p):
    """In the class iff no padding, equal local sizes, and the element-level source map is
    a bijection onto the (device, local index) pairs before (no element sent twice)."""
    mesh, shape = p.mesh, p.shape
    nb, na = p.src.local_shape(mesh, shape), p.dst.local_shape(mesh, shape)
    even = all(math.prod(mesh.size(a) for a in lay.dims[d]) * lay.local_shape(mesh, shape)[d]
               == shape[d] for lay in (p.src, p.dst) for d in range(len(shape)))
    want = even and math.prod(nb) == math.prod(na) and not p.src.sum
    if want:
        dev, flat = _element_sources(p)
        key = np.sort(dev * math.prod(nb) + flat)
        want = np.array_equal(key, np.arange(mesh.num_devices * math.prod(nb)))
    ip = in_place(mesh, shape, p.src, p.dst)
    assert (ip is not None) == want
    lb, la = math.prod(nb), math.prod(na)
    fig = step_working_bytes(p, AllExchange(p.dst), p.src, p.dst)
    if want:
        assert fig == (lb + chunk_elements(lb)) * p.itemsize
    elif in_slots(mesh, shape, p.src, p.dst) is None:      # tests/test_exchange_slots.py
        assert fig == (lb + la) * p.itemsize


def test_the_design_cases_in_and_out_of_the_class():
    def case(mesh, shape, src, dst):
        from redist.core.model.syntax import parse_layout, parse_mesh
        m = parse_mesh(mesh)
        return in_place(m, shape, parse_layout(src), parse_layout(dst))
    assert case("x=2,y=4", (4096, 4096), "[{x},{y}]", "[{y},{x}]") is not None
    assert case("x=2,y=2,z=2", (256,) * 3, "[{x,y},{z},{}]", "[{},{z},{y,x}]") is not None
    assert case("x=4,y=2", (4096, 4096), "[{x,y},{}]", "[{y,x},{}]") is not None
    assert case("x=2,y=4", (4096, 4096), "[{x},{}]", "[{},{y}]") is None       # sizes differ
    assert case("x=2,y=2", (64, 64), "[{x},{}]", "[{y},{}]") is None          # fan-out
    assert case("x=2,y=4", (4098, 4096), "[{x},{y}]", "[{y},{x}]") is None    # padded


@FAST
@given(regrouped())
def test_rounds_are_permutations_that_move_every_piece_once(p):
    ip = in_place(p.mesh, p.shape, p.src, p.dst)
    assume(ip is not None)
    s, q, ndev = ip.rounds, ip.pieces, p.mesh.num_devices
    used = set()
    for r in range(q):
        assert sorted(s.dest[r].tolist()) == list(range(ndev))             # a permutation
        for u in range(ndev):
            v, k = int(s.dest[r, u]), int(s.slot[r, u])
            assert s.source[r, v] == u                                     # v hears from u
            used.add((u, k))
            # the piece u sends is one v needs: v's place slot[r, v] then holds it
            j = int(s.lands[v, s.slot[r, v]])
            assert (ip.src_device[v, j], ip.src_piece[v, j]) == (u, k)
        assert len({(u, int(s.slot[r, u])) for u in range(ndev)}) == ndev
    assert len(used) == ndev * q                                           # every edge once
    for u in range(ndev):
        assert sorted(s.lands[u].tolist()) == list(range(q))
        assert len(set(s.slot[:, u].tolist())) == q                        # each place once


@FAST
@given(regrouped(), st.integers(1, 40))
def test_the_in_place_algorithm_equals_the_simulator(p, chunk):
    """The runtime's local passes (piece order, place permutation, inverse order) and the
    rounds, with each round's messages as copies between the devices' buffers."""
    ip = in_place(p.mesh, p.shape, p.src, p.dst)
    assume(ip is not None)
    x = np.arange(math.prod(p.shape), dtype=np.int64).reshape(p.shape)
    plan = Plan(p, (AllExchange(p.dst),))
    want = simulator.final_blocks(plan, x)
    ndev = p.mesh.num_devices
    bufs = [simulator.shard(p.mesh, p.shape, p.src, x, u).copy().reshape(-1)
            for u in range(ndev)]
    nb, na = p.src.local_shape(p.mesh, p.shape), p.dst.local_shape(p.mesh, p.shape)
    scratch = np.empty(chunk, np.int64)
    size = math.prod(ip.piece)
    for b in bufs:
        execute._piece_order(b, nb, ip.before, ip.piece, scratch, forward=True)
    s = ip.rounds
    for r in range(ip.pieces):
        sent = [bufs[u][s.slot[r, u] * size:(s.slot[r, u] + 1) * size].copy()
                for u in range(ndev)]
        for u in range(ndev):
            v = int(s.dest[r, u])
            bufs[v][s.slot[r, v] * size:(s.slot[r, v] + 1) * size] = sent[u]
    for u, b in enumerate(bufs):
        inplace.permute_blocks(b, np.argsort(s.lands[u]).tolist(), size, scratch)
        execute._piece_order(b, na, ip.after, ip.piece, scratch, forward=False)
        assert np.array_equal(b.reshape(na), want[u])


def test_large_meshes_run_out_of_place_by_the_same_rule():
    mesh = Mesh((("x", 512), ("y", 256)))
    p = Problem(mesh, (512 * 256, 512 * 256), "float32", Layout((("x",), ("y",))),
                Layout((("y",), ("x",))))
    assert in_place(mesh, p.shape, p.src, p.dst) is None
    assert step_working_bytes(p, AllExchange(p.dst), p.src, p.dst) == 2 * p.local_bytes(p.src)


@pytest.mark.parametrize("devices,env", [(8, {}), (6, {"REDIST_CHUNK_BYTES": "40"})])
def test_exchanges_on_mpi_ranks_equal_the_simulator(devices, env, tmp_path_factory):
    """One launch per example, two examples (the first is hypothesis's simplest): 20
    exchanges each, most in the in-place class (these through the verifying entry point:
    their memory claim holds), the others out of place."""
    from mpi_util import mpirun
    inside = []
    others = meshes_of(devices).flatmap(lambda m: problems(
        generous="uneven", mesh=m, max_rank=3, max_elements=4096))

    @settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(regrouped(devices), min_size=16, max_size=16),
           st.lists(others, min_size=4, max_size=4),
           st.lists(st.booleans(), min_size=20, max_size=20))
    def check(mine, theirs, donate):
        jobs = []
        for p, d in zip(mine + theirs, donate, strict=True):
            ip = in_place(p.mesh, p.shape, p.src, p.dst)
            inside.append(ip is not None)
            jobs.append({"plan": plan_to_json(Plan(p, (AllExchange(p.dst),))),
                         "gated": ip is not None, "donate": d})
        f = tmp_path_factory.mktemp("mpi") / "jobs.json"
        f.write_text(json.dumps(jobs))
        r = mpirun(devices, "differential.py", str(f), env=env, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        assert len(rows) == len(jobs) and all(row["ok"] for row in rows), rows
    check()
    assert sum(inside) >= 8 and not all(inside)       # both paths ran
