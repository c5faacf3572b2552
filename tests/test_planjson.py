import json

import pytest
from hypothesis import given, settings

from redist.core.errors import RedistError
from redist.core.plans.planjson import dumps, loads, plan_to_json

from strategies import random_plans


@settings(max_examples=100, deadline=None)
@given(random_plans(generous=True))
def test_round_trip(plan):
    again = loads(dumps(plan))
    assert again == plan
    assert again.figures() == plan.figures()


def _doc():
    return {"format": "redist.plan/1", "mesh": [["x", 2], ["y", 4]], "shape": [16, 16],
            "dtype": "float32", "src": [["x"], ["y"]], "dst": [["y"], ["x"]],
            "steps": [{"op": "all_to_all", "src_dim": 1, "dst_dim": 0, "axes": ["y"]},
                      {"op": "all_permute", "layout": [["y", "x"], []]},
                      {"op": "all_to_all", "src_dim": 0, "dst_dim": 1, "axes": ["x"]}]}


def test_design_example_plan_parses_and_reaches_dst():
    plan = loads(json.dumps(_doc()))
    assert plan.final_layout == plan.problem.dst


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.update(format="redist.plan/9"), "unknown format"),
    (lambda d: d["steps"].append({"op": "all_shuffle"}), "unknown op 'all_shuffle'"),
    (lambda d: d.pop("mesh"), "missing 'mesh'"),
    (lambda d: d["steps"][0].update(layout_after=[["x"], ["y"]]), "layout_after"),
    (lambda d: d.update(figures={"peak_bytes": 1}), "figure 'peak_bytes'"),
    (lambda d: d["steps"][0].pop("axes"), "missing 'axes'"),
    (lambda d: d.update(shape=[16, "a"]), "shape entry"),
    (lambda d: d.update(steps=[{"op": "all_slice", "axes": []}] * 65), "MAX_STEPS"),
    (lambda d: d.update(verdict=3), "'verdict' must be an object"),
    (lambda d: d.update(verdict={"claims": [{"claim": "well_typed", "status": "nope"}]}),
     None),
])
def test_rejects_bad_documents(edit, message):
    doc = _doc()
    edit(doc)
    if message is None:                  # parses; the verdict is checked by `verify`
        loads(json.dumps(doc))
        return
    with pytest.raises(RedistError, match=message):
        loads(json.dumps(doc))


def test_ill_typed_steps_parse_and_are_refuted_by_verify():
    from redist.core.smt.verify import verify
    doc = _doc()
    doc["steps"][0].update(src_dim=0, dst_dim=1)       # src and dst dims swapped
    plan = loads(json.dumps(doc))
    v = verify(plan)
    r = v.get("well_typed")
    assert r.status == "refuted" and "step 1 (all_to_all)" in r.detail
    assert "not the minor-most suffix of src_dim 0" in r.detail
    assert [x.status for x in v.results[1:]] == ["unknown"] * 4


def test_rejects_invalid_json():
    with pytest.raises(RedistError, match="not valid JSON"):
        loads("{not json")


def test_writer_figures_are_accepted_by_reader():
    plan = loads(json.dumps(_doc()))
    doc = plan_to_json(plan)
    assert loads(json.dumps(doc)) == plan
