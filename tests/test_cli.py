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
