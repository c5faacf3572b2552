"""redist.torch (DESIGN §17): verified plans on DTensors. One torchrun launch of 8 gloo
ranks runs random and chosen cases through redist.torch.redistribute and DTensor's own
redistribute, block by block against the blocks DTensor's rule gives; the chunk
convention and the clear errors are checked in this process."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="torch is not installed (pip install "
                            "'redist[torch]' for the DTensor tests)")
dist = pytest.importorskip("torch.distributed")

from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard  # noqa: E402

from redist import regress  # noqa: E402
from redist.core.errors import RedistError  # noqa: E402
from redist.core.model.layout import Layout  # noqa: E402
from redist.core.model.mesh import Mesh  # noqa: E402
from redist.core.model.nested import (  # noqa: E402
    ceil_blocks,
    group_devices,
    nested_blocks,
    regrids,
    transfers,
)
from redist.core.model.problem import Problem  # noqa: E402
from redist.core.model.syntax import parse_layout, parse_mesh  # noqa: E402
from redist.regress import torch_server  # noqa: E402
from redist.torch import problem_of  # noqa: E402
from redist.torch_serve import random_cases  # noqa: E402


def _chunks(lo: int, hi: int, s: int) -> list[tuple[int, int]]:
    """torch.chunk's pieces of [lo, hi) (padded with empty pieces to s, as DTensor does)."""
    pieces = torch.arange(lo, hi).chunk(s) if hi > lo else ()
    out = [(int(p[0]), int(p[-1]) + 1) if p.numel() else (hi, hi) for p in pieces]
    return out + [(hi, hi)] * (s - len(out))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 40), st.lists(st.integers(1, 5), min_size=1, max_size=3))
def test_nested_blocks_are_torch_chunk_of_torch_chunk(n, sizes):
    want = [(0, n)]
    for s in sizes:
        want = [c for lo, hi in want for c in _chunks(lo, hi, s)]
    got = nested_blocks(n, sizes)
    assert [(a, b) for a, b in got if b > a] == [(a, b) for a, b in want if b > a]
    assert [b - a for a, b in got] == [b - a for a, b in want]


def _moved(frm, to, moves):
    """Each member's rows after the moves, from rows labelled by their index."""
    held = [list(range(lo, hi)) for lo, hi in frm]
    got: list[list[int]] = [[] for _ in to]
    for s, r, lo, hi in moves:
        got[r] += [i for i in held[s] if lo <= i < hi]
    return [sorted(g) for g in got]


@settings(max_examples=120, deadline=None)
@given(st.integers(0, 60), st.lists(st.integers(1, 5), min_size=2, max_size=3),
       st.booleans())
def test_regrid_gives_every_member_exactly_its_block(n, sizes, back):
    mesh = Mesh(tuple((f"a{i}", s) for i, s in enumerate(sizes)))
    layout = Layout((tuple(mesh.names),))
    nested, flat = nested_blocks(n, sizes), ceil_blocks(n, math.prod(sizes))
    found = regrids(mesh, (n,), layout, to_dtensor=back)
    assert bool(found) == (nested != flat)
    if n % math.prod(sizes) == 0:
        assert not found                      # divisible: DTensor's pieces are §11's
    # the largest piece is the same ceil(n/S) both ways (same padded buffers)
    assert max(b - a for a, b in nested) == max(b - a for a, b in flat)
    for rg in found:
        assert (rg.frm, rg.to) == ((tuple(flat), tuple(nested)) if back
                                   else (tuple(nested), tuple(flat)))
        assert _moved(rg.frm, rg.to, rg.moves) == [list(range(a, b)) for a, b in rg.to]


def test_regrid_moves_are_checked():
    with pytest.raises(RedistError, match="do not tile"):
        transfers([(0, 2), (1, 4)], [(0, 2), (2, 4)])          # overlapping pieces
    with pytest.raises(RedistError, match="do not tile"):
        transfers([(0, 2), (2, 4)], [(0, 2), (2, 3)])          # another extent
    assert transfers([(0, 3), (3, 3)], [(0, 2), (2, 3)]) == ((0, 0, 0, 2), (0, 1, 2, 3))


