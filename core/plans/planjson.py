"""The plan file format `redist.plan/1` (DESIGN §3, §10): read, validate, write.

Files name the user's mesh and canonical refs (`x`, `x(1)2`); in memory a plan works on
atoms (model/axes.py). Writing lifts every layout and axis list back to canonical refs;
reading refines the mesh at every boundary the file's refs use and lowers them.
"""

from __future__ import annotations

import json
from typing import Any

from redist.core import args
from redist.core.files import parse_json, read_text
from redist.core.limits import MAX_PLAN_FILE_BYTES, MAX_STEPS, check
from redist.core.model.axes import Atoms, refine, resolve
from redist.core.model.layout import Layout
from redist.core.model.mesh import SUB_AXIS, Mesh
from redist.core.model.problem import Problem, check_user_layout, lower_layout
from redist.core.model.syntax import layout_from_value
from redist.core.ops import map_names, step_from_json, step_names, step_to_json
from redist.core.ops.common import expect, json_int
from redist.core.plans.plan import Plan

FORMAT = "redist.plan/1"


def plan_to_json(plan: Plan, *, with_figures: bool = True) -> dict[str, Any]:
    p = plan.problem
    assert p.base is not None
    lays = plan.layouts()
    steps = []
    for k, step in enumerate(plan.steps):
        js = step_to_json(step, p)
        js["layout_after"] = p.show(lays[k + 1]).to_json()
        steps.append(js)
    out: dict[str, Any] = {
        "format": FORMAT,
        "mesh": [[n, s] for n, s in p.base.axes],
        "shape": list(p.shape),
        "dtype": p.dtype,
        "src": p.show(p.src).to_json(),
        "dst": p.show(p.dst).to_json(),
        "steps": steps,
    }
    if with_figures:
        out["figures"] = plan.figures().to_json()
    return out


def dumps(plan: Plan, **extra: Any) -> str:
    args.instance(plan, Plan, "plan_dumps", "plan", "a Plan")
    doc = plan_to_json(plan)
    doc.update(extra)
    return json.dumps(doc, indent=1)


def _known(base: Mesh, name: str) -> bool:
    """Does the name refer to an axis of the mesh? (A name that does not is a typing
    error of its step, reported by `verify`; a malformed ref of a known axis is not a
    plan at all.)"""
    m = SUB_AXIS.match(name)
    if not base.has(m.group(1) if m else name):
        return False
    resolve(base, name)                  # raises on a bad pre-size or size
    return True


