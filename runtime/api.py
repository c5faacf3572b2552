"""`redistribute` for use inside any mpi4py program (DESIGN §6, §7).

Before any data moves, every rank checks collectively that all ranks hold the same plan
(SHA-256 agreement) and a block of the right local shape and dtype; any mismatch raises
the same clear RedistError on every rank instead of hanging. Plans are verified (all
five claims proved, on rank 0, then broadcast) and refused otherwise.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from mpi4py import MPI

from redist.core.errors import RedistError
from redist.core.model.axes import refine
from redist.core.model.coerce import as_layout, as_mesh, as_shape
from redist.core.model.dtypes import numpy_dtype
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem, lower_layout
from redist.core.plans.plan import Plan, own_budget
from redist.core.plans.planjson import plan_from_json, plan_to_json

from . import execute as steps_mod
from .alloc import buffer_of
from .execute import fused_all_to_all, pad_block, run_step, trim_block
from .fuse import fused_runs
from .groups import MeshComm
from .memory import Held, MemoryTracker
from .waiting import bcast_text

_verified: set[str] = set()          # plan hashes rank 0 has verified in this process
_meshcomms: dict[tuple[Mesh, int], MeshComm] = {}


@dataclass(frozen=True)
class RunStats:
    seconds: float
    peak_bytes: int          # this rank: input, scratch and output buffers live at once
    steps: int


def plan_hash(plan: Plan) -> str:
    doc = plan_to_json(plan, with_figures=False)
    for s in doc["steps"]:
        s.pop("layout_after", None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _synthesized(comm: MPI.Comm, problem: Problem | None, error: str,
                 collectives: str) -> Plan:
    """Rank 0 synthesizes (searches stop on a clock, so ranks could disagree) and every
    rank gets the same plan; an error on rank 0 is raised on every rank."""
    text = None
    if comm.Get_rank() == 0:
        if problem is not None:
            from redist.core.synthesis.synthesize import synthesize_plan
            try:
                plan = synthesize_plan(problem, "normal", collectives).plan
                text = json.dumps(plan_to_json(plan, with_figures=False))
            except RedistError as e:
                error = str(e)
        text = text or "!" + error
    text = bcast_text(comm, text)              # the plan's JSON: a short text, not data
    if text.startswith("!"):
        raise RedistError(text[1:])
    return plan_from_json(json.loads(text))


def _agree(comm: MPI.Comm, digest: str, problem_msg: str, key: str | None = None) -> bool:
    """Collective, and the first collective of a call: every rank learns whether all ranks
    hold the same plan and a fitting block, so a check that fails on one rank raises the
    same RedistError on every rank instead of leaving the others blocked. Returns whether
    rank 0 has already verified the gate's `key` (then the gate needs no collective of its
    own: one collective per call fewer, several ms each where ranks share cores)."""
    mine = np.frombuffer(bytes.fromhex(digest) + bytes([0 if problem_msg else 1,
                                                        key is not None and key in _verified]),
                         dtype=np.uint8)
    allv = np.empty((comm.Get_size(), mine.size), dtype=np.uint8)
    comm.Allgather([mine, MPI.UNSIGNED_CHAR], [allv, MPI.UNSIGNED_CHAR])
    differ = [r for r in range(allv.shape[0]) if not np.array_equal(allv[r, :32], allv[0, :32])]
    if differ:
        raise RedistError(f"plan mismatch: ranks {differ} hold a different plan from rank 0 "
                          "(SHA-256 of the plans differ); no data was moved")
    bad = [r for r in range(allv.shape[0]) if allv[r, 32] == 0]
    if bad:
        msg = problem_msg or "another rank's block or communicator does not fit the plan"
        raise RedistError(f"ranks {bad} cannot run the plan (this rank: {msg}); no data was "
                          "moved")
    return bool(allv[0, 33])


def _gate_key(digest: str, budget: int | None) -> str:
    return f"{digest}/{budget}"


def _gate(comm: MPI.Comm, plan: Plan, digest: str, budget: int | None = None,
          prove: Any = None, known: bool = False) -> None:
    """Rank 0 verifies the plan (once per process per plan and budget) with `prove` (default
    the one-mesh `verify`); every rank learns the verdict. `known`: every rank learned from
    _agree that rank 0 has verified it already."""
    if known:
        return
    reason = ""
    key = _gate_key(digest, budget)
    if comm.Get_rank() == 0 and key not in _verified:
        try:
            from redist.core.smt.verify import verify
            v = (prove or verify)(plan, budget)
            if v.all_proved:
                _verified.add(key)
            else:
                reason = "; ".join(f"{r.claim} {r.status}" for r in v.results
                                   if r.status != "proved")
        except Exception as e:        # never leave the other ranks waiting in bcast
            reason = f"verification failed on rank 0: {type(e).__name__}: {e}"
    reason = bcast_text(comm, reason)        # a short status string, not data
    if reason:
        raise RedistError(f"refusing to execute an unverified plan: {reason}")


def mesh_comm(mesh: Mesh, comm: MPI.Comm) -> MeshComm:
    key = (mesh, comm.py2f())
    if key not in _meshcomms:
        _meshcomms[key] = MeshComm(mesh, comm)
    return _meshcomms[key]


def redistribute_with_stats(local: np.ndarray, plan: Plan, comm: MPI.Comm,
                            donate: bool = False, budget: int | None = None
                            ) -> tuple[np.ndarray, RunStats]:
    """Execute a verified plan on this rank's block (its valid extent, DESIGN §11). With
    donate=True the caller promises not to use `local` again: the runtime may reuse its
    memory and its bytes stop counting once it is consumed. Python frees the block only
    when no one refers to it: pass it as a one-element list (which is emptied) to hand it
    over, so the runtime holds the last reference."""
    if isinstance(local, list):
        if len(local) != 1:
            raise RedistError("redistribute: a list hands over exactly one block")
        local = local.pop()
    _check_comm(comm)
    _check_local(local)
    if not isinstance(plan, Plan):
        raise RedistError("redistribute: pass a Plan (or use the (mesh, src, dst) form)")
    p = plan.problem
    digest = plan_hash(plan)
    problem_msg = ""
    if comm.Get_size() != p.mesh.num_devices:
        problem_msg = (f"the communicator has {comm.Get_size()} ranks but mesh {p.base} has "
                       f"{p.mesh.num_devices} devices")
    else:
        want = p.src.valid_shape(p.mesh, p.shape, comm.Get_rank())
        if tuple(local.shape) != want:
            problem_msg = (f"rank {comm.Get_rank()}: local shape {tuple(local.shape)}, the "
                           f"plan needs {want}")
        elif local.dtype != np.dtype(numpy_dtype(p.dtype)):
            problem_msg = (f"rank {comm.Get_rank()}: dtype {local.dtype}, the plan needs "
                           f"{p.dtype}")
    known = _agree(comm, digest, problem_msg, _gate_key(digest, budget))
    mc = mesh_comm(p.mesh, comm)
    _gate(mc.cart, plan, digest, budget, known=known)
    t0 = time.perf_counter()
    box = [local]
    del local
    try:
        out, peak = execute(box, plan, mc, donate)
    except Exception as e:
        # Data is moving: the other ranks may already wait in a collective this rank will
        # never join. End the job rather than leave it hanging (DESIGN §7).
        import sys
        import traceback
        print(f"redist: rank {comm.Get_rank()} failed while executing the plan: "
              f"{type(e).__name__}: {e}\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        comm.Abort(1)
        raise
    return out, RunStats(time.perf_counter() - t0, peak, len(plan.steps))


def execute(local: np.ndarray | list, plan: Plan, mc: MeshComm, donate: bool = False
            ) -> tuple[np.ndarray, int]:
    """Run the steps with no checks (callers gate). `local` has its valid extent (or is a
    one-element list handing it over); inside, buffers are padded to the layout's local
    shape; the result has its valid extent again. Returns the block and the peak bytes
    held at once."""
    if isinstance(local, list):
        local = local.pop()
    p = plan.problem
    layouts = plan.layouts()
    mem = MemoryTracker()
    padded = p.src.local_shape(p.mesh, p.shape)
    held = Held(mem.hold(local), donate)
    if not local.flags.c_contiguous:
        # A strided input: a contiguous copy (then padded in place like any other).
        y = mem.empty(local.shape, local.dtype)
        y[...] = local
        del local
        held.free(mem)
        held = Held(y, True)
        del y
    else:
        del local                             # `held` (or the caller) keeps the block
    if tuple(held.a.shape) != padded:
        # Short trailing block: padded in place when handed over in a buffer of the
        # runtime's (grown by mremap, runtime/alloc.py; a NumPy one is copied into one,
        # counted), else into a new buffer beside the caller's.
        held = Held(pad_block(held, padded, mem), True)
    # Consecutive all-to-alls between the same two dims run as one (runtime/fuse.py).
    runs = {r.start: r for r in fused_runs(plan, steps_mod.INPLACE_ALL_TO_ALL)}
    k = 0
    while k < len(plan.steps):
        if k in runs:
            y = fused_all_to_all(runs[k], mc, held, mem)
            k = runs[k].stop
        else:
            y = run_step(plan.steps[k], mc, p.shape, layouts[k], layouts[k + 1], held, mem)
            k += 1
        if held.a is None or buffer_of(y) is not buffer_of(held.a):
            held.free(mem)                    # (unless the step freed it already)
            held = Held(y, True)              # from here on every buffer is the runtime's
        else:
            held = Held(y, held.own)          # a view of, or in place in, the same buffer
        del y
    valid = p.dst.valid_shape(p.mesh, p.shape, mc.rank)
    if tuple(held.a.shape) != valid:
        if held.own:                          # trimmed in place, the tail given back
            return trim_block(held, valid, mem), mem.peak
        view = held.a[tuple(slice(0, n) for n in valid)]
        if not view.flags.c_contiguous:
            out = mem.empty(valid, view.dtype)
            out[...] = view
            view = out
        return view, mem.peak
    return held.a, mem.peak


def infer_shape(local: np.ndarray, mesh: Mesh, src: Layout, comm: MPI.Comm) -> tuple[int, ...]:
    """The global shape from every rank's block under src: per dim, the sum of the extents
    of its distinct blocks (collective; blocks may be uneven, DESIGN §11)."""
    atoms = refine(mesh, src.used_axes() + src.sum)
    lowered = lower_layout(atoms, src)
    coords = atoms.mesh.coords(comm.Get_rank()) if comm.Get_size() == mesh.num_devices else {}
    ids = [lowered.block(atoms.mesh, coords, d) if coords else 0 for d in range(src.rank)]
    mine = np.array(ids + list(local.shape), dtype=np.int64)
    every = np.empty((comm.Get_size(), mine.size), dtype=np.int64)
    comm.Allgather([mine, MPI.INT64_T], [every, MPI.INT64_T])
    shape = []
    for d in range(src.rank):
        extents: dict[int, int] = {}
        for row in every:
            k, n = int(row[d]), int(row[src.rank + d])
            if extents.setdefault(k, n) != n:
                raise RedistError(f"ranks hold block {k} of dim {d} with different extents "
                                  f"({extents[k]} and {n})")
        shape.append(sum(extents.values()))
    return tuple(shape)


def _check_comm(comm: Any) -> None:
    if not isinstance(comm, MPI.Comm):
        raise RedistError(f"redistribute: comm must be an mpi4py communicator "
                          f"(MPI.COMM_WORLD), not {type(comm).__name__}")


def _check_local(local: Any) -> None:
    if not isinstance(local, (np.ndarray, np.generic)):     # a 0-d block may be a scalar
        raise RedistError(f"redistribute: local must be a NumPy array (this rank's block), "
                          f"not {type(local).__name__}")


def _naming(argument: str, fn: Any, value: Any) -> Any:
    try:
        return fn(value)
    except RedistError as e:
        raise RedistError(f"redistribute: {argument}: {e}") from None


def redistribute(local: np.ndarray, *args, donate: bool = False,
                 shape: tuple[int, ...] | None = None, collectives: str = "mpi",
                 dst_mesh: Any = None) -> np.ndarray:
    """This rank's block of the array in the dst layout (its valid extent). Two forms:

        redistribute(local, plan, comm)
        redistribute(local, mesh, src, dst, comm)   # rank 0 synthesizes a plan

    mesh, src and dst may be values or text (`"x=2,y=4"`, `"[{x},{y}]"`). The global shape
    is `shape`, or else the sum of the distinct blocks' extents over all ranks. The
    synthesized plan may use the MPI-only all_exchange when the cost model predicts it
    faster (collectives="mpi", the default here) or only the portable four ("portable").

    Between two meshes (DESIGN §15): give `dst_mesh` (e.g. "tp=4@8-11", mesh "x=8@0-7")
    and `shape`, or a two-mesh plan; ranks outside the src mesh pass None, ranks outside the
    dst mesh get None.
    """
    from redist.core.cross.plan import CrossPlan
    if dst_mesh is not None or (len(args) == 2 and isinstance(args[0], CrossPlan)):
        from .cross import redistribute_between, redistribute_cross
        if len(args) == 2:
            return redistribute_cross(local, args[0], args[1], donate)[0]
        if len(args) != 4:
            raise RedistError("redistribute(local, mesh, src, dst, comm, dst_mesh=..., "
                              "shape=...) between two meshes")
        return redistribute_between(local, *args, dst_mesh, shape, donate)
    budget = None                     # a plan given is proved against the bound
    if len(args) == 2:
        plan, comm = args
    elif len(args) == 4:
        mesh, src, dst, comm = args
        _check_comm(comm)
        error, problem = "", None
        try:
            _check_local(local)
            mesh = _naming("mesh", as_mesh, mesh)
            src = _naming("src", as_layout, src)
            dst = _naming("dst", as_layout, dst)
            if shape is not None:
                shape = _naming("shape", as_shape, shape)
            if collectives not in ("portable", "mpi"):
                raise RedistError(f"redistribute: collectives must be 'portable' or 'mpi', "
                                  f"not {collectives!r:.40}")
            if src.rank != local.ndim:
                raise RedistError(f"src layout {src} has {src.rank} dims but the local block "
                                  f"has {local.ndim}")
        except RedistError as e:
            error = str(e)
        flag = np.array([0 if error else 1], dtype=np.int8)
        comm.Allreduce(MPI.IN_PLACE, flag, op=MPI.MIN)       # every rank learns of a bad input
        if not flag[0]:
            raise RedistError(error or "another rank was given an invalid mesh or layout")
        global_shape = tuple(shape) if shape is not None else infer_shape(local, mesh, src, comm)
        if comm.Get_rank() == 0:
            try:
                problem = Problem(mesh, global_shape, local.dtype.name, src, dst)
            except RedistError as e:
                error = str(e)
        plan = _synthesized(comm, problem, error, collectives)
        budget = own_budget(plan)
    else:
        raise RedistError("redistribute(local, plan, comm) or redistribute(local, mesh, src, "
                          "dst, comm)")
    return redistribute_with_stats(local, plan, comm, donate, budget)[0]

