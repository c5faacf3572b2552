"""DTensor specs (issue 11): against the real torch when installed (a fake process group
of 8 ranks in this one process), skipped with a reason when not."""

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install "
                            "'redist[torch]' for the DTensor tests)")
dist = pytest.importorskip("torch.distributed")

from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.tensor import Partial, Replicate, Shard  # noqa: E402

from redist.api import synthesize  # noqa: E402
from redist.core.errors import RedistError  # noqa: E402
from redist.core.model.layout import Layout  # noqa: E402
from redist.core.model.syntax import parse_mesh  # noqa: E402
from redist.dtensor import (  # noqa: E402
    layout_from_placements,
    layout_of,
    mesh_from_device_mesh,
    to_placements,
)


@pytest.fixture(scope="module")
def mesh():
    from torch.testing._internal.distributed.fake_pg import FakeStore
    if not dist.is_initialized():
        dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=8)
    return init_device_mesh("cpu", (2, 4), mesh_dim_names=("dp", "tp"))


def test_device_mesh_is_a_mesh(mesh):
    assert mesh_from_device_mesh(mesh) == parse_mesh("dp=2,tp=4")


@pytest.mark.parametrize("placements,layout", [
    ((Shard(0), Replicate()), (("dp",), ())),
    ((Replicate(), Shard(1)), ((), ("tp",))),
    ((Shard(1), Shard(0)), (("tp",), ("dp",))),
    ((Shard(0), Shard(0)), (("dp", "tp"), ())),          # mesh-dim order: dp major
    ((Replicate(), Replicate()), ((), ())),
])
def test_placements_round_trip(mesh, placements, layout):
    lay = layout_from_placements(placements, mesh, 2)
    assert lay == Layout(layout)
    back, order = to_placements(lay, mesh)
    assert back == placements and order == {}


def test_shard_order_other_than_mesh_order(mesh):
    lay = layout_from_placements((Shard(0), Shard(0)), mesh, 2, shard_order={0: (1, 0)})
    assert lay == Layout((("tp", "dp"), ()))
    placements, order = to_placements(lay, mesh)
    assert placements == (Shard(0), Shard(0)) and order == {0: (1, 0)}


def test_layout_of_a_real_dtensor(mesh):
    from torch.distributed.tensor import distribute_tensor
    t = distribute_tensor(torch.arange(64.0).reshape(8, 8), mesh, [Shard(1), Shard(0)])
    assert layout_of(t) == Layout((("tp",), ("dp",)))


def test_placements_plan_and_verify(mesh):
    r = synthesize(mesh=mesh, shape=(64, 64), dtype="float32", src=[Shard(0), Replicate()],
                   dst=[Replicate(), Shard(1)])
    assert r.verified
    assert str(r.plan.problem.show(r.plan.problem.dst)) == "[{},{tp}]"


@pytest.mark.parametrize("placements,message", [
    ((Partial("avg"), Replicate()), "Partial('avg'): only pending sums"),
    ((Partial("max"), Shard(0)), "Partial('max'): only pending sums"),
    ((Shard(2), Replicate()), "Shard(2) is out of range"),
    ((Shard(0),), "1 placements for a mesh of 2 dims"),
])
def test_unsupported_placements_are_clear_errors(mesh, placements, message):
    with pytest.raises(RedistError, match=message.replace("(", r"\(").replace(")", r"\)")):
        layout_from_placements(placements, mesh, 2)


@pytest.mark.parametrize("placements,text", [
    ((Partial(), Replicate()), "[{},{}]+{dp}"),
    ((Shard(1), Partial("sum")), "[{},{dp}]+{tp}"),
    ((Partial(), Partial()), "[{},{}]+{dp,tp}"),
])
def test_partial_sum_is_a_pending_axis_both_ways(mesh, placements, text):
    layout = layout_from_placements(placements, mesh, 2)
    assert str(layout) == text
    back, _ = to_placements(layout, mesh)
    assert tuple(back) == tuple(placements)


def test_strided_shard_is_a_clear_error(mesh):
    from torch.distributed.tensor.placement_types import _StridedShard
    with pytest.raises(RedistError, match="_StridedShard: not supported yet"):
        layout_from_placements((_StridedShard(0, split_factor=2), Shard(0)), mesh, 2)


def test_sub_axes_have_no_placement(mesh):
    with pytest.raises(RedistError, match="sub-axes have no DTensor placement"):
        to_placements(Layout((("tp(1)2",), ())), mesh)
