"""Layouts (the paper's distributed array types) and their block arithmetic (DESIGN §1,
§11).

With S_d blocks in dim d (the product of the sizes of its axes) and c_d = ceil(N_d / S_d),
block k holds global indices [k·c_d, min((k+1)·c_d, N_d)): trailing blocks are shorter or
empty, the convention of JAX/XLA and torch.chunk. Inside a plan every device's buffer is
padded to c_d (the *local shape*); at the boundary a device's array has exactly its valid
extent. When N_d is divisible by S_d this is the paper's even layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from redist.core.errors import RedistError
from redist.core.model.mesh import SUB_AXIS, Mesh


def ceil_div(a: Any, b: Any) -> Any:
    """ceil(a / b) for positive a, b: ints, or z3 terms (proofs/ runs the same code on
    symbolic sizes)."""
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    # z3 terms (`/` is floor division for b > 0). Written as a case split so that proofs
    # with divisibility hypotheses see the exact quotient at once.
    import z3
    return z3.If(a % b == 0, a / b, a / b + 1)


@lru_cache(maxsize=1 << 16)
def _local_shape(layout: Layout, mesh: Mesh, shape: tuple[int, ...]) -> tuple[int, ...]:
    # Synthesis asks for the same local shapes again and again (search states, typing).
    return tuple(ceil_div(shape[d], layout.shards(mesh, d)) for d in range(layout.rank))


def _sum_key(ref: str) -> tuple[str, int]:
    """Canonical order of pending axes (a set): by base axis, then major sub-axis first
    (`x` itself is `x(1)|x|`), so that adjacent sub-axes sit next to each other."""
    m = SUB_AXIS.match(ref)
    return (m.group(1), int(m.group(2))) if m else (ref, 1)


@dataclass(frozen=True)
class Layout:
    """Per array dimension, the mesh axes that shard it, major -> minor; and the set of
    pending-sum axes (DESIGN §14), kept in canonical order (empty: no pending sum)."""

    dims: tuple[tuple[str, ...], ...]
    sum: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.sum:
            if not isinstance(self.sum, (tuple, list, set, frozenset)) or not all(
                    isinstance(a, str) for a in self.sum):
                raise RedistError(f"Layout: sum must be a set of axis names, not "
                                  f"{self.sum!r:.60}")
            if len(set(self.sum)) != len(tuple(self.sum)):
                twice = next(a for a in self.sum if list(self.sum).count(a) > 1)
                raise RedistError(f"Layout: pending axis {twice!r} is listed twice")
            object.__setattr__(self, "sum", tuple(sorted(self.sum, key=_sum_key)))
        elif type(self.sum) is not tuple:
            object.__setattr__(self, "sum", ())
        dims = self.dims
        if type(dims) is tuple and all(type(d) is tuple for d in dims):
            if all(type(a) is str for d in dims for a in d):
                return                              # the common case, kept cheap
        if not isinstance(dims, (tuple, list)) or not all(
                isinstance(d, (tuple, list)) and all(isinstance(a, str) for a in d)
                for d in dims):
            raise RedistError(f"Layout: dims must be a sequence of per-dim sequences of axis "
                              f"names, not {dims!r:.60}")
        object.__setattr__(self, "dims", tuple(tuple(d) for d in dims))

    @property
    def rank(self) -> int:
        return len(self.dims)

    def used_axes(self) -> tuple[str, ...]:
        """The axes that shard a dim (not the pending ones)."""
        return tuple(a for dim in self.dims for a in dim)

    def with_dims(self, dims: tuple[tuple[str, ...], ...]) -> Layout:
        """Other dims, the same pending sum (steps carry it unchanged, DESIGN §14)."""
        return Layout(dims, self.sum)

    def dim_of(self, axis: str) -> int | None:
        for d, dim in enumerate(self.dims):
            if axis in dim:
                return d
        return None

    def shards(self, mesh: Mesh, d: int) -> int:
        return math.prod(mesh.size(a) for a in self.dims[d])

    def local_shape(self, mesh: Mesh, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Every device's buffer shape: c_d = ceil(N_d / S_d) (padded)."""
        if all(isinstance(n, int) for n in shape):
            return _local_shape(self, mesh, tuple(shape))
        return tuple(ceil_div(shape[d], self.shards(mesh, d)) for d in range(self.rank))

    def local_size(self, mesh: Mesh, shape: tuple[int, ...]) -> int:
        return math.prod(self.local_shape(mesh, shape))

    def block(self, mesh: Mesh, coords: dict[str, int], d: int) -> int:
        """Mixed-radix block index of a device in dim d, major axis most significant."""
        b = 0
        for a in self.dims[d]:
            b = b * mesh.size(a) + coords[a]
        return b

    def blocks(self, mesh: Mesh, coords: dict[str, int]) -> tuple[int, ...]:
        return tuple(self.block(mesh, coords, d) for d in range(self.rank))

    def block_slices(self, mesh: Mesh, shape: tuple[int, ...],
                     device: int) -> tuple[slice, ...]:
        """The global index ranges a device's block holds (valid elements only)."""
        coords = mesh.coords(device)
        n = self.local_shape(mesh, shape)
        out = []
        for d in range(self.rank):
            lo = min(self.block(mesh, coords, d) * n[d], shape[d])
            out.append(slice(lo, min(lo + n[d], shape[d])))
        return tuple(out)

    def valid_shape(self, mesh: Mesh, shape: tuple[int, ...], device: int) -> tuple[int, ...]:
        """The extent of a device's block without padding (what it holds at the boundary)."""
        return tuple(s.stop - s.start for s in self.block_slices(mesh, shape, device))

    def validate(self, mesh: Mesh, shape: tuple[int, ...]) -> Layout:
        """Raise RedistError naming the offending part unless the layout's axes are axes of
        `mesh`, each used once, and its rank is the array's."""
        if self.rank != len(shape):
            raise RedistError(
                f"layout {self} has {self.rank} dims but the array has rank {len(shape)}"
            )
        seen: set[str] = set()
        for d, dim in enumerate(self.dims):
            for a in dim:
                if not mesh.has(a):
                    raise RedistError(f"layout {self}: unknown axis {a!r} in dim {d} "
                                      f"(mesh has {', '.join(mesh.names) or 'no axes'})")
                if a in seen:
                    raise RedistError(f"layout {self}: axis {a!r} is used more than once")
                seen.add(a)
        for a in self.sum:
            if not mesh.has(a):
                raise RedistError(f"layout {self}: unknown pending axis {a!r} "
                                  f"(mesh has {', '.join(mesh.names) or 'no axes'})")
            if a in seen:
                raise RedistError(f"layout {self}: pending axis {a!r} also shards dim "
                                  f"{self.dim_of(a)}")
        return self

    def to_json(self) -> list[list[str]] | dict:
        """Per-dim lists; with a pending sum, an object with the lists and `sum` (so that
        files without sums are unchanged)."""
        dims = [list(dim) for dim in self.dims]
        return {"dims": dims, "sum": list(self.sum)} if self.sum else dims

    def __str__(self) -> str:
        text = "[" + ",".join("{" + ",".join(dim) + "}" for dim in self.dims) + "]"
        return text + "+{" + ",".join(self.sum) + "}" if self.sum else text
