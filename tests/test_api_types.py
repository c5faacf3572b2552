"""Wrong-typed arguments to the public Python API (redist/__init__.py): each raises a
RedistError (or TypeError/ValueError) whose message names the argument, before the value
reaches NumPy or z3 (never AttributeError, never a Z3Exception)."""

import pytest

import redist as R

MESH = R.parse_mesh("x=2,y=2")
A, B = R.parse_layout("[{x},{y}]"), R.parse_layout("[{y},{x}]")
PROBLEM = R.Problem(MESH, (8, 8), "float32", A, B)
TEXT = dict(mesh="x=2", shape="8,8", src="[{x},{}]", dst="[{},{x}]")


@pytest.fixture(scope="module")
def plan():
    return R.synthesize(PROBLEM).plan


@pytest.fixture(scope="module")
def cert(plan, tmp_path_factory):
    return R.write_certificate(plan, None, str(tmp_path_factory.mktemp("c") / "c.json"))


NOT_TEXT = [None, 3, 2.5, b"x=2", [1], {"a": 1}, object(), True]
NOT_COUNT = [None, "x", "8", 2.5, -3, 0, b"x", [1], {"a": 1}, object(), True]
NOT_SECONDS = ["x", "1", -1, 0, float("nan"), float("inf"), [1], object(), True]

# (function.argument, call with the wrong value, wrong values, the word the message names)
TABLE = [
    ("Mesh.axes", lambda v, _: R.Mesh(v), [None, 3, "x=2", b"x", [1], {"a": 1}, [("x",)]],
     "axes"),
    ("Layout.dims", lambda v, _: R.Layout(v), [None, 3, "x", [1], [[1]], {"a": 1}], "dims"),
    ("Problem.mesh", lambda v, _: R.Problem(v, (8, 8), "float32", A, B), NOT_TEXT + ["x=2"],
     "mesh"),
    ("Problem.shape", lambda v, _: R.Problem(MESH, v, "float32", A, B),
     [None, 3, "8,8", 2.5, (8, 2.5), (8, "8"), (8, True), {"a": 1}], "shape"),
    ("Problem.dtype", lambda v, _: R.Problem(MESH, (8, 8), v, A, B),
     [None, 3, 2.5, b"f4", [1], object(), "", "(-1,)f4", "(99999999999,)f4"], "dtype"),
    ("Problem.src", lambda v, _: R.Problem(MESH, (8, 8), "float32", v, B), NOT_TEXT, "src"),
    ("Problem.dst", lambda v, _: R.Problem(MESH, (8, 8), "float32", A, v), NOT_TEXT, "dst"),
    ("Plan.problem", lambda v, _: R.Plan(v, ()), NOT_TEXT, "problem"),
    ("Plan.steps", lambda v, _: R.Plan(PROBLEM, v), [None, 3, "x", [1], [None]], "steps"),
    ("synthesize.problem", lambda v, _: R.synthesize(v), [3, "x", [1], object(), True],
     "problem"),
    ("synthesize.method", lambda v, _: R.synthesize(PROBLEM, method=v), NOT_TEXT, "method"),
    ("synthesize.budget", lambda v, _: R.synthesize(PROBLEM, budget=v),
     [x for x in NOT_COUNT if x is not None], "budget"),
    ("synthesize.steps", lambda v, _: R.synthesize(PROBLEM, method="optimal", steps=v),
     [x for x in NOT_COUNT if x is not None], "steps"),
    ("synthesize.collectives", lambda v, _: R.synthesize(PROBLEM, collectives=v), NOT_TEXT,
     "collectives"),
    ("synthesize.timeout", lambda v, _: R.synthesize(PROBLEM, method="optimal", timeout=v),
     NOT_SECONDS, "timeout"),
    ("synthesize.mesh", lambda v, _: R.synthesize(**{**TEXT, "mesh": v}),
     [3, 2.5, b"x", [1], {"a": 1}, object(), True], "mesh"),
    ("synthesize.shape", lambda v, _: R.synthesize(**{**TEXT, "shape": v}),
     [3, 2.5, b"x", {"a": 1}, object(), True, (8, None)], "shape"),
    ("synthesize.dtype", lambda v, _: R.synthesize(**{**TEXT, "dtype": v}),
     [3, 2.5, b"x", [1], object(), True, "", "(-1,)f4"], "dtype"),
    ("synthesize.src", lambda v, _: R.synthesize(**{**TEXT, "src": v}),
     [3, 2.5, b"x", [1], {"a": 1}, object(), True], "src"),
    ("synthesize.dst", lambda v, _: R.synthesize(**{**TEXT, "dst": v}),
     [3, 2.5, b"x", [1], {"a": 1}, object(), True], "dst"),
    ("verify.plan", lambda v, _: R.verify(v), NOT_TEXT + [PROBLEM], "plan"),
    ("verify.memory_budget", lambda v, f: R.verify(f["plan"], v),
     [x for x in NOT_COUNT if x is not None], "memory_budget"),
    ("verify.timeout_ms", lambda v, f: R.verify(f["plan"], None, v), NOT_COUNT,
     "timeout_ms"),
    ("parse_mesh.text", lambda v, _: R.parse_mesh(v), NOT_TEXT, "text"),
    ("parse_layout.text", lambda v, _: R.parse_layout(v), NOT_TEXT, "text"),
    ("parse_shape.text", lambda v, _: R.parse_shape(v), NOT_TEXT, "text"),
    ("plan_dumps.plan", lambda v, _: R.plan_dumps(v), NOT_TEXT + [PROBLEM], "plan"),
    ("plan_loads.text", lambda v, _: R.plan_loads(v), NOT_TEXT, "text"),
    ("write_certificate.plan", lambda v, f: R.write_certificate(v, None, f["tmp"]),
     NOT_TEXT, "plan"),
    ("write_certificate.verdict", lambda v, f: R.write_certificate(f["plan"], v, f["tmp"]),
     [3, "proved", [1], {"claims": []}, object(), True], "verdict"),
    ("write_certificate.path", lambda v, f: R.write_certificate(f["plan"], None, v),
     NOT_TEXT, "path"),
    ("write_certificate.memory_budget",
     lambda v, f: R.write_certificate(f["plan"], None, f["tmp"], v),
     [x for x in NOT_COUNT if x is not None], "memory_budget"),
    ("check_certificate.path", lambda v, _: R.check_certificate(v), NOT_TEXT, "path"),
    ("check_certificate.use_cvc5", lambda v, f: R.check_certificate(f["cert"], v),
     [None, 1, "yes", [1], object()], "use_cvc5"),
    ("check_certificate.timeout_ms", lambda v, f: R.check_certificate(f["cert"], True, v),
     NOT_COUNT, "timeout_ms"),
]


