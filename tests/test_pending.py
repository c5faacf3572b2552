"""Pending sums (DESIGN §14): layouts with pending-sum axes in every form a layout takes,
their bad inputs, and the element-correct claim over addends."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redist.core.errors import RedistError
from redist.core.model.coerce import as_layout, problem
from redist.core.model.layout import Layout
from redist.core.model.syntax import layout_from_value, parse_layout
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import dumps, loads
from redist.core.plans.show import layout_picture, to_text
from redist.core.smt.verify import verify

from strategies import axis_refs, layouts, meshes, problems


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_every_form_of_a_pending_layout_round_trips(data):
    mesh = data.draw(meshes(max_axes=3, max_devices=32))
    refs = data.draw(axis_refs(mesh, sub_axes=True))
    lay = data.draw(layouts(mesh, data.draw(st.integers(0, 3)), refs, pending=True))
    assert parse_layout(str(lay)) == lay
    assert layout_from_value(json.loads(json.dumps(lay.to_json()))) == lay
    assert ("+{" in str(lay)) == bool(lay.sum) == isinstance(lay.to_json(), dict)


def test_pending_set_is_a_set_in_canonical_order():
    assert parse_layout("[{x}]+{z,y}") == parse_layout("[{x}]+{y,z}") == \
        Layout((("x",),), ("z", "y"))
    assert str(Layout(((),), ("y(2)2", "y(1)2"))) == "[{}]+{y(1)2,y(2)2}"
    # adjacent sub-axes of one axis are the whole axis, in a problem's canonical form
    p = problem("x=2,y=4", "8,8", "float32", "[{x},{}]+{y(2)2,y(1)2}", "[{x},{}]+{y}")
    assert p.show(p.src) == p.show(p.dst) == parse_layout("[{x},{}]+{y}")


def test_layouts_without_a_sum_are_unchanged():
    lay = parse_layout("[{x},{y}]")
    assert lay.sum == () and lay.to_json() == [["x"], ["y"]] and str(lay) == "[{x},{y}]"
    p = problem("x=2,y=4", "16,16", "float32", "[{x},{y}]", "[{y},{x}]")
    assert '"sum"' not in dumps(Plan(p, ()))


@pytest.mark.parametrize("src,dst,message", [
    ("[{x},{}]+{x}", "[{x},{}]", "pending axis 'x' also shards dim 0"),
    ("[{x},{y(1)2}]+{y}", "[{x},{}]", "pending axis 'y' also shards dim 1 (as y(1)2)"),
    ("[{x},{}]+{z}", "[{x},{}]", "pending axis: unknown mesh axis 'z'"),
    ("[{x},{}]+{y,y}", "[{x},{}]", "pending axis 'y' is listed twice"),
    ("[{x},{}]+{y,y(1)2}", "[{x},{}]", "y and y(1)2 overlap"),
    ("[{x},{}]+y", "[{x},{}]", "the pending sum after '+' must be {axes}"),
    ("[{x},{}]", "[{x},{}]+{y}", "a plan reduces pending sums, it does not create them"),
])
def test_bad_pending_layouts_are_one_line_errors(src, dst, message):
    with pytest.raises(RedistError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("+", r"\+").replace("{", r"\{").replace("}", r"\}")) as e:
        problem("x=2,y=4", "8,8", "float32", src, dst)
    assert "\n" not in str(e.value)


def test_plan_files_carry_the_sum_beside_the_dims():
    p = problem("x=2,y=4", "64,32", "float32", "[{x},{}]+{y}", "[{x},{}]+{y}")
    doc = json.loads(dumps(Plan(p, ())))
    assert doc["src"] == {"dims": [["x"], []], "sum": ["y"]}
    again = loads(json.dumps(doc))
    assert again.problem == p
    doc["src"] = {"dims": [["x"], []], "sum": ["y", "y"]}
    with pytest.raises(RedistError, match="pending axis 'y' is listed twice"):
        loads(json.dumps(doc))


def test_jax_unreduced_axes_are_the_pending_sum():
    P = pytest.importorskip("jax.sharding").PartitionSpec
    if not hasattr(P(), "unreduced"):
        pytest.skip("this JAX has no unreduced axes")
    from redist.jax_program import partition_spec
    lay = as_layout(P("x", None, unreduced={"y"}))
    assert lay == parse_layout("[{x},{}]+{y}")
    assert partition_spec(lay) == P("x", None, unreduced={"y"})
    assert as_layout(P("x", None)).sum == ()


def test_show_draws_which_devices_hold_which_addend():
    p = problem("x=2,y=4", "64,32", "float32", "[{x},{}]+{y}", "[{x},{}]+{y}")
    text = to_text(layout_picture(p, p.src))
    for y in range(4):
        assert f"[0,·+{y}]" in text and f"[1,·+{y}]" in text
    assert "pending sum of 4 addends" in text and "no replicas" in text


def test_a_plan_that_never_reduces_is_refuted_naming_a_missing_addend():
    p = problem("x=2,y=4", "64,32", "float32", "[{x},{}]+{y}", "[{x},{}]")
    v = verify(Plan(p, ()))
    ec = v.get("element_correct")
    assert ec.status == "refuted" and "lacks the addend of y=" in ec.detail
    assert "adds 1 of the 4 addends" in ec.detail
    assert v.get("reaches_dst").status == "refuted"


@settings(max_examples=10, deadline=None)
@given(problems(generous=True, max_axes=3, max_devices=16, max_rank=2, pending=True,
                sub_axes=True))
def test_carrying_a_pending_sum_unchanged_is_proved(p):
    same = p.with_ends(p.src, p.src)
    assert verify(Plan(same, ())).all_proved
