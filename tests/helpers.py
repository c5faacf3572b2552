"""Independent checks used by several tests (not the code under test)."""

from __future__ import annotations

import re

import numpy as np

from redist.core.ops import AllExchange, AllGather, AllPermute, AllSlice, AllToAll, source
from redist.core.ops.common import global_index
from redist.core.plans import simulator
from redist.core.plans.plan import Plan
from redist.core.semantics.algebra import NUMPY

SIGNS = {AllSlice: "S", AllToAll: "A", AllPermute: "P", AllGather: "G", AllExchange: "X"}


def op_string(plan: Plan) -> str:
    return "".join(SIGNS[type(s)] for s in plan.steps)


def is_normal_form(plan: Plan) -> bool:
    """slices -> all-to-alls/permutes -> gathers, with consecutive permutes fused."""
    ops = op_string(plan)
    return re.fullmatch(r"S*[AP]*G*", ops) is not None and "PP" not in ops


def global_array(plan: Plan) -> np.ndarray:
    n = int(np.prod(plan.problem.shape, dtype=np.int64))
    return np.arange(n, dtype=np.int64).reshape(plan.problem.shape)


def simulate_matches_dst(plan: Plan) -> bool:
    """Every device's valid dst elements, delivered by the simulator, are the right ones."""
    return simulator.wrong_device(plan) is None


def brute_lower_bound(plan: Plan) -> int:
    """Bytes of each device's dst block that its src block lacks, by enumeration."""
    p = plan.problem
    x = global_array(plan)
    missing = 0
    for dev in range(p.mesh.num_devices):
        src = set(simulator.shard(p.mesh, p.shape, p.src, x, dev).ravel().tolist())
        dst = set(simulator.shard(p.mesh, p.shape, p.dst, x, dev).ravel().tolist())
        missing += len(dst - src)
    return missing * p.itemsize


def brute_discarded(plan: Plan) -> bool:
    """Does any slice drop, on some device, a valid element that crossed the network to get
    there? Tracked element by element through the source maps."""
    from redist.core.ops import source
    from redist.core.semantics.algebra import NUMPY

    p = plan.problem
    mesh, shape = p.mesh, p.shape
    lays = plan.layouts()
    n0 = p.src.local_shape(mesh, shape)
    received = np.zeros((mesh.num_devices,) + n0, bool)
    for k, step in enumerate(plan.steps):
        local = lays[k + 1].local_shape(mesh, shape)
        n_before = lays[k].local_shape(mesh, shape)
        coords, idx = simulator._grid(mesh, local)
        c2, i2 = source(step, mesh, shape, lays[k], lays[k + 1], coords, idx, NUMPY)
        full = (mesh.num_devices,) + local
        dev = np.zeros(full, np.int64)
        moved = np.zeros(full, bool)
        for a, size in mesh.axes:
            dev = dev * size + np.broadcast_to(c2[a], full)
            moved |= np.broadcast_to(c2[a] != coords[a], full)
        valid_after = simulator.valid_mask(mesh, shape, lays[k + 1])
        where = [np.where(valid_after, np.clip(np.broadcast_to(i, full), 0, n - 1), 0)
                 for i, n in zip(i2, n_before, strict=True)]
        dev = np.where(valid_after, dev, 0)
        if isinstance(step, AllSlice):
            kept = np.zeros(received.shape, bool)
            kept[(dev[valid_after], *[w[valid_after] for w in where])] = True
            valid_before = simulator.valid_mask(mesh, shape, lays[k])
            if np.any(received & ~kept & valid_before):
                return True
        received = (received[(dev, *where)] | moved) & valid_after
    return False


def brute_step_volume(plan: Plan, k: int) -> int:
    """Bytes step k delivers: valid elements (padding is never data) whose source map
    crosses devices, by enumeration."""
    p = plan.problem
    lays = plan.layouts()
    local = lays[k + 1].local_shape(p.mesh, p.shape)
    coords, idx = simulator._grid(p.mesh, local)
    c2, _ = source(plan.steps[k], p.mesh, p.shape, lays[k], lays[k + 1], coords, idx, NUMPY)
    full = (p.mesh.num_devices,) + local
    moved = np.zeros(full, bool)
    for a in p.mesh.names:
        moved |= np.broadcast_to(c2[a] != coords[a], full)
    g = global_index(p.mesh, p.shape, lays[k + 1], coords, idx)
    for d, n in enumerate(p.shape):
        moved &= np.broadcast_to(g[d] < n, full)
    return int(moved.sum()) * p.itemsize
