"""Reference simulator: runs a plan in one process through the source maps (not the
typing rules), on NumPy arrays holding every device's local block."""

from __future__ import annotations

import numpy as np

from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.plans.plan import Plan
from redist.core.semantics.algebra import NUMPY
from redist.core.semantics.blocks import device_coords
from redist.core.semantics.sourcemap import global_index, source


def shard(mesh: Mesh, shape: tuple[int, ...], layout: Layout, global_array: np.ndarray,
          device: int) -> np.ndarray:
    """Device `device`'s local block of `global_array` under `layout`."""
    return global_array[layout.block_slices(mesh, shape, device)]


def shards(mesh: Mesh, shape: tuple[int, ...], layout: Layout,
           global_array: np.ndarray) -> np.ndarray:
    """(devices, *local_shape) stack of every device's block."""
    return np.stack([shard(mesh, shape, layout, global_array, dev)
                     for dev in range(mesh.num_devices)])


def expected_from_index(mesh: Mesh, shape: tuple[int, ...], layout: Layout) -> np.ndarray:
    """For every device and local index, the flat global element number it must hold,
    computed from the layout semantics alone."""
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
    """Apply step k to the (devices, *local) stack, through its source map."""
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
    where = [np.broadcast_to(i, full) for i in src_i]
    for d, w in enumerate(where):
        if w.size and (w.min() < 0 or w.max() >= n_before[d]):
            raise AssertionError(f"step {k + 1}: source index out of range in dim {d}")
    return before_stack[(dev, *where)]


def run(plan: Plan, global_array: np.ndarray) -> list[np.ndarray]:
    """Every device's local arrays: [src stack, stack after step 1, ...]."""
    p = plan.problem
    layouts = plan.layouts()
    stacks = [shards(p.mesh, p.shape, p.src, global_array)]
    for k in range(len(plan.steps)):
        stacks.append(step(plan, k, stacks[-1], layouts))
    return stacks
