"""The op registry (core/ops, docs/ops.md): every op is complete — its rule record, an
entry in every backend's table (or an explicit None that the backend reports as a clear
error) — and its file form round-trips."""

import json
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings

from redist.core.errors import RedistError
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.ops import OPS, AllExchange
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import loads, plan_to_json
from redist.runtime import calibrate, execute

from strategies import random_plans

# Optional fields: None means "no such constraint" (smt) or "not a reduction" (summed,
# addend) — every other one is a function.
OPTIONAL = {"smt_rule", "smt_extents", "summed", "addend"}


def backend_tables() -> dict[str, dict]:
    tables = {"runtime/execute.py RUNNERS": execute.RUNNERS,
              "runtime/calibrate.py CASES": calibrate.CASES}
    try:
        from redist import jax_program
        tables["redist/jax_program.py STEPS"] = jax_program.STEPS
    except ImportError:                      # jax not installed: that backend is absent
        pass
    try:
        from redist import torch as rtorch
        tables["redist/torch.py RUNNERS"] = rtorch.RUNNERS
    except ImportError:
        pass
    return tables


@pytest.mark.parametrize("name", list(OPS))
def test_every_op_has_its_whole_rule(name):
    rule = OPS[name]
    assert rule.name == name and rule.cls.op == name
    for f in fields(rule):
        value = getattr(rule, f.name)
        if f.name in ("name", "cls", "portable", "smt_kind"):
            continue
        assert callable(value) or (value is None and f.name in OPTIONAL), (name, f.name)
    kinds = [r.smt_kind for r in OPS.values()]
    assert len(set(kinds)) == len(kinds) and 0 not in kinds      # 0 is the no-op


@pytest.mark.parametrize("table", list(backend_tables()))
def test_every_backend_has_a_function_or_an_explicit_none_per_op(table):
    entries = backend_tables()[table]
    assert set(entries) == set(OPS), f"{table}: {set(OPS) ^ set(entries)}"
    assert all(f is None or callable(f) for f in entries.values())


def test_the_backends_run_every_portable_op_and_mpi_every_op():
    tables = backend_tables()
    assert all(f is not None for f in execute.RUNNERS.values())
    if "redist/jax_program.py STEPS" in tables:
        for name, rule in OPS.items():
            assert (tables["redist/jax_program.py STEPS"][name] is None) == (not rule.portable)


def test_an_op_jax_lacks_is_a_clear_error():
    jax_program = pytest.importorskip("redist.jax_program")
    p = Problem(parse_mesh("x=2"), (4,), "float32", parse_layout("[{x}]"), parse_layout("[{}]"))
    plan = Plan(p, (AllExchange(p.dst),))
    missing = [n for n, f in jax_program.STEPS.items() if f is None]
    assert missing == ["all_exchange"]
    with pytest.raises(RedistError, match="all_exchange has no portable JAX form"):
        jax_program._step_fn(plan, 0, ("x",), p.src, p.dst)


EVERY_OP = {  # a plan file using every op, with sub-axes, an uneven extent, pending sums
    "format": "redist.plan/1", "mesh": [["x", 4], ["y", 2], ["p", 2], ["q", 2]],
    "shape": [10, 8], "dtype": "float32", "src": {"dims": [["x"], []], "sum": ["p", "q"]},
    "dst": [[], []],
    "steps": [{"op": "all_to_all", "src_dim": 0, "dst_dim": 1, "axes": ["x"]},
              {"op": "all_slice", "axes": [["y"], []]},
              {"op": "all_permute", "layout": {"dims": [["x(2)2"], ["y", "x(1)2"]],
                                               "sum": ["p", "q"]}},
              {"op": "all_exchange", "layout": {"dims": [["x", "y"], []], "sum": ["p", "q"]}},
              {"op": "reduce_scatter", "axes": [["p"], []]},
              {"op": "all_reduce", "axes": ["q"]},
              {"op": "all_gather", "axes": [["x", "y", "p"], []]}]}


def test_every_op_round_trips_through_the_file_form():
    plan = loads(json.dumps(EVERY_OP))
    assert {s.op for s in plan.steps} == set(OPS) and plan.typed_prefix()[1] is None
    doc = plan_to_json(plan)
    back = loads(json.dumps(doc))
    assert back.steps == plan.steps
    assert plan_to_json(back) == doc
    assert [{k: v for k, v in js.items() if k != "layout_after"}
            for js in doc["steps"]] == EVERY_OP["steps"]


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(random_plans(generous=True, max_len=4))
def test_random_plans_with_an_exchange_round_trip(plan):
    p = plan.problem
    plan = Plan(p.with_ends(p.src, p.src), plan.steps + (AllExchange(p.src),))
    doc = plan_to_json(plan)
    back = loads(json.dumps(doc))
    assert back.steps == plan.steps and back.figures() == plan.figures()


def test_an_unknown_op_names_every_registered_one():
    plan = Plan(Problem(parse_mesh("x=2"), (4,), "float32", parse_layout("[{x}]"),
                        parse_layout("[{x}]")), ())
    doc = plan_to_json(plan, with_figures=False) | {"steps": [{"op": "all_shuffle"}]}
    with pytest.raises(RedistError) as e:
        loads(json.dumps(doc))
    assert str(e.value) == ("step 1: unknown op 'all_shuffle' (expected all_slice, "
                            "all_gather, all_to_all, all_permute, all_exchange, "
                            "reduce_scatter or all_reduce)")
