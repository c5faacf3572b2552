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
from redist.core.ops import Collective, source
from redist.core.smt.z3algebra import Z3

from .symbolic import step_instance


def soundness_query(names: tuple[str, ...], before: Layout,
                    step: Collective) -> list[z3.BoolRef]:
    """Hypotheses and the negated claim: unsat proves the step sound for all sizes."""
    q = step_instance(names, before, step)
    c2, i2 = source(step, q.mesh, q.shape, before, q.after, q.coords, q.index, Z3)
    ok = [z3.And(c2[a] >= 0, c2[a] < q.mesh.size(a)) for a in names]
    return q.hyp + [z3.Not(z3.And(*ok, *q.lands_on(c2, i2)))]