def test_group_devices_in_mixed_radix_order():
    mesh = parse_mesh("x=2,y=2,z=2")
    assert group_devices(mesh, ("x", "z"), 2) == [2, 3, 6, 7]      # y=1 held fixed
    assert group_devices(mesh, ("z", "x"), 2) == [2, 6, 3, 7]


@pytest.fixture(scope="module")
def mesh():
    from torch.testing._internal.distributed.fake_pg import FakeStore
    if not dist.is_initialized():
        dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=8)
    return init_device_mesh("cpu", (2, 4), mesh_dim_names=("dp", "tp"))


def test_partial_and_bad_inputs_are_one_line_errors(mesh):
    from torch.distributed.tensor import distribute_tensor
    t = distribute_tensor(torch.zeros(16, 8), mesh, [Shard(0), Replicate()])
    for placements, message in [([Partial("avg"), Replicate()], r"Partial\('avg'\)"),
                                ([Shard(0)], "1 placements for a mesh of 2 dims"),
                                ([Shard(3), Replicate()], "out of range")]:
        with pytest.raises(RedistError, match=message) as e:
            problem_of(t, placements)
        assert "\n" not in str(e.value)
    with pytest.raises(RedistError, match="takes a DTensor, not Tensor"):
        problem_of(torch.zeros(4), [Replicate(), Replicate()])
    p = problem_of(t, [Replicate(), Shard(1)])
    assert (str(p.show(p.src)), str(p.show(p.dst))) == ("[{dp},{}]", "[{},{tp}]")
    part = DTensor.from_local(torch.zeros(8, 8), mesh, [Shard(0), Partial()], run_check=False)
    p = problem_of(part, [Shard(0), Shard(1)])
    assert (str(p.show(p.src)), str(p.show(p.dst))) == ("[{dp},{}]+{tp}", "[{dp},{tp}]")
    avg = DTensor.from_local(torch.zeros(8, 8), mesh, [Shard(0), Partial("avg")],
                             run_check=False)
    with pytest.raises(RedistError, match=r"Partial\('avg'\)") as e:
        problem_of(avg, [Shard(0), Replicate()])
    assert "\n" not in str(e.value)


def _nested(case: dict) -> bool:
    """DTensor's pieces differ from §11's ceil blocks in src or dst (rows are regridded)."""
    mesh = Mesh(tuple((a, s) for a, s in case["mesh"]))
    for placements in (case["src"], case["dst"]):
        dims = tuple(tuple(a for a, p in zip(mesh.names, placements, strict=True)
                           if p == f"S{d}") for d in range(len(case["shape"])))
        if regrids(mesh, tuple(case["shape"]), Layout(dims), to_dtensor=False):
            return True
    return False


