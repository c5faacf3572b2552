"""The command line: exit codes and one-line errors for bad input (DESIGN §6)."""

import json
import subprocess
import sys

BASE = ["--mesh", "x=2,y=4", "--shape", "16,16", "--src", "[{x},{y}]", "--dst", "[{y},{x}]"]


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "redist.cli", *args], capture_output=True,
                          text=True, input=stdin)


def with_opt(opt, value):
    args = list(BASE)
    args[args.index(opt) + 1] = value
    return args


def test_missing_plan_file():
    r = run("verify", "/nonexistent/plan.json")
    assert r.returncode == 2 and "cannot read plan" in r.stderr


def test_plan_table_and_exit_0():
    r = run("plan", *BASE)
    assert r.returncode == 0
    assert "memory-efficient" in r.stdout and "all five claims proved" in r.stdout
    assert "layout after" in r.stdout


def test_naive_plan_exits_1_because_memory_claim_fails():
    r = run("plan", *BASE, "--method", "naive")
    assert r.returncode == 1
    assert "REFUTED  memory_efficient" in r.stdout


def test_normalize_turns_naive_into_normal(tmp_path):
    f = tmp_path / "naive.json"
    r = run("plan", *BASE, "--method", "naive", "--json", str(f))
    r = run("normalize", str(f), "--json", "-")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert doc["figures"]["peak_bytes"] <= doc["figures"]["bound_bytes"]
    assert doc["dst"] == [["y"], ["x"]]


def test_help_mentions_every_command():
    r = run("--help")
    for cmd in ("plan", "verify", "normalize", "certify", "run", "demo"):
        assert cmd in r.stdout


def test_verify_rejects_a_lying_verdict(tmp_path):
    f = tmp_path / "naive.json"
    run("plan", *BASE, "--method", "naive", "--json", str(f))
    doc = json.loads(f.read_text())
    for c in doc["verdict"]["claims"]:
        c["status"] = "proved"
    f.write_text(json.dumps(doc))
    r = run("verify", str(f))
    assert r.returncode == 1
    assert "REJECTED: the file says memory_efficient is proved, recomputed: refuted" in r.stdout


def test_plot_labels_and_caption_name_every_step(tmp_path):
    """Tick labels name the collective (not "to_all" for all_to_all) and the caption lists
    every step of a long plan, wrapped, never cut."""
    from redist.core.model.coerce import problem
    from redist.core.ops import AllSlice, AllToAll, describe
    from redist.core.plans.plan import Plan
    from redist.plot import SHORT, caption, plot_plans

    assert SHORT["all_to_all"] == "all-to-all" and "to_all" not in SHORT.values()
    p = problem("x=2,y=2,z=2", "8,8,8", "float32", "[{},{},{}]", "[{},{},{}]")
    steps = (AllSlice((("x",), ("y",), ("z",))), AllToAll(0, 1, ("x",)),
             AllToAll(1, 2, ("y", "x")), AllToAll(2, 0, ("z", "y", "x")))
    plan = Plan(p.with_ends(p.src, p.src), steps)
    plan = Plan(p.with_ends(p.src, plan.final_layout), steps)
    text = caption([describe(s, p.show_axes) for s in plan.steps])
    for k, s in enumerate(plan.steps, start=1):
        assert f"{k}: {describe(s, p.show_axes)}" in text.replace("\n", " ")
    assert all(len(line) <= 90 for line in text.splitlines()) and text.count("\n") >= 1
    assert plot_plans([("chosen", plan)], str(tmp_path / "p.png")) and \
        (tmp_path / "p.png").stat().st_size > 0


def test_show_of_a_mesh_too_large_to_draw_says_so_and_still_counts_blocks():
    """Over MAX_SHOW_DEVICES no device grid is drawn (drawing 2^20 cells did not finish);
    the blocks of each dim and the counts are still printed, computed without enumerating
    devices."""
    r = run("show", "--mesh", "x=1024,y=1024", "--shape", "4096,8", "--layout", "[{x},{}]")
    assert r.returncode == 0, r.stderr
    assert "no device grid: 1,048,576 devices, over the limit MAX_SHOW_DEVICES" in \
        " ".join(r.stdout.split())
    assert "dim 0 (4096): split 1024 ways by {x}: [0,4) [4,8) [8,12) [12,16) …" in r.stdout
    assert "1024 blocks, each on 1024 devices (replicas over y)" in r.stdout


def test_show_counts_agree_with_enumerating_the_devices():
    from collections import Counter

    from redist.core.model.problem import Problem
    from redist.core.model.syntax import parse_layout, parse_mesh
    from redist.core.plans.show import _summary
    from redist.core.semantics.blocks import block_ids

    for layout in ["[{x},{y}]", "[{y,x},{}]", "[{},{}]", "[{z},{x}]", "[{y(1)2},{}]"]:
        lay = parse_layout(layout)
        p = Problem(parse_mesh("x=2,y=4,z=3"), (12, 10), "float32", lay, lay)
        counts = Counter(map(tuple, block_ids(p.mesh, p.src).tolist()))
        summary = _summary(p, p.src)
        assert summary.startswith(f"{len(counts)} blocks"), (layout, summary)
        rep = max(counts.values())
        assert (f"each on {rep} devices" in summary) == (rep > 1), (layout, summary)