def test_the_table_covers_the_public_api():
    callables = {n for n in R.__all__ if callable(getattr(R, n))} - {
        "RedistError", "TypingError", "Result", "Figures"}    # exceptions and result values
    assert callables == {row[0].split(".")[0] for row in TABLE}


@pytest.mark.parametrize("where,call,values,word", TABLE, ids=[row[0] for row in TABLE])
def test_wrong_types_name_the_argument(where, call, values, word, plan, cert, tmp_path):
    fixtures = {"plan": plan, "cert": cert, "tmp": str(tmp_path / "w")}
    for value in values:
        with pytest.raises((R.RedistError, TypeError, ValueError)) as e:
            call(value, fixtures)
        assert word in str(e.value), (where, value, str(e.value))
        assert "\n" not in str(e.value)


REDISTRIBUTE = '''
import numpy as np
from mpi4py import MPI
from redist import RedistError
from redist.runtime import redistribute
c, x = MPI.COMM_WORLD, np.arange(8.0)
for word, args, kw in [("comm", (x, "x=1", "[{x}]", "[{}]", "comm"), {}),
                       ("local", ("arr", "x=1", "[{x}]", "[{}]", c), {}),
                       ("mesh", (x, 5, "[{x}]", "[{}]", c), {}),
                       ("src", (x, "x=1", 5, "[{}]", c), {}),
                       ("dst", (x, "x=1", "[{x}]", None, c), {}),
                       ("shape", (x, "x=1", "[{x}]", "[{}]", c), {"shape": "abc"}),
                       ("collectives", (x, "x=1", "[{x}]", "[{}]", c), {"collectives": 3}),
                       ("comm", (x, None, None), {})]:
    try:
        redistribute(*args, **kw)
        raise SystemExit(f"accepted {word}")
    except RedistError as e:
        assert word in str(e), (word, str(e))
print("ok")
'''


def test_redistribute_wrong_types_name_the_argument():
    """redist.runtime.redistribute, in a one-rank MPI job of its own."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", REDISTRIBUTE], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
