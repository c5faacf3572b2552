"""Bad input, tried as a careless user and as an attacker would: every case gets one line
`redist: error: ...` naming the problem and exit code 2 (or, for a plan that parses but
breaks a typing rule or a certificate that is not genuine, a refuted claim and exit 1);
never a traceback, never a hang."""

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redist.cli import main

PROBLEM = ["--mesh", "x=2,y=4", "--shape", "16,16", "--src", "[{x},{y}]", "--dst", "[{y},{x}]"]
GOOD_PLAN = {"format": "redist.plan/1", "mesh": [["x", 2], ["y", 4]], "shape": [16, 16],
             "dtype": "float32", "src": [["x"], ["y"]], "dst": [["y"], ["x"]],
             "steps": [{"op": "all_to_all", "src_dim": 1, "dst_dim": 0, "axes": ["y"]},
                       {"op": "all_permute", "layout": [["y", "x"], []]},
                       {"op": "all_to_all", "src_dim": 0, "dst_dim": 1, "axes": ["x"]}]}


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def opt(name, value, base=PROBLEM):
    args = list(base)
    if name in args:
        args[args.index(name) + 1] = value
    else:
        args += [name, value]
    return args


# (argv, exit code, fragment of the one-line message)
PROBLEM_CASES = [
    # meshes
    (opt("--mesh", "x=0,y=4"), "size 0; sizes must be >= 1"),
    (opt("--mesh", "x=-2,y=4"), "size -2; sizes must be >= 1"),
    (opt("--mesh", "x,y=4"), "mesh item 'x' is not of the form name=size"),
    (opt("--mesh", "x=2,x=4"), "mesh axis 'x' is declared twice"),
    (opt("--mesh", "2x=2,y=4"), "mesh item '2x=2' is not of the form"),
    (opt("--mesh", "x=2;y=4"), "is not of the form name=size"),
    (opt("--mesh", "x=4096,y=4096"), "over the limit MAX_DEVICES"),
    (opt("--mesh", ",".join(f"a{k}=1" for k in range(33))), "over the limit MAX_AXES"),
    (opt("--mesh", "x=2,,y=4"), "mesh item '' is not of the form"),
    (opt("--mesh", "x" * 100 + "=2"), "over the limit MAX_NAME"),
    (opt("--mesh", "x=1e3"), "mesh item 'x=1e3' is not of the form"),
    (opt("--mesh", "x=" + "9" * 50), "has 50 digits; too large"),
    # shapes
    (opt("--shape", "16,0"), "shape entry 0 must be >= 1"),
    (opt("--shape", "16,a"), "shape entry 'a' is not an integer"),
    (opt("--shape", "-64,64"), "shape entry -64 must be >= 1"),
    (opt("--shape", "16,,16"), "shape entry '' is not an integer"),
    (opt("--shape", "1" + "9" * 5000), "has 5001 digits; too large"),
    (opt("--shape", "2**70,4"), "shape entry '2**70' is not an integer"),
    (opt("--shape", ",".join(["2"] * 17)), "over the limit MAX_RANK"),
    (opt("--shape", f"{2**63},16"), "an array extent is 9,223,372,036,854,775,808, over"),
    (opt("--shape", f"{2**40},{2**40}"), "the number of array elements"),
    # layouts
    (opt("--dst", "[{y},{q}]"), "unknown mesh axis 'q'"),
    (opt("--dst", "[{y},{y}]"), "axis 'y' is used more than once"),
    (opt("--src", "[{x}]"), "has 1 dims but the array has rank 2"),
    (opt("--src", "[{x},{y}"), "must be enclosed in [ ]"),
    (opt("--src", "[{x}{y}]"), "unexpected '{y}'"),
    (opt("--src", "[{x},]"), "trailing comma"),
    (opt("--src", "[{x y}]"), "'x y' is not an axis name"),
    (opt("--src", "[{1x},{}]"), "'1x' is not an axis name"),
    (opt("--src", "[{x},{y}]junk"), "must be enclosed in [ ]"),
    (opt("--src", "(('x',)"), "is neither [{..},..] nor a Python/JAX tuple form"),
    (opt("--src", "('x', 5)"), "dim 1 entry 5 is not an axis name"),
    (opt("--src", "{x}"), "must be enclosed in [ ]"),
    (opt("--src", ""), "is neither [{..},..] nor a Python/JAX tuple form"),
    (opt("--src", "[" * 1000), "is neither [{..},..] nor a Python/JAX tuple form"),
    # dtypes
    (opt("--dtype", "float33"), "unknown dtype 'float33'"),
    (opt("--dtype", "object"), "unknown dtype 'object'"),
    (opt("--dtype", "U10"), "unknown dtype 'U10'"),
    (opt("--dtype", "(-1,)f4"), "unknown dtype '(-1,)f4'"),
    (opt("--dtype", "(1000000000000,)f4"), "unknown dtype '(1000000000000,)f4'"),
    (opt("--dtype", "(" + "9" * 30 + ",)i1"), "unknown dtype"),
    (opt("--dtype", ""), "unknown dtype ''"),
    (opt("--dtype", "f4\nredist: error: injected"), "unknown dtype 'f4\\nredist: error"),
    # digits of other scripts, control characters in names (never printed raw)
    (opt("--mesh", "x=\u0662,y=4"), "(sizes are written with the digits 0-9)"),
    (opt("--mesh", "x=\uff12,y=4"), "(sizes are written with the digits 0-9)"),
    (opt("--shape", "\u0664,16"), "shape entry '\u0664' is not an integer (digits 0-9)"),
    (opt("--budget", "\u0664\u0664"), "argument --budget: '\u0664\u0664' is not a whole"),
    (opt("--mesh", "x\nredist: error: fake=2"), "mesh item 'x\\nredist: error: fake=2' is not"),
    (opt("--src", "[{x\ry}]"), "is not an axis name"),
    # options
    (opt("--budget", "-5"), "argument --budget: -5 must be at least 1"),
    (opt("--budget", "abc"), "argument --budget: 'abc' is not a whole number"),
    (opt("--budget", "0"), "argument --budget: 0 must be at least 1"),
    (opt("--max-steps", "0"), "argument --max-steps: 0 must be at least 1"),
    (opt("--max-steps", "17", opt("--method", "optimal")), "--max-steps must be between 1 and 16"),
    (opt("--method", "fastest"), "argument --method: invalid choice: 'fastest'"),
    # pending sums (DESIGN §14)
    (opt("--src", "[{x},{}]+{x}"), "pending axis 'x' also shards dim 0"),
    (opt("--src", "[{x},{}]+{z}"), "pending axis: unknown mesh axis 'z'"),
    (opt("--src", "[{x},{}]+{y,y}"), "pending axis 'y' is listed twice"),
    (opt("--src", "[{x},{}]+{y"), "the pending sum after '+' must be {axes}"),
    (opt("--dst", "[{y},{}]+{x}"), "a plan reduces pending sums, it does not create them"),
]

