"""Independent checks used by several tests (not the code under test)."""

from __future__ import annotations

import re

import numpy as np

from redist.core.plans import simulator
from redist.core.plans.plan import Plan
from redist.core.semantics.collectives import AllGather, AllPermute, AllSlice, AllToAll

SIGNS = {AllSlice: "S", AllToAll: "A", AllPermute: "P", AllGather: "G"}


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
    p = plan.problem
    x = global_array(plan)
    final = simulator.run(plan, x)[-1]
    return np.array_equal(final, simulator.shards(p.mesh, p.shape, p.dst, x))


def brute_lower_bound(plan: Plan) -> int:
    """Bytes of each device's dst block that its src block lacks, by enumeration."""
    p = plan.problem
    src = simulator.expected_from_index(p.mesh, p.shape, p.src)
    dst = simulator.expected_from_index(p.mesh, p.shape, p.dst)
    missing = 0
    for dev in range(p.mesh.num_devices):
        missing += len(set(dst[dev].ravel().tolist()) - set(src[dev].ravel().tolist()))
    return missing * p.itemsize


def brute_discarded(plan: Plan) -> bool:
    """Does any slice drop, on some device, an element that crossed the network to get
    there? Tracked element by element through the source maps."""
    from redist.core.semantics.algebra import NUMPY
    from redist.core.semantics.sourcemap import source

    p = plan.problem
    mesh, shape = p.mesh, p.shape
    lays = plan.layouts()
    n0 = p.src.local_shape(mesh, shape)
    received = np.zeros((mesh.num_devices,) + n0, bool)
    for k, step in enumerate(plan.steps):
        local = lays[k + 1].local_shape(mesh, shape)
        coords, idx = simulator._grid(mesh, local)
        c2, i2 = source(step, mesh, shape, lays[k], lays[k + 1], coords, idx, NUMPY)
        full = (mesh.num_devices,) + local
        dev = np.zeros(full, np.int64)
        moved = np.zeros(full, bool)
        for a, size in mesh.axes:
            dev = dev * size + np.broadcast_to(c2[a], full)
            moved |= np.broadcast_to(c2[a] != coords[a], full)
        if isinstance(step, AllSlice):
            kept = np.zeros(received.shape, bool)
            kept[(dev, *[np.broadcast_to(i, full) for i in i2])] = True
            if np.any(received & ~kept):
                return True
        received = received[(dev, *[np.broadcast_to(i, full) for i in i2])] | moved
    return False
