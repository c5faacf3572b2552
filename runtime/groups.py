"""Ranks as mesh devices, and the sub-communicators of collective groups (DESIGN §7)."""

from __future__ import annotations

import os

from mpi4py import MPI

from redist.core.errors import RedistError
from redist.core.model.mesh import Mesh
from redist.core.ops.common import mixed_radix


class MeshComm:
    """A Cartesian communicator over the mesh (row-major, no reorder, so rank = device
    id) and a cache of group communicators, one per ordered tuple of axes."""

    def __init__(self, mesh: Mesh, comm: MPI.Comm) -> None:
        # Callers agree on the size first (api._agree): this is a collective constructor.
        assert comm.Get_size() == mesh.num_devices
        self.mesh = mesh
        sizes = [s for _, s in mesh.axes] or [1]
        self.cart = comm.Create_cart(sizes, periods=[False] * len(sizes), reorder=False)
        self.rank = self.cart.Get_rank()
        self.coords = mesh.coords(self.rank)
        self._groups: dict[tuple[str, ...], MPI.Comm] = {}
        self.naps = naps(comm)

    def group(self, axes: tuple[str, ...]) -> MPI.Comm:
        """Devices differing only on `axes`, ranked by the mixed-radix number of their
        coordinates on `axes` in the order given."""
        if axes not in self._groups:
            others = {a: (0 if a in axes else v) for a, v in self.coords.items()}
            color = self.mesh.device(others)
            key = mixed_radix(self.mesh, axes, self.coords)
            self._groups[axes] = self.cart.Split(color, key)
        return self._groups[axes]

    def free(self) -> None:
        for g in self._groups.values():
            g.Free()
        self._groups.clear()
        self.cart.Free()


WAIT_MODES = ("auto", "spin", "nap")


def runnable_threads() -> int:
    """Threads this node's scheduler has runnable right now, this one included (Linux
    /proc/loadavg; 0 where unknown)."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return 0


def naps(comm: MPI.Comm) -> bool:
    """Whether point-to-point waits nap rather than spin (runtime.execute.wait_all):
    $REDIST_WAIT (auto, the default: nap where the cores this node's ranks may use are
    contended, so that a napping rank gives its core to the one it waits for; spin; nap).
    Contended: more local ranks than cores, or other programs keeping more than one
    thread beyond the cores runnable (measured on a shared 2-core machine, load ~14:
    spinning handoffs took 1.4x the napping ones on 2 ranks, 1.2-1.3x on 8;
    benchmarks/results/handoff-2026-12-01-model.md). Every rank of comm calls it, and all get
    the same answer (the gather's algorithm depends on it)."""
    mode = os.environ.get("REDIST_WAIT", "auto")
    if mode not in WAIT_MODES:
        raise RedistError(f"REDIST_WAIT={mode!r:.40}: expected one of {', '.join(WAIT_MODES)}")
    if mode != "auto":
        return mode == "nap"
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        mine = sorted(os.sched_getaffinity(0))
    except AttributeError:                      # no affinity call: every core
        mine = list(range(os.cpu_count() or 1))
    # The cores any local rank may run on (ranks bound one per core: as many as ranks).
    cores = set().union(*local.allgather(mine))
    ranks = local.Get_size()
    local.Free()
    busy = ranks > len(cores) or runnable_threads() > len(cores) + 1
    return bool(comm.allreduce(busy, op=MPI.LOR))


def pair_rounds(g: int, me: int) -> list[int | None]:
    """My partner in each round of a schedule where every pair of the g members meets
    exactly once and partners are mutual (None: idle this round). XOR pairing when g is a
    power of two, else the circle method (with an idle member when g is odd)."""
    if g & (g - 1) == 0:
        return [me ^ r for r in range(1, g)]
    n = g + (g % 2)
    fixed = n - 1
    out: list[int | None] = []
    for r in range(n - 1):
        if me == fixed:
            partner = r
        elif me == r:
            partner = fixed
        else:
            partner = (2 * r - me) % (n - 1)
        out.append(partner if partner < g else None)
    return out
