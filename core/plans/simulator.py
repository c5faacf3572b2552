"""Reference simulator: runs a plan in one process through the source maps (not the
typing rules), on NumPy arrays holding every device's padded local buffer.

Positions whose global index is past the array's end are padding (DESIGN §11): the
simulator fills them with `FILL` and never reads them as data; comparisons look at valid
positions only.
"""

from __future__ import annotations

import math

import numpy as np

from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.ops import source
from redist.core.ops.common import global_index
from redist.core.plans.plan import Plan
from redist.core.semantics.algebra import NUMPY
from redist.core.semantics.blocks import device_coords

FILL = 0


def shard(mesh: Mesh, shape: tuple[int, ...], layout: Layout, global_array: np.ndarray,
          device: int) -> np.ndarray:
    """Device `device`'s block of `global_array` under `layout`: its valid extent only,
    what a device holds at the boundary of a plan."""
    return global_array[layout.block_slices(mesh, shape, device)]


def valid_mask(mesh: Mesh, shape: tuple[int, ...], layout: Layout) -> np.ndarray:
    """(devices, *local) booleans: which buffer positions hold data (not padding)."""
    local = layout.local_shape(mesh, shape)
    coords, idx = _grid(mesh, local)
    g = global_index(mesh, shape, layout, coords, idx)
    ok = np.ones((mesh.num_devices,) + local, dtype=bool)
    for d in range(len(shape)):
        ok &= np.broadcast_to(g[d] < shape[d], ok.shape)
    return ok


def shards(mesh: Mesh, shape: tuple[int, ...], layout: Layout,
           global_array: np.ndarray) -> np.ndarray:
    """(devices, *local_shape) stack of every device's padded buffer."""
    local = layout.local_shape(mesh, shape)
    out = np.full((mesh.num_devices,) + local, FILL, dtype=global_array.dtype)
    for dev in range(mesh.num_devices):
        block = shard(mesh, shape, layout, global_array, dev)
        out[(dev,) + tuple(slice(0, n) for n in block.shape)] = block
    return out


def expected_from_index(mesh: Mesh, shape: tuple[int, ...], layout: Layout) -> np.ndarray:
    """For every device and local index, the flat global element number it must hold
    (meaningful at valid positions), from the layout semantics alone."""
    local = layout.local_shape(mesh, shape)
    coords, idx = _grid(mesh, local)
    g = global_index(mesh, shape, layout, coords, idx)
    flat = np.zeros((mesh.num_devices,) + local, dtype=np.int64)
    for d in range(len(shape)):
        flat = flat * shape[d] + g[d]
    return flat


def _grid(mesh: Mesh, local: tuple[int, ...]):
    """Device coordinates and local indices, broadcastable to (devices, *local)."""
    r = len(local)
    coords = {a: v.reshape((-1,) + (1,) * r) for a, v in device_coords(mesh).items()}
    idx = [np.arange(n).reshape((1,) + tuple(n if e == d else 1 for e in range(r)))
           for d, n in enumerate(local)]
    return coords, idx


def step(plan: Plan, k: int, before_stack: np.ndarray, layouts: list[Layout]) -> np.ndarray:
    """Apply step k to the (devices, *local) stack, through its source map. A valid
    position must find its source in range; padding positions are filled, not read."""
    p = plan.problem
    mesh, shape = p.mesh, p.shape
    before, after = layouts[k], layouts[k + 1]
    n_after = after.local_shape(mesh, shape)
    n_before = before.local_shape(mesh, shape)
    coords, idx = _grid(mesh, n_after)
    src_c, src_i = source(plan.steps[k], mesh, shape, before, after, coords, idx, NUMPY)
    full = (mesh.num_devices,) + n_after
    dev = np.zeros(full, dtype=np.int64)
    for name, size in mesh.axes:
        dev = dev * size + np.broadcast_to(src_c[name], full)
    valid = valid_mask(mesh, shape, after)
    where = []
    for d, i in enumerate(src_i):
        w = np.broadcast_to(i, full)
        bad = (w < 0) | (w >= n_before[d])
        if np.any(bad & valid):
            raise AssertionError(f"step {k + 1}: a valid element's source index is out of "
                                 f"range in dim {d}")
        where.append(np.where(bad, 0, w))
    out = before_stack[(dev, *where)] if before_stack.size else np.zeros(full, before_stack.dtype)
    out[~valid] = FILL
    return out


def run(plan: Plan, global_array: np.ndarray) -> list[np.ndarray]:
    """Every device's padded buffers: [src stack, stack after step 1, ...]."""
    p = plan.problem
    layouts = plan.layouts()
    stacks = [shards(p.mesh, p.shape, p.src, global_array)]
    for k in range(len(plan.steps)):
        stacks.append(step(plan, k, stacks[-1], layouts))
    return stacks


def final_blocks(plan: Plan, global_array: np.ndarray) -> list[np.ndarray]:
    """Every device's dst block at its valid extent, as the plan delivers it."""
    p = plan.problem
    final = run(plan, global_array)[-1]
    return [final[(dev,) + tuple(slice(0, n) for n in
                                 p.dst.valid_shape(p.mesh, p.shape, dev))]
            for dev in range(p.mesh.num_devices)]


def wrong_device(plan: Plan) -> int | None:
    """The first device whose valid dst elements the plan gets wrong (on the array whose
    elements are their own flat global index), or None if every device's are right."""
    p = plan.problem
    x = np.arange(math.prod(p.shape), dtype=np.int64).reshape(p.shape)
    got = final_blocks(plan, x)
    for dev in range(p.mesh.num_devices):
        if not np.array_equal(got[dev], shard(p.mesh, p.shape, p.dst, x, dev)):
            return dev
    return None
