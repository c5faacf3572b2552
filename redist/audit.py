"""`redist audit` (DESIGN §16): prove or refute the plan XLA compiled for a resharding.

    from redist.jax import audit
    report = audit(x, NamedSharding(mesh, P(None, "y")))
    print(report.text())            # XLA's plan, its verdict, redist's plan beside it

The HLO comes from JAX (the jitted identity with `out_shardings`, compiled for x's
devices) or from a file someone dumped (`--hlo`, any backend); the reconstruction
(core/audit) is pure. JAX is imported only to compile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from redist.api import Result, synthesize
from redist.core.audit.reconstruct import Reconstruction, reconstruct
from redist.core.errors import RedistError
from redist.core.model.problem import Problem
from redist.core.plans.planjson import plan_to_json
from redist.core.plans.report import human_bytes, plan_table
from redist.core.smt.verify import Verdict, verify

DEVICES_FLAG = "--xla_force_host_platform_device_count"


@dataclass(frozen=True)
class Audit:
    problem: Problem
    xla: Reconstruction
    verdict: Verdict | None        # the five claims on XLA's plan (None: inexpressible)
    redist: Result                 # redist's certified plan for the same problem

    @property
    def proved(self) -> bool:
        """XLA's plan is reconstructed and all five claims are proved."""
        return self.verdict is not None and self.verdict.all_proved

    def to_json(self) -> dict[str, Any]:
        plan = None
        if self.xla.plan is not None:
            assert self.verdict is not None
            plan = plan_to_json(self.xla.plan)
            plan["verdict"] = self.verdict.to_json()
            plan["hlo_volume_bytes"] = sum(self.xla.hlo_volume)
        red = plan_to_json(self.redist.plan)
        red["verdict"] = self.redist.verdict.to_json()
        return {"xla": {"plan": plan,
                        "inexpressible": [i.line for i in self.xla.inexpressible],
                        "why": [i.why for i in self.xla.inexpressible],
                        "collectives": list(self.xla.collective_lines)},
                "redist": {"plan": red}}

    def text(self) -> str:
        out = [f"XLA's plan ({_count(len(self.xla.collective_lines))} in the compiled "
               "HLO):"]
        if self.xla.plan is None:
            out.append("  NOT reconstructed: a collective or local step matches no redist "
                       "step")
            for item in self.xla.inexpressible:
                out += [f"  inexpressible: {item.why}", f"    {item.line[:400]}"]
        else:
            assert self.verdict is not None
            out.append(plan_table(self.xla.plan))
            fig = self.xla.plan.figures()
            hlo = sum(self.xla.hlo_volume)
            if hlo != fig.volume_bytes:
                out.append(f"hlo volume  XLA's collectives receive {human_bytes(hlo)} "
                           f"(the steps' figure is {human_bytes(fig.volume_bytes)})")
            out += ["", self.verdict.table()]
        out += ["", "redist's plan for the same problem:", plan_table(self.redist.plan),
                "", self.redist.verdict.table(), "", self._beside()]
        return "\n".join(out)

    def _beside(self) -> str:
        r = self.redist.plan.figures()
        rows = [("", "volume", "collectives", "peak / bound", "verdict")]
        if self.xla.plan is not None and self.verdict is not None:
            x = self.xla.plan.figures()
            rows.append(("XLA", human_bytes(sum(self.xla.hlo_volume)), str(x.collectives),
                         f"{x.peak_bytes / x.bound_bytes:.2f}",
                         "proved" if self.verdict.all_proved else "REFUTED"))
        else:
            rows.append(("XLA", "?", str(len(self.xla.collective_lines)), "?",
                         "inexpressible"))
        rows.append(("redist", human_bytes(r.volume_bytes), str(r.collectives),
                     f"{r.peak_bytes / r.bound_bytes:.2f}",
                     "proved" if self.redist.verified else "NOT verified"))
        w = [max(len(row[c]) for row in rows) for c in range(5)]
        lines = ["  ".join(v.ljust(k) for v, k in zip(row, w, strict=True)).rstrip()
                 for row in rows]
        lines.append(f"lower bound of volume {human_bytes(r.lower_bound_bytes)}; memory bound "
                     f"{human_bytes(r.bound_bytes)} per device")
        return "\n".join(lines)


