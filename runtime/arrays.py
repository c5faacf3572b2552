"""A rank's block of a global array and back, with the convention of JAX/XLA and
torch.chunk (DESIGN §11): every block has exactly its valid extent (trailing blocks may be
shorter or empty)."""

from __future__ import annotations

import itertools
import math

import numpy as np
from mpi4py import MPI

from redist.core.model.axes import refine
from redist.core.model.dtypes import numpy_dtype
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import check_user_layout, lower_layout

from . import alloc


def _atoms(mesh: Mesh, layout: Layout, shape: tuple[int, ...]) -> tuple[Mesh, Layout]:
    """The mesh of atoms and the layout on it, for a user mesh and layout (sub-axes allowed)."""
    if getattr(mesh, "allow_refs", False):
        return mesh, layout                     # already atoms (a Problem's mesh)
    check_user_layout(mesh, layout, shape, "layout")
    atoms = refine(mesh, layout.used_axes() + layout.sum)
    return atoms.mesh, lower_layout(atoms, layout)


def shard_of(global_array: np.ndarray, mesh: Mesh, layout: Layout, device: int) -> np.ndarray:
    """Device `device`'s block of a global array (a copy, of its valid extent)."""
    amesh, lay = _atoms(mesh, layout, global_array.shape)
    return np.array(global_array[lay.block_slices(amesh, global_array.shape, device)])


def gather_global(local: np.ndarray, mesh: Mesh, shape: tuple[int, ...], layout: Layout,
                  comm: MPI.Comm, root: int = 0) -> np.ndarray | None:
    """The global array assembled on `root` from every rank's block (None elsewhere)."""
    amesh, lay = _atoms(mesh, layout, tuple(shape))
    padded = lay.local_shape(amesh, tuple(shape))
    mine = np.zeros(padded, dtype=local.dtype)
    mine[tuple(slice(0, n) for n in local.shape)] = local
    blocks = None
    if comm.Get_rank() == root:
        blocks = np.empty((comm.Get_size(),) + padded, dtype=local.dtype)
    comm.Gather(mine, blocks, root=root)
    if comm.Get_rank() != root:
        return None
    out = np.empty(shape, dtype=local.dtype)
    for dev in range(comm.Get_size()):
        where = lay.block_slices(amesh, tuple(shape), dev)
        out[where] = blocks[dev][tuple(slice(0, s.stop - s.start) for s in where)]
    return out


def _modulus(dtype: np.dtype) -> int:
    """Largest prime-ish modulus whose residues the dtype holds exactly."""
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        return {1: 127, 2: 32749}.get(dt.itemsize, 16777213)
    if dt.itemsize == 1:
        return 7                       # float8: a handful of exact small integers
    if dt.itemsize == 2:
        return 251 if dt.kind == "V" or dt.name == "bfloat16" else 2039
    return 16777213


def sample_block(mesh: Mesh, shape: tuple[int, ...], layout: Layout, device: int,
                 dtype: str | np.dtype) -> np.ndarray:
    """The block (valid extent) of the deterministic test array whose element at global
    index g is a hash of g's flat number, computed for this block only."""
    dt = numpy_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    return _runtimes(_hashed(mesh, shape, layout, device, _modulus(dt)), dt)


def sample_addend(mesh: Mesh, shape: tuple[int, ...], layout: Layout, device: int,
                  dtype: str | np.dtype, pending: tuple[str, ...] | None = None) -> np.ndarray:
    """A pending layout's test addends (DESIGN §14): device c holds, for global index g,
    (hash(g) + 7·u) mod M/T, u its addend number (its coordinates on the pending axes of
    `pending`, default the layout's), T the number of addends; every sum of them is exact
    in the dtype. `pending` given and `layout` another one: the sum of the addends whose
    coordinates on the axes `pending` shares with layout.sum are the device's (what a
    device must hold under `layout` after reducing the rest)."""
    dt = numpy_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    axes = layout.sum if pending is None else pending
    terms = math.prod(mesh.size(a) for a in axes)
    m = max(1, _modulus(dt) // terms)
    h = _hashed(mesh, shape, layout, device, _modulus(dt))
    coords = mesh.coords(device)
    out = np.zeros_like(h)
    for u in itertools.product(*[range(mesh.size(a)) for a in axes]):
        if any(coords[a] != v for a, v in zip(axes, u, strict=True) if a in layout.sum):
            continue
        k = 0
        for a, v in zip(axes, u, strict=True):
            k = k * mesh.size(a) + v
        out += (h + 7 * k) % m
    return _runtimes(out, dt)


def _runtimes(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`values` as `dtype` in a buffer of the runtime's own (runtime/alloc.py), as a block
    the runtime allocated: handed over, it grows without a copy."""
    out = alloc.empty(values.shape, dtype)
    out[...] = values.astype(dtype)
    return out


def _hashed(mesh: Mesh, shape: tuple[int, ...], layout: Layout, device: int,
            modulus: int) -> np.ndarray:
    where = layout.block_slices(mesh, shape, device)
    n = tuple(s.stop - s.start for s in where)
    flat = np.zeros(n, dtype=np.int64)
    for d in range(len(shape)):
        g = np.arange(where[d].start, where[d].stop, dtype=np.int64)
        flat *= shape[d]
        flat += g.reshape(tuple(n[d] if e == d else 1 for e in range(len(shape))))
    flat *= 2654435761
    flat += 12345
    flat %= modulus
    return flat


def sample_input(problem, device: int) -> np.ndarray:
    """A device's block of the test array under src, or with a pending sum its addend."""
    p = problem
    if p.src.sum:
        return sample_addend(p.mesh, p.shape, p.src, device, p.dtype)
    return sample_block(p.mesh, p.shape, p.src, device, p.dtype)


def sample_output(problem, device: int) -> np.ndarray:
    """What the device must hold under dst after the plan (the sums of the addends)."""
    p = problem
    if p.src.sum:
        return sample_addend(p.mesh, p.shape, p.dst, device, p.dtype, pending=p.src.sum)
    return sample_block(p.mesh, p.shape, p.dst, device, p.dtype)