def _lower_names(atoms: Atoms, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(a for n in names for a in (atoms.lower(n) if _known(atoms.base, n) else (n,)))


def _lower_layout_names(atoms: Atoms, lay: Layout) -> Layout:
    return Layout(tuple(_lower_names(atoms, d) for d in lay.dims),
                  _lower_names(atoms, lay.sum))


def plan_from_json(doc: Any) -> Plan:
    """Parse and check a plan document. What is not a plan (wrong structure, unknown op,
    an invalid problem, over a limit) raises RedistError. A plan whose steps break a typing
    rule still parses: that is a refuted claim, for `verify` to report. Layouts and figures
    that the writer included must match the recomputed ones."""
    expect(isinstance(doc, dict), "plan: the document must be a JSON object")
    fmt = doc.get("format")
    expect(fmt == FORMAT, f"plan: unknown format {fmt!r:.60} (expected {FORMAT!r})")
    expect("dst_mesh" not in doc and "devices" not in doc,
           "plan: a two-mesh plan (it names 'dst_mesh' or 'devices'), not a one-mesh plan")
    for key in ("mesh", "shape", "dtype", "src", "dst"):
        expect(key in doc, f"plan: missing {key!r}")
    mesh_js = doc["mesh"]
    expect(isinstance(mesh_js, list) and all(
        isinstance(m, list) and len(m) == 2 and isinstance(m[0], str) for m in mesh_js),
        "plan: 'mesh' must be a list of [name, size] pairs")
    base = Mesh(tuple((m[0], m[1]) for m in mesh_js))
    shape_js = doc["shape"]
    expect(isinstance(shape_js, list), "plan: 'shape' must be a list of integers")
    shape = tuple(json_int(n, "plan: shape entry") for n in shape_js)
    expect(isinstance(doc["dtype"], str), "plan: 'dtype' must be a string")
    src = layout_from_value(doc["src"], "plan src")
    dst = layout_from_value(doc["dst"], "plan dst")
    check_user_layout(base, src, shape, "plan src")
    check_user_layout(base, dst, shape, "plan dst")
    steps_js = doc.get("steps")
    expect(isinstance(steps_js, list), "plan: 'steps' must be a list")
    check(len(steps_js), MAX_STEPS, "the number of steps", "MAX_STEPS")
    raw = [step_from_json(s, k) for k, s in enumerate(steps_js)]
    claimed_after = [layout_from_value(s["layout_after"], f"step {k + 1} layout_after")
                     if "layout_after" in s else None for k, s in enumerate(steps_js)]
    claimed_verdict(doc)                  # its shape; `verify` compares the statuses
    refs = list(src.used_axes() + dst.used_axes() + src.sum + dst.sum)
    refs += [n for st in raw for n in step_names(st) if _known(base, n)]
    refs += [n for lay in claimed_after if lay is not None
             for n in lay.used_axes() + lay.sum if _known(base, n)]
    atoms = refine(base, refs)
    problem = Problem(atoms.mesh, shape, doc["dtype"], lower_layout(atoms, src),
                      lower_layout(atoms, dst), base=base)
    plan = Plan(problem, tuple(map_names(st, lambda names: _lower_names(atoms, names))
                               for st in raw))
    lays, err = plan.typed_prefix()
    for k, claimed in enumerate(claimed_after[: len(lays) - 1]):
        if claimed is not None:
            mine = _lower_layout_names(atoms, claimed)
            expect(mine == lays[k + 1], f"step {k + 1}: layout_after {claimed} does not "
                                         f"match the recomputed {problem.show(lays[k + 1])}")
    if "figures" in doc and err is None:
        ours = plan.figures().to_json()
        theirs = doc["figures"]
        expect(isinstance(theirs, dict), "plan: 'figures' must be an object")
        stale = [f"{key!r:.40} = {value!r:.40} (recomputed {ours[key]!r})"
                 for key, value in theirs.items() if key in ours and not _same(ours[key], value)]
        expect(not stale, "plan: the stored 'figures' disagree with the plan (edited after "
                           "they were written? remove 'figures' to recompute them): figure "
                + "; ".join(stale[:3]) + (f"; and {len(stale) - 3} more" if len(stale) > 3
                                          else ""))
    return plan


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        try:
            return abs(a - b) <= 1e-9 * max(1.0, abs(a))
        except OverflowError:               # an integer too large for a float
            return False
    return a == b and type(a) is type(b)


def claimed_verdict(doc: Any) -> dict[str, str]:
    """The per-claim statuses a writer put in the document's "verdict" (empty if none)."""
    if not isinstance(doc, dict) or "verdict" not in doc:
        return {}
    v = doc["verdict"]
    expect(isinstance(v, dict) and isinstance(v.get("claims"), list),
            "plan: 'verdict' must be an object with a list of 'claims'")
    out = {}
    for c in v["claims"]:
        expect(isinstance(c, dict) and isinstance(c.get("claim"), str)
                and isinstance(c.get("status"), str),
                "plan: each verdict claim must be an object with string 'claim' and 'status'")
        out[c["claim"]] = c["status"]
    return out


def loads(text: str) -> Plan:
    args.text(text, "plan_loads", "text")
    return plan_from_json(parse_json(text, "plan"))


def read_doc(path: str) -> Any:
    """The parsed JSON of a plan file, within the size limit."""
    return parse_json(read_text(path, MAX_PLAN_FILE_BYTES, "plan"), "plan")


def load(path: str) -> Plan:
    return plan_from_json(read_doc(path))
