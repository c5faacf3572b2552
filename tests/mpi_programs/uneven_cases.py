"""Run under mpiexec: an independent program that builds every rank's blocks by itself with
the ceil(N/S) convention (JAX/XLA, torch.chunk: DESIGN §11), sub-axes read by their formula
(DESIGN §10), calls redistribute(local, mesh, src, dst, comm) and checks the dst block.
It uses no redist helper to make or check blocks. Rank 0 prints one JSON line per case."""

import json
import math
import re
import sys

import numpy as np
from mpi4py import MPI

from redist.core.model.dtypes import same_bits
from redist.runtime import redistribute

comm = MPI.COMM_WORLD
rank = comm.Get_rank()


def parse(mesh_text):
    return [(n, int(s)) for n, s in (item.split("=") for item in mesh_text.split(","))]


def coord(mesh, ref, device):
    """Coordinate of `device` on axis or sub-axis `ref`, row-major device numbering."""
    sizes = dict(mesh)
    c, rest = {}, device
    for name, size in reversed(mesh):
        c[name] = rest % size
        rest //= size
    m = re.fullmatch(r"(\w+)\((\d+)\)(\d+)", ref)
    if not m:
        return c[ref], sizes[ref]
    name, pre, size = m.group(1), int(m.group(2)), int(m.group(3))
    return (c[name] // (sizes[name] // (pre * size))) % size, size


def block(mesh, layout, shape, device):
    out = []
    for d, refs in enumerate(layout):
        b, shards = 0, 1
        for ref in refs:
            v, s = coord(mesh, ref, device)
            b, shards = b * s + v, shards * s
        c = -(-shape[d] // shards)
        lo = min(b * c, shape[d])
        out.append(slice(lo, min(lo + c, shape[d])))
    return tuple(out)


def as_text(layout):
    return "[" + ",".join("{" + ",".join(d) + "}" for d in layout) + "]"


cases = json.load(open(sys.argv[1]))
for k, (mesh_text, shape, src, dst) in enumerate(cases):
    mesh = parse(mesh_text)
    if math.prod(s for _, s in mesh) != comm.Get_size():
        continue
    x = np.arange(math.prod(shape), dtype=np.float64).reshape(shape)
    local = np.ascontiguousarray(x[block(mesh, src, shape, rank)])
    try:
        out = redistribute(local, mesh_text, as_text(src), as_text(dst), comm)
        ok = same_bits(out, x[block(mesh, dst, shape, rank)])
        err = ""
    except Exception as e:          # reported, so the test shows which case failed
        ok, err = False, f"{type(e).__name__}: {e}"
    oks = comm.gather((ok, err), root=0)
    if rank == 0:
        print(json.dumps({"case": k, "ok": all(o for o, _ in oks),
                          "errors": sorted({e for _, e in oks if e})}), flush=True)
