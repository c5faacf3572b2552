"""Theorem 1: every collective's typing rule is sound for its source map.

For a step whose typing rule takes layout B to layout A: for every device c and every
local index i of A, the source map names a device c' and local index i' in range for B,
and B's element there is A's global element at (c, i). Stated with symbolic axis sizes
and extents (the divisibility half of the typing rule as hypotheses), symbolic
coordinates and indices, so each query covers every mesh with that axis structure.
"""

from __future__ import annotations

import z3

from redist.core.model.layout import Layout
from redist.core.ops import AllPermute, Collective, reshape, source
from redist.core.ops.common import global_index
from redist.core.smt.z3algebra import Z3

from .symbolic import SymbolicMesh


def soundness_query(names: tuple[str, ...], before: Layout,
                    step: Collective) -> list[z3.BoolRef]:
    """Hypotheses and the negated claim: unsat proves the step sound for all sizes."""
    mesh = SymbolicMesh(names)
    after = reshape(step, before)
    rank = before.rank
    shape = tuple(z3.Int(f"N_{d}") for d in range(rank))
    hyp: list[z3.BoolRef] = [mesh.size(a) >= 1 for a in names]
    hyp += [n >= 1 for n in shape]
    for lay in (before, after):
        hyp += [shape[d] % lay.shards(mesh, d) == 0 for d in range(rank)
                if lay.dims[d]]
    n_before = before.local_shape(mesh, shape)
    n_after = after.local_shape(mesh, shape)
    if isinstance(step, AllPermute):
        hyp += [before.shards(mesh, d) == after.shards(mesh, d) for d in range(rank)]
    coords = {a: z3.Int(f"c_{a}") for a in names}
    index = [z3.Int(f"i_{d}") for d in range(rank)]
    hyp += [z3.And(coords[a] >= 0, coords[a] < mesh.size(a)) for a in names]
    hyp += [z3.And(index[d] >= 0, index[d] < n_after[d]) for d in range(rank)]
    c2, i2 = source(step, mesh, shape, before, after, coords, index, Z3)
    ok = [z3.And(c2[a] >= 0, c2[a] < mesh.size(a)) for a in names]
    ok += [z3.And(i2[d] >= 0, i2[d] < n_before[d]) for d in range(rank)]
    want = global_index(mesh, shape, after, coords, index)
    got = global_index(mesh, shape, before, c2, i2)
    ok += [want[d] == got[d] for d in range(rank)]
    return hyp + [z3.Not(z3.And(*ok))]
