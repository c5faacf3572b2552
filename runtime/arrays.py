"""Building a rank's block, and gathering a distributed array back, for checks."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh


def shard_of(global_array: np.ndarray, mesh: Mesh, layout: Layout, device: int) -> np.ndarray:
    """Device `device`'s block of a global array (a copy)."""
    return np.array(global_array[layout.block_slices(mesh, global_array.shape, device)])


def gather_global(local: np.ndarray, mesh: Mesh, shape: tuple[int, ...], layout: Layout,
                  comm: MPI.Comm, root: int = 0) -> np.ndarray | None:
    """The global array assembled on `root` from every rank's block (None elsewhere)."""
    blocks = None
    if comm.Get_rank() == root:
        blocks = np.empty((comm.Get_size(),) + local.shape, dtype=local.dtype)
    comm.Gather(np.ascontiguousarray(local), blocks, root=root)
    if comm.Get_rank() != root:
        return None
    out = np.empty(shape, dtype=local.dtype)
    for dev in range(comm.Get_size()):
        out[layout.block_slices(mesh, shape, dev)] = blocks[dev]
    return out


def _modulus(dtype: np.dtype) -> int:
    """Largest prime-ish modulus whose residues the dtype holds exactly."""
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        return {1: 127, 2: 32749}.get(dt.itemsize, 16777213)
    if dt.kind == "f" and dt.itemsize == 2:
        return 2039
    return 16777213


def sample_block(mesh: Mesh, shape: tuple[int, ...], layout: Layout, device: int,
                dtype: np.dtype) -> np.ndarray:
    """The block of the deterministic test array whose element at global index g is a
    hash of g's flat number, computed for this block only (no global array)."""
    n = layout.local_shape(mesh, shape)
    coords = mesh.coords(device)
    flat = np.zeros(n, dtype=np.int64)
    for d in range(len(shape)):
        g = np.arange(n[d], dtype=np.int64) + layout.block(mesh, coords, d) * n[d]
        flat *= shape[d]
        flat += g.reshape(tuple(n[d] if e == d else 1 for e in range(len(shape))))
    flat *= 2654435761
    flat += 12345
    flat %= _modulus(dtype)
    return flat.astype(dtype)
