"""The `transfer {pairs}` step (DESIGN §15): point-to-point copies from mesh A to mesh B.

Its rule relates two meshes, so it is not in the one-mesh registry `OPS` (no one-mesh plan
may hold it); a two-mesh plan (core/cross/plan.py) is one transfer, then one-mesh steps on
B. This module holds, together, its value, typing rule, source map, byte figures and file
form; its backends are one function each: `run_transfer` in runtime/cross.py (MPI) and
`_transfer` in redist/jax_cross.py (JAX).

Before the step, A devices hold their src blocks; after it, every B device holds its block
of an intermediate layout `mid` on B (dst itself, or dst cut finer over B's replicated
axes, for B-mesh steps to fan out). A pair (a, b) of world ranks means: a sends b the part
of its A block that lies inside b's mid block (a copy when a == b).

Typing rule: every pair names a rank of A then a rank of B, no pair twice; for each B
device, the parts its pairs bring are non-empty, come from distinct A blocks (so they are
disjoint) and together are exactly the valid elements of its mid block.

Source map (over the Algebra, like the one-mesh collectives): for B device c and local
index i of mid, the global index g = b(c)·n_mid + i; the A block holding g is g // n_src
per dim; the pair of c whose A device holds that block names the A device a, and the
local index there is g mod n_src. One definition serves the simulator and the z3 proof.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from redist.core.cross.model import CrossProblem
from redist.core.errors import RedistError, TypingError
from redist.core.model.problem import Problem
from redist.core.ops.common import digits, global_index, mixed_radix
from redist.core.semantics.algebra import Algebra
from redist.core.semantics.blocks import block_ids, block_ranges


@dataclass(frozen=True)
class Transfer:
    pairs: tuple[tuple[int, int], ...]      # (A world rank, B world rank), sorted
    op = "transfer"

    def __post_init__(self) -> None:
        if not isinstance(self.pairs, (tuple, list)) or not all(
                isinstance(p, (tuple, list)) and len(p) == 2
                and all(isinstance(r, int) and not isinstance(r, bool) for r in p)
                for p in self.pairs):
            raise RedistError(f"transfer: pairs must be a list of [A rank, B rank] pairs, not "
                              f"{self.pairs!r:.60}")
        object.__setattr__(self, "pairs", tuple(sorted(tuple(p) for p in self.pairs)))


@lru_cache(maxsize=64)
def boxes(cp: CrossProblem, mid: Problem, t: Transfer) -> tuple[tuple[np.ndarray, np.ndarray],
                                                               ...]:
    """Per pair: the global box [lo, hi) of valid elements a sends b (read-only: cached, the
    runtime asks on every call)."""
    pa = cp.a_problem
    lo_a, hi_a = block_ranges(pa.mesh, cp.shape, pa.src)
    lo_m, hi_m = block_ranges(mid.mesh, cp.shape, mid.src)
    out = []
    for a, b in t.pairs:
        i, j = cp.a.position[a], cp.b.position[b]
        lo = np.maximum(lo_a[i], lo_m[j])
        hi = np.maximum(lo, np.minimum(hi_a[i], hi_m[j]))
        lo.flags.writeable = hi.flags.writeable = False
        out.append((lo, hi))
    return tuple(out)


def pair_slices(cp: CrossProblem, mid: Problem, t: Transfer
                ) -> list[tuple[int, int, tuple[slice, ...], tuple[slice, ...]]]:
    """Per pair (a, b): the part a sends as slices of a's (padded) A block, and where it
    lands as slices of b's block of mid (what an engine without subarray types indexes)."""
    pa = cp.a_problem
    lo_a, _ = block_ranges(pa.mesh, cp.shape, pa.src)
    lo_m, _ = block_ranges(mid.mesh, cp.shape, mid.src)
    out = []
    for (a, b), (lo, hi) in zip(t.pairs, boxes(cp, mid, t), strict=True):
        i, j = cp.a.position[a], cp.b.position[b]
        out.append((a, b, tuple(slice(int(x - o), int(y - o))
                                for x, y, o in zip(lo, hi, lo_a[i], strict=True)),
                    tuple(slice(int(x - o), int(y - o))
                          for x, y, o in zip(lo, hi, lo_m[j], strict=True))))
    return out


