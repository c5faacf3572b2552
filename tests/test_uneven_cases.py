"""The sub-axis and uneven cases users hit (DESIGN §10-§11): each plans, verifies (or says
honestly why not), simulates element by element, and runs on MPI ranks through an
independent program that builds its blocks with the ceil convention by itself."""

import json

import pytest
from mpi_util import mpirun

from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.smt.verify import verify
from redist.core.synthesis.synthesize import is_normal_form, normal

from helpers import simulate_matches_dst

# (mesh, shape, src, dst); layouts as lists per dim of refs
CASES = [
    # 8 devices
    ("x=8", [50257], [["x"]], [[]]),                                   # a vocabulary
    ("x=8", [50257, 16], [[], ["x"]], [["x"], []]),
    ("x=8", [17], [["x"]], [[]]),                                      # 17 on 8
    ("x=8", [17, 16], [["x"], []], [[], ["x"]]),
    ("x=8", [3, 8], [["x"], []], [[], ["x"]]),                        # empty trailing blocks
    ("x=2,y=4", [1000, 24], [["x", "y"], []], [["y"], ["x"]]),
    ("x=2,y=4", [16], [["x"]], [["y"]]),                              # |x|=2 -> |y|=4
    ("x=2,y=4", [4, 8192], [["x"], ["y"]], [["y"], ["x"]]),           # needs a sub-axis
    ("x=2,y=4", [16, 16], [["x", "y(1)2"], []], [[], ["y"]]),        # a sub-axis in src
    ("x=8", [16, 16], [["x(1)2"], ["x(2)4"]], [["x"], []]),          # a sub-axis all-to-all
    ("x=2,y=4", [10, 6], [["y(2)2"], ["x"]], [["x", "y(1)2"], []]),
    ("x=2,y=2,z=2", [5, 7, 3], [["x"], ["y"], ["z"]], [["z"], ["x"], ["y"]]),
    ("x=4,y=2", [9, 9], [["x", "y"], []], [["y", "x"], []]),
    # 4 devices
    ("x=4", [10], [["x"]], [[]]),                                      # 10 on 4
    ("x=4", [10, 6], [["x"], []], [[], ["x"]]),
    ("x=2,y=2", [5, 7], [["x"], ["y"]], [["y"], ["x"]]),
    ("x=4", [3], [[]], [["x"]]),
    ("x=4", [6, 10], [["x(1)2"], ["x(2)2"]], [["x(2)2"], ["x(1)2"]]),
]


def _problem(mesh, shape, src, dst):
    return Problem(parse_mesh(mesh), tuple(shape), "float64", parse_layout(json.dumps(src)),
                   parse_layout(json.dumps(dst)))


@pytest.mark.parametrize("mesh,shape,src,dst", CASES)
def test_case_plans_verifies_and_simulates(mesh, shape, src, dst):
    s = normal(_problem(mesh, shape, src, dst))
    assert simulate_matches_dst(s.plan)
    fig = s.plan.figures()
    assert (s.reason is None) == (fig.memory_efficient and is_normal_form(s.plan))
    v = verify(s.plan)
    assert [r.status for r in v.results[:3]] == ["proved"] * 3
    assert (v.get("memory_efficient").status == "proved") == fig.memory_efficient
    if s.reason is None:
        assert v.all_proved, v.table()


@pytest.mark.parametrize("ranks", [8, 4])
def test_cases_run_on_mpi_ranks(ranks, tmp_path):
    f = tmp_path / "cases.json"
    f.write_text(json.dumps(CASES))
    r = mpirun(ranks, "uneven_cases.py", str(f), timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    expected = [k for k, c in enumerate(CASES)
                if parse_mesh(c[0]).num_devices == ranks]
    assert [row["case"] for row in rows] == expected
    bad = [(CASES[row["case"]], row["errors"]) for row in rows if not row["ok"]]
    assert not bad, bad
