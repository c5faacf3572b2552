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
from torch.distributed.tensor import Partial, Replicate, Shard  # noqa: E402

from redist import regress  # noqa: E402
from redist.core.errors import RedistError  # noqa: E402
from redist.core.model.layout import Layout  # noqa: E402
from redist.core.model.mesh import Mesh  # noqa: E402
from redist.core.model.problem import Problem  # noqa: E402
from redist.core.model.syntax import parse_layout, parse_mesh  # noqa: E402
from redist.regress import torch_server  # noqa: E402
from redist.torch import (  # noqa: E402
    ceil_blocks,
    check_chunk_convention,
    nested_blocks,
    problem_of,
)
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


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 40), st.lists(st.integers(1, 5), min_size=1, max_size=3))
def test_convention_check_refuses_exactly_where_the_blocks_differ(n, sizes):
    mesh = Mesh(tuple((f"a{i}", s) for i, s in enumerate(sizes)))
    layout = Layout((tuple(mesh.names),))
    differ = nested_blocks(n, sizes) != ceil_blocks(n, math.prod(sizes))
    if differ:
        with pytest.raises(RedistError, match="by chunking chunks"):
            check_chunk_convention(mesh, (n,), layout, "src")
    else:
        check_chunk_convention(mesh, (n,), layout, "src")
    if n % math.prod(sizes) == 0:
        assert not differ                     # the hint the error gives holds


@pytest.fixture(scope="module")
def mesh():
    from torch.testing._internal.distributed.fake_pg import FakeStore
    if not dist.is_initialized():
        dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=8)
    return init_device_mesh("cpu", (2, 4), mesh_dim_names=("dp", "tp"))


def test_partial_and_bad_inputs_are_one_line_errors(mesh):
    from torch.distributed.tensor import distribute_tensor
    t = distribute_tensor(torch.zeros(16, 8), mesh, [Shard(0), Replicate()])
    for placements, message in [([Partial(), Replicate()], "Partial"),
                                ([Shard(0)], "1 placements for a mesh of 2 dims"),
                                ([Shard(3), Replicate()], "out of range")]:
        with pytest.raises(RedistError, match=message) as e:
            problem_of(t, placements)
        assert "\n" not in str(e.value)
    with pytest.raises(RedistError, match="takes a DTensor, not Tensor"):
        problem_of(torch.zeros(4), [Replicate(), Replicate()])
    p = problem_of(t, [Replicate(), Shard(1)])
    assert (str(p.show(p.src)), str(p.show(p.dst))) == ("[{dp},{}]", "[{},{tp}]")


def _refusal_expected(case: dict) -> bool:
    mesh = Mesh(tuple((a, s) for a, s in case["mesh"]))
    for placements in (case["src"], case["dst"]):
        dims = tuple(tuple(a for a, p in zip(mesh.names, placements, strict=True)
                           if p == f"S{d}") for d in range(len(case["shape"])))
        try:
            check_chunk_convention(mesh, tuple(case["shape"]), Layout(dims), "")
        except RedistError:
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
        # DTensor's nested uneven split: refused, clearly
        {"mesh": m24, "shape": [10, 6], "dtype": "float32", "src": ["S0", "S0"],
         "dst": ["R", "R"]},
    ]
    cases = chosen + random_cases(seed=22, n=22)
    server = torch_server(8, timeout=240)
    try:
        answers = [server.run(c) for c in cases]
        again = server.run(chosen[0])
        partial = server.run({"mesh": m24, "shape": [8, 8], "dtype": "float32",
                              "src": ["S0", "R"], "dst": ["R", "P"]})
        disagree = server.run({"mesh": m24, "shape": [8, 8], "dtype": "float32",
                               "src": ["S0", "R"], "dst": ["R", "S1"],
                               "dst_on_rank": {"3": ["R", "S0"]}})
        # `redist regress --torch` checks its problems through the same job
        tally = regress.Tally()
        for src, dst, shape in [("[{x},{y}]", "[{y},{x}]", (9, 7)),
                                ("[{x,y},{}]", "[{},{}]", (10, 3)),      # nested: refused
                                ("[{},{y(1)2}]", "[{x},{}]", (8, 8))]:   # sub-axis: skipped
            p = Problem(parse_mesh("x=2,y=4"), shape, "float32", parse_layout(src),
                        parse_layout(dst))
            assert regress.check_problem(p, tally, torch=server) == []
    finally:
        server.close()
    ran = 0
    for case, a in zip(cases, answers, strict=True):
        r = a["redist"]
        if _refusal_expected(case):
            assert "by chunking chunks" in r.get("refused", ""), (case, r)
            continue
        assert r["ok"] and r["placements_ok"], (case, r)
        assert r.get("same_as_dtensor", not a["dtensor"]["ok"]), (case, a)
        ran += 1
    assert ran >= 15 and not answers[0]["redist"]["cached"]
    assert again["redist"]["ok"] and again["redist"]["cached"]
    assert "Partial" in partial["redist"]["refused"]
    assert "\n" not in partial["redist"]["refused"]
    assert "asked for a different redistribution" in disagree["redist"]["refused"]
    assert (tally.torch_runs, tally.torch_refused) == (2, 1)
