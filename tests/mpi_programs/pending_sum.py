"""Run under mpiexec -n 8: every rank holds its addend of a pending sum ([{x},{}]+{y} on
x=2,y=4), redistribute(...) reduces it to three layouts, and each rank's result must equal
NumPy's sum of all addends exactly (integer data)."""

import numpy as np
from mpi4py import MPI

from redist import parse_layout, parse_mesh
from redist.runtime import redistribute
from redist.runtime.arrays import shard_of

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
shape = (20, 6)                                     # 20 rows: uneven over x·y = 8
rng = np.random.default_rng(7)
addends = rng.integers(-1000, 1000, size=(4,) + shape).astype(np.int64)   # one per y
total = addends.sum(axis=0)
y = rank % 4
mesh = parse_mesh("x=2,y=4")
mine = shard_of(addends[y], mesh, parse_layout("[{x},{}]"), rank)
ok = True
for dst in ("[{x,y},{}]", "[{x},{}]", "[{},{y}]"):
    out = redistribute(mine.copy(), "x=2,y=4", "[{x},{}]+{y}", dst, comm, shape=shape)
    ok &= bool(np.array_equal(out, shard_of(total, mesh, parse_layout(dst), rank)))
oks = comm.gather(ok, root=0)
if rank == 0:
    print(f"{sum(oks)}/{len(oks)} ranks match NumPy's sums")
