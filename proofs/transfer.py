"""T1x: the `transfer` step's typing rule is sound for its source map (DESIGN §15).

A transfer's rule depends on its pairs (a table of ranks), so the statement is over
instances, not symbolic sizes: for every src mesh and dst mesh in a small range, every
placement (disjoint, overlapping, the same ranks), every pair of layouts and the shapes
given, the synthesized pairs and every one-pair mutation of them (a pair dropped, a
sender replaced by each other rank of A): whenever the typing rule accepts the transfer,
z3 proves over symbolic dst-mesh coordinates and local indices that every valid element
after the step comes, in range, from an A rank and local index holding the same global
element. Mutations the rule rejects are counted, not proved.
"""

from __future__ import annotations

import itertools
import time

import z3

from redist.core.cross.model import CrossProblem, PlacedMesh
from redist.core.cross.synthesize import b_plan_from, choose_pairs, mid_layout
from redist.core.errors import RedistError, TypingError
from redist.core.model.mesh import Mesh
from redist.core.ops import transfer as T
from redist.core.ops.common import global_index
from redist.core.smt.z3algebra import Z3

from .symbolic import all_layouts
from .theorems import TheoremResult

MESHES = ((("x", 2),), (("x", 2), ("y", 2)), (("x", 3),), (("x", 4),))


def transfer_query(cp: CrossProblem, mid, t: T.Transfer) -> list[z3.BoolRef]:
    """The negated soundness claim for one accepted transfer: unsat proves it."""
    pa = cp.a_problem
    shape = cp.shape
    coords = {a: z3.Int(f"c_{a}") for a in mid.mesh.names}
    n_mid = mid.src.local_shape(mid.mesh, shape)
    index = [z3.Int(f"i_{d}") for d in range(len(shape))]
    hyp = [z3.And(coords[a] >= 0, coords[a] < s) for a, s in mid.mesh.axes]
    hyp += [z3.And(index[d] >= 0, index[d] < n_mid[d]) for d in range(len(shape))]
    want = global_index(mid.mesh, shape, mid.src, coords, index)
    hyp += [want[d] < shape[d] for d in range(len(shape))]           # valid elements
    a_pos, a_coords, a_index = T.source(cp, mid, t, coords, index, Z3)
    n_src = pa.src.local_shape(pa.mesh, shape)
    got = global_index(pa.mesh, shape, pa.src, a_coords, a_index)
    ok = [a_pos >= 0, a_pos < pa.mesh.num_devices]
    ok += [z3.And(a_index[d] >= 0, a_index[d] < n_src[d]) for d in range(len(shape))]
    ok += [want[d] == got[d] for d in range(len(shape))]
    return hyp + [z3.Not(z3.And(*ok))]


def _placements(na: int, nb: int):
    a = tuple(range(na))
    yield a, tuple(range(na, na + nb))                       # disjoint
    yield a, tuple(range(na - 1, na - 1 + nb))               # overlapping in one rank
    if nb <= na:
        yield a, tuple(reversed(range(nb)))                  # the same ranks, reordered


def _mutations(cp: CrossProblem, t: T.Transfer):
    yield t
    for k in range(len(t.pairs)):
        yield T.Transfer(t.pairs[:k] + t.pairs[k + 1:])
        for r in cp.a.devices:
            if r != t.pairs[k][0]:
                yield T.Transfer(t.pairs[:k] + ((r, t.pairs[k][1]),) + t.pairs[k + 1:])


def t1_transfer(meshes=MESHES, shapes=((4,), (6,), (4, 6), (5, 3)),
                timeout_ms: int = 10_000) -> TheoremResult:
    res = TheoremResult("T1x", "the transfer's typing rule is sound for its source map "
                        "(every accepted transfer delivers every valid element)",
                        f"src and dst meshes {[str(Mesh(m)) for m in meshes]}, disjoint, "
                        f"overlapping and shared ranks, all layouts, shapes {list(shapes)}; "
                        "synthesized pairs and their one-pair mutations")
    t0 = time.perf_counter()
    rejected = 0
    for ma, mb in itertools.product(meshes, repeat=2):
        a = Mesh(ma)
        b = Mesh(tuple((n.replace("x", "u").replace("y", "v"), s) for n, s in mb))
        for shape in shapes:
            for src in all_layouts(a.names, len(shape)):
                for dst in all_layouts(b.names, len(shape)):
                    for ra, rb in _placements(a.num_devices, b.num_devices):
                        try:
                            cp = CrossProblem(PlacedMesh(a, ra), PlacedMesh(b, rb), shape,
                                              "int8", src, dst)
                        except RedistError:
                            continue
                        mid = b_plan_from(cp, mid_layout(cp)).problem
                        for t in _mutations(cp, choose_pairs(cp, mid)):
                            try:
                                T.check(cp, mid, t)
                            except TypingError:
                                rejected += 1
                                continue
                            res.cases += 1
                            s = z3.Solver()
                            s.set("timeout", timeout_ms)
                            s.add(*transfer_query(cp, mid, t))
                            if s.check() == z3.unsat:
                                res.bounded += 1
                            else:
                                res.failures.append(f"{cp}: pairs {t.pairs}")
    res.seconds = time.perf_counter() - t0
    res.bound += f" ({rejected} mutations rejected by the rule)"
    return res
