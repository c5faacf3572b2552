"""Human-readable tables of plans and figures."""

from __future__ import annotations

from redist.core.model.problem import Problem
from redist.core.ops import describe
from redist.core.plans.plan import Plan


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def plan_table(plan: Plan) -> str:
    lays, err = plan.typed_prefix()
    if err is not None:
        return _ill_typed_table(plan, lays, str(err))
    p = plan.problem
    fig = plan.figures()
    rows = [("step", "op", "layout after", "local shape", "bytes moved", "memory vs bound")]

    def mem(k: int) -> str:
        b = fig.local_bytes[k]
        return f"{human_bytes(b)} ({100 * b / fig.bound_bytes:.0f}%)"

    rows.append(("src", "", str(p.show(p.src)), str(p.src.local_shape(p.mesh, p.shape)), "",
                 mem(0)))
    for k, step in enumerate(plan.steps):
        rows.append((str(k + 1), describe(step, p.show_axes), str(p.show(lays[k + 1])),
                     str(lays[k + 1].local_shape(p.mesh, p.shape)),
                     human_bytes(fig.step_volume[k]), mem(k + 1)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    ratio = "n/a" if fig.volume_ratio is None else f"{fig.volume_ratio:.2f}"
    lines += [
        "",
        problem_line(p),
        f"peak        {human_bytes(fig.peak_bytes)} per device; bound "
        f"{human_bytes(fig.bound_bytes)} -> "
        + ("memory-efficient" if fig.memory_efficient else
           f"NOT memory-efficient ({human_bytes(fig.peak_bytes - fig.bound_bytes)} over)"),
        f"volume      {human_bytes(fig.volume_bytes)} over all devices; lower bound "
        f"{human_bytes(fig.lower_bound_bytes)}; ratio {ratio}",
        f"collectives {fig.collectives}",
    ]
    return "\n".join(lines)


def _ill_typed_table(plan: Plan, lays: list, error: str) -> str:
    """The steps up to the first ill-typed one; no figures (they need every layout)."""
    p = plan.problem
    lines = [problem_line(p), f"src         {p.show(p.src)}"]
    for k, step in enumerate(plan.steps[: len(lays) - 1]):
        lines.append(f"step {k + 1:<6} {describe(step, p.show_axes)} -> {p.show(lays[k + 1])}")
    lines.append(f"ILL-TYPED   {error}")
    return "\n".join(lines)


def problem_line(p: Problem) -> str:
    padded = "" if not p.uneven else " (uneven: blocks of ceil(N/S), padded inside the plan)"
    return (f"problem     mesh {p.base} ({p.mesh.num_devices} devices), shape "
            f"{','.join(map(str, p.shape)) or '()'} {p.dtype}: {p.show(p.src)} -> "
            f"{p.show(p.dst)}{padded}")