RUN = ["run", "--np", "8"] + PROBLEM
RUN_CASES = [
    (["run", "--np", "eight"] + PROBLEM, "argument --np: 'eight' is not a whole number"),
    (["run", "--np", "0"] + PROBLEM, "argument --np: 0 must be at least 1"),
    (RUN + ["--timeout", "soon"], "argument --timeout: 'soon' is not a number of seconds"),
    (RUN + ["--timeout", "nan"], "'nan' must be a positive, finite number of seconds"),
    (RUN + ["--timeout", "0"], "'0' must be a positive, finite number of seconds"),
    (RUN + ["--timeout", "-1"], "'-1' must be a positive, finite number of seconds"),
    (RUN + ["--repeat", "0"], "argument --repeat: 0 must be at least 1"),
    (["run", "--np", "4"] + PROBLEM, "--np 4 does not match the mesh's 8 devices"),
    (RUN + ["--mpiexec", "/nonexistent/mpiexec"], "--mpiexec '/nonexistent/mpiexec' is not an "
                                                 "executable file"),
    (RUN + ["--mpiexec", "/etc/passwd"], "is not an executable file"),
    (["run", "--np", "8"], "give --plan FILE or the problem (--mesh, --shape, --src, --dst "
                           "missing)"),
    (["run", "--np", "8", "--plan", "/nonexistent.json"], "cannot read plan '/nonexistent.json'"),
    (["run", "--np", "2048", "--mesh", "x=2048", "--shape", "2048", "--src", "[{x}]", "--dst",
      "[{}]"], "over the limit MAX_RUN_RANKS"),
    (["run", "--np", "8", "--mesh", "x=8", "--shape", f"{2**20},{2**20}", "--dtype", "float64",
      "--src", "[{x},{}]", "--dst", "[{},{x}]"], "of memory (8 ranks"),
    (["run", "--np", "8", "--method", "optimal"] + PROBLEM, "redist run executes normal or naive"),
    (RUN + ["--timeout", "1e306"], "'1e306' is over the limit of 2,592,000 seconds"),
    (RUN + ["--timeout", "1e999"], "'1e999' must be a positive, finite number"),
    (RUN + ["--mpiexec", ""], "--mpiexec is empty"),
    (RUN + ["--mpiexec", "  "], "--mpiexec is empty"),
    (["run", "--np", "\u0668"] + PROBLEM, "argument --np: '\u0668' is not a whole number"),
    (RUN + ["--timeout", "\u0661"], "is not a number of seconds"),
    (["regress", "--np", "2048", "--examples", "1", "--no-database"],
     "--np is 2,048, over the limit MAX_RUN_RANKS"),
]


