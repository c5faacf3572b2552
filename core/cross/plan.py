"""Two-mesh plans: a `transfer` from mesh A into a layout `mid` on mesh B, then steps on B
(the one-mesh collectives of DESIGN §2) from mid to dst; and their figures (DESIGN §15).

Figures, per world rank of either mesh (bytes, buffers padded as the runtime pads them):
- transfer working: its A block if it is in A plus what it receives into if it is in B
  (`receive_bytes`); a rank of both meshes holds the larger of the two instead of their sum
  when the transfer is staged (`staged`: it sends, then turns its A block into its receive
  buffer in place, then receives);
- B steps: the one-mesh working bytes of the B plan (B devices only);
- bound: the larger of its A block and its B block, 0 for a mesh it is not in.
Volume is every byte received (transfer pairs between different ranks, then the B plan);
cross-mesh bytes are those a transfer moves from a rank outside B (the slow link); their
lower bound is the bytes of distinct dst blocks that no B rank holds in its A block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from redist.core import args
from redist.core.errors import RedistError, TypingError
from redist.core.ops import transfer as T
from redist.core.plans.plan import Plan
from redist.core.semantics.working import runtime_limit

from .model import CrossProblem


@dataclass(frozen=True)
class CrossFigures:
    ranks: tuple[int, ...]                  # the union of both meshes' ranks, ascending
    bound_per_rank: tuple[int, ...]
    peak_per_rank: tuple[int, ...]          # the runtime's largest working bytes per rank
    transfer_per_rank: tuple[int, ...]      # working bytes during the transfer
    step_volume: tuple[int, ...]            # the transfer, then each B step
    volume_bytes: int
    lower_bound_bytes: int
    cross_mesh_bytes: int
    cross_mesh_lower_bound_bytes: int
    collectives: int
    runtime_peak_bytes: int                 # max over ranks
    bound_bytes: int                        # max over ranks
    memory_efficient: bool

    def to_json(self) -> dict:
        return {
            "ranks": list(self.ranks),
            "bound_per_rank": list(self.bound_per_rank),
            "peak_per_rank": list(self.peak_per_rank),
            "bound_bytes": self.bound_bytes,
            "runtime_peak_bytes": self.runtime_peak_bytes,
            "memory_efficient": self.memory_efficient,
            "volume_bytes": self.volume_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "cross_mesh_bytes": self.cross_mesh_bytes,
            "cross_mesh_lower_bound_bytes": self.cross_mesh_lower_bound_bytes,
            "collectives": self.collectives,
        }


@dataclass(frozen=True)
class CrossPlan:
    problem: CrossProblem
    transfer: T.Transfer
    b_plan: Plan        # on mesh B: src = mid (the transfer's target), dst = the problem's dst

    def __post_init__(self) -> None:
        args.instance(self.problem, CrossProblem, "CrossPlan", "problem", "a CrossProblem")
        args.instance(self.transfer, T.Transfer, "CrossPlan", "transfer", "a Transfer")
        args.instance(self.b_plan, Plan, "CrossPlan", "b_plan", "a Plan")
        bp, cp = self.b_plan.problem, self.problem
        if bp.base != cp.b.mesh or bp.shape != cp.shape or bp.dtype != cp.dtype:
            raise RedistError("CrossPlan: the B plan must be on the dst mesh, for the same "
                              "array and dtype")
        if bp.show(bp.dst) != cp.b_problem.show(cp.b_problem.dst):
            raise RedistError(f"CrossPlan: the B plan ends at {bp.show(bp.dst)}, not at dst "
                              f"{cp.dst}")

    @property
    def mid(self):
        """The B-mesh problem from the transfer's target layout to dst."""
        return self.b_plan.problem

    @property
    def steps(self) -> tuple:
        return (self.transfer, *self.b_plan.steps)

    def typing_error(self) -> TypingError | None:
        """The first ill-typed step (the transfer is step 1), or None."""
        try:
            T.check(self.problem, self.mid, self.transfer)
        except TypingError as e:
            return TypingError(f"step 1 (transfer): {e}")
        _, err = self.b_plan.typed_prefix()
        if err is not None:
            # Number B steps after the transfer.
            text = str(err)
            if text.startswith("step "):
                k, _, rest = text[5:].partition(" ")
                if k.isdigit():
                    text = f"step {int(k) + 1} {rest}"
            return TypingError(text)
        return None

    def figures(self) -> CrossFigures:
        return self._figures

    @cached_property
    def _figures(self) -> CrossFigures:
        err = self.typing_error()
        if err is not None:
            raise err
        cp, mid = self.problem, self.mid
        bfig = self.b_plan.figures()
        # Gathering in its slots, a B rank holds its dst block and nothing else.
        b_work = receive_bytes(self) if gathers_in_slots(self) else max(
            (bfig.local_bytes[0], *bfig.working_bytes))
        moved = T.volume_bytes(cp, mid, self.transfer)
        ranks = cp.union
        transfer_w = tuple(transfer_working(self, r) for r in ranks)
        peaks = tuple(max(t, b_work if r in cp.b else 0) for r, t in zip(ranks, transfer_w,
                                                                         strict=True))
        bounds = tuple(cp.bound(r) for r in ranks)
        efficient = all(t <= bd for t, bd in zip(transfer_w, bounds, strict=True)) and (
            b_steps_within(self.b_plan, min_b_bound(cp)))
        vols = (moved, *bfig.step_volume)
        return CrossFigures(
            ranks=ranks, bound_per_rank=bounds, peak_per_rank=peaks,
            transfer_per_rank=transfer_w, step_volume=vols, volume_bytes=sum(vols),
            lower_bound_bytes=T.lower_bound_bytes(cp),
            cross_mesh_bytes=T.cross_mesh_bytes(cp, mid, self.transfer),
            cross_mesh_lower_bound_bytes=T.cross_lower_bound_bytes(cp),
            collectives=(1 if moved else 0) + bfig.collectives,
            runtime_peak_bytes=max(peaks), bound_bytes=max(bounds),
            memory_efficient=efficient)


