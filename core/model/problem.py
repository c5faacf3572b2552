"""A redistribution problem: mesh, global shape, dtype, source and destination layouts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from redist.core.errors import RedistError
from redist.core.limits import MAX_EXTENT, MAX_RANK, check
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh


def _numpy_dtype(dtype: str) -> np.dtype:
    try:
        dt = np.dtype(dtype) if isinstance(dtype, str) else None
    except TypeError:
        dt = None
    if dt is None or dt.kind not in "biufc":
        raise RedistError(f"unknown dtype {dtype!r:.40} (a numeric type: float32, float64, "
                          "int32, ...)")
    return dt


def itemsize(dtype: str) -> int:
    return _numpy_dtype(dtype).itemsize


def dtype_name(dtype: str) -> str:
    """The canonical name of a dtype (`f4` -> `float32`)."""
    return _numpy_dtype(dtype).name


@dataclass(frozen=True)
class Problem:
    mesh: Mesh
    shape: tuple[int, ...]
    dtype: str
    src: Layout
    dst: Layout

    def __post_init__(self) -> None:
        check(len(self.shape), MAX_RANK, "the array rank", "MAX_RANK")
        if any((not isinstance(n, int)) or isinstance(n, bool) or n < 1 for n in self.shape):
            raise RedistError(f"shape {self.shape!r:.80} must have integer extents >= 1")
        total = 1
        for n in self.shape:
            check(n, MAX_EXTENT, "an array extent", "MAX_EXTENT")
            total *= n
        check(total, MAX_EXTENT, "the number of array elements", "MAX_EXTENT")
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
