"""Pictures of layouts and plans for a terminal (`redist show`, `redist plan --show`).

A layout is drawn on its mesh: one cell per device, rows along the first mesh axis and
columns along the others, each cell naming the block the device holds (its index per
dim, `·` for a dim it holds whole); devices holding the same block share a colour and
are counted as replicas. Any rank and mesh size: large meshes fold to their first and last
rows and columns. Below the grid, each dim's blocks (ranges; trailing blocks of uneven
extents are shorter or empty). A plan is drawn step by step with its local shape, bytes
moved and memory against the bound. Colours only on a terminal (rich decides).
"""

from __future__ import annotations

import io
import math
from collections import Counter

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from redist.core.limits import MAX_SHOW_DEVICES
from redist.core.model.layout import Layout
from redist.core.model.problem import Problem
from redist.core.ops import describe
from redist.core.plans.plan import Plan
from redist.core.plans.report import human_bytes
from redist.core.semantics.blocks import block_ids

PALETTE = ["cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan",
           "bright_magenta", "bright_green", "bright_yellow", "bright_blue", "bright_red"]
MAX_ROWS = 16
WIDTH = 80


def _fold(n: int, keep: int) -> list[int | None]:
    """Indices 0..n-1, or the first and last ones with None for the gap."""
    if n <= keep:
        return list(range(n))
    head = keep // 2
    return list(range(head)) + [None] + list(range(n - (keep - head - 1), n))


def _cell(ids: tuple[int, ...], layout: Layout) -> str:
    return ",".join(str(b) if layout.dims[d] else "·" for d, b in enumerate(ids)) or "·"


def layout_picture(problem: Problem, layout: Layout, title: str | None = None):
    """A rich renderable: the device grid and the blocks of each dim (the grid only up to
    MAX_SHOW_DEVICES devices, so that drawing takes bounded time)."""
    if problem.mesh.num_devices > MAX_SHOW_DEVICES:
        note = Text(f"(no device grid: {problem.mesh.num_devices:,} devices, over the limit "
                    f"MAX_SHOW_DEVICES = {MAX_SHOW_DEVICES:,}; the blocks of each dim:)")
        return Group(*([Text(title)] if title else []), note, *_dim_lines(problem, layout),
                     Text(_summary(problem, layout)))
    mesh, base = problem.mesh, problem.base
    ids = block_ids(mesh, layout)
    blocks = [tuple(int(v) for v in row) for row in ids.tolist()]
    counts = Counter(blocks)
    colour = {b: PALETTE[k % len(PALETTE)] for k, b in enumerate(sorted(counts))}
    axes = [(n, s) for n, s in base.axes if s > 1] or list(base.axes) or [("-", 1)]
    row_axis, col_axes = (axes[0], axes[1:]) if len(axes) > 1 else (None, axes)
    col_sizes = [s for _, s in col_axes]
    ncols = math.prod(col_sizes)
    cell_w = max(len(_cell(b, layout)) for b in blocks) + 2
    label_w = 2 + len(row_axis[0]) + len(str(row_axis[1])) if row_axis else 4
    fit = max(2, (WIDTH - label_w - 4) // (cell_w + 3))
    cols = _fold(ncols, fit)
    rows = _fold(row_axis[1], MAX_ROWS) if row_axis else [0]
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False,
                  title=title, title_justify="left")
    table.add_column(row_axis[0] if row_axis else "", justify="right")
    for c in cols:
        if c is None:
            table.add_column("…")
            continue
        digits, rest = [], c
        for s in reversed(col_sizes):
            digits.append(rest % s)
            rest //= s
        head = " ".join(f"{n}={v}" for (n, _), v in zip(col_axes, reversed(digits),
                                                         strict=True))
        table.add_column(head, justify="center")
    for r in rows:
        if r is None:
            table.add_row("⋮", *["⋮" if c is not None else "" for c in cols])
            continue
        cells = []
        for c in cols:
            if c is None:
                cells.append(Text("…"))
                continue
            dev = r * ncols + c
            b = blocks[dev]
            cells.append(Text(f"[{_cell(b, layout)}]", style=colour[b]))
        table.add_row(f"{row_axis[0]}={r}" if row_axis else "", *cells)
    lines = _dim_lines(problem, layout)
    summary = _summary(problem, layout)
    return Group(table, *lines, Text(summary))


