"""The typing rules of DESIGN §2 and §11 as SMT constraints over symbolic layouts.

A layout is encoded per mesh axis a as D[a] (its dim, -1 when replicated) and P[a] (its
position in that dim, major = 0). A step is encoded by its kind and per-axis
parameters (smt/symvars). Each op's own rule lives in its module (core/ops); this module
combines them. The same constraints check a concrete plan (claim 1, parameters pinned to
the plan's values) and synthesize plans (`optimal`, parameters left free).
"""

from __future__ import annotations

import z3

from redist.core.model.mesh import Mesh
from redist.core.ops import OPS, Collective, rule
from redist.core.smt.symvars import (
    A2A,
    EXCHANGE,
    GATHER,
    NOOP,
    PERMUTE,
    SLICE,
    LayoutVars,
    StepVars,
    count_in,
    layout_facts,
    layout_vars,
    local_extent,
    local_size,
    nests,
    same,
    step_vars,
    wellformed,
)

__all__ = ["A2A", "EXCHANGE", "GATHER", "NOOP", "PERMUTE", "SLICE", "LayoutVars",
           "StepVars", "count_in", "layout_facts", "layout_vars", "listed_order",
           "local_extent", "local_size", "nests", "same_layout", "step_facts", "step_vars",
           "transition", "wellformed"]


def step_facts(mesh: Mesh, rank: int, sv: StepVars, step: Collective | None) -> list[z3.BoolRef]:
    """Pin symbolic step variables to a concrete step (None = noop)."""
    kind = NOOP if step is None else rule(step).smt_kind
    # Each op pins its own parameters: to the step's values if it is of that op, else to
    # their defaults.
    return [sv.kind == kind] + [f for r in OPS.values()
                                for f in r.smt_pin(mesh, sv, step if kind == r.smt_kind
                                                   else None)]


def transition(mesh: Mesh, shape: tuple[int, ...], sv: StepVars, lv: LayoutVars,
               nx: LayoutVars) -> z3.BoolRef:
    """The typing rule of the step `sv` relating layout `lv` to the next layout `nx`
    (both assumed well-formed, which carries the divisibility side conditions)."""
    names = mesh.names
    if not names or len(shape) == 0:
        # No axis to name: only the ops without a structural rule (permute, exchange) type,
        # as the identity.
        return z3.And(z3.Or(sv.kind == NOOP, *[sv.kind == r.smt_kind for r in OPS.values()
                                               if r.smt_rule is None]),
                      *[same(lv, nx, a) for a in names])
    noop = z3.And(*[same(lv, nx, a) for a in names])
    # Every op's structure first, then its extents (the order the terms are built in steers
    # the solver's search, hence which of equally good plans `optimal` returns).
    rules = [r for r in OPS.values() if r.smt_rule or r.smt_extents]
    shapes = [r.smt_rule(mesh, shape, sv, lv, nx) if r.smt_rule else None for r in rules]
    terms = []
    for r, structure in zip(rules, shapes, strict=True):
        extents = r.smt_extents(mesh, shape, sv, lv, nx) if r.smt_extents else []
        terms.append(z3.And(*extents) if structure is None else z3.And(structure, *extents))
    return z3.And(z3.Implies(sv.kind == NOOP, noop),
                  *[z3.Implies(sv.kind == r.smt_kind, t)
                    for r, t in zip(rules, terms, strict=True)],
                  sv.kind >= NOOP, sv.kind <= max(r.smt_kind for r in OPS.values()))


def same_layout(mesh: Mesh, lv: LayoutVars, nx: LayoutVars) -> z3.BoolRef:
    return z3.And(*[same(lv, nx, a) for a in mesh.names])


def listed_order(mesh: Mesh, step: Collective, lv: LayoutVars,
                 nx: LayoutVars, rank: int) -> list[z3.BoolRef]:
    """What a concrete step's axis *lists* add to its rule: the dim each list names and the
    order within it (a gathered or moved list is the minor-most suffix in order; sliced
    axes are appended in order); a permute or exchange names its target layout."""
    r = rule(step)
    if any(a not in lv.D for a in r.named_axes(step)):
        return [z3.BoolVal(False)]          # an axis the mesh lacks satisfies no rule
    return r.smt_listed(mesh, step, lv, nx, rank)
