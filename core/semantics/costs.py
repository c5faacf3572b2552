"""Bytes each device receives in a step (DESIGN §2 table)."""

from __future__ import annotations

import numpy as np

from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.semantics.blocks import block_ids, changed_devices
from redist.core.semantics.collectives import (
    AllGather,
    AllPermute,
    AllSlice,
    AllToAll,
    Collective,
    group_size,
)


def received_bytes(problem: Problem, step: Collective, before: Layout,
                   after: Layout) -> np.ndarray:
    """Bytes received by each device (array indexed by device id)."""
    mesh = problem.mesh
    lb = before.local_size(mesh, problem.shape) * problem.itemsize
    out = np.zeros(mesh.num_devices, dtype=np.int64)
    if isinstance(step, AllSlice):
        return out
    g = group_size(step, mesh, before)
    if isinstance(step, AllGather):
        out[:] = (g - 1) * lb
    elif isinstance(step, AllToAll):
        out[:] = (g - 1) * lb // g
    elif isinstance(step, AllPermute):
        out[changed_devices(mesh, before, after)] = lb
    return out


def lower_bound_bytes(problem: Problem) -> int:
    """Σ over devices of the bytes of its dst block that its src block does not hold."""
    mesh, shape = problem.mesh, problem.shape
    ns = problem.src.local_shape(mesh, shape)
    nd = problem.dst.local_shape(mesh, shape)
    bs, bd = block_ids(mesh, problem.src), block_ids(mesh, problem.dst)
    overlap = np.ones(mesh.num_devices, dtype=np.int64)
    for d in range(len(shape)):
        lo = np.maximum(bs[:, d] * ns[d], bd[:, d] * nd[d])
        hi = np.minimum((bs[:, d] + 1) * ns[d], (bd[:, d] + 1) * nd[d])
        overlap *= np.maximum(hi - lo, 0)
    need = int(np.prod(nd, dtype=np.int64))
    return int(np.sum(need - overlap)) * problem.itemsize
