"""The file form of two-mesh plans: `redist.plan/1` with both meshes and their ranks.

    {"format": "redist.plan/1",
     "mesh": [["fsdp", 4], ["tp", 2]], "devices": [0, 1, ..., 7],
     "dst_mesh": [["tp", 4]], "dst_devices": [8, 9, 10, 11],
     "shape": [64, 64], "dtype": "float32", "src": [["fsdp"], ["tp"]], "dst": [[], ["tp"]],
     "steps": [{"op": "transfer", "layout": [[], ["tp"]], "pairs": [[0, 8], ...]},
               ... steps on dst_mesh ...]}

A one-mesh plan has neither `dst_mesh` nor `devices` and is written exactly as before;
each reader refuses the other's documents. The steps after the transfer are read by the
one-mesh reader (as a plan on dst_mesh from the transfer's layout to dst), so every check
of untrusted input applies to them too; stored figures and layouts must match.
"""

from __future__ import annotations

from typing import Any

from redist.core.errors import RedistError
from redist.core.model.mesh import Mesh
from redist.core.model.syntax import layout_from_value
from redist.core.ops import transfer as T
from redist.core.plans.planjson import FORMAT, _same, plan_from_json, plan_to_json

from .model import CrossProblem, PlacedMesh
from .plan import CrossPlan

KEYS = {"format", "mesh", "devices", "dst_mesh", "dst_devices", "shape", "dtype", "src", "dst",
        "steps", "figures", "verdict", "certificate"}


def is_cross(doc: Any) -> bool:
    return isinstance(doc, dict) and "dst_mesh" in doc


def cross_plan_to_json(plan: CrossPlan, *, with_figures: bool = True) -> dict[str, Any]:
    cp = plan.problem
    b = plan_to_json(plan.b_plan, with_figures=False)
    step = T.to_json(plan.transfer, b["src"])
    step["layout_after"] = b["src"]
    out: dict[str, Any] = {
        "format": FORMAT,
        "mesh": [[n, s] for n, s in cp.a.mesh.axes], "devices": list(cp.a.devices),
        "dst_mesh": [[n, s] for n, s in cp.b.mesh.axes], "dst_devices": list(cp.b.devices),
        "shape": list(cp.shape), "dtype": cp.dtype,
        "src": cp.a_problem.show(cp.a_problem.src).to_json(),
        "dst": b["dst"],
        "steps": [step, *b["steps"]],
    }
    if with_figures:
        out["figures"] = plan.figures().to_json()
    return out


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise RedistError(msg)


def _mesh(value: Any, what: str) -> Mesh:
    _expect(isinstance(value, list) and all(
        isinstance(m, list) and len(m) == 2 and isinstance(m[0], str) for m in value),
        f"plan: {what!r} must be a list of [name, size] pairs")
    return Mesh(tuple((m[0], m[1]) for m in value))


def _ranks(value: Any, what: str) -> tuple[int, ...]:
    _expect(isinstance(value, list) and all(
        isinstance(r, int) and not isinstance(r, bool) for r in value),
        f"plan: {what!r} must be a list of integer ranks")
    return tuple(value)


def cross_plan_from_json(doc: Any, world: int | None = None) -> CrossPlan:
    _expect(isinstance(doc, dict), "plan: the document must be a JSON object")
    _expect(doc.get("format") == FORMAT, f"plan: unknown format {doc.get('format')!r:.60} "
                                         f"(expected {FORMAT!r})")
    _expect(is_cross(doc), "plan: not a two-mesh plan (no 'dst_mesh')")
    for key in ("mesh", "devices", "dst_mesh", "dst_devices", "shape", "dtype", "src", "dst",
                "steps"):
        _expect(key in doc, f"plan: missing {key!r}")
    unknown = sorted(set(doc) - KEYS)
    _expect(not unknown, f"plan: unknown field {unknown[0]!r:.40}" if unknown else "")
    a = PlacedMesh(_mesh(doc["mesh"], "mesh"), _ranks(doc["devices"], "devices"))
    b = PlacedMesh(_mesh(doc["dst_mesh"], "dst_mesh"), _ranks(doc["dst_devices"],
                                                                "dst_devices"))
    _expect(isinstance(doc["shape"], list), "plan: 'shape' must be a list of integers")
    _expect(isinstance(doc["dtype"], str), "plan: 'dtype' must be a string")
    steps = doc["steps"]
    _expect(isinstance(steps, list) and steps, "plan: a two-mesh plan's 'steps' must start "
                                               "with a transfer")
    cp = CrossProblem(a, b, tuple(_int(n) for n in doc["shape"]), doc["dtype"],
                      layout_from_value(doc["src"], "plan src"),
                      layout_from_value(doc["dst"], "plan dst"), world)
    transfer, mid = T.from_json(steps[0])
    if "layout_after" in steps[0]:
        _expect(steps[0]["layout_after"] == mid, "step 1: layout_after does not match the "
                                                 "transfer's layout")
    _expect(all(not (isinstance(s, dict) and s.get("op") == "transfer") for s in steps[1:]),
            "plan: a two-mesh plan has one transfer, its first step")
    b_doc = {"format": FORMAT, "mesh": doc["dst_mesh"], "shape": doc["shape"],
             "dtype": doc["dtype"], "src": mid, "dst": doc["dst"], "steps": steps[1:]}
    try:
        b_plan = plan_from_json(b_doc)
    except RedistError as e:
        raise RedistError(f"{e} (in the steps on dst_mesh, after the transfer)") from None
    plan = CrossPlan(cp, transfer, b_plan)
    if "figures" in doc and plan.typing_error() is None:
        ours = plan.figures().to_json()
        theirs = doc["figures"]
        _expect(isinstance(theirs, dict), "plan: 'figures' must be an object")
        stale = [k for k, v in theirs.items() if k in ours and not _same(ours[k], v)]
        _expect(not stale, f"plan: the stored 'figures' disagree with the plan: {stale[0]!r:.40}"
                           f" (recomputed {ours[stale[0]]!r:.60})" if stale else "")
    return plan


def _int(value: Any) -> int:
    _expect(isinstance(value, int) and not isinstance(value, bool),
            f"plan: shape entry {value!r:.40} is not an integer")
    return value

