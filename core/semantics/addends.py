"""Source maps that return sets of addends (DESIGN §14).

On a pending layout a device's value is one addend of a sum, and a reduction step adds the
values of its group: for a device and local index after the step, the source is not one
(device, local index) but a set of them, one per coordinate `k` of the group on the summed
axes. The set is written as a map from those coordinates: `addend(step, ..., k)` is the
k-th member, so the same algebra serves the simulator (k enumerated), the solver (k
symbolic) and the runtime's tests. A step that only moves data sums over no axes: its one
addend is its plain source.
"""

from __future__ import annotations

from typing import Any

from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.semantics.algebra import Algebra
from redist.core.semantics.sourcemap import Coords, Index, source


def summed_axes(step: Any) -> tuple[str, ...]:
    """The axes whose group members' values a step adds ((): it moves data only)."""
    fn = getattr(step, "summed_axes", None)
    return fn() if fn is not None else ()


def addend(step: Any, mesh: Mesh, shape: tuple[int, ...], before: Layout, after: Layout,
           coords: Coords, index: Index, k: Coords, alg: Algebra) -> tuple[Coords, Index]:
    """Member `k` (coordinates on summed_axes(step)) of the set of (device, local index)
    pairs before the step whose values are added into (coords, index) after it."""
    fn = getattr(step, "addend", None)
    if fn is None:
        return source(step, mesh, shape, before, after, coords, index, alg)
    return fn(mesh, shape, before, after, coords, index, k, alg)