def audit_hlo(problem: Problem, hlo_text: str, method: str = "normal") -> Audit:
    """Audit HLO text compiled for `problem` (partition p = device p of its mesh)."""
    rec = reconstruct(problem, hlo_text)
    verdict = verify(rec.plan) if rec.plan is not None else None
    return Audit(problem, rec, verdict, synthesize(problem, method=method))


def ensure_host_devices(n: int) -> None:
    """Before JAX is imported: ask for n host CPU devices unless XLA_FLAGS says already."""
    flags = os.environ.get("XLA_FLAGS", "")
    if DEVICES_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {DEVICES_FLAG}={max(n, 8)}".strip()


def compiled_hlo(problem: Problem) -> str:
    """The HLO XLA compiles for `problem`: the jitted identity from the src sharding to the
    dst sharding, on the first devices of the default backend, mesh row-major."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding

    from redist.jax import to_jax_mesh, to_partition_spec

    base = problem.base
    assert base is not None
    n = base.num_devices
    devices = jax.devices()
    if len(devices) < n:
        raise RedistError(f"audit: mesh {base} needs {n} devices, JAX has {len(devices)} "
                          f"(set XLA_FLAGS={DEVICES_FLAG}={n} before JAX starts)")
    src, dst = problem.show(problem.src), problem.show(problem.dst)
    if any("(" in a for a in src.used_axes() + dst.used_axes()):
        raise RedistError("audit: a PartitionSpec cannot name sub-axes; compile the "
                          "resharding yourself and pass its HLO with --hlo")
    jmesh = to_jax_mesh(base, devices[:n])
    s_in = NamedSharding(jmesh, to_partition_spec(src))
    s_out = NamedSharding(jmesh, to_partition_spec(dst))
    fn = jax.jit(lambda a: a, in_shardings=s_in, out_shardings=s_out)
    arg = jax.ShapeDtypeStruct(problem.shape, np.dtype(problem.dtype), sharding=s_in)
    return _text(fn.lower(arg).compile(), jmesh)


def _text(compiled: Any, jmesh: Any) -> str:
    """The compiled module's text, after checking that partition p runs on the mesh's
    device p (row-major), which is how the reconstruction numbers devices."""
    try:
        order = list(compiled._executable.xla_executable.local_devices())
    except AttributeError:                 # another JAX version: trust the mesh order
        order = None
    if order is not None and len(order) == jmesh.devices.size and \
            order != list(jmesh.devices.flat):
        raise RedistError("audit: XLA's device assignment is not the mesh's device order")
    return compiled.as_text()


def audit(x: Any, dst_sharding: Any, method: str = "normal") -> Audit:
    """Audit the resharding `jax.device_put(x, dst_sharding)` as XLA compiles it (the
    jitted identity with out_shardings)."""
    import jax
    from jax.sharding import NamedSharding

    from redist.core.model.coerce import as_layout, layout_from_spec
    from redist.jax import mesh_from_jax, to_named_sharding

    if not isinstance(x.sharding, NamedSharding):
        raise RedistError(f"x must have a NamedSharding, not {type(x.sharding).__name__}")
    jmesh = x.sharding.mesh
    if isinstance(dst_sharding, NamedSharding) and dst_sharding.mesh != jmesh:
        raise RedistError("the dst sharding must be on x's mesh")
    dst = as_layout(dst_sharding, x.ndim)
    problem = Problem(mesh_from_jax(jmesh), tuple(x.shape), x.dtype.name,
                      layout_from_spec(x.sharding.spec, x.ndim), dst)
    out = dst_sharding if isinstance(dst_sharding, NamedSharding) else \
        to_named_sharding(jmesh, dst)
    text = _text(jax.jit(lambda a: a, out_shardings=out).lower(x).compile(), jmesh)
    return audit_hlo(problem, text, method)


def _count(n: int) -> str:
    return f"{n} collective" + ("" if n == 1 else "s")
