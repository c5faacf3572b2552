"""Plans (a problem plus a sequence of collectives) and their figures (DESIGN §3)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from redist.core.errors import RedistError, TypingError
from redist.core.limits import MAX_STEPS, check
from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.ops import (
    OPS,
    Collective,
    apply,
    padding_bytes,
    step_volume,
    working_bytes,
)
from redist.core.semantics.costs import lower_bound_bytes
from redist.core.semantics.working import runtime_limit


@dataclass(frozen=True)
class Figures:
    local_bytes: tuple[int, ...]     # per device: src, then after each step
    step_volume: tuple[int, ...]     # bytes received, summed over devices, per step
    peak_bytes: int
    bound_bytes: int
    volume_bytes: int
    lower_bound_bytes: int
    collectives: int
    # per step: bytes a device holds at once while the MPI runtime runs it (blocks and
    # scratch, core.semantics.working); the runtime peak is the largest, or src alone
    working_bytes: tuple[int, ...] = ()
    runtime_peak_bytes: int = 0
    itemsize: int = 1
    # per step: of its working bytes, padded pieces past the array's end (DESIGN §11)
    padding_bytes: tuple[int, ...] = ()

    @property
    def memory_efficient(self) -> bool:
        """Every local size within the bound, and the runtime's working memory within the
        bound plus one chunk of it (what the memory claim proves)."""
        return self.fits(self.bound_bytes)

    def fits(self, limit: int) -> bool:
        """The memory claim against `limit` (the bound or a budget): every local size
        within it, each step's working memory within it plus one chunk plus that step's
        padding of uneven pieces."""
        room = runtime_limit(limit, self.itemsize)
        return self.peak_bytes <= limit and all(
            w <= room + pad for w, pad in zip(self.working_bytes, self.padding_bytes,
                                              strict=True))

    @property
    def volume_ratio(self) -> float | None:
        """volume / lower bound; 1.0 when both are zero, None when only the bound is."""
        if self.lower_bound_bytes == 0:
            return 1.0 if self.volume_bytes == 0 else None
        return self.volume_bytes / self.lower_bound_bytes

    def to_json(self) -> dict:
        return {
            "local_bytes": list(self.local_bytes),
            "peak_bytes": self.peak_bytes,
            "bound_bytes": self.bound_bytes,
            "memory_efficient": self.memory_efficient,
            "volume_bytes": self.volume_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "volume_ratio": self.volume_ratio,
            "collectives": self.collectives,
            "working_bytes": list(self.working_bytes),
            "runtime_peak_bytes": self.runtime_peak_bytes,
        }


STEP_TYPES = tuple(r.cls for r in OPS.values())


@dataclass(frozen=True)
class Plan:
    problem: Problem
    steps: tuple[Collective, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.problem, Problem):
            raise RedistError(f"Plan: problem must be a Problem, not "
                              f"{type(self.problem).__name__}")
        if not isinstance(self.steps, (tuple, list)) or not all(
                isinstance(s, STEP_TYPES) for s in self.steps):
            raise RedistError(f"Plan: steps must be a sequence of collectives (AllSlice, "
                              f"AllGather, ...), not {self.steps!r:.60}")
        object.__setattr__(self, "steps", tuple(self.steps))
        check(len(self.steps), MAX_STEPS, "the number of steps", "MAX_STEPS")

    def typed_prefix(self) -> tuple[list[Layout], TypingError | None]:
        """Layouts the typing rules give (src first), up to the first ill-typed step, and
        that step's error (naming the step), or None if every step is well-typed."""
        out = [self.problem.src]
        for k, step in enumerate(self.steps):
            try:
                out.append(apply(step, self.problem.mesh, self.problem.shape, out[-1],
                                 self.problem.show))
            except TypingError as e:
                return out, TypingError(f"step {k + 1} ({step.op}): {e}")
        return out, None

    def layouts(self) -> list[Layout]:
        """src, then the layout after each step (TypingError naming the step if a step is
        ill-typed)."""
        out, err = self.typed_prefix()
        if err is not None:
            raise err
        return out

    @property
    def final_layout(self) -> Layout:
        return self.layouts()[-1]

    def figures(self) -> Figures:
        return _figures(self)

    def _compute_figures(self) -> Figures:
        p = self.problem
        lays = self.layouts()
        local = tuple(p.local_bytes(lay) for lay in lays)
        vols = tuple(step_volume(p, s, lays[k], lays[k + 1]) for k, s in enumerate(self.steps))
        work = working_bytes(p, lays, self.steps)
        return Figures(
            local_bytes=local,
            step_volume=vols,
            peak_bytes=max(local),
            bound_bytes=p.bound_bytes,
            volume_bytes=sum(vols),
            lower_bound_bytes=lower_bound_bytes(p),
            collectives=sum(1 for v in vols if v),
            working_bytes=work,
            runtime_peak_bytes=max((local[0], *work)),
            itemsize=p.itemsize,
            padding_bytes=padding_bytes(p, lays, self.steps),
        )


@lru_cache(maxsize=1024)
def _figures(plan: Plan) -> Figures:
    """Figures are values of a frozen plan: computed once (counting valid bytes can go
    device by device when a layout pads)."""
    return plan._compute_figures()


def own_budget(plan: Plan) -> int | None:
    """The budget a synthesized plan is proved against: none (the bound) if it fits the
    bound; else, where no plan within the bound was found, its own runtime peak, so that
    what runs is still what is proved and the figure says how much it holds."""
    fig = plan.figures()
    return None if fig.memory_efficient else fig.runtime_peak_bytes


def padded_volume(plan: Plan) -> int:
    """Bytes received counting padded buffers whole: what the searches minimise (an upper
    bound of the valid bytes the figures count; the two differ only where a layout pads)."""
    lays = plan.layouts()
    return sum(step_volume(plan.problem, s, lays[k], lays[k + 1], valid=False)
               for k, s in enumerate(plan.steps))
