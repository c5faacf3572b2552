"""`redist plan ... --plot FILE.png|.svg` (optional: `pip install 'redist[plot]'`):
memory per device after every step against the bound, and bytes moved per step, for the
chosen plan and the naive plan side by side."""

from __future__ import annotations

import os
import textwrap

from redist.core.errors import RedistError
from redist.core.ops import describe
from redist.core.plans.plan import Plan


def _units(n: float) -> tuple[float, str]:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return scale, unit
    return 1, "B"


SHORT = {"all_slice": "slice", "all_gather": "gather", "all_to_all": "all-to-all",
         "all_permute": "permute", "all_exchange": "exchange"}


def caption(steps: list[str], width: int = 90) -> str:
    """Every step described, wrapped onto as many lines as it takes (never cut)."""
    text = "steps: " + "; ".join(f"{k + 1}: {s}" for k, s in enumerate(steps))
    return textwrap.fill(text, width, break_long_words=False)


def plot_plans(plans: list[tuple[str, Plan]], path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".png", ".svg", ".pdf"):
        raise RedistError(f"--plot {path}: the file must end in .png, .svg or .pdf")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RedistError("--plot needs matplotlib (pip install 'redist[plot]')") from None
    figs = [(name, plan, plan.figures()) for name, plan in plans]
    bound = figs[0][2].bound_bytes
    top = max(max(f.local_bytes) for _, _, f in figs)
    scale, unit = _units(max(top, bound))
    vol_max = max([max(f.step_volume, default=0) for _, _, f in figs] + [1])
    vscale, vunit = _units(vol_max)
    fig, axes = plt.subplots(2, len(figs), figsize=(5.2 * len(figs), 6.4), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]})
    for col, (name, plan, f) in enumerate(figs):
        p = plan.problem
        labels = ["src"] + [f"{k + 1}. {SHORT[s.op]}" for k, s in enumerate(plan.steps)]
        xs = range(len(labels))
        ax = axes[0][col]
        ax.step(xs, [b / scale for b in f.local_bytes], where="mid", color="tab:blue",
                linewidth=2, label="memory per device")
        ax.plot(xs, [b / scale for b in f.local_bytes], "o", color="tab:blue")
        ax.axhline(bound / scale, color="tab:red", linestyle="--", label="bound")
        ax.set_ylim(0, 1.1 * top / scale)
        ax.set_xticks(list(xs), labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(f"per device ({unit})")
        peak = f.peak_bytes / bound
        ax.set_title(f"{name}: peak {peak:.2f}x bound, volume "
                     f"{f.volume_bytes / vscale:.3g} {vunit}", fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
        ax.grid(alpha=0.3)
        bx = axes[1][col]
        steps = [describe(s, p.show_axes) for s in plan.steps]
        bx.bar(range(len(steps)), [v / vscale for v in f.step_volume], color="tab:orange")
        bx.set_ylim(0, 1.15 * vol_max / vscale)
        bx.set_xticks(range(len(steps)), [f"{k + 1}" for k in range(len(steps))])
        bx.set_ylabel(f"bytes moved ({vunit})")
        bx.set_xlabel(caption(steps), fontsize=7)
        bx.grid(alpha=0.3, axis="y")
    p = figs[0][1].problem
    fig.suptitle(f"mesh {p.base}, {'x'.join(map(str, p.shape))} {p.dtype}: "
                 f"{p.show(p.src)} -> {p.show(p.dst)}", fontsize=11)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as e:      # ValueError: a NUL in the path
        raise RedistError(f"cannot write {path!r}: {getattr(e, 'strerror', None) or e}") \
            from None
    finally:
        plt.close(fig)
    return path
