"""Blocks of every device at once: block indices, valid global ranges, who holds what,
and who sends to whom in an all_permute (DESIGN §2 pairing rule)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from redist.core.model.axes import _prime_factors
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh


@lru_cache(maxsize=64)
def device_coords(mesh: Mesh) -> dict[str, np.ndarray]:
    """Coordinates of every device, one int array per axis, indexed by device id."""
    ids = np.arange(mesh.num_devices)
    out: dict[str, np.ndarray] = {}
    for name, size in reversed(mesh.axes):
        out[name] = ids % size
        ids = ids // size
    return out


@lru_cache(maxsize=4096)
def block_ids(mesh: Mesh, layout: Layout) -> np.ndarray:
    """(devices, rank) array of every device's block index per dim (read-only: cached)."""
    coords = device_coords(mesh)
    cols = [_dim_block(mesh, coords, dim) for dim in layout.dims]
    out = np.stack(cols, axis=1) if cols else np.zeros((mesh.num_devices, 0), np.int64)
    out.flags.writeable = False
    return out


def block_ranges(mesh: Mesh, shape: tuple[int, ...],
                 layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi): (devices, rank) arrays of the valid global range each device holds."""
    c = np.array(layout.local_shape(mesh, shape), dtype=np.int64).reshape(1, -1)
    n = np.array(shape, dtype=np.int64).reshape(1, -1)
    lo = np.minimum(block_ids(mesh, layout) * c, n)
    return lo, np.minimum(lo + c, n)


def missing_elements(mesh: Mesh, shape: tuple[int, ...], have: Layout,
                     need: Layout) -> np.ndarray:
    """Per device: valid elements of its `need` block that its `have` block lacks."""
    lo_h, hi_h = block_ranges(mesh, shape, have)
    lo_n, hi_n = block_ranges(mesh, shape, need)
    want = np.prod(hi_n - lo_n, axis=1)
    overlap = np.prod(np.maximum(np.minimum(hi_h, hi_n) - np.maximum(lo_h, lo_n), 0), axis=1)
    return want - overlap                 # each term <= the array's element count < 2**63


def used_mesh(mesh: Mesh, *layouts: Layout) -> tuple[Mesh, int]:
    """The mesh of the axes the layouts use (in mesh order) and how many devices of `mesh`
    each of its devices stands for: axes no layout names change no block, so per-device
    counts over it, times that factor, are counts over `mesh` (and maxima are equal)."""
    used = {a for lay in layouts for a in lay.used_axes()}
    sub = Mesh(tuple((a, s) for a, s in mesh.axes if a in used), allow_refs=True)
    return sub, mesh.num_devices // sub.num_devices


def missing_total(mesh: Mesh, shape: tuple[int, ...], have: Layout, need: Layout) -> int:
    """sum(missing_elements(...)) in time set by the axes, not the devices.

    Every need block is held by devices / S(need) devices and the blocks tile the array,
    so the devices' wanted elements sum to N·devices/S(need). What they already hold is a
    product over dims of per-dim overlaps; dims that share no axis are independent, so the
    sum over devices factors into one sum per group of dims linked by shared axes, each
    over the assignments of that group's axes only."""
    want = math.prod(shape) * (mesh.num_devices // math.prod(
        need.shards(mesh, d) for d in range(need.rank)))
    parent = list(range(len(shape)))

    def find(d: int) -> int:
        while parent[d] != d:
            d = parent[d]
        return d
    for a in mesh.names:
        dims = [d for d in (have.dim_of(a), need.dim_of(a)) if d is not None]
        for d in dims[1:]:
            parent[find(d)] = find(dims[0])
    groups: dict[int, list[int]] = {}
    for d in range(len(shape)):
        groups.setdefault(find(d), []).append(d)
    c_h, c_n = have.local_shape(mesh, shape), need.local_shape(mesh, shape)
    held, covered = 1, 1
    for dims in groups.values():
        axes = {a for d in dims for a in have.dims[d] + need.dims[d]}
        sub = Mesh(tuple((a, s) for a, s in mesh.axes if a in axes), allow_refs=True)
        coords = device_coords(sub)
        prod = np.ones(sub.num_devices, dtype=np.int64)
        for d in dims:
            lo_h = np.minimum(_dim_block(sub, coords, have.dims[d]) * c_h[d], shape[d])
            lo_n = np.minimum(_dim_block(sub, coords, need.dims[d]) * c_n[d], shape[d])
            hi_h = np.minimum(lo_h + c_h[d], shape[d])
            hi_n = np.minimum(lo_n + c_n[d], shape[d])
            prod = prod * np.maximum(np.minimum(hi_h, hi_n) - np.maximum(lo_h, lo_n), 0)
        held *= int(sum(prod.tolist()))      # Python ints: the sum may pass 2**63
        covered *= sub.num_devices
    return want - held * (mesh.num_devices // covered)


def _dim_block(mesh: Mesh, coords: dict[str, np.ndarray], dim: tuple[str, ...]) -> np.ndarray:
    b = np.zeros(mesh.num_devices, dtype=np.int64)
    for a in dim:
        b = b * mesh.size(a) + coords[a]
    return b


@lru_cache(maxsize=4096)
def _block_key(mesh: Mesh, layout: Layout) -> np.ndarray:
    """Every device's block as one number (mixed radix over the dims' block counts)."""
    key = np.zeros(mesh.num_devices, dtype=np.int64)
    ids = block_ids(mesh, layout)
    for d in range(layout.rank):
        key = key * layout.shards(mesh, d) + ids[:, d]
    key.flags.writeable = False
    return key


def changed_devices(mesh: Mesh, before: Layout, after: Layout) -> np.ndarray:
    """Boolean per device: does its block differ between the two layouts?"""
    if all(before.shards(mesh, d) == after.shards(mesh, d) for d in range(before.rank)):
        return _block_key(mesh, before) != _block_key(mesh, after)
    return np.any(block_ids(mesh, before) != block_ids(mesh, after), axis=1)


def permute_sources(mesh: Mesh, before: Layout, after: Layout) -> list[int]:
    """sources[r] = the device that sends its block to device r.

    Devices that hold their new block keep it; the remaining holders and needers of each
    block are paired in ascending device order. (The typing rule keeps the number of
    blocks per dim, so every block has as many holders as needers.) On a pending layout
    (DESIGN §14) devices with other coordinates on the pending axes hold other addends:
    a block is then paired only within the same pending coordinates.
    """
    held = [tuple(r) for r in block_ids(mesh, before).tolist()]
    need = [tuple(r) for r in block_ids(mesh, after).tolist()]
    if before.sum:
        coords = device_coords(mesh)
        addend = [tuple(int(coords[a][dev]) for a in before.sum)
                  for dev in range(mesh.num_devices)]
        held = [b + u for b, u in zip(held, addend, strict=True)]
        need = [b + u for b, u in zip(need, addend, strict=True)]
    givers: dict[tuple[int, ...], list[int]] = {}
    for dev, b in enumerate(held):
        if need[dev] != b:
            givers.setdefault(b, []).append(dev)
    sources = list(range(mesh.num_devices))
    cursor: dict[tuple[int, ...], int] = {}
    for dev, b in enumerate(need):
        if held[dev] != b:
            k = cursor.get(b, 0)
            sources[dev] = givers[b][k]
            cursor[b] = k + 1
    return sources


@lru_cache(maxsize=256)
def _primes(mesh: Mesh) -> dict[str, tuple[int, ...]]:
    return {a: tuple(_prime_factors(s)) for a, s in mesh.axes}


@lru_cache(maxsize=1 << 16)
def changed_count(mesh: Mesh, before: Layout, after: Layout) -> int:
    """How many devices' blocks differ between the two layouts: changed_devices(...).sum(),
    in time set by the number of axes, not devices, whenever every dim's axes of both
    layouts factor into the same sequence of primes (always on meshes of powers of one
    prime). Then two dims' block numbers are equal iff their prime digits are equal one
    by one, so the devices that keep their block are the assignments of one value per class
    of digits forced equal (each merge of two classes of prime p divides them by p);
    otherwise every device of the used axes is counted."""
    primes = _primes(mesh)
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(x: tuple[str, int]) -> tuple[str, int]:
        while parent.get(x, x) != x:
            x = parent[x]
        return x
    kept = mesh.num_devices
    for d in range(before.rank):
        bef = [(x, k, p) for x in before.dims[d] for k, p in enumerate(primes[x])]
        aft = [(x, k, p) for x in after.dims[d] for k, p in enumerate(primes[x])]
        if [p for _, _, p in bef] != [p for _, _, p in aft]:
            sub, factor = used_mesh(mesh, before, after)
            return int(np.count_nonzero(changed_devices(sub, before, after))) * factor
        for (x, i, p), (y, j, _) in zip(bef, aft, strict=True):
            rx, ry = find((x, i)), find((y, j))
            if rx != ry:
                parent[rx] = ry
                kept //= p
    return mesh.num_devices - kept
