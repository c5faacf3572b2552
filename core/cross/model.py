"""Meshes placed on ranks of one world, and problems between two of them (DESIGN §15).

A placed mesh is a mesh plus the world ranks of its devices, in device order: `x=2,y=4@8-15`
(or `@0,2,4,6`, ranges and single ranks mixed). A mesh written without `@` keeps today's
meaning: ranks 0..n-1 (`explicit` is then False, and plan files keep their one-mesh form).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from redist.core import args
from redist.core.errors import RedistError
from redist.core.limits import MAX_DEVICES
from redist.core.model.dtypes import dtype_name, itemsize
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_mesh

_RANGE = re.compile(r"^\s*([0-9]{1,9})\s*(?:-\s*([0-9]{1,9}))?\s*$")


@dataclass(frozen=True)
class PlacedMesh:
    mesh: Mesh
    devices: tuple[int, ...]              # world rank of device k of the mesh
    explicit: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        args.instance(self.mesh, Mesh, "PlacedMesh", "mesh", "a Mesh")
        devs = tuple(self.devices)
        if not all(isinstance(r, int) and not isinstance(r, bool) for r in devs):
            raise RedistError(f"mesh {self.mesh}: device ranks must be integers, not "
                              f"{self.devices!r:.60}")
        if len(devs) != self.mesh.num_devices:
            raise RedistError(f"mesh {self.mesh} has {self.mesh.num_devices} devices but its "
                              f"device list names {len(devs)} ranks")
        if any(r < 0 for r in devs):
            raise RedistError(f"mesh {self.mesh}: device rank {min(devs)} is negative")
        seen: set[int] = set()
        for r in devs:
            if r in seen:
                raise RedistError(f"mesh {self.mesh}: rank {r} is listed twice in its devices")
            seen.add(r)
        object.__setattr__(self, "devices", devs)

    @classmethod
    def default(cls, mesh: Mesh) -> PlacedMesh:
        return cls(mesh, tuple(range(mesh.num_devices)), explicit=False)

    @cached_property
    def position(self) -> dict[int, int]:
        """world rank -> device index in this mesh."""
        return {r: k for k, r in enumerate(self.devices)}

    def __contains__(self, rank: int) -> bool:
        return rank in self.position

    def __str__(self) -> str:
        return f"{self.mesh}@{format_ranks(self.devices)}" if self.explicit else str(self.mesh)


def format_ranks(ranks: tuple[int, ...]) -> str:
    """`0-7`, `0,2,4,6`: consecutive runs written as ranges."""
    out, k = [], 0
    while k < len(ranks):
        j = k
        while j + 1 < len(ranks) and ranks[j + 1] == ranks[j] + 1:
            j += 1
        out.append(str(ranks[k]) if j == k else f"{ranks[k]}-{ranks[j]}")
        k = j + 1
    return ",".join(out)


def parse_ranks(text: str) -> tuple[int, ...]:
    """`0-7`, `8,9,10,11`, `0-3,8-11` -> world ranks in that order."""
    out: list[int] = []
    for item in text.split(","):
        m = _RANGE.match(item)
        if not m:
            raise RedistError(f"device list item {item.strip()!r:.40} is not a rank or a "
                              "range lo-hi")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise RedistError(f"device range {lo}-{hi} is empty (write lo-hi with lo <= hi)")
        if len(out) + hi - lo + 1 > MAX_DEVICES:
            raise RedistError(f"device list {text.strip()[:40]!r} names more than "
                              f"{MAX_DEVICES} ranks")
        out.extend(range(lo, hi + 1))
    return tuple(out)


def parse_placed_mesh(text: str) -> PlacedMesh:
    """`x=2,y=4@8-15` -> PlacedMesh; without `@`, ranks 0..n-1."""
    args.text(text, "parse_placed_mesh", "text")
    if text.count("@") > 1:
        raise RedistError(f"mesh {text.strip()!r:.60} has more than one '@'")
    spec, _, ranks = text.partition("@")
    mesh = parse_mesh(spec)
    if "@" not in text:
        return PlacedMesh.default(mesh)
    if not ranks.strip():
        raise RedistError(f"mesh {text.strip()!r:.60}: nothing after '@' (write e.g. @0-7)")
    return PlacedMesh(mesh, parse_ranks(ranks))


@dataclass(frozen=True)
class CrossProblem:
    """src (a layout on mesh A) -> dst (a layout on mesh B), one global array."""
    a: PlacedMesh
    b: PlacedMesh
    shape: tuple[int, ...]
    dtype: str
    src: Layout                 # the user's layout on A (sub-axes allowed)
    dst: Layout                 # the user's layout on B
    world: int | None = None    # ranks in the world (`--np`); None: just enough for both

    def __post_init__(self) -> None:
        args.instance(self.a, PlacedMesh, "CrossProblem", "a", "a PlacedMesh")
        args.instance(self.b, PlacedMesh, "CrossProblem", "b", "a PlacedMesh")
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        for name, lay in (("src", self.src), ("dst", self.dst)):
            if getattr(lay, "sum", ()):
                # The transfer moves values, it does not add them: a pending sum must be
                # reduced on its own mesh first (DESIGN §14 inside one mesh, then §15).
                raise RedistError(f"{name} {lay}: pending sums between two meshes are not "
                                  "supported yet; reduce on the src mesh first (a one-mesh "
                                  "plan to a layout without +{...}), then move")
        # The one-mesh checks of each end: shape, layouts against their own mesh.
        pa = Problem(self.a.mesh, self.shape, self.dtype, self.src, self.src)
        object.__setattr__(self, "shape", pa.shape)
        Problem(self.b.mesh, self.shape, self.dtype, self.dst, self.dst)
        if self.world is not None:
            args.positive_int(self.world, "CrossProblem", "world", "a positive integer")
            for name, pm in (("mesh", self.a), ("dst mesh", self.b)):
                over = [r for r in pm.devices if r >= self.world]
                if over:
                    raise RedistError(f"{name} {pm} uses rank {over[0]} but the world has "
                                      f"{self.world} ranks (0-{self.world - 1})")

    @property
    def ranks(self) -> int:
        """The world size the problem runs on: `world`, or just enough for both meshes."""
        if self.world is not None:
            return self.world
        return max(max(self.a.devices), max(self.b.devices)) + 1

    @cached_property
    def itemsize(self) -> int:
        return itemsize(self.dtype)

    @cached_property
    def a_problem(self) -> Problem:
        """The src end as a one-mesh problem (lowered to atoms)."""
        return Problem(self.a.mesh, self.shape, self.dtype, self.src, self.src)

    @cached_property
    def b_problem(self) -> Problem:
        return Problem(self.b.mesh, self.shape, self.dtype, self.dst, self.dst)

    @cached_property
    def union(self) -> tuple[int, ...]:
        """World ranks in either mesh, ascending."""
        return tuple(sorted(set(self.a.devices) | set(self.b.devices)))

    def a_block_bytes(self) -> int:
        return self.a_problem.local_bytes(self.a_problem.src)

    def b_block_bytes(self) -> int:
        return self.b_problem.local_bytes(self.b_problem.dst)

    def bound(self, rank: int) -> int:
        """Per device: the larger of its A block and its B block, 0 for a mesh it is not in."""
        return max(self.a_block_bytes() if rank in self.a else 0,
                   self.b_block_bytes() if rank in self.b else 0)

    def __str__(self) -> str:
        return f"{self.src} on {self.a} -> {self.dst} on {self.b}, shape {self.shape}"
