"""Blocks of every device at once: block indices, valid global ranges, who holds what,
and who sends to whom in an all_permute (DESIGN §2 pairing rule)."""

from __future__ import annotations

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
    cols = []
    for dim in layout.dims:
        b = np.zeros(mesh.num_devices, dtype=np.int64)
        for a in dim:
            b = b * mesh.size(a) + coords[a]
        cols.append(b)
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


def changed_count(mesh: Mesh, before: Layout, after: Layout) -> int:
    """How many devices' blocks differ between the two layouts: changed_devices(...).sum(),
    in time set by the number of axes, not devices, whenever every dim's axes of both
    layouts factor into the same sequence of primes (always on meshes of powers of one
    prime). Then two dims' block numbers are equal iff their prime digits are equal one
    by one, so the devices that keep their block are the assignments of one value per class
    of digits forced equal; otherwise every device is counted."""
    digits: dict[tuple[str, int], int] = {}       # (atom, k-th prime digit) -> prime

    def seq(dim: tuple[str, ...]) -> list[tuple[str, int]]:
        out = []
        for a in dim:
            for k, p in enumerate(_prime_factors(mesh.size(a))):
                digits[(a, k)] = p
                out.append((a, k))
        return out
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(x: tuple[str, int]) -> tuple[str, int]:
        while parent.get(x, x) != x:
            x = parent[x]
        return x
    for d in range(before.rank):
        b, a = seq(before.dims[d]), seq(after.dims[d])
        if [digits[x] for x in b] != [digits[x] for x in a]:
            return int(np.count_nonzero(changed_devices(mesh, before, after)))
        for x, y in zip(b, a, strict=True):
            parent[find(x)] = find(y)
    for a in mesh.names:
        seq((a,))
    kept = 1
    for x, p in digits.items():
        if find(x) == x:
            kept *= p
    return mesh.num_devices - kept