def _dim_lines(problem: Problem, layout: Layout) -> list[Text]:
    """Per dim, the ranges of its blocks (a few first and last ones when there are many)."""
    lines = []
    for d, n in enumerate(problem.shape):
        shards = layout.shards(problem.mesh, d)
        c = -(-n // shards)
        ks = list(range(shards)) if shards <= 8 else [0, 1, 2, 3, None,
                                                       shards - 3, shards - 2, shards - 1]
        shown = ["…" if k is None else (f"[{min(k * c, n)},{min((k + 1) * c, n)})"
                                         if min((k + 1) * c, n) > min(k * c, n) else "empty")
                 for k in ks]
        by = "{" + ",".join(problem.show_axes(layout.dims[d])) + "}"
        what = (f"split {shards} ways by {by}: " + " ".join(shown)) if shards > 1 else \
            "held whole by every device"
        lines.append(Text(f"dim {d} ({n}): {what}"))
    return lines


def _summary(problem: Problem, layout: Layout) -> str:
    """Blocks, replicas and local size, counted (not enumerated over devices)."""
    mesh = problem.mesh
    blocks = math.prod(layout.shards(mesh, d) for d in range(len(problem.shape)))
    rep = mesh.num_devices // blocks
    used = problem.show(layout).used_axes()
    replicated = [a for a in problem.base.names
                  if not any(a == r or r.startswith(a + "(") for r in used)]
    local = layout.local_shape(mesh, problem.shape)
    return (f"{blocks} blocks"
            + (f", each on {rep} devices (replicas over {','.join(replicated) or '-'})"
               if rep > 1 else ", no replicas")
            + f"; local {'x'.join(map(str, local)) or '()'} "
            f"= {human_bytes(problem.local_bytes(layout))} per device")


def layout_header(problem: Problem, layout: Layout) -> str:
    return (f"layout {problem.show(layout)} of a {'x'.join(map(str, problem.shape)) or '()'} "
            f"{problem.dtype} array on mesh {problem.base} ({problem.mesh.num_devices} "
            "devices)")


def plan_pictures(plan: Plan):
    """The src layout, then the layout after each step with what the step costs."""
    p = plan.problem
    lays = plan.layouts()
    fig = plan.figures()
    parts = [Text(f"plan on mesh {p.base} ({p.mesh.num_devices} devices), "
                  f"{'x'.join(map(str, p.shape)) or '()'} {p.dtype}: {p.show(p.src)} -> "
                  f"{p.show(p.dst)}", style="bold"), Text("")]
    for k, lay in enumerate(lays):
        mem = fig.local_bytes[k]
        what = "src" if k == 0 else f"step {k}: {describe(plan.steps[k - 1], p.show_axes)}"
        moved = "" if k == 0 else f"; moved {human_bytes(fig.step_volume[k - 1])}"
        parts.append(Text(f"{what}{moved}; memory {human_bytes(mem)} per device "
                          f"({100 * mem / fig.bound_bytes:.0f}% of the bound)", style="bold"))
        parts.append(layout_picture(p, lay))
        parts.append(Text(""))
    ratio = "n/a" if fig.volume_ratio is None else f"{fig.volume_ratio:.2f}"
    parts.append(Text(f"peak {human_bytes(fig.peak_bytes)} per device (bound "
                      f"{human_bytes(fig.bound_bytes)}); volume {human_bytes(fig.volume_bytes)} "
                      f"(lower bound {human_bytes(fig.lower_bound_bytes)}, ratio {ratio}); "
                      f"{fig.collectives} collectives"))
    return Group(*parts)


class QuietConsole(Console):
    """rich's Console, except that a closed output pipe is left to the command (which
    exits quietly with SIGPIPE's status) instead of rich's exit code 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def render(renderable, file=None) -> None:
    QuietConsole(file=file, width=WIDTH if file is not None else None).print(renderable)


def to_text(renderable, width: int = WIDTH) -> str:
    """Plain text (no colour), as a non-terminal would show it."""
    buf = io.StringIO()
    Console(width=width, file=buf, color_system=None).print(renderable)
    return buf.getvalue()
