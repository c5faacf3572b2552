"""Device meshes: ordered named axes; devices numbered row-major (DESIGN §1)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property

from redist.core.errors import RedistError
from redist.core.limits import MAX_AXES, MAX_DEVICES, MAX_NAME, check

# A sub-axis reference `x(p)s` (DESIGN §10); also the name of an atom of a refined mesh.
SUB_AXIS = re.compile(r"^([A-Za-z_]\w*)\(([0-9]{1,18})\)([0-9]{1,18})$")


@dataclass(frozen=True)
class Mesh:
    axes: tuple[tuple[str, int], ...]
    # Meshes of atoms (axes.py) name their axes by sub-axis refs such as `x(1)2`.
    allow_refs: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.axes, (tuple, list)) or not all(
                isinstance(p, (tuple, list)) and len(p) == 2 for p in self.axes):
            raise RedistError(f"Mesh: axes must be a sequence of (name, size) pairs, not "
                              f"{self.axes!r:.60}")
        object.__setattr__(self, "axes", tuple(tuple(p) for p in self.axes))
        check(len(self.axes), MAX_AXES, "the number of mesh axes", "MAX_AXES")
        seen: set[str] = set()
        devices = 1
        for name, size in self.axes:
            if not isinstance(name, str) or not (name.isidentifier() or (
                    self.allow_refs and SUB_AXIS.match(name))):
                raise RedistError(f"mesh axis name {name!r:.80} is not an identifier")
            check(len(name), MAX_NAME, f"the length of axis name {name[:20]!r}...", "MAX_NAME")
            if name in seen:
                raise RedistError(f"mesh axis {name!r} is declared twice")
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise RedistError(f"mesh axis {name!r} has size {size!r:.40}; sizes must be >= 1")
            devices *= size
            check(devices, MAX_DEVICES, "the device count of the mesh", "MAX_DEVICES")
            seen.add(name)

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.axes)

    @cached_property
    def num_devices(self) -> int:
        return math.prod(s for _, s in self.axes)

    @cached_property
    def _sizes(self) -> dict[str, int]:
        return dict(self.axes)

    def size(self, axis: str) -> int:
        try:
            return self._sizes[axis]
        except KeyError:
            have = ", ".join(self.names) or "no axes"
            raise RedistError(f"unknown mesh axis {axis!r:.40} (mesh has {have})") from None

    def has(self, axis: str) -> bool:
        return axis in self._sizes

    def coords(self, device: int) -> dict[str, int]:
        """Coordinates of a device; the first axis is the most significant."""
        out: dict[str, int] = {}
        for name, size in reversed(self.axes):
            out[name] = device % size
            device //= size
        return {n: out[n] for n in self.names}

    def device(self, coords: dict[str, int]) -> int:
        dev = 0
        for name, size in self.axes:
            dev = dev * size + coords[name]
        return dev

    def describe(self, device: int) -> str:
        """A device's coordinates, e.g. `(x=0, y=1)`."""
        return "(" + ", ".join(f"{a}={v}" for a, v in self.coords(device).items()) + ")"

    def __str__(self) -> str:
        return ",".join(f"{n}={s}" for n, s in self.axes)
