"""DESIGN §9 cases: plans, figures recomputed independently, verification."""

import json
import subprocess
import sys

import pytest

from redist.api import synthesize
from redist.core.plans import simulator
from redist.core.synthesis.synthesize import naive, normal

from cases import CASES, case
from helpers import (
    brute_lower_bound,
    brute_step_volume,
    global_array,
    is_normal_form,
    simulate_matches_dst,
)

# Small shapes for element-level checks (same divisibility pattern as the real ones).
SMALL = {"transpose": "16,16", "replace-axis": "16,16", "gather-all": "8,8,8",
         "swap-3d": "8,8,8", "reorder": "16,16", "paper-1d": "6"}


def brute_volume(plan) -> int:
    """Bytes received over all steps, by enumeration (valid elements only)."""
    return sum(brute_step_volume(plan, k) for k in range(len(plan.steps)))


# volume / lower bound of the default plan (the bytes are pinned in test_pinned.py)
RATIOS = {"transpose": 4 / 3, "replace-axis": 1.0, "paper-1d": 40 / 24, "gather-all": 1.0,
          "swap-3d": 4 / 3, "reorder": 1.0}


@pytest.mark.parametrize("name", CASES)
def test_normal_plan_of_each_case(name):
    s = normal(case(name))
    assert s.reason is None
    assert is_normal_form(s.plan)
    fig = s.plan.figures()
    assert fig.peak_bytes == fig.bound_bytes
    assert fig.volume_ratio == pytest.approx(RATIOS[name])


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("method", ["normal", "naive"])
def test_figures_match_brute_force(name, method):
    p = case(name, SMALL[name])
    plan = normal(p).plan if method == "normal" else naive(p)
    fig = plan.figures()
    assert simulate_matches_dst(plan)
    assert fig.lower_bound_bytes == brute_lower_bound(plan)
    assert fig.volume_bytes == brute_volume(plan)
    stacks = simulator.run(plan, global_array(plan))
    assert list(fig.local_bytes) == [s[0].size * p.itemsize for s in stacks]


@pytest.mark.parametrize("name", CASES)
def test_normal_plans_verify_and_naive_plans_do_not_fit(name):
    r = synthesize(case(name), "normal")
    assert r.verified, r.verdict.table()
    r = synthesize(case(name), "naive")
    assert r.verdict.get("element_correct").status == "proved"
    mem = r.verdict.get("memory_efficient").status
    assert mem == ("proved" if name == "gather-all" else "refuted")


@pytest.mark.parametrize("name", CASES)
def test_cli_plan_json_is_design_format(name):
    mesh, shape, src, dst = CASES[name]
    out = subprocess.run([sys.executable, "-m", "redist.cli", "plan", "--mesh", mesh,
                          "--shape", shape, "--src", src, "--dst", dst, "--json", "-"],
                         capture_output=True, text=True, check=True).stdout
    doc = json.loads(out)
    assert doc["format"] == "redist.plan/1"
    assert doc["mesh"] == [[a.split("=")[0], int(a.split("=")[1])] for a in mesh.split(",")]
    assert doc["shape"] == [int(n) for n in shape.split(",")]
    fig = doc["figures"]
    plan = normal(case(name)).plan
    assert fig["peak_bytes"] == fig["bound_bytes"] == plan.figures().bound_bytes
    assert doc["verdict"]["all_proved"] is True
    for step in doc["steps"]:
        assert step["op"] in ("all_slice", "all_gather", "all_to_all", "all_permute")
