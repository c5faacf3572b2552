"""Meshes, layouts, sub-axes (DESIGN §10) and uneven blocks (DESIGN §11)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redist.core.errors import RedistError
from redist.core.model.axes import lift_axes, refine, resolve
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape
from redist.core.ops.common import mixed_radix
from redist.core.semantics.blocks import device_coords

from strategies import meshes


@given(meshes())
def test_device_coordinates_round_trip_row_major(mesh):
    for dev in range(mesh.num_devices):
        assert mesh.device(mesh.coords(dev)) == dev
    if mesh.num_devices > 1:
        last = mesh.coords(mesh.num_devices - 1)
        assert all(last[a] == s - 1 for a, s in mesh.axes)


def test_design_example_device_5():
    assert parse_mesh("x=2,y=4").coords(5) == {"x": 1, "y": 1}


@pytest.mark.parametrize("text", [
    "[{x},{y,z},{}]", '(("x",), ("y","z"), ())', '("x", ("y","z"), None)',
    '[["x"], ["y", "z"], []]', " [ {x} , { y , z } , {} ] ",
])
def test_all_layout_syntaxes_agree(text):
    assert parse_layout(text) == Layout((("x",), ("y", "z"), ()))


@pytest.mark.parametrize("text", ["[{x(1)2},{y,x(2)2}]", "('x(1)2', ('y', 'x(2)2'))",
                                  '[["x(1)2"], ["y", "x(2)2"]]'])
def test_sub_axes_in_every_syntax(text):
    assert parse_layout(text) == Layout((("x(1)2",), ("y", "x(2)2")))


def test_block_index_is_mixed_radix_major_first():
    mesh = parse_mesh("x=2,y=4")
    lay = parse_layout("[{y,x}]")
    # device 5: x=1, y=1 -> block = y*|x| + x = 3
    assert lay.block(mesh, mesh.coords(5), 0) == 3
    assert lay.local_shape(mesh, (16,)) == (2,)


def _problem(mesh, shape, src, dst="[{},{}]"):
    shape = parse_shape(shape)
    if dst == "[{},{}]":
        dst = "[" + ",".join("{}" for _ in shape) + "]"
    return Problem(parse_mesh(mesh), shape, "float32", parse_layout(src), parse_layout(dst))


@pytest.mark.parametrize("mesh,shape,layout,message", [
    ("x=2,y=4", "8,8", "[{q},{}]", "unknown mesh axis 'q'"),
    ("x=2,y=4", "8,8", "[{x},{x}]", "axis 'x' is used more than once"),
    ("x=2,y=4", "8,8", "[{x}]", "has 1 dims but the array has rank 2"),
    ("x=2,y=4", "8,8", "[{y(1)3},{}]", "sub-axis y(1)3: pre-size x size = 3 does not divide "
                                       "|y| = 4"),
    ("x=2,y=4", "8,8", "[{y(3)2},{}]", "pre-size x size = 6 does not divide |y| = 4"),
    ("x=2,y=4", "8,8", "[{q(1)2},{}]", "sub-axis q(1)2: unknown mesh axis 'q'"),
    ("x=2,y=4", "8,8", "[{y(2)1},{}]", "size >= 2"),
    ("x=2,y=4", "8,8", "[{y(0)2},{}]", "pre-size must be >= 1"),
    ("x=2,y=8", "8,8", "[{y(1)4},{y(2)2}]", "y(1)4 and y(2)2 overlap"),
    ("x=2,y=4", "8,8", "[{y},{y(2)2}]", "y and y(2)2 overlap"),
    ("x=2,y=4", "8,8", "[{y(1)2,y(1)2},{}]", "axis 'y(1)2' is used more than once"),
])
def test_invalid_layouts_name_the_problem(mesh, shape, layout, message):
    with pytest.raises(RedistError) as e:
        _problem(mesh, shape, layout)
    assert message in str(e.value)


def test_sub_axes_that_do_not_nest_cannot_be_used_together():
    with pytest.raises(RedistError, match="do not nest"):
        Problem(parse_mesh("x=12"), (12,), "float32", parse_layout("[{x(1)2}]"),
                parse_layout("[{x(1)3}]"))


def test_sub_axis_coordinate_is_the_mixed_radix_of_its_atoms():
    """DESIGN §10: coordinate on x(p)s = (c[x] // (|x|/(p·s))) % s, for every device."""
    base = parse_mesh("x=12,y=2")
    for text in ("x(1)2", "x(2)2", "x(4)3", "x(1)4", "x(2)6", "x"):
        r = resolve(base, text)
        atoms = refine(base, [text])
        amesh = atoms.mesh
        coords = device_coords(amesh)
        got = mixed_radix(amesh, atoms.lower(text), coords)
        cx = device_coords(base)["x"]
        want = (cx // (12 // (r.lo * r.size))) % r.size
        assert (got == want).all(), text
        # and the refined mesh numbers devices as the user's mesh does
        assert amesh.num_devices == base.num_devices


@given(st.lists(st.sampled_from([2, 3, 4]), min_size=1, max_size=3))
def test_adjacent_sub_axes_merge_to_canonical_form(factors):
    size = math.prod(factors)
    base = Mesh((("x", size),))
    cuts = [1]
    for f in factors:
        cuts.append(cuts[-1] * f)
    refs = [f"x({cuts[i]}){factors[i]}" for i in range(len(factors))]
    assert lift_axes(base, refs) == ("x",)                     # major then minor merges
    if len(refs) > 1:
        assert lift_axes(base, refs[::-1]) == tuple(refs[::-1]) or factors == factors[::-1]


def test_adjacent_sub_axes_are_the_same_layout_as_their_merge():
    a = _problem("x=4,y=2", "8,8", "[{x(1)2,x(2)2},{}]", "[{},{y}]")
    b = _problem("x=4,y=2", "8,8", "[{x},{}]", "[{},{y}]")
    assert a == b
    assert str(a.show(a.src)) == "[{x},{}]"


def test_size_one_axes_shard_nothing_and_are_dropped():
    p = _problem("x=2,u=1", "8,8", "[{x,u},{}]", "[{u},{x}]")
    assert p.src == Layout((("x",), ())) and p.dst == Layout(((), ("x",)))
    assert p.mesh.names == ("x",) and p.base.names == ("x", "u")


@pytest.mark.parametrize("n,shards,blocks", [
    (10, 4, [(0, 3), (3, 6), (6, 9), (9, 10)]),       # torch.chunk / XLA convention
    (10, 2, [(0, 5), (5, 10)]),
    (3, 8, [(0, 1), (1, 2), (2, 3)] + [(3, 3)] * 5),   # smaller than the mesh: empty blocks
    (7, 1, [(0, 7)]),
])
def test_uneven_blocks_follow_the_ceil_convention(n, shards, blocks):
    mesh = Mesh((("x", shards),))
    lay = Layout((("x",),))
    assert lay.local_shape(mesh, (n,)) == (-(-n // shards),)
    got = [lay.block_slices(mesh, (n,), dev)[0] for dev in range(shards)]
    assert [(s.start, s.stop) for s in got] == blocks
    assert [lay.valid_shape(mesh, (n,), dev) for dev in range(shards)] == \
        [(hi - lo,) for lo, hi in blocks]


@pytest.mark.parametrize("text,message", [
    ("x=0", "size 0"), ("x=-2", "size -2"), ("x", "not of the form"), ("x=2,x=3", "twice"),
    ("x(1)2=2", "not of the form"),
])
def test_bad_meshes(text, message):
    with pytest.raises(RedistError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_mesh(text)


@pytest.mark.parametrize("text", ["[{x},{y}", "[{x}{y}]", "[{x},]", "[{x y}]", "(('x',)",
                                  "[{1x}]", "[{x},{y}]junk", "[{x(1)}]", "[{x(a)2}]"])
def test_malformed_layout_text(text):
    with pytest.raises(RedistError):
        parse_layout(text)


@given(st.lists(st.integers(1, 50), max_size=5))
def test_shape_round_trip(dims):
    assert parse_shape(",".join(map(str, dims))) == tuple(dims)


def test_shape_rejects_zero_and_text():
    with pytest.raises(RedistError, match=">= 1"):
        parse_shape("4,0")
    with pytest.raises(RedistError, match="not an integer"):
        parse_shape("4,a")


def test_mesh_str_round_trip():
    m = Mesh((("x", 2), ("y", 3)))
    assert parse_mesh(str(m)) == m
