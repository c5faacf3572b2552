"""Waiting without holding the core: the napping wait (`nap_until_done`) that the
runtime's lock-step messages (execute.wait_all) and the broadcasts other ranks may wait
long for (rank 0 proving a plan, synthesizing one, reading the next request: `bcast_text`)
both use.

MPICH's blocking bcast spins (sched_yield) for as long as the root is busy. Where ranks share
cores, seven ranks waiting out a one-second proof burn seven core-seconds and slow the root
down (measured, 8 ranks on 2 cores: 1.7 s of CPU per waiting rank while rank 0 verified for
1.7 s). A nap of at most BCAST_NAP_MAX_S costs that much latency once per broadcast."""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

BCAST_NAP_MIN_S, BCAST_NAP_MAX_S = 50e-6, 2e-3


def nap_until_done(reqs: list[MPI.Request], polls: int, nap_min: float,
                   nap_max: float) -> None:
    """Wait for `reqs`: `polls` polls, then naps from `nap_min` doubling up to `nap_max`
    seconds between polls."""
    for _ in range(polls):
        if MPI.Request.Testall(reqs):
            return
    pause = nap_min
    while not MPI.Request.Testall(reqs):
        time.sleep(pause)
        pause = min(2 * pause, nap_max)


def bcast_text(comm: MPI.Comm, text: str | None, root: int = 0) -> str:
    """`comm.bcast(text, root)` for a str (the root's `text`; the others pass None): the
    length goes first in a nonblocking broadcast the other ranks nap on, then the bytes in a
    blocking one that every rank reaches at once."""
    mine = comm.Get_rank() == root
    # surrogatepass: any str goes through (a line read with surrogateescape too); an
    # encoding error on the root before the Ibcast would leave the others waiting.
    data = text.encode("utf-8", "surrogatepass") if mine else b""
    n = np.array([len(data)], dtype=np.int64)
    nap_until_done([comm.Ibcast([n, MPI.INT64_T], root=root)], 0, BCAST_NAP_MIN_S,
                   BCAST_NAP_MAX_S)
    buf = np.frombuffer(data, dtype=np.uint8).copy() if mine else np.empty(int(n[0]), np.uint8)
    if buf.size:
        comm.Bcast([buf, MPI.UNSIGNED_CHAR], root=root)
    return buf.tobytes().decode("utf-8", "surrogatepass")
