"""Run under mpiexec with case names: for each case, every rank must raise the same clear
RedistError (no hang). Rank 0 prints one line per case, `<case>: <n>/<size> ranks raised:
<message>`. Each case runs on a communicator of its own (a Dup of the world), so nothing one
case leaves behind can match another's messages."""

import sys

import numpy as np
from mpi4py import MPI

from redist.core.errors import RedistError
from redist.core.model.dtypes import same_bits
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.synthesis.synthesize import naive, normal
from redist.runtime import redistribute
from redist.runtime.arrays import gather_global, shard_of

world = MPI.COMM_WORLD
rank = world.Get_rank()


def run_case(case: str, comm) -> None:
    mesh = parse_mesh("x=2,y=2")
    problem = Problem(mesh, (8, 8), "float32", parse_layout("[{x},{}]"),
                      parse_layout("[{},{y}]"))
    plan = normal(problem).plan
    local = np.zeros((4, 8), np.float32)
    if case == "shape" and rank == 2:
        local = np.zeros((4, 4), np.float32)
    if case == "dtype" and rank == 1:
        local = local.astype(np.float64)
    if case == "plans" and rank == 3:
        plan = normal(Problem(mesh, (8, 8), "float32", parse_layout("[{x},{}]"),
                              parse_layout("[{},{x}]"))).plan
    if case == "devices-one" and rank == 2:
        # this rank alone believes in an 8-device mesh: it must not block the others
        plan = normal(Problem(parse_mesh("x=2,y=4"), (8, 8), "float32", parse_layout("[{x},{}]"),
                              parse_layout("[{},{y}]"))).plan
        local = np.zeros((4, 8), np.float32)
    if case == "mesh-one" and rank == 1:
        # same device count, another mesh shape
        plan = normal(Problem(parse_mesh("x=4"), (8, 8), "float32", parse_layout("[{x},{}]"),
                              parse_layout("[{},{}]"))).plan
        local = np.zeros((2, 8), np.float32)
    if case == "unverified":
        plan = naive(problem)
    if case == "ranks":
        mesh8 = parse_mesh("x=2,y=4")
        plan = normal(Problem(mesh8, (8, 8), "float32", parse_layout("[{x},{}]"),
                              parse_layout("[{},{y}]"))).plan
        local = np.zeros((4, 8), np.float32)
    try:
        if case == "five-args":
            # The (mesh, src, dst) form; rank 0 reports whether every rank got its dst block.
            x = np.arange(64, dtype=np.float32).reshape(8, 8)
            blk = shard_of(x, mesh, parse_layout("[{x},{}]"), rank)
            out = redistribute(blk, "x=2,y=2", "[{x},{}]", "[{},{y}]", comm)
            good = same_bits(out, x[:, (rank % 2) * 4:(rank % 2) * 4 + 4])
            back = gather_global(out, mesh, (8, 8), parse_layout("[{},{y}]"), comm)
            if rank == 0:
                good &= same_bits(back, x)
            msg = "NO ERROR" if comm.allreduce(good, op=MPI.LAND) else "WRONG DATA"
        else:
            redistribute(local, plan, comm)
            msg = "NO ERROR"
    except RedistError as e:
        msg = str(e)
    msgs = comm.gather(msg, root=0)
    if rank == 0:
        errs = sum(m != "NO ERROR" for m in msgs)
        print(f"{case}: {errs}/{comm.Get_size()} ranks raised: {msgs[0]}", flush=True)


for name in sys.argv[1:]:
    c = world.Dup()
    run_case(name, c)
    c.Free()
