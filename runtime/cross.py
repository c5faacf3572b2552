"""Two-mesh plans on MPI (DESIGN §15): the transfer as point-to-point messages on the world
communicator, then the B steps on a communicator of B's ranks (the one-mesh runtime).

The transfer sends each pair's box straight from the A block and receives it straight into
the mid block, with subarray datatypes (no packing buffers of ours); a pair (r, r) is a
local copy. A rank holds its A block and its mid block while the messages run, frees the A
block when they end, then runs the B steps: the figures' per-rank working bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import time

import numpy as np
from mpi4py import MPI

from redist.core.cross.plan import CrossPlan, gathers_in_slots, receive_shape, staged
from redist.core.cross.planjson import cross_plan_to_json
from redist.core.errors import RedistError
from redist.core.model.dtypes import numpy_dtype
from redist.core.ops import transfer as T
from redist.core.semantics.blocks import block_ranges

from .api import RunStats, _agree, _check_comm, _gate, _gate_key, execute
from .execute import (
    _box_type,
    _collapsed,
    _crop_pad,
    gather_in_slots,
    mpi_type,
    pad_block,
    slot_digits,
    trim_block,
    wait_all,
)
from .groups import MeshComm, naps
from .memory import Held, MemoryTracker
from .waiting import bcast_text

_b_comms: dict[tuple, MeshComm | None] = {}
_naps: dict[int, bool] = {}


def cross_plan_hash(plan: CrossPlan) -> str:
    doc = cross_plan_to_json(plan, with_figures=False)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _b_comm(plan: CrossPlan, comm: MPI.Comm) -> MeshComm | None:
    """B's ranks as a mesh communicator (collective over `comm`; None off B)."""
    cp = plan.problem
    key = (cp.b, plan.mid.mesh, comm.py2f())
    if key not in _b_comms:
        rank = comm.Get_rank()
        sub = comm.Split(0 if rank in cp.b else MPI.UNDEFINED,
                         cp.b.position.get(rank, 0))
        _b_comms[key] = MeshComm(plan.mid.mesh, sub) if sub != MPI.COMM_NULL else None
    return _b_comms[key]


def napping(comm: MPI.Comm) -> bool:
    """Whether the transfer's waits nap (groups.naps; collective on a communicator's first
    call): where ranks share cores, a spinning wait holds a core its partner needs to post
    or to copy the message (the sender waits for the receiver's copy to end): 1.06-1.21x on
    the dp8-tp8 refit, 16 ranks on 2 cores (benchmarks/results/weight_sync_ablation.md)."""
    key = comm.py2f()
    if key not in _naps:
        _naps[key] = naps(comm)
    return _naps[key]


def _problem_msg(local, plan: CrossPlan, comm: MPI.Comm) -> str:
    cp = plan.problem
    rank = comm.Get_rank()
    if comm.Get_size() < cp.ranks:
        return (f"the communicator has {comm.Get_size()} ranks but the meshes use ranks up "
                f"to {cp.ranks - 1}")
    if rank not in cp.a:
        return "" if local is None else f"rank {rank} is not in mesh {cp.a}: pass None"
    if local is None:
        return f"rank {rank} is in mesh {cp.a}: pass its block"
    pa = cp.a_problem
    want = pa.src.valid_shape(pa.mesh, cp.shape, cp.a.position[rank])
    if tuple(local.shape) != want:
        return f"rank {rank}: local shape {tuple(local.shape)}, the plan needs {want}"
    if local.dtype != np.dtype(numpy_dtype(cp.dtype)):
        return f"rank {rank}: dtype {local.dtype}, the plan needs {cp.dtype}"
    return ""


