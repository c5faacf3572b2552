"""Byte accounting of the buffers the runtime holds (DESIGN §7: per-rank peak).

Every buffer a step allocates goes through the tracker (input copies, packing and receive
buffers, outputs), and short-lived scratch that MPI or a local transpose needs is declared
with `scratch`, so the peak is what the rank really held at once.
"""

from __future__ import annotations

import numpy as np

from . import alloc
from .alloc import buffer_of


class MemoryTracker:
    """Counts live bytes of tracked buffers; views share their base's count."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self._held: dict[int, int] = {}

    def hold(self, arr: np.ndarray) -> np.ndarray:
        """Start counting a buffer the runtime keeps alive (e.g. the input)."""
        key = id(buffer_of(arr))
        if key not in self._held:
            self._held[key] = buffer_of(arr).nbytes
            self.live += self._held[key]
            self.peak = max(self.peak, self.live)
        return arr

    def empty(self, shape: tuple[int, ...], dtype: np.dtype, fixed: bool = False
              ) -> np.ndarray:
        """A counted buffer: a mapping of its own (runtime/alloc.py), which a later step
        can grow without a copy; `fixed` (scratch, packing: never grown) from NumPy,
        whose heap reuses memory from call to call instead of faulting in fresh pages."""
        return self.hold(np.empty(shape, dtype=dtype) if fixed else alloc.empty(shape, dtype))

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self.hold(alloc.zeros(shape, dtype))

    def scratch(self, nbytes: int) -> None:
        """A buffer alive only during the current operation (e.g. MPI's copy of one chunk)."""
        self.peak = max(self.peak, self.live + nbytes)

    def release(self, arr: np.ndarray) -> None:
        key = id(buffer_of(arr))
        self.live -= self._held.pop(key, 0)


class Held:
    """The runtime's reference to a step's input. A buffer is freed only when nothing
    refers to it, so a step that is done with its input drops this reference (`free`),
    and the caller keeps no other (it hands the block over in a Held)."""

    def __init__(self, a: np.ndarray, own: bool) -> None:
        self.a: np.ndarray | None = a
        self.own = own            # the runtime may overwrite and free it (else the caller's)

    def free(self, mem: MemoryTracker) -> None:
        if self.own and self.a is not None:
            mem.release(self.a)
            self.a = None