def test_torchrun_8_ranks_equal_dtensor_block_by_block():
    m24 = [["x", 2], ["y", 4]]
    chosen = [
        # uneven transpose: no portable plan within the bound, one verified all_exchange
        {"mesh": m24, "shape": [10, 6], "dtype": "float32", "src": ["S0", "S1"],
         "dst": ["S1", "S0"]},
        # both mesh dims on one tensor dim, axes gathered in and out of mesh order
        {"mesh": m24, "shape": [16, 5], "dtype": "float32", "src": ["S0", "S0"],
         "dst": ["R", "R"]},
        {"mesh": [["x", 2], ["y", 2], ["z", 2]], "shape": [6, 11, 10], "dtype": "float32",
         "src": ["S1", "R", "S0"], "dst": ["R", "R", "R"]},
        {"mesh": [["x", 4], ["y", 2]], "shape": [8, 12], "dtype": "int32",
         "src": ["S1", "S0"], "dst": ["S0", "S1"]},
        # DTensor's nested uneven splits (2,2,1,0|2,2,1,0): rows regridded at the
        # boundary, in src, in dst, both, on a later dim (pieces not contiguous), 3 deep
        {"mesh": m24, "shape": [10, 6], "dtype": "float32", "src": ["S0", "S0"],
         "dst": ["R", "R"]},
        {"mesh": m24, "shape": [9, 5], "dtype": "float32", "src": ["R", "S1"],
         "dst": ["S0", "S0"]},
        {"mesh": m24, "shape": [3, 9], "dtype": "int32", "src": ["S1", "S1"],
         "dst": ["S0", "S0"], "flatten": True},
        {"mesh": [["x", 2], ["y", 2], ["z", 2]], "shape": [3, 13, 2], "dtype": "bfloat16",
         "src": ["S1", "S1", "S1"], "dst": ["S2", "S0", "R"]},
        # Partial("sum") sources: reduce_scatter (pieces in and out of group-rank order,
        # uneven, axes apart in the mesh) and all_reduce, summing distinct addends
        {"mesh": m24, "shape": [16, 8], "dtype": "float32", "src": ["P", "S0"],
         "dst": ["S0", "S0"]},
        {"mesh": m24, "shape": [8, 12], "dtype": "float32", "src": ["P", "P"],
         "dst": ["S1", "S0"]},
        {"mesh": m24, "shape": [10, 6], "dtype": "float32", "src": ["S0", "P"],
         "dst": ["S0", "S1"]},
        {"mesh": m24, "shape": [5, 7], "dtype": "int32", "src": ["P", "P"],
         "dst": ["R", "R"]},
        {"mesh": [["x", 2], ["y", 2], ["z", 2]], "shape": [6, 5], "dtype": "float32",
         "src": ["P", "S1", "P"], "dst": ["S0", "R", "S0"]},
    ]
    cases = chosen + random_cases(seed=22, n=22)
    server = torch_server(8, timeout=240)
    try:
        answers = [server.run(c) for c in cases]
        again = server.run(chosen[0])
        forgot = server.run(dict(chosen[0], forget_on_rank=[3]))    # rank 0 still holds it
        partial = server.run({"mesh": m24, "shape": [8, 8], "dtype": "float32",
                              "src": ["S0", "R"], "dst": ["R", "P"]})
        disagree = server.run({"mesh": m24, "shape": [8, 8], "dtype": "float32",
                               "src": ["S0", "R"], "dst": ["R", "S1"],
                               "dst_on_rank": {"3": ["R", "S0"]}})
        # `redist regress --torch` checks its problems through the same job
        tally = regress.Tally()
        for src, dst, shape in [("[{x},{y}]", "[{y},{x}]", (9, 7)),
                                ("[{x,y},{}]", "[{},{}]", (10, 3)),      # nested
                                ("[{},{y(1)2}]", "[{x},{}]", (8, 8)),    # sub-axis: skipped
                                ("[{x},{}]+{y}", "[{x,y},{}]", (11, 5)),  # Partial source
                                ("[{},{}]+{x,y}", "[{},{y}]", (6, 9))]:
            p = Problem(parse_mesh("x=2,y=4"), shape, "float32", parse_layout(src),
                        parse_layout(dst))
            assert regress.check_problem(p, tally, torch=server) == []
    finally:
        server.close()
    for case, a in zip(cases, answers, strict=True):
        r = a["redist"]
        assert r["ok"] and r["placements_ok"], (case, r)
        assert r.get("same_as_dtensor", not a["dtensor"]["ok"]), (case, a)
    assert sum(map(_nested, cases)) >= 6 and not answers[0]["redist"]["cached"]
    assert again["redist"]["ok"] and again["redist"]["cached"]
    assert forgot["redist"]["ok"] and not forgot["redist"]["cached"]
    assert "does not create them" in partial["redist"]["refused"]   # a Partial target
    assert "\n" not in partial["redist"]["refused"]
    steps = {a["redist"]["steps"] for c, a in zip(cases, answers, strict=True)
             if "P" in c["src"]}
    assert min(steps) >= 1
    assert "asked for a different redistribution" in disagree["redist"]["refused"]
    assert tally.torch_runs == 4       # the sub-axis one skipped; the Partial sources ran