def redistribute_cross(local: np.ndarray | None | list, plan: CrossPlan, comm: MPI.Comm,
                       donate: bool = False, budget: int | None = None
                       ) -> tuple[np.ndarray | None, RunStats]:
    """Execute a verified two-mesh plan over `comm` (the world): A ranks pass their block
    (valid extent), the others None; B ranks get their dst block, the others None. With
    donate=True (or a one-element list handing the block over) the runtime frees the A
    block once it is sent."""
    if isinstance(local, list):
        if len(local) != 1:
            raise RedistError("redistribute: a list hands over exactly one block")
        local = local.pop()
    _check_comm(comm)
    if not isinstance(plan, CrossPlan):
        raise RedistError("redistribute: pass a CrossPlan")
    if local is not None and not isinstance(local, np.ndarray):
        raise RedistError(f"redistribute: local must be a NumPy array or None, not "
                          f"{type(local).__name__}")
    digest = cross_plan_hash(plan)
    known = _agree(comm, digest, _problem_msg(local, plan, comm), _gate_key(digest, budget))
    from redist.core.cross.verify import verify_cross
    _gate(comm, plan, digest, budget, verify_cross, known)
    bmc = _b_comm(plan, comm)
    t0 = time.perf_counter()
    box = [local]
    del local
    try:
        out, peak = execute_cross(box, plan, comm, bmc, donate)
    except Exception as e:
        import sys
        import traceback
        print(f"redist: rank {comm.Get_rank()} failed while executing the plan: "
              f"{type(e).__name__}: {e}\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        comm.Abort(1)
        raise
    return out, RunStats(time.perf_counter() - t0, peak, 1 + len(plan.b_plan.steps))


def execute_cross(box: list, plan: CrossPlan, comm: MPI.Comm, bmc: MeshComm | None,
                  donate: bool) -> tuple[np.ndarray | None, int]:
    """Run the plan with no checks (callers gate). Returns this rank's dst block (or None)
    and the peak bytes it held at once.

    A B rank receives into `receive_shape`: when the B plan is one all_gather, its dst
    block, the transfer's pieces landing in the rank's slot, then one in-place Allgather
    fills the other slots (no grow or move of the buffer). A rank of both meshes in a
    staged plan (core/cross/plan.staged) first sends,
    then turns its A block into its receive buffer in place (its own piece moved into
    place), then receives: it never holds both."""
    cp = plan.problem
    pa, shape = cp.a_problem, cp.shape
    rank = comm.Get_rank()
    dtype = np.dtype(numpy_dtype(cp.dtype))
    nap = napping(comm)
    mem = MemoryTracker()
    held = None
    if rank in cp.a:
        local = box.pop()
        held = Held(mem.hold(local), donate)
        padded = pa.src.local_shape(pa.mesh, shape)
        if local.flags.c_contiguous and tuple(local.shape) != padded:
            del local                         # `held` alone refers to it: grown in place
            held = Held(pad_block(held, padded, mem), True)
        elif not local.flags.c_contiguous:
            y = mem.zeros(padded, dtype)
            y[tuple(slice(0, n) for n in local.shape)] = local
            held.free(mem)
            held = Held(y, True)
            del y, local
        else:
            del local
    r_shape = receive_shape(plan)
    slots = rank in cp.b and gathers_in_slots(plan)
    n_mid = plan.mid.src.local_shape(plan.mid.mesh, shape)
    at = (0,) * len(shape)
    if slots:
        step = plan.b_plan.steps[0]
        sizes = [math.prod(bmc.mesh.size(a) for a in gone) for gone in step.axes]
        me = bmc.group(tuple(a for gone in step.axes for a in gone)).Get_rank()
        at = tuple(k * n for k, n in zip(slot_digits(sizes, me), n_mid, strict=True))
    if rank in cp.a and rank in cp.b and staged(plan):
        out = _staged_transfer(plan, comm, held, r_shape, at, mem, nap)
    else:
        out = mem.zeros(r_shape, dtype) if rank in cp.b else None
        run_transfer(plan, comm, held.a if held is not None else None, out, at, nap)
        if held is not None:
            held.free(mem)
    del held
    peak = mem.peak
    if out is None:
        return None, peak
    valid = cp.b_problem.dst.valid_shape(cp.b_problem.mesh, shape, cp.b.position[rank])
    if not plan.b_plan.steps and tuple(r_shape) == valid:
        return out, peak
    if slots:
        box = [out]
        del out                       # the box holds the only reference: trimmed in place
        out = gather_in_slots(step, bmc, shape, plan.mid.src, box, n_mid, r_shape, mem)
        if tuple(out.shape) != valid:
            done = Held(out, True)
            del out
            out = trim_block(done, valid, mem)
        return out, mem.peak
    box = [out]
    del out                  # the B steps hold the only reference: gathers grow it in place
    res, b_peak = execute(box, plan.b_plan, bmc, donate=True)
    return res, max(peak, b_peak)


def _staged_transfer(plan: CrossPlan, comm: MPI.Comm, held: Held, r_shape, at,
                     mem: MemoryTracker, nap: bool) -> np.ndarray:
    """A rank of both meshes: send, then its A block becomes its receive buffer (the piece
    it keeps cut out, compacted, resized and moved to its place), then receive."""
    rank = comm.Get_rank()
    _wait(*_post(plan, comm, held.a, None, at, recv=False), nap)
    keep = _self_box(plan, rank)
    dtype = held.a.dtype
    if keep is None:
        held.free(mem)
        out = mem.zeros(r_shape, dtype)
    elif not held.own:
        # The caller's block (not ours to overwrite): a new buffer beside it (the figure
        # assumes the block is handed over, as the worker does).
        src, dst = keep
        out = mem.zeros(r_shape, dtype)
        out[_shifted(dst, at)] = held.a[src]
    else:
        src, dst = keep
        lo = [s.start for s in src]
        ext = [s.stop - s.start for s in src]
        out = _crop_pad(held, lo, ext, tuple(r_shape), mem)
        _shift_box(out, ext, [s.start + o for s, o in zip(dst, at, strict=True)])
    _wait(*_post(plan, comm, None, out, at, send=False), nap)
    return out


def _self_box(plan: CrossPlan, rank: int):
    """The pair (rank, rank)'s box, as slices of the padded A block and of the mid block."""
    cp, mid = plan.problem, plan.mid
    if (rank, rank) not in plan.transfer.pairs:
        return None
    lo_a, _ = block_ranges(cp.a_problem.mesh, cp.shape, cp.a_problem.src)
    lo_m, _ = block_ranges(mid.mesh, cp.shape, mid.src)
    k = plan.transfer.pairs.index((rank, rank))
    lo, hi = T.boxes(cp, mid, plan.transfer)[k]
    i, j = cp.a.position[rank], cp.b.position[rank]
    return (tuple(slice(int(x - o), int(y - o)) for x, y, o in zip(lo, hi, lo_a[i], strict=True)),
            tuple(slice(int(x - o), int(y - o)) for x, y, o in zip(lo, hi, lo_m[j], strict=True)))


def _shifted(box: tuple[slice, ...], at) -> tuple[slice, ...]:
    return tuple(slice(s.start + o, s.stop + o) for s, o in zip(box, at, strict=True))


def _shift_box(x: np.ndarray, ext: list[int], to: list[int]) -> None:
    """In place: x's box [0, ext) moves to [to, to + ext) (to >= 0). Every element moves up
    by the same flat distance d, so parts moved last first never overwrite an unread one.
    The parts are slabs of the box (dims merged where it spans them whole) each spanning at
    most d elements: a slab's source and destination views then do not overlap, and NumPy
    copies them without a temporary (one copy per slab, not a Python step per row)."""
    if not any(to) or 0 in ext:
        return
    n, sub, at = _collapsed(x.shape, ext, to)
    strides = [math.prod(n[k + 1:]) for k in range(len(n))]
    delta = sum(a * s for a, s in zip(at, strides, strict=True))
    _shift_slabs(x.reshape(n), (), sub, at, strides, delta)


def _shift_slabs(y: np.ndarray, idx: tuple[int, ...], sub: list[int], at: list[int],
                 strides: list[int], delta: int) -> None:
    """_shift_box below the leading indices `idx`: slabs of k indices of the next dim, or one
    index at a time (recursing) when a single index spans more than delta elements."""
    d = len(idx)
    one = 1 + sum((s - 1) * st for s, st in zip(sub[d + 1:], strides[d + 1:], strict=True))
    k = min(sub[d], (delta - one) // strides[d] + 1) if delta >= one else 0
    if k == 0:
        for i in reversed(range(sub[d])):
            _shift_slabs(y, idx + (i,), sub, at, strides, delta)
        return
    head = tuple(i + a for i, a in zip(idx, at, strict=False))
    src_rest = tuple(slice(0, s) for s in sub[d + 1:])
    dst_rest = tuple(slice(a, a + s) for a, s in zip(at[d + 1:], sub[d + 1:], strict=True))
    for hi in range(sub[d], 0, -k):
        lo = max(0, hi - k)
        y[head + (slice(lo + at[d], hi + at[d]),) + dst_rest] = y[idx + (slice(lo, hi),)
                                                                  + src_rest]


def run_transfer(plan: CrossPlan, comm: MPI.Comm, block: np.ndarray | None,
                 out: np.ndarray | None, at=None, nap: bool = False) -> None:
    """The transfer (core/ops/transfer.py) on MPI: this rank's pairs as point-to-point
    messages between the padded A block and the receive buffer (the mid block at `at`),
    subarray datatypes on both sides (no packing buffers of ours); a pair (r, r) is a local
    copy. With `nap` the wait gives up its core between polls (napping)."""
    _wait(*_post(plan, comm, block, out, at), nap)


def _post(plan: CrossPlan, comm: MPI.Comm, block: np.ndarray | None, out: np.ndarray | None,
          at=None, send: bool = True, recv: bool = True) -> tuple[list, list]:
    """Post this rank's sends and/or receives (the local copy goes with the receives)."""
    cp, mid = plan.problem, plan.mid
    pa, shape = cp.a_problem, cp.shape
    rank = comm.Get_rank()
    lo_a, _ = block_ranges(pa.mesh, shape, pa.src)
    lo_m, _ = block_ranges(mid.mesh, shape, mid.src)
    at = np.zeros(len(shape), dtype=np.int64) if at is None else np.asarray(at)
    reqs, types = [], []
    for (a, b), (lo, hi) in zip(plan.transfer.pairs, T.boxes(cp, mid, plan.transfer),
                                strict=True):
        if rank not in (a, b):
            continue
        i, j = cp.a.position[a], cp.b.position[b]
        if a == b:
            if recv and send:
                src = tuple(slice(x - o, y - o) for x, y, o in zip(lo, hi, lo_a[i],
                                                                  strict=True))
                dst = tuple(slice(x - o, y - o) for x, y, o in zip(lo, hi, lo_m[j] - at,
                                                                  strict=True))
                out[dst] = block[src]
            continue
        if rank == a and send:
            msg, t = _message(block, _ints(lo - lo_a[i]), _ints(hi - lo_a[i]))
            reqs.append(comm.Isend(msg, dest=b, tag=7))
        elif rank == b and recv:
            msg, t = _message(out, _ints(lo - lo_m[j] + at), _ints(hi - lo_m[j] + at))
            reqs.append(comm.Irecv(msg, source=a, tag=7))
        else:
            continue
        if t is not None:
            types.append(t)
    return reqs, types


def _message(buf: np.ndarray, lo: tuple[int, ...], hi: tuple[int, ...]):
    """The box [lo, hi) of buf as an MPI message, and its derived type to free (None): a box
    that is one contiguous run goes as a plain slice (MPICH then copies it in one piece;
    a subarray type of the same bytes measured up to 2x slower for 1 MiB, 2 ranks), else
    a subarray type."""
    n, sub, start = _collapsed(buf.shape, [b - a for a, b in zip(lo, hi, strict=True)], lo)
    if len(n) == 1 and buf.flags.c_contiguous:
        flat = buf.reshape(-1)
        return [flat[start[0]:start[0] + sub[0]], mpi_type(buf.dtype)], None
    t = _box_type(buf.shape, lo, hi, buf.dtype)
    return [buf, 1, t], t


def _wait(reqs: list, types: list, nap: bool = False) -> None:
    # Napping only while every message is a plain slice: MPICH moves a derived type in
    # pieces that advance only inside a poll (execute.wait_all).
    wait_all(reqs, nap and not types)
    for t in types:
        t.Free()


def _ints(v: np.ndarray) -> tuple[int, ...]:
    return tuple(int(x) for x in v)


def worker_main(job: dict, comm: MPI.Comm) -> dict | None:
    """One rank of `redist run` on a two-mesh plan: build the A block of the test array,
    run (repeat times, then once under tracemalloc), check the B block; rank 0 returns the
    report."""
    import math

    from redist.core.cross.planjson import cross_plan_from_json
    from redist.core.model.dtypes import mismatched

    from .arrays import sample_block
    from .measure import measure, report_fields

    plan = cross_plan_from_json(job["plan"], comm.Get_size())
    budget = job.get("budget")
    cp = plan.problem
    pa, pb = cp.a_problem, cp.b_problem
    rank = comm.Get_rank()

    def block():
        if rank not in cp.a:
            return [None]
        return [sample_block(pa.mesh, cp.shape, pa.src, cp.a.position[rank], cp.dtype)]
    out, mine = measure(comm, job.get("repeat", 1), block,
                        lambda box: redistribute_cross(box, plan, comm, donate=True,
                                                       budget=budget))
    bad = 0
    if rank in cp.b:
        expected = sample_block(pb.mesh, cp.shape, pb.dst, cp.b.position[rank], cp.dtype)
        bad = mismatched(out, expected)
    measured = report_fields(comm, mine, bad)
    if measured is None:
        return None
    fig = plan.figures()
    replicas = cp.b.mesh.num_devices // math.prod(
        pb.dst.shards(pb.mesh, d) for d in range(len(cp.shape)))
    return {
        "plan": cross_plan_to_json(plan),
        **measured,
        "volume_bytes": fig.volume_bytes,
        "cross_mesh_bytes": fig.cross_mesh_bytes,
        "bound_bytes": fig.bound_bytes,
        "budget_bytes": budget,
        "elements_checked": math.prod(cp.shape) * replicas,
    }


def redistribute_between(local: np.ndarray | None, mesh, src, dst, comm: MPI.Comm, dst_mesh,
                         shape, donate: bool = False) -> np.ndarray | None:
    """The (mesh, src, dst) form with `dst_mesh`: rank 0 synthesizes and proves the plan,
    every rank gets it; the A ranks pass their block, the others None."""
    from redist.core.cross.coerce import between
    from redist.core.cross.planjson import cross_plan_from_json

    _check_comm(comm)
    error, text = "", None
    # The dtype is the src blocks': ranks off the src mesh learn it from those on it.
    names = comm.allgather(local.dtype.name if isinstance(local, np.ndarray) else "")
    try:
        if shape is None:
            raise RedistError("redistribute: between two meshes, give shape= (the global "
                              "shape)")
        cp = between(mesh, dst_mesh, shape, next((n for n in names if n), "float32"), src,
                     dst, comm.Get_size())
        if isinstance(local, np.ndarray) is not (comm.Get_rank() in cp.a):
            raise RedistError(f"redistribute: rank {comm.Get_rank()} "
                              + ("is in the src mesh: pass its block" if local is None else
                                 "is not in the src mesh: pass None"))
    except RedistError as e:
        error = str(e)
    flag = np.array([0 if error else 1], dtype=np.int8)
    comm.Allreduce(MPI.IN_PLACE, flag, op=MPI.MIN)
    if not flag[0]:
        raise RedistError(error or "another rank was given an invalid mesh, layout or block")
    if comm.Get_rank() == 0:
        try:
            from redist.core.cross.synthesize import certified_cross
            plan, _, budget = certified_cross(cp)
            text = json.dumps([cross_plan_to_json(plan, with_figures=False), budget])
        except RedistError as e:
            text = json.dumps(["!" + str(e), None])
    doc, budget = json.loads(bcast_text(comm, text))
    if isinstance(doc, str):
        raise RedistError(doc[1:])
    plan = cross_plan_from_json(doc, comm.Get_size())
    return redistribute_cross(local, plan, comm, donate, budget)[0]
