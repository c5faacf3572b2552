"""The command line: exit codes and one-line errors for bad input (DESIGN §6)."""

import json
import subprocess
import sys

import pytest

BASE = ["--mesh", "x=2,y=4", "--shape", "16,16", "--src", "[{x},{y}]", "--dst", "[{y},{x}]"]


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "redist.cli", *args], capture_output=True,
                          text=True, input=stdin)


def with_opt(opt, value):
    args = list(BASE)
    args[args.index(opt) + 1] = value
    return args


@pytest.mark.parametrize("args,message", [
    (with_opt("--dst", "[{y},{q}]"), "unknown axis 'q'"),
    (with_opt("--dst", "[{y},{y}]"), "axis 'y' is used more than once"),
    (with_opt("--shape", "16,6"), "dim 1 of extent 6 is not divisible by 4"),
    (with_opt("--src", "[{x}]"), "has 1 dims but the array has rank 2"),
    (with_opt("--src", "[{x},{y}"), "layout"),
    (with_opt("--mesh", "x=0,y=4"), "size 0"),
    (with_opt("--mesh", "x=2;y=4"), "not of the form name=size"),
    (with_opt("--shape", "16,0"), ">= 1"),
    (BASE + ["--dtype", "float33"], "unknown dtype"),
])
def test_bad_problem_input_is_one_line_exit_2(args, message):
    r = run("plan", *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "redist.plan/1", "mesh": [["x", 2]], "shape": [4], "dtype":
                 "float32", "src": [["x"]], "dst": [[]], "steps": [{"op": "shuffle"}]}),
     "unknown op 'shuffle'"),
    (json.dumps({"format": "other/2"}), "unknown format"),
])
def test_bad_plan_files(tmp_path, content, message):
    f = tmp_path / "p.json"
    f.write_text(content)
    for cmd in ("verify", "normalize"):
        r = run(cmd, str(f))
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


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
