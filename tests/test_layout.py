import pytest
from hypothesis import given
from hypothesis import strategies as st

from redist.core.errors import RedistError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.syntax import parse_layout, parse_mesh, parse_shape

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


def test_block_index_is_mixed_radix_major_first():
    mesh = parse_mesh("x=2,y=4")
    lay = parse_layout("[{y,x}]")
    # device 5: x=1, y=1 -> block = y*|x| + x = 3
    assert lay.block(mesh, mesh.coords(5), 0) == 3
    assert lay.local_shape(mesh, (16,)) == (2,)


@pytest.mark.parametrize("mesh,shape,layout,message", [
    ("x=2,y=4", "8,8", "[{q},{}]", "unknown axis 'q'"),
    ("x=2,y=4", "8,8", "[{x},{x}]", "axis 'x' is used more than once"),
    ("x=2,y=4", "6,8", "[{y},{}]", "dim 0 of extent 6 is not divisible by 4"),
    ("x=2,y=4", "8,8", "[{x}]", "has 1 dims but the array has rank 2"),
])
def test_invalid_layouts_name_the_problem(mesh, shape, layout, message):
    with pytest.raises(RedistError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_layout(layout).validate(parse_mesh(mesh), parse_shape(shape))


@pytest.mark.parametrize("text,message", [
    ("x=0", "size 0"), ("x=-2", "size -2"), ("x", "not of the form"), ("x=2,x=3", "twice"),
])
def test_bad_meshes(text, message):
    with pytest.raises(RedistError, match=message):
        parse_mesh(text)


@pytest.mark.parametrize("text", ["[{x},{y}", "[{x}{y}]", "[{x},]", "[{x y}]", "(('x',)",
                                  "[{1x}]", "[{x},{y}]junk"])
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
