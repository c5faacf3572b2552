"""Consecutive all-to-alls between the same two dims, run as one in-place all-to-all over
the union of their groups (runtime/fuse.py): which runs fuse, the block permutation, and
whole plans executed by one thread per rank on the in-process MPI stand-in against the
reference simulator — the result, the exact bytes on the wire (the fused figure, less
than the sum of the steps' volume figures) and the memory (one block and one chunk,
within every fused step's proved working bytes); one short mpiexec run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from test_runtime_pairing import FAST, _MeshComm, _MPIShim, _World, on_threads

from redist.core.errors import TypingError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.ops import AllToAll, apply, step_volume, step_working_bytes
from redist.core.ops.common import received_bytes
from redist.core.plans import simulator
from redist.core.plans.plan import Plan
from redist.runtime import api, execute, fuse, inplace, waiting


def _plan(mesh: str, shape, src: str, *steps) -> Plan:
    m, lay = parse_mesh(mesh), parse_layout(src)
    end = lay
    for s in steps:
        end = apply(s, m, shape, end)
    return Plan(Problem(m, tuple(shape), "int32", lay, end), steps)


SWAP_3D = _plan("x=2,y=2,z=2", (8, 8, 8), "[{x,y},{z},{}]",
                AllToAll(0, 2, ("y",)), AllToAll(0, 2, ("x",)))


# --- which runs fuse ---------------------------------------------------------------------

def test_swap_3d_fuses_its_two_all_to_alls_into_one_over_both_axes():
    [run] = fuse.fused_runs(SWAP_3D)
    assert (run.start, run.stop, run.src_dim, run.dst_dim) == (0, 2, 0, 2)
    assert run.group == ("x", "y") and run.pieces == ("y", "x")
    # 8 devices keep 1 of 4 pieces of a 64-int block: 3 x 16 x 4 bytes each
    assert fuse.wire_bytes(SWAP_3D, run) == 8 * 3 * 16 * 4
    lays = SWAP_3D.layouts()
    figures = sum(step_volume(SWAP_3D.problem, s, lays[k], lays[k + 1])
                  for k, s in enumerate(SWAP_3D.steps))
    assert figures == 8 * 2 * 32 * 4                    # two steps of g=2: half a block each
    assert fuse.wire_bytes(SWAP_3D, run) == received_bytes(SWAP_3D.problem, lays[0], lays[2])


def test_runs_need_the_same_dims_no_padding_and_the_switch_on(monkeypatch):
    three = _plan("x=2,y=2,z=2", (8, 8), "[{x,y,z},{}]", AllToAll(0, 1, ("z",)),
                  AllToAll(0, 1, ("y",)), AllToAll(0, 1, ("x",)))
    assert [(r.start, r.stop, r.group, r.pieces) for r in fuse.fused_runs(three)] == \
        [(0, 3, ("x", "y", "z"), ("z", "y", "x"))]
    other_dims = _plan("x=2,y=2", (8, 8, 8), "[{x,y},{},{}]", AllToAll(0, 2, ("y",)),
                       AllToAll(0, 1, ("x",)))
    assert fuse.fused_runs(other_dims) == []
    back = _plan("x=2,y=2", (8, 8), "[{x,y},{}]", AllToAll(0, 1, ("y",)),
                 AllToAll(0, 1, ("x",)), AllToAll(1, 0, ("x",)))
    assert [(r.start, r.stop) for r in fuse.fused_runs(back)] == [(0, 2)]
    uneven = _plan("x=2,y=3", (6, 5), "[{x,y},{}]", AllToAll(0, 1, ("y",)),
                   AllToAll(0, 1, ("x",)))
    assert fuse.fused_runs(uneven) == []                  # dim 1 padded after the run
    assert fuse.fused_runs(SWAP_3D, inplace=False) == []  # REDIST_INPLACE=0's path
    monkeypatch.setattr(fuse, "FUSE_ALL_TO_ALLS", False)  # REDIST_FUSE=0
    assert fuse.fused_runs(SWAP_3D) == []


@FAST
@given(st.permutations(range(6)), st.integers(0, 5), st.integers(1, 40))
def test_permute_blocks_is_a_block_permutation(perm, block, chunk):
    x = np.arange(6 * block + 3, dtype=np.int64)         # 3 trailing elements not touched
    want = x.copy()
    want[:6 * block] = x[:6 * block].reshape(6, block)[list(perm)].reshape(-1)
    inplace.permute_blocks(x, perm, block, np.full(chunk, -1, dtype=np.int64))
    assert np.array_equal(x, want)


# --- whole plans on threads ----------------------------------------------------------------

def _run_plan_threaded(plan: Plan, donate: bool) -> tuple[list, list, int]:
    """api.execute on every rank at once over the stand-in: (blocks, peaks, bytes sent)."""
    p = plan.problem
    x = np.arange(math.prod(p.shape), dtype=np.int32).reshape(p.shape)
    world = _World(p.mesh.num_devices)

    def body(r: int) -> tuple:
        local = simulator.shard(p.mesh, p.shape, p.src, x, r).copy()
        return api.execute([local], plan, _MeshComm(world, p.mesh, r), donate)
    out, peaks = zip(*on_threads(world, p.mesh.num_devices, body), strict=True)
    want = simulator.final_blocks(plan, x)
    for r in range(len(out)):
        assert np.array_equal(out[r], want[r]), (r, plan)
    return out, peaks, world.sent


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(execute, "INPLACE_ALL_TO_ALL", True)
    shim = _MPIShim()          # the steps' calls and their waits (waiting.py)
    monkeypatch.setattr(execute, "MPI", shim)
    monkeypatch.setattr(waiting, "MPI", shim)
    return monkeypatch


@st.composite
def a2a_runs(draw):
    """A mesh of 2-4 axes (sizes 2-4, at most 16 devices), a layout with >= 2 axes in
    dim s, and 2-4 consecutive all-to-alls s -> t moving that dim's suffix in chunks;
    extents even (fused) or, now and then, uneven (not fused: the steps one by one);
    sometimes followed by an all-to-all back (never fused with them)."""
    sizes = draw(st.lists(st.sampled_from([2, 3, 4]), min_size=2, max_size=4)
                 .filter(lambda v: math.prod(v) <= 16))
    mesh = Mesh(tuple(zip("xyzw", sizes, strict=False)))
    rank = draw(st.integers(2, 3))
    s, t = draw(st.permutations(range(rank)))[:2]
    names = list(draw(st.permutations(mesh.names)))
    n_s = draw(st.integers(2, len(names)))
    dims: list[list[str]] = [[] for _ in range(rank)]
    dims[s] = names[:n_s]
    for a in names[n_s:]:
        d = draw(st.integers(-1, rank - 1))
        if d >= 0:
            dims[d].append(a)
    lay = Layout(tuple(tuple(d) for d in dims))
    n_s = len(dims[s])
    moved = draw(st.integers(2, n_s) | st.just(n_s))
    cuts = sorted(draw(st.sets(st.integers(1, moved - 1), min_size=1, max_size=3)))
    suffix = dims[s][n_s - moved:]
    bounds = [moved, *reversed(cuts), 0]            # chunks from the minor end
    steps = [AllToAll(s, t, tuple(suffix[lo:hi]))
             for hi, lo in zip(bounds, bounds[1:], strict=False)]
    if draw(st.booleans()):
        steps.append(AllToAll(t, s, steps[-1].axes))
    devices = mesh.num_devices
    shape = [devices * draw(st.integers(1, 2)) for _ in range(rank)]
    if draw(st.integers(0, 4)) == 0:
        shape[t] = draw(st.integers(1, 2 * devices))    # uneven: padded, so not fused
    end = lay
    for step in steps:
        try:
            end = apply(step, mesh, tuple(shape), end)
        except TypingError:                   # uneven extents that do not nest
            assume(False)
    return Plan(Problem(mesh, tuple(shape), "int32", lay, end), tuple(steps))


def test_fused_runs_equal_the_simulator_with_their_exact_wire_bytes_and_memory(stand_in):
    @settings(FAST, max_examples=40)
    @given(a2a_runs(), st.sampled_from([8, 24, 1 << 40]), st.booleans(), st.booleans())
    def check(plan, chunk_bytes, donate, naps):
        stand_in.setattr(execute, "CHUNK_CAP_BYTES", chunk_bytes)
        stand_in.setattr(_MeshComm, "naps", naps)
        p = plan.problem
        lays = plan.layouts()
        runs = fuse.fused_runs(plan)
        event(f"fused {[r.stop - r.start for r in runs]} of {len(plan.steps)} steps")
        _, peaks, sent = _run_plan_threaded(plan, donate)
        # The bytes on the wire: each fused run its exact figure (G - 1 of G pieces per
        # device: what its devices' new blocks lack, fewer than its steps' volume figures
        # sum to), each other step its volume figure.
        vol = [step_volume(p, s, lays[j], lays[j + 1]) for j, s in enumerate(plan.steps)]
        want = sum(vol)
        for run in runs:
            fused = fuse.wire_bytes(plan, run)
            assert fused == received_bytes(p, lays[run.start], lays[run.stop])
            assert fused < sum(vol[run.start:run.stop])
            want += fused - sum(vol[run.start:run.stop])
        assert sent == want, (sent, want, vol)
        # Memory: the runtime's count within the proved peak (one block and one chunk: the
        # chunk of every fused step). A block the caller keeps is copied once beside it.
        proved = max(step_working_bytes(p, s, lays[j], lays[j + 1])
                     for j, s in enumerate(plan.steps))
        keep = 0 if donate else p.src.local_size(p.mesh, p.shape) * p.itemsize
        assert max(peaks) <= proved + keep, (peaks, proved)
        if runs and donate and chunk_bytes > 64:
            block = lays[runs[0].start].local_size(p.mesh, p.shape) * p.itemsize
            assert max(peaks) >= block                    # the count is not vacuous
    check()


def test_the_fused_run_is_what_execute_runs(stand_in):
    """On swap-3d the plan's two steps go through fused_all_to_all once (not run_step),
    and with REDIST_FUSE=0 through run_step twice; both give the simulator's blocks, and
    the fused one moves 3/4 of the bytes of the two steps."""
    calls: list[str] = []
    real_fused, real_step = execute.fused_all_to_all, execute.run_step
    stand_in.setattr(api, "fused_all_to_all",
                     lambda *a: calls.append("fused") or real_fused(*a))
    stand_in.setattr(api, "run_step", lambda *a: calls.append("step") or real_step(*a))
    _, _, fused_sent = _run_plan_threaded(SWAP_3D, True)
    assert calls == ["fused"] * 8
    calls.clear()
    stand_in.setattr(fuse, "FUSE_ALL_TO_ALLS", False)
    _, _, sent = _run_plan_threaded(SWAP_3D, True)
    assert calls == ["step"] * 16
    assert 4 * fused_sent == 3 * sent


def test_fused_runs_under_mpiexec_match_the_simulator(tmp_path):
    """One short mpiexec run on 8 ranks: fused pairs and a fused triple, donated or not,
    chunks of 200 bytes."""
    from test_runtime import run_jobs

    from redist.core.plans.planjson import plan_to_json

    def f32(plan: Plan) -> dict:
        p = plan.problem
        return plan_to_json(Plan(Problem(p.mesh, p.shape, "float32", p.src, p.dst),
                                 plan.steps))
    plans = [
        SWAP_3D,
        _plan("x=2,y=2,z=2", (8, 16, 8), "[{x,y},{z},{}]", AllToAll(0, 2, ("y",)),
              AllToAll(0, 2, ("x",))),
        _plan("x=2,y=2,z=2", (16, 8), "[{x,y,z},{}]", AllToAll(0, 1, ("z",)),
              AllToAll(0, 1, ("y",)), AllToAll(0, 1, ("x",))),
        _plan("x=2,y=4", (16, 3, 16), "[{},{},{x,y}]", AllToAll(2, 0, ("y",)),
              AllToAll(2, 0, ("x",))),
    ]
    jobs = [{"plan": f32(pl), "gated": False, "donate": d} for pl in plans
            for d in (True, False)]
    run_jobs(8, jobs, tmp_path, {"REDIST_CHUNK_BYTES": "200", "REDIST_INPLACE": "1"})


def test_the_run_report_gives_the_fused_bytes_and_says_they_were_fused(monkeypatch):
    from redist.core.plans.planjson import plan_to_json
    from redist.runtime.launch import format_report
    from redist.runtime.worker import fused_report
    fused = fused_report(SWAP_3D)
    assert fused == [{"steps": [1, 2], "wire_bytes": 1536, "figure_bytes": 2048}]
    r = {"plan": plan_to_json(SWAP_3D), "ranks": 8, "repeat": 1, "median_seconds": 0.1,
         "min_seconds": 0.1, "peak_bytes_per_rank": [272] * 8,
         "traced_peak_bytes_per_rank": [272] * 8, "bound_bytes": 256, "all_match": True,
         "fused": fused}
    text = format_report(r).splitlines()
    assert "volume      1.5 KiB (the plan's figure 2.0 KiB) moved (lower bound 1.5 KiB)" in text
    assert ("fused       steps 1-2 ran as one all-to-all: 1.5 KiB received where their "
            "figures count 2.0 KiB (REDIST_FUSE=0 runs them one by one)") in text
    monkeypatch.setattr(fuse, "FUSE_ALL_TO_ALLS", False)
    r["fused"] = fused_report(SWAP_3D)
    assert r["fused"] == []
    text = format_report(r).splitlines()
    assert "volume      2.0 KiB moved (lower bound 1.5 KiB)" in text
    assert not any(line.startswith("fused") for line in text)