def pair_elements(cp: CrossProblem, mid: Problem, t: Transfer) -> list[int]:
    return [int(np.prod(hi - lo)) for lo, hi in boxes(cp, mid, t)]


def check(cp: CrossProblem, mid: Problem, t: Transfer) -> None:
    """The typing rule (module doc); TypingError naming the pair or device otherwise."""
    seen: set[tuple[int, int]] = set()
    for a, b in t.pairs:
        if a not in cp.a:
            raise TypingError(f"transfer: pair ({a}, {b}): rank {a} is not a device of mesh "
                              f"{cp.a}")
        if b not in cp.b:
            raise TypingError(f"transfer: pair ({a}, {b}): rank {b} is not a device of dst "
                              f"mesh {cp.b}")
        if (a, b) in seen:
            raise TypingError(f"transfer: pair ({a}, {b}) is listed twice")
        seen.add((a, b))
    pa = cp.a_problem
    akey = [tuple(r) for r in block_ids(pa.mesh, pa.src).tolist()]
    counts = pair_elements(cp, mid, t)
    lo_m, hi_m = block_ranges(mid.mesh, cp.shape, mid.src)
    got = {b: 0 for b in cp.b.devices}
    blocks: dict[int, dict[tuple[int, ...], int]] = {b: {} for b in cp.b.devices}
    for (a, b), n in zip(t.pairs, counts, strict=True):
        if n == 0:
            raise TypingError(f"transfer: pair ({a}, {b}): rank {a}'s block has no element "
                              f"of rank {b}'s block")
        k = akey[cp.a.position[a]]
        if k in blocks[b]:
            raise TypingError(f"transfer: ranks {blocks[b][k]} and {a} hold the same block, "
                              f"both paired with rank {b} (its elements would come twice)")
        blocks[b][k] = a
        got[b] += n
    for j, b in enumerate(cp.b.devices):
        want = int(np.prod(hi_m[j] - lo_m[j]))
        if got[b] != want:
            raise TypingError(f"transfer: rank {b} needs {want} elements of its block and its "
                              f"pairs bring {got[b]}")


def source(cp: CrossProblem, mid: Problem, t: Transfer, coords: dict[str, Any],
           index: list[Any], alg: Algebra) -> tuple[Any, dict[str, Any], list[Any]]:
    """For B device `coords` (atoms of mid.mesh) and local index of mid: the A device
    (its position in A; the A device count, out of range, if no pair brings the element),
    its coordinates on A's atoms and the local index there."""
    pa = cp.a_problem
    shape = cp.shape
    g = global_index(mid.mesh, shape, mid.src, coords, index)
    n_src = pa.src.local_shape(pa.mesh, shape)
    blk = [alg.div(g[d], n_src[d]) for d in range(len(shape))]
    me = mixed_radix(mid.mesh, mid.mesh.names, coords)
    ids = block_ids(pa.mesh, pa.src)
    a_pos: Any = pa.mesh.num_devices
    for a, b in reversed(t.pairs):
        i = cp.a.position[a]
        cond = alg.all(alg.eq(me, cp.b.position[b]),
                       *[alg.eq(blk[d], int(ids[i, d])) for d in range(len(shape))])
        a_pos = alg.ite(cond, i, a_pos)
    a_coords = digits(pa.mesh, pa.mesh.names, a_pos, alg)
    a_index = [alg.mod(g[d], n_src[d]) for d in range(len(shape))]
    return a_pos, a_coords, a_index


def describe(t: Transfer) -> str:
    senders = sorted({a for a, _ in t.pairs})
    receivers = sorted({b for _, b in t.pairs})
    return (f"transfer {len(t.pairs)} pairs, {len(senders)} senders -> {len(receivers)} "
            "receivers")


def to_json(t: Transfer, mid_layout: list) -> dict[str, Any]:
    return {"op": "transfer", "layout": mid_layout, "pairs": [list(p) for p in t.pairs]}


