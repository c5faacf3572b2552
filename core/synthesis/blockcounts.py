"""A proof that no plan within a memory limit exists, from the number of blocks per dim.

Every portable step changes the number of blocks S of a dim d (the product of the sizes
of the atoms sharding it) only between a coarse count S and a finer one S·g whose blocks
nest (DESIGN §11: blocks of ⌈N/S⌉ split locally into g, or the dim is held whole): a
slice, a reduce-scatter or an all-to-all into d refines it so, a gather or an all-to-all
out of d coarsens it so, and a permute keeps it. Any sub-axis split counts, so S ranges
over the divisors of the device count. A layout with S blocks on d holds at least
⌈N_d/S⌉ times the smallest block the other dims can have, so counts whose blocks exceed
the limit are never passed through. If dst's count of some dim cannot be reached from
src's on this graph, no plan of the portable steps and the two reductions stays within
the limit, of any length: a cheap proof where the exhaustive search runs out of budget.
(The MPI all_exchange, which goes to any layout at once, is not among these steps.)
"""

from __future__ import annotations

import math

from redist.core.model.problem import Problem
from redist.core.ops.common import nests


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


def unreachable_dim(problem: Problem, limit: int) -> tuple[int, int, int] | None:
    """(dim, src blocks, dst blocks) of a dim whose dst count of blocks no sequence of
    steps within `limit` reaches, or None when every dim's may be reachable."""
    mesh, shape, item = problem.mesh, problem.shape, problem.itemsize
    devices = mesh.num_devices
    counts = _divisors(devices)
    smallest = [-(-n // devices) for n in shape]
    for d, n in enumerate(shape):
        others = math.prod(smallest[:d] + smallest[d + 1:])

        def fits(s: int, n: int = n, others: int = others) -> bool:
            return -(-n // s) * others * item <= limit
        start, goal = problem.src.shards(mesh, d), problem.dst.shards(mesh, d)
        seen, todo = {start}, [start]
        while todo:
            s = todo.pop()
            for t in counts:
                if t in seen or not fits(t):
                    continue
                coarse, fine = min(s, t), max(s, t)
                if fine % coarse == 0 and nests(-(-n // coarse), fine // coarse, n):
                    seen.add(t)
                    todo.append(t)
        if goal not in seen:
            return d, start, goal
    return None
