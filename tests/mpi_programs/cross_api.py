"""Run under mpiexec -n 6: redistribute between two meshes through the public form
`redistribute(local, mesh, src, dst, comm, dst_mesh=..., shape=...)`. Blocks are cut and
checked here with NumPy slicing (ceil(N/S) blocks), no redist helper. Rank 0 prints one
JSON line per case; a bad call must raise the same error on every rank (no hang)."""

import json
import sys

import numpy as np
from mpi4py import MPI

from redist.core.errors import RedistError
from redist.runtime import redistribute

comm = MPI.COMM_WORLD
rank = comm.Get_rank()


def cut(x, mesh, ranks, layout, r):
    """Rank r's block of x under layout on mesh (axes [(name, size)]) placed on ranks."""
    if r not in ranks:
        return None
    dev = ranks.index(r)
    coords = {}
    for name, size in reversed(mesh):
        coords[name] = dev % size
        dev //= size
    sl = []
    for d, axes in enumerate(layout):
        k, s = 0, 1
        for a in axes:
            size = dict(mesh)[a]
            k, s = k * size + coords[a], s * size
        c = -(-x.shape[d] // s)
        sl.append(slice(min(k * c, x.shape[d]), min((k + 1) * c, x.shape[d])))
    return np.array(x[tuple(sl)])           # a copy: its own buffer


CASES = [
    # overlapping meshes, uneven extents
    ("x=2,y=2@0-3", [("x", 2), ("y", 2)], [0, 1, 2, 3], [["x"], ["y"]],
     "u=2,v=2@2-5", [("u", 2), ("v", 2)], [2, 3, 4, 5], [[], ["v"]], (9, 7), "float32"),
    # disjoint, replicas on the dst mesh (a gather there), bfloat16 as bytes
    ("x=2@0,1", [("x", 2)], [0, 1], [["x"], []],
     "dp=2,tp=2@2-5", [("dp", 2), ("tp", 2)], [2, 3, 4, 5], [["tp"], []], (8, 8), "bfloat16"),
    # explicit, out-of-order device lists
    ("x=3@5,3,1", [("x", 3)], [5, 3, 1], [[], ["x"]],
     "y=2@0,4", [("y", 2)], [0, 4], [["y"], []], (6, 6), "int16"),
]

for a_text, a_mesh, a_ranks, src, b_text, b_mesh, b_ranks, dst, shape, dtype in CASES:
    import ml_dtypes  # noqa: F401  (bfloat16)
    dt = np.dtype(getattr(ml_dtypes, dtype)) if dtype == "bfloat16" else np.dtype(dtype)
    x = (np.arange(int(np.prod(shape))) % 251).reshape(shape).astype(dt)
    local = cut(x, a_mesh, a_ranks, src, rank)
    src_text = "[" + ",".join("{" + ",".join(d) + "}" for d in src) + "]"
    dst_text = "[" + ",".join("{" + ",".join(d) + "}" for d in dst) + "]"
    out = redistribute(local, a_text, src_text, dst_text, comm, dst_mesh=b_text, shape=shape)
    want = cut(x, b_mesh, b_ranks, dst, rank)
    ok = (out is None) if want is None else (out is not None and out.shape == want.shape
                                             and out.tobytes() == want.tobytes())
    oks = comm.gather(bool(ok), root=0)
    if rank == 0:
        print(json.dumps({"case": f"{a_text} -> {b_text}", "ok": all(oks)}), flush=True)

# The runtime's own count of live buffers stays within each rank's proved peak (a gather
# on the dst mesh grows the transfer's buffer in place).
from redist.core.cross.coerce import between  # noqa: E402
from redist.core.cross.synthesize import certified_cross  # noqa: E402
from redist.runtime.cross import redistribute_cross  # noqa: E402

plan, _, budget = certified_cross(between("x=2@0,1", "dp=2,tp=2@2-5", (64, 64), "float32",
                                          "[{x},{}]", "[{tp},{}]", 6))
x = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
local = cut(x, [("x", 2)], [0, 1], [["x"], []], rank)
out, stats = redistribute_cross([local], plan, comm, donate=True, budget=budget)
del local
fig = plan.figures()
proved = dict(zip(fig.ranks, fig.peak_per_rank, strict=True))
within = comm.gather(stats.peak_bytes <= proved[rank] and stats.peak_bytes > 0, root=0)
if rank == 0:
    print(json.dumps({"case": "peak", "ok": all(within)}), flush=True)

# A rank of the src mesh passing None: the same error everywhere, nothing hangs.
try:
    redistribute(None, "x=2@0,1", "[{x}]", "[{}]", comm, dst_mesh="y=2@2,3", shape=(4,))
    msg = "no error"
except RedistError as e:
    msg = str(e)
msgs = comm.gather(msg, root=0)
if rank == 0:
    print(json.dumps({"case": "bad", "messages": sorted(set(msgs))}), flush=True)
sys.stdout.flush()
