"""A redistribution problem: mesh, global shape, dtype, source and destination layouts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from redist.core.errors import RedistError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh


def itemsize(dtype: str) -> int:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.kind not in "biufc":
        raise RedistError(f"unknown dtype {dtype!r} (a numeric type: float32, float64, int32, "
                          "...)")
    return dt.itemsize


@dataclass(frozen=True)
class Problem:
    mesh: Mesh
    shape: tuple[int, ...]
    dtype: str
    src: Layout
    dst: Layout

    def __post_init__(self) -> None:
        if any((not isinstance(n, int)) or n < 1 for n in self.shape):
            raise RedistError(f"shape {self.shape} must have integer extents >= 1")
        itemsize(self.dtype)
        self.src.validate(self.mesh, self.shape)
        self.dst.validate(self.mesh, self.shape)

    @property
    def itemsize(self) -> int:
        return itemsize(self.dtype)

    def local_bytes(self, layout: Layout) -> int:
        return layout.local_size(self.mesh, self.shape) * self.itemsize

    @property
    def bound_bytes(self) -> int:
        return max(self.local_bytes(self.src), self.local_bytes(self.dst))
