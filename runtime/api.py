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

import numpy as np
from mpi4py import MPI

from redist.core.errors import RedistError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import plan_to_json

from .execute import run_step
from .groups import MeshComm
from .memory import MemoryTracker, buffer_of

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


def _as_plan(spec: Plan | tuple, dtype: np.dtype) -> Plan:
    if isinstance(spec, Plan):
        return spec
    if isinstance(spec, tuple) and len(spec) == 4:
        from redist.core.synthesis.search import normal
        mesh, shape, src, dst = spec
        if not isinstance(src, Layout) or not isinstance(dst, Layout):
            raise RedistError("redistribute: src and dst must be Layout values")
        return normal(Problem(mesh, tuple(shape), np.dtype(dtype).name, src, dst)).plan
    raise RedistError("redistribute: pass a Plan or a (mesh, shape, src, dst) tuple")


def _agree(comm: MPI.Comm, digest: str, problem_msg: str) -> None:
    """Collective, and the first collective of a call: every rank learns whether all ranks
    hold the same plan and a fitting block, so a check that fails on one rank raises the
    same RedistError on every rank instead of leaving the others blocked."""
    mine = np.frombuffer(bytes.fromhex(digest) + bytes([0 if problem_msg else 1]),
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


def _gate(comm: MPI.Comm, plan: Plan, digest: str) -> None:
    """Rank 0 verifies the plan (once per process per plan); every rank learns the verdict."""
    reason = ""
    if comm.Get_rank() == 0 and digest not in _verified:
        try:
            from redist.core.smt.verify import verify
            v = verify(plan)
            if v.all_proved:
                _verified.add(digest)
            else:
                reason = "; ".join(f"{r.claim} {r.status}" for r in v.results
                                   if r.status != "proved")
        except Exception as e:        # never leave the other ranks waiting in bcast
            reason = f"verification failed on rank 0: {type(e).__name__}: {e}"
    reason = comm.bcast(reason, root=0)      # a short status string, not data
    if reason:
        raise RedistError(f"refusing to execute an unverified plan: {reason}")


def mesh_comm(mesh: Mesh, comm: MPI.Comm) -> MeshComm:
    key = (mesh, comm.py2f())
    if key not in _meshcomms:
        _meshcomms[key] = MeshComm(mesh, comm)
    return _meshcomms[key]


def redistribute_with_stats(local: np.ndarray, spec: Plan | tuple, comm: MPI.Comm,
                            donate: bool = False) -> tuple[np.ndarray, RunStats]:
    """Execute a verified plan on this rank's block. With donate=True the caller promises
    not to use `local` again, and its bytes stop counting once it is consumed."""
    plan = _as_plan(spec, local.dtype)
    p = plan.problem
    digest = plan_hash(plan)
    want = p.src.local_shape(p.mesh, p.shape)
    problem_msg = ""
    if comm.Get_size() != p.mesh.num_devices:
        problem_msg = (f"the communicator has {comm.Get_size()} ranks but mesh {p.mesh} has "
                       f"{p.mesh.num_devices} devices")
    elif tuple(local.shape) != want:
        problem_msg = (f"rank {comm.Get_rank()}: local shape {tuple(local.shape)}, the plan "
                       f"needs {want}")
    elif local.dtype != np.dtype(p.dtype):
        problem_msg = f"rank {comm.Get_rank()}: dtype {local.dtype}, the plan needs {p.dtype}"
    _agree(comm, digest, problem_msg)
    mc = mesh_comm(p.mesh, comm)
    _gate(mc.cart, plan, digest)
    t0 = time.perf_counter()
    try:
        out, peak = execute(local, plan, mc, donate)
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


def execute(local: np.ndarray, plan: Plan, mc: MeshComm, donate: bool = False
            ) -> tuple[np.ndarray, int]:
    """Run the steps with no checks (callers gate); returns the block and peak bytes."""
    p = plan.problem
    layouts = plan.layouts()
    mem = MemoryTracker()
    x = mem.hold(np.ascontiguousarray(local))
    pinned = None if donate else buffer_of(x)
    for k, step in enumerate(plan.steps):
        y = run_step(step, mc, p.shape, layouts[k], layouts[k + 1], x, mem,
                     consume=buffer_of(x) is not pinned)
        # Drop the old block unless the new one is a view of it or the caller keeps it.
        if buffer_of(y) is not buffer_of(x) and buffer_of(x) is not pinned:
            mem.release(x)
        x = y
    return x, mem.peak


def redistribute(local: np.ndarray, *args, donate: bool = False) -> np.ndarray:
    """This rank's block of the array in the dst layout. Two forms:

        redistribute(local, plan, comm)
        redistribute(local, mesh, src, dst, comm)   # a normal-form plan is synthesized

    mesh, src and dst may be values or text (`"x=2,y=4"`, `"[{x},{y}]"`); the global
    shape is the local shape times src's shard counts.
    """
    if len(args) == 2:
        spec, comm = args
    elif len(args) == 4:
        mesh, src, dst, comm = args
        mesh = parse_mesh(mesh) if isinstance(mesh, str) else mesh
        src = parse_layout(src) if isinstance(src, str) else src
        dst = parse_layout(dst) if isinstance(dst, str) else dst
        if src.rank != local.ndim:
            raise RedistError(f"src layout {src} has {src.rank} dims but the local block has "
                              f"{local.ndim}")
        shape = tuple(n * src.shards(mesh, d) for d, n in enumerate(local.shape))
        spec = (mesh, shape, src, dst)
    else:
        raise RedistError("redistribute(local, plan, comm) or redistribute(local, mesh, src, "
                          "dst, comm)")
    return redistribute_with_stats(local, spec, comm, donate)[0]
