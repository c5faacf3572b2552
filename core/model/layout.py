"""Layouts (the paper's distributed array types) and their block arithmetic (DESIGN §1)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from redist.core.errors import RedistError
from redist.core.model.mesh import Mesh


@dataclass(frozen=True)
class Layout:
    """Per array dimension, the mesh axes that shard it, major -> minor."""

    dims: tuple[tuple[str, ...], ...]

    @property
    def rank(self) -> int:
        return len(self.dims)

    def used_axes(self) -> tuple[str, ...]:
        return tuple(a for dim in self.dims for a in dim)

    def dim_of(self, axis: str) -> int | None:
        for d, dim in enumerate(self.dims):
            if axis in dim:
                return d
        return None

    def shards(self, mesh: Mesh, d: int) -> int:
        return math.prod(mesh.size(a) for a in self.dims[d])

    def local_shape(self, mesh: Mesh, shape: tuple[int, ...]) -> tuple[int, ...]:
        # Exact division; written so that symbolic sizes (proofs/) go through unchanged.
        return tuple(_exact_div(shape[d], self.shards(mesh, d)) for d in range(self.rank))

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
        """The global index ranges of a device's block."""
        coords = mesh.coords(device)
        n = self.local_shape(mesh, shape)
        return tuple(slice(self.block(mesh, coords, d) * n[d],
                           (self.block(mesh, coords, d) + 1) * n[d]) for d in range(self.rank))

    def validate(self, mesh: Mesh, shape: tuple[int, ...]) -> Layout:
        """Raise RedistError naming the offending part unless the layout fits mesh and shape."""
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
            s = self.shards(mesh, d)
            if shape[d] % s:
                raise RedistError(f"layout {self}: dim {d} of extent {shape[d]} is not "
                                  f"divisible by {s} (the product of axes {{{','.join(dim)}}})")
        return self

    def to_json(self) -> list[list[str]]:
        return [list(dim) for dim in self.dims]

    def __str__(self) -> str:
        return "[" + ",".join("{" + ",".join(dim) + "}" for dim in self.dims) + "]"


def _exact_div(a, b):
    return a // b if isinstance(a, int) and isinstance(b, int) else a / b