def min_b_bound(cp: CrossProblem) -> int:
    """Every B rank runs the same B steps: the smallest bound among them binds."""
    return min(cp.bound(r) for r in cp.b.devices)


def b_steps_within(b_plan: Plan, limit: int) -> bool:
    """The B plan's local sizes within `limit`, its working memory within it plus one chunk
    (and padding), as the one-mesh memory claim states it."""
    fig = b_plan.figures()
    room = runtime_limit(limit, fig.itemsize)
    return max(fig.local_bytes) <= limit and all(
        w <= room + pad for w, pad in zip(fig.working_bytes, fig.padding_bytes, strict=True))


def receive_shape(plan: CrossPlan) -> tuple[int, ...]:
    """The buffer a B rank receives the transfer into. When the B plan is one all_gather
    (`gathers_in_slots`), its dst block: the mid block lands in its slot (member k's slot
    starts at k pieces; past the end of a dim held whole a slot is cut short, only valid
    elements are ever sent) and the gather fills the others in place, so no rank holds more
    than its dst block and nothing grows or moves. Else the mid block itself."""
    mid = plan.mid
    if gathers_in_slots(plan):
        return tuple(mid.dst.local_shape(mid.mesh, mid.shape))
    return tuple(mid.src.local_shape(mid.mesh, mid.shape))


def gathers_in_slots(plan: CrossPlan) -> bool:
    from redist.core.ops import AllGather

    steps = plan.b_plan.steps
    return len(steps) == 1 and isinstance(steps[0], AllGather)


def receive_bytes(plan: CrossPlan) -> int:
    return math.prod(receive_shape(plan)) * plan.problem.itemsize


def staged(plan: CrossPlan) -> bool:
    """Whether a rank of both meshes can send before it receives: its sends must complete
    before it turns its A block into its receive buffer, so no chain of sends between ranks
    of both meshes may come back to where it started (each such rank then waits only on
    ranks that send to no one it waits on). True when no rank is in both meshes."""
    both = [r for r in plan.problem.a.devices if r in plan.problem.b]
    edges: dict[int, set[int]] = {r: set() for r in both}
    for a, b in plan.transfer.pairs:
        if a != b and a in edges and b in edges:
            edges[a].add(b)
    state: dict[int, int] = {}

    def cyclic(r: int) -> bool:                # depth-first search: 1 on the path, 2 done
        state[r] = 1
        for q in edges[r]:
            if state.get(q) == 1 or (q not in state and cyclic(q)):
                return True
        state[r] = 2
        return False
    return not any(r not in state and cyclic(r) for r in both)


def transfer_working(plan: CrossPlan, rank: int) -> int:
    """What `rank` holds while the transfer runs (see the module doc), padded as the
    runtime allocates it."""
    cp = plan.problem
    a = cp.a_block_bytes() if rank in cp.a else 0
    m = receive_bytes(plan) if rank in cp.b else 0
    return max(a, m) if a and m and staged(plan) else a + m
