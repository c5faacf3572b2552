"""Reference simulator for two-mesh plans: the transfer's source map, then the B plan's,
on NumPy stacks of every device's padded buffer (the one-mesh simulator's conventions)."""

from __future__ import annotations

import math

import numpy as np

from redist.core.ops import transfer as T
from redist.core.plans import simulator as S
from redist.core.semantics.algebra import NUMPY

from .plan import CrossPlan


def after_transfer(plan: CrossPlan, global_array: np.ndarray) -> np.ndarray:
    """(B devices, *mid local shape): every B device's buffer after the transfer."""
    cp, mid = plan.problem, plan.mid
    pa, shape = cp.a_problem, cp.shape
    a_stack = S.shards(pa.mesh, shape, pa.src, global_array)
    n_mid = mid.src.local_shape(mid.mesh, shape)
    n_src = pa.src.local_shape(pa.mesh, shape)
    coords, idx = S._grid(mid.mesh, n_mid)
    a_pos, _, a_idx = T.source(cp, mid, plan.transfer, coords, idx, NUMPY)
    full = (mid.mesh.num_devices,) + n_mid
    dev = np.broadcast_to(a_pos, full)
    valid = S.valid_mask(mid.mesh, shape, mid.src)
    bad = dev >= pa.mesh.num_devices
    where = []
    for d, i in enumerate(a_idx):
        w = np.broadcast_to(i, full)
        bad = bad | (w < 0) | (w >= n_src[d])
        where.append(w)
    if np.any(bad & valid):
        raise AssertionError("transfer: a valid element has no source on mesh A")
    out = a_stack[(np.where(bad, 0, dev), *[np.where(bad, 0, w) for w in where])]
    out[~valid] = S.FILL
    return out


def final_blocks(plan: CrossPlan, global_array: np.ndarray) -> list[np.ndarray]:
    """Every B device's dst block at its valid extent, as the plan delivers it."""
    b = plan.b_plan
    p = b.problem
    lays = b.layouts()
    stack = after_transfer(plan, global_array)
    for k in range(len(b.steps)):
        stack = S.step(b, k, stack, lays)
    return [stack[(dev,) + tuple(slice(0, n) for n in p.dst.valid_shape(p.mesh, p.shape, dev))]
            for dev in range(p.mesh.num_devices)]


def wrong_rank(plan: CrossPlan) -> int | None:
    """The first B rank whose dst block the plan gets wrong (on the array of flat indices),
    or None."""
    cp = plan.problem
    p = plan.mid
    x = np.arange(math.prod(cp.shape), dtype=np.int64).reshape(cp.shape)
    for dev, got in enumerate(final_blocks(plan, x)):
        if not np.array_equal(got, S.shard(p.mesh, p.shape, p.dst, x, dev)):
            return cp.b.devices[dev]
    return None