def from_json(js: Any) -> tuple[Transfer, Any]:
    """(the step, its target layout value) from a step object; the caller checks both."""
    if not isinstance(js, dict) or js.get("op") != "transfer":
        raise RedistError("plan: a two-mesh plan's first step must be {\"op\": \"transfer\", "
                          "\"layout\": ..., \"pairs\": ...}")
    extra = set(js) - {"op", "layout", "pairs", "layout_after"}
    if extra:
        raise RedistError(f"plan: transfer has unknown field {sorted(extra)[0]!r:.40}")
    for key in ("layout", "pairs"):
        if key not in js:
            raise RedistError(f"plan: transfer is missing {key!r}")
    return Transfer(js["pairs"]), js["layout"]


# --- byte figures ------------------------------------------------------------------------

def volume_bytes(cp: CrossProblem, mid: Problem, t: Transfer) -> int:
    """Bytes received over all pairs between different ranks."""
    return sum(n for (a, b), n in zip(t.pairs, pair_elements(cp, mid, t), strict=True)
               if a != b) * cp.itemsize


def cross_mesh_bytes(cp: CrossProblem, mid: Problem, t: Transfer) -> int:
    """Bytes sent by ranks outside B (over the slow link between the meshes)."""
    return sum(n for (a, _), n in zip(t.pairs, pair_elements(cp, mid, t), strict=True)
               if a not in cp.b) * cp.itemsize


def working_bytes(cp: CrossProblem, mid: Problem, rank: int) -> int:
    """What a rank holds while the transfer runs: its A block if it is in A, its block of
    mid if it is in B (padded, as the runtime allocates them)."""
    return ((cp.a_block_bytes() if rank in cp.a else 0)
            + (mid.local_bytes(mid.src) if rank in cp.b else 0))


def _held_by_b(cp: CrossProblem) -> list[int]:
    """Positions in A of one holder of each distinct A block some B rank holds."""
    pa = cp.a_problem
    keys = [tuple(r) for r in block_ids(pa.mesh, pa.src).tolist()]
    out: dict[tuple[int, ...], int] = {}
    for r in cp.b.devices:
        if r in cp.a:
            out.setdefault(keys[cp.a.position[r]], cp.a.position[r])
    return list(out.values())


def _overlap(lo1, hi1, lo2, hi2) -> np.ndarray:
    return np.prod(np.maximum(np.minimum(hi1, hi2) - np.maximum(lo1, lo2), 0), axis=-1)


def cross_lower_bound_bytes(cp: CrossProblem) -> int:
    """Bytes of the distinct dst blocks that no B rank holds in its A block: what must cross
    from outside B whatever the plan."""
    pb, pa = cp.b_problem, cp.a_problem
    keys = [tuple(r) for r in block_ids(pb.mesh, pb.dst).tolist()]
    first = list({k: j for j, k in reversed(list(enumerate(keys)))}.values())
    lo_d, hi_d = block_ranges(pb.mesh, cp.shape, pb.dst)
    lo_a, hi_a = block_ranges(pa.mesh, cp.shape, pa.src)
    held = _held_by_b(cp)
    total = 0
    for j in first:
        n = int(np.prod(hi_d[j] - lo_d[j]))
        # Distinct A blocks are disjoint: subtract each one's share of the block.
        n -= int(sum(_overlap(lo_d[j], hi_d[j], lo_a[i], hi_a[i]) for i in held))
        total += n
    return total * cp.itemsize


def lower_bound_bytes(cp: CrossProblem) -> int:
    """Σ over B ranks of the bytes of its dst block that it does not hold in its A block."""
    pb, pa = cp.b_problem, cp.a_problem
    lo_d, hi_d = block_ranges(pb.mesh, cp.shape, pb.dst)
    lo_a, hi_a = block_ranges(pa.mesh, cp.shape, pa.src)
    total = 0
    for j, r in enumerate(cp.b.devices):
        n = int(np.prod(hi_d[j] - lo_d[j]))
        if r in cp.a:
            i = cp.a.position[r]
            n -= int(_overlap(lo_d[j], hi_d[j], lo_a[i], hi_a[i]))
        total += n
    return total * cp.itemsize