@pytest.mark.parametrize("argv,message", [(["plan"] + a, m) for a, m in PROBLEM_CASES]
                         + RUN_CASES)
def test_bad_command_line_is_one_line_exit_2(argv, message):
    code, out, err = run_cli(argv)
    assert code == 2, (code, out, err)
    assert err.startswith("redist: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err + out


def _plan_file(tmp_path, content) -> str:
    f = tmp_path / "plan.json"
    if isinstance(content, bytes):
        f.write_bytes(content)
    else:
        f.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(f)


def _with(**changes):
    doc = json.loads(json.dumps(GOOD_PLAN))
    doc.update(changes)
    return doc


def _step(k, **changes):
    doc = json.loads(json.dumps(GOOD_PLAN))
    doc["steps"][k].update(changes)
    return doc


def _drop(key, step=None):
    doc = json.loads(json.dumps(GOOD_PLAN))
    (doc if step is None else doc["steps"][step]).pop(key)
    return doc


PLAN_CASES = [
    ("{not json", "plan: not valid JSON"),
    (_step(0, op="shuffle"), "step 1: unknown op 'shuffle'"),
    (_step(0, op=["all", "to", "all"]), "unknown op ['all', 'to', 'all']"),
    (_with(format="other/2"), "plan: unknown format 'other/2'"),
    ([1, 2], "plan: the document must be a JSON object"),
    (_drop("mesh"), "plan: missing 'mesh'"),
    (_with(mesh={"x": 2}), "'mesh' must be a list of [name, size] pairs"),
    (_with(mesh=[["x", 0], ["y", 4]]), "size 0; sizes must be >= 1"),
    (_with(shape=[16, "a"]), "plan: shape entry must be an integer"),
    (_with(shape=[16, True]), "plan: shape entry must be an integer"),
    (_with(dtype=5), "'dtype' must be a string"),
    (_with(src=[["q"], ["y"]]), "unknown mesh axis 'q'"),
    (_with(steps={"op": "all_gather"}), "'steps' must be a list"),
    (_with(steps=[3]), "step 1 must be an object"),
    (_drop("src_dim", step=0), "step 1 (all_to_all): missing 'src_dim'"),
    (_step(0, src_dim="1"), "step 1 src_dim must be an integer"),
    (_step(0, axes="y"), "must be a list of axis names"),
    (_step(1, layout=5), "a layout is a list with one entry per array dim"),
    (_step(0, layout_after=[["x"], ["y"]]), "layout_after [{x},{y}] does not match"),
    (_with(figures={"peak_bytes": 1}), "the stored 'figures' disagree with the plan (edited "),
    (_with(figures={"peak_bytes": 1}), "figure 'peak_bytes' = 1 (recomputed 128)"),
    (_with(dtype="float64", figures={"local_bytes": [128] * 4, "volume_bytes": 1536}),
     "'local_bytes' = [128, 128, 128, 128] (recomputed [256, 256, 256, 256]); 'volume_bytes'"),
    (_with(figures={"volume_ratio": 10 ** 400}), "figure 'volume_ratio' = 1000000"),
    (_with(figures=[1]), "'figures' must be an object"),
    (_with(verdict=3), "'verdict' must be an object with a list of 'claims'"),
    (_with(verdict={"claims": [{"claim": ["well_typed"], "status": "proved"}]}),
     "each verdict claim must be an object with string 'claim' and 'status'"),
    (b"\xff\xfe{}", "is not UTF-8 text"),
    ("[" * 200 + "]" * 200, "JSON nested 200 deep, over the limit MAX_JSON_DEPTH"),
    ('{"format": "redist.plan/1", "shape": [' + "9" * 5000 + "]}", "not acceptable JSON"),
    (_with(steps=[{"op": "all_slice", "axes": [[], []]}] * 65), "over the limit MAX_STEPS"),
    # duplicate keys: readers disagree on which copy wins
    (json.dumps(GOOD_PLAN)[:-1] + ', "dtype": "float64"}', "key 'dtype' appears twice"),
    (json.dumps(GOOD_PLAN).replace('"src_dim": 1,', '"src_dim": 1, "src_dim": 0,'),
     "key 'src_dim' appears twice in one JSON object"),
    (_with(dtype="(-1,)f4"), "unknown dtype '(-1,)f4'"),
    (_with(dtype=""), "unknown dtype ''"),
    (_with(mesh=[["x\n", 2], ["y", 4]]), "mesh axis name 'x\\n' is not an identifier"),
    (_with(mesh=[["x", 2, 3], ["y", 4]]), "'mesh' must be a list of [name, size] pairs"),
    (_with(src={"dims": [["x"], []], "sum": ["y", "y"]}), "pending axis 'y' is listed twice"),
    (_with(src={"dims": [["x"], ["y"]], "sum": ["y"]}), "pending axis 'y' also shards dim 1"),
    (_with(src={"dims": [["x"], []], "sum": "y"}), "'sum' must be a list of axis names"),
    (_with(src={"dim": [["x"], []]}), "a layout object has 'dims'"),
    # an unterminated string of escaped quotes, 4 MB: a quadratic pre-check ran for hours
    ('{"format": "' + '\\"' * 2_000_000, "plan: not valid JSON"),
]


@pytest.mark.parametrize("content,message", PLAN_CASES)
@pytest.mark.parametrize("command", ["verify", "normalize"])
def test_bad_plan_files_are_one_line_exit_2(tmp_path, command, content, message):
    code, out, err = run_cli([command, _plan_file(tmp_path, content)])
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err + out


def test_plan_files_that_are_not_regular_files(tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(5 << 20)
    for path, message in [(str(fifo), "is not a regular file"), (str(tmp_path), "is not a "
                          "regular file"), (str(big), "over the limit of 4,194,304 bytes"),
                          (str(tmp_path / "none.json"), "No such file or directory")]:
        code, _, err = run_cli(["verify", path])
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_ill_typed_plan_is_a_refuted_claim_exit_1(tmp_path):
    """An all_to_all with src_dim and dst_dim swapped parses; well_typed is refuted with the
    step and the rule, the other claims are not checked."""
    code, out, err = run_cli(["verify", _plan_file(tmp_path, _step(0, src_dim=0, dst_dim=1))])
    assert code == 1, err
    assert "REFUTED  well_typed" in out
    assert "step 1 (all_to_all): all_to_all: {y} is not the minor-most suffix of src_dim 0" in out
    assert out.count("UNKNOWN") == 4 and "not posed: the plan is not well-typed" in out
    code, out, _ = run_cli(["normalize", _plan_file(tmp_path, _step(0, src_dim=0, dst_dim=1))])
    assert code == 1 and "nothing to normalize: the plan is not well-typed" in out


def test_certificate_paths(tmp_path):
    code, _, err = run_cli(["certify", "check", str(tmp_path / "missing")])
    assert code == 2 and "no certificate at" in err and "no such file or directory" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, _ = run_cli(["certify", "check", str(empty)])
    assert code == 1 and "cannot read certificate" in out and "REJECTED" in out
    code, out, _ = run_cli(["certify", "check", "/dev/null"])
    assert code == 1 and "is not a regular file" in out


def test_real_entry_point_prints_one_line():
    """The installed command, not just main(): argparse errors included."""
    for argv, message in [(["run", "--np", "eight"], "'eight' is not a whole number"),
                          (["plan"] + opt("--shape", "-64,64"), "shape entry -64 must be >= 1")]:
        r = subprocess.run([sys.executable, "-m", "redist", *argv], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr


def test_run_with_plan_file_takes_the_problem_from_the_file(tmp_path):
    f = _plan_file(tmp_path, GOOD_PLAN)
    code, _, err = run_cli(["run", "--np", "8", "--plan", f, "--mesh", "x=4,y=2"])
    assert code == 2 and "--mesh x=4,y=2 contradicts the plan file" in err
    code, _, err = run_cli(["run", "--np", "8", "--plan", f, "--shape", "32,16"])
    assert code == 2 and "--shape 32,16 contradicts the plan file" in err


@pytest.mark.parametrize("given", [
    {"mesh": "x=2,y=4"}, {"src": "[{x},{y}]", "dst": "[{y},{x}]"}, {"shape": "16,16"},
    {"dtype": "f4"}, {"mesh": "x=2,y=4", "shape": "16,16", "src": "[{x},{y}]",
                      "dst": "[{y},{x}]", "dtype": "float32"}])
def test_run_with_plan_file_accepts_options_that_agree(tmp_path, given):
    """The file's problem is compared in the user's terms: its mesh as given, not the mesh
    of sub-axes the plan is written on (y=4 is y(1)2 x y(2)2 here)."""
    import argparse

    from redist.api import synthesize
    from redist.core.plans.planjson import load, plan_to_json
    from redist.runtime.launch import plan_from_args

    made = synthesize(mesh="x=2,y=4", shape="16,16", dtype="float32", src="[{x},{y}]",
                      dst="[{y},{x}]")
    f = _plan_file(tmp_path, plan_to_json(made.plan))
    refined = load(f).problem
    assert refined.mesh != refined.base                  # the class of plan in question
    args = argparse.Namespace(plan_file=f, method="normal", **{
        k: given.get(k) for k in ("mesh", "shape", "dtype", "src", "dst")})
    plan, _ = plan_from_args(args)
    assert plan.problem == refined


def test_python_api_shapes():
    """The Python API takes a shape as text or integers (NumPy's too) and names a bad one."""
    import numpy as np

    from redist import RedistError, synthesize

    a = synthesize(mesh="x=2,y=2", shape="8,6", dtype="float32", src="[{x},{y}]", dst="[{y},{x}]")
    b = synthesize(mesh="x=2,y=2", shape=(np.int64(8), 6), dtype="float32", src="[{x},{y}]",
                   dst="[{y},{x}]")
    assert a.plan.problem.shape == b.plan.problem.shape == (8, 6)
    for bad, word in (((2.5, 4), "2.5"), ((True, 4), "True"), (8, "int"), ("8,x", "'x'")):
        with pytest.raises(RedistError, match=word):
            synthesize(mesh="x=2,y=2", shape=bad, dtype="float32", src="[{x},{}]",
                       dst="[{},{x}]")


def test_closed_output_pipe_exits_quietly():
    """`redist plan ... | head -1`: no BrokenPipeError, no message, exit 141 (SIGPIPE's)."""
    r = subprocess.run(f"{sys.executable} -m redist plan {' '.join(map(repr, PROBLEM))} "
                       "--show | true; exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 141 and r.stderr == "", (r.returncode, r.stderr)


def test_cost_models_and_replays_are_untrusted_files(tmp_path, monkeypatch):
    """Duplicate keys, 400-digit numbers, strings for numbers; replays too large to simulate;
    a cost model that cannot be written."""
    from redist.core.synthesis.costmodel import CostModel, save
    good = CostModel().to_json()
    text = json.dumps(good)
    f = tmp_path / "cm.json"
    monkeypatch.setenv("REDIST_COST_MODEL", str(f))
    for bad, message in [(text[:-1] + ', "format": "x"}', "key 'format' appears twice"),
                         (text.replace('"all_gather": 3e-05', '"all_gather": 1' + "0" * 400),
                          "int too large to convert to float"),
                         (text.replace('"all_gather": 3e-05', '"all_gather": "3e-05"'),
                          "is not a number"),
                         (text.replace('"latency"', '"latency_"'), "missing 'latency'"),
                         ("[1]", "the document must be a JSON object")]:
        f.write_text(bad)
        code, _, err = run_cli(opt("--collectives", "mpi", ["plan"] + PROBLEM))
        assert code == 2 and message in err and err.count("\n") == 1, (message, err)
    with pytest.raises(Exception, match="cannot save the cost model to '/dev/full'"):
        save(CostModel(), "/dev/full")
    with pytest.raises(Exception, match="embedded null byte"):
        save(CostModel(), str(tmp_path / "a\x00b"))
    big = _with(shape=[2 ** 20, 2 ** 20], steps=[])
    for doc, message in [(big, "over the limit MAX_REPLAY_ELEMENTS"),
                         (json.dumps(GOOD_PLAN)[:-1] + ', "shape": [8, 8]}',
                          "key 'shape' appears twice")]:
        code, _, err = run_cli(["regress", "--replay", _plan_file(tmp_path, doc)])
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_regress_jax_without_jax(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)          # import jax now fails
    code, _, err = run_cli(["regress", "--jax", "--examples", "1", "--no-database"])
    assert code == 2 and "--jax needs JAX, which cannot be imported here" in err


FAKE_MPIEXEC = """#!/bin/sh
printf '%s\\n' "$FAKE_OUT"
"""


@pytest.mark.parametrize("report", ["{bad", "[1, 2]", "{}", "null", '{"all_match": true}',
                                    '{"model": 5}', '{"plan": {"figures": 3}}'])
def test_malformed_reports_from_an_odd_mpiexec(tmp_path, monkeypatch, report):
    from redist.runtime.report_mark import MARK
    exe = tmp_path / "mpiexec"
    exe.write_text(FAKE_MPIEXEC)
    exe.chmod(0o755)
    monkeypatch.setenv("FAKE_OUT", MARK + report)
    for argv in (["run", "--np", "2", "--mesh", "x=2", "--shape", "4", "--src", "[{x}]",
                  "--dst", "[{}]"], ["calibrate", "--np", "2", "--out", str(tmp_path / "c")]):
        code, _, err = run_cli(argv + ["--mpiexec", str(exe)])
        assert code == 2 and err.startswith("redist: error: ") and err.count("\n") == 1, err
        assert "report" in err


def test_verify_prints_layouts_in_canonical_form(tmp_path):
    """Refutations name layouts as the user writes them ([{y},{x}]), never as the atoms
    the plan is computed on ([{y(1)2,y(2)2},{x}])."""
    wrong_dst = _with(dst=[["x"], ["y"]], steps=[
        {"op": "all_to_all", "src_dim": 1, "dst_dim": 0, "axes": ["y(2)2"]},
        {"op": "all_permute", "layout": [["y"], ["x"]]}])
    code, out, _ = run_cli(["verify", _plan_file(tmp_path, wrong_dst)])
    assert code == 1 and "the plan ends at [{y},{x}], not at dst [{x},{y}]" in out, out
    bad_permute = _with(steps=[
        {"op": "all_to_all", "src_dim": 1, "dst_dim": 0, "axes": ["y(2)2"]},
        {"op": "all_permute", "layout": [["y", "x"], []]}], dst=[["y", "x"], []])
    code, out, _ = run_cli(["verify", _plan_file(tmp_path, bad_permute)])
    assert code == 1 and "all_permute: [{y,x},{}] has (8, 1) blocks per dim" in out, out
    assert "y(1)2,y(2)2" not in out and "solver:" not in out, out


def test_names_read_from_files_are_never_printed_raw(tmp_path):
    """A newline in a verdict's claim or status (or any quoted text) cannot start a fake
    `redist: error:` line: every printed line comes from redist."""
    doc = _with(verdict={"claims": [{"claim": "well_typed\nredist: error: injected",
                                     "status": "proved\x1b[2J"}]})
    code, out, err = run_cli(["verify", _plan_file(tmp_path, doc)])
    assert code == 1 and "well_typed\\nredist: error: injected is proved\\x1b[2J" in out
    assert not any(line.startswith("redist: error: injected") for line in (out + err)
                   .splitlines()) and "\x1b" not in out


def test_rich_output_on_a_closed_pipe_is_left_to_the_command():
    """rich would exit 1 on a closed pipe; our console raises BrokenPipeError, which the
    command turns into a quiet exit 141 (test_closed_output_pipe_exits_quietly)."""
    from redist.core.plans.show import QuietConsole

    class Closed(io.StringIO):
        def write(self, s):
            raise BrokenPipeError

    with pytest.raises(BrokenPipeError):
        QuietConsole(file=Closed()).print("x" * 100)


@pytest.mark.parametrize("text", [
    '"' + '\\"' * 2_000_000,                     # unterminated, escaped quotes
    '"' + '\\"' * 2_000_000 + "\\",              # ... ending in a lone backslash
    '["' + '\\\\\\"[' * 1_000_000,               # escaped backslashes, quotes, brackets
    '["' + '[{' * 2_000_000,                     # brackets inside an unterminated string
])
def test_json_pre_check_is_linear(text):
    """4 MB (a plan file's limit) of the inputs that made the old pre-check rescan from
    every quote: hours then, a fraction of a second now; 30 s leaves room for a loaded
    machine and still tells the two apart."""
    import time

    from redist.core.errors import RedistError
    from redist.core.files import parse_json

    start = time.monotonic()
    with pytest.raises(RedistError, match="not valid JSON"):
        parse_json(text, "plan")
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("mesh,shape,dtype,message", [
    ("x=1048576", "1048576", "float32", "the ranks the replayed problem needs (its mesh's "
                                        "devices) is 1,048,576, over the limit MAX_RUN_RANKS"),
    ("x=2048", "2048", "float32", "is 2,048, over the limit MAX_RUN_RANKS"),
    ("x=8", f"{2**20},{2**20}", "float64", "of memory (8 ranks"),
])
def test_regress_replay_has_the_limits_of_run(tmp_path, mesh, shape, dtype, message):
    """A replay file names its own mesh, so `--np` starts as many ranks as it says: the same
    rank and memory checks as `redist run`, before mpiexec is started."""
    from redist.core.model.problem import Problem
    from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape
    from redist.regress import save_failure

    rest = ",{}" * shape.count(",")
    p = Problem(parse_mesh(mesh), parse_shape(shape), dtype, parse_layout("[{x}" + rest + "]"),
                parse_layout("[{}" + rest + "]"))
    f = save_failure(p, str(tmp_path))
    code, out, err = run_cli(["regress", "--replay", f, "--np", "1"])
    assert code == 2 and err.count("\n") == 1 and message in err, (code, out, err)


def _reference_depth(text: str) -> int:
    """Character by character: the deepest bracket nesting outside JSON strings."""
    depth = best = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='[]{}"\\a,é', max_size=60))
def test_json_pre_check_depth_agrees_with_a_character_scan(text):
    from redist.core.files import _max_depth

    assert _max_depth(text) == _reference_depth(text)
