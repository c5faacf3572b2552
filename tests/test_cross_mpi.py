"""Two meshes on MPI ranks (DESIGN §15): the issue's acceptance run through the CLI, and the
public `redistribute(..., dst_mesh=...)` form on disjoint, overlapping and out-of-order
placements (an independent program cuts and checks the blocks)."""

import json

import pytest
from mpi_util import mpirun
from test_bad_input import run_cli


def test_acceptance_run_matches_every_element_within_the_proved_peak():
    code, out, err = run_cli(["run", "--np", "12", "--mesh", "fsdp=4,tp=2@0-7", "--dst-mesh",
                              "tp=4@8-11", "--shape", "64,64", "--src", "[{fsdp},{tp}]",
                              "--dst", "[{},{tp}]", "--repeat", "1", "--json", "-"])
    assert code == 0, err
    r = json.loads(out)
    assert r["all_match"] and r["elements_checked"] == 64 * 64
    fig = r["plan"]["figures"]
    assert fig["cross_mesh_bytes"] == fig["cross_mesh_lower_bound_bytes"] == 64 * 64 * 4
    proved = dict(zip(fig["ranks"], fig["peak_per_rank"], strict=True))
    assert all(m <= proved[k] for k, m in enumerate(r["peak_bytes_per_rank"]))
    assert r["peak_bytes_per_rank"][8:] == [64 * 16 * 4] * 4      # B ranks: their block


def test_redistribute_between_meshes():
    r = mpirun(6, "cross_api.py", timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [x["ok"] for x in lines[:4]] == [True] * 4, lines
    assert any("rank 0 is in the src mesh: pass its block" in m for m in lines[4]["messages"])


@pytest.mark.parametrize("np_, a, b, shape, src, dst", [
    # ranks 2, 3 in both meshes, staged: each sends, turns its A block into its dst block
    ("6", "x=4@0-3", "y=2,z=2@2-5", "8,8", "[{x},{}]", "[{},{y}]"),
    # uneven: dp cuts the dim dst holds whole by valid elements (pieces of 4 and 3)
    ("6", "x=2,y=2@0-3", "u=2,v=2@2-5", "9,7", "[{x},{y}]", "[{},{v}]"),
])
def test_measured_peak_is_the_proved_peak_and_the_bound(np_, a, b, shape, src, dst):
    code, out, err = run_cli(["run", "--np", np_, "--mesh", a, "--dst-mesh", b, "--shape",
                              shape, "--src", src, "--dst", dst, "--repeat", "1", "--json",
                              "-"])
    assert code == 0, err
    r = json.loads(out)
    fig = r["plan"]["figures"]
    assert r["all_match"] and fig["memory_efficient"]
    assert fig["cross_mesh_bytes"] == fig["cross_mesh_lower_bound_bytes"]
    bound = dict(zip(fig["ranks"], fig["bound_per_rank"], strict=True))
    proved = dict(zip(fig["ranks"], fig["peak_per_rank"], strict=True))
    assert [proved[k] for k in sorted(proved)] == [bound[k] for k in sorted(bound)]
    assert r["peak_bytes_per_rank"] == [proved[k] for k in range(int(np_))]
