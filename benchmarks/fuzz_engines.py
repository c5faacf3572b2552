"""Differential fuzzing of three resharding engines on random uneven DTensor problems
(issue 22): PyTorch DTensor's `redistribute` (and `full_tensor`), `jax.device_put`, and
redist (redist.torch.redistribute on the same DTensors).

    python -m benchmarks.fuzz_engines [--cases 10000] [--minutes 60] [--seed 1]
    python -m benchmarks.fuzz_engines --replay FILE

Cases: meshes of 8 devices (8, 2x4, 4x2, 2x2x2), tensors of rank 1-3 with extents 1-13
(mostly not divisible by the mesh), float32 / int32 / bfloat16, random Shard/Replicate
placements. Every engine's result is compared, block by block, with the blocks DTensor's
rule gives (torch.chunk, again for each further mesh dim); JAX, which accepts only
extents divisible by the mesh, runs the cases it accepts (with its ceil blocks, equal to
DTensor's there). DTensor and redist run on 8 torchrun ranks (gloo, one job); JAX on 8
host devices in this process. A disagreement is shrunk (smaller extents, fewer shards)
to a minimal case that still disagrees the same way, saved under
results/fuzz-engines-repro/, and listed in the report with the engine's version.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

from redist.core.errors import RedistError  # noqa: E402
from redist.regress import torch_server  # noqa: E402

from . import report as report_io  # noqa: E402

REPRO = "fuzz-engines-repro"


# ---- JAX ---------------------------------------------------------------------------------

def jax_verdict(case: dict) -> str:
    """"ok", "unsupported: ..." (JAX refuses the input) or "wrong: ..."."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from redist.core.model.nested import nested_blocks

    sizes = tuple(s for _, s in case["mesh"])
    names = tuple(a for a, _ in case["mesh"])
    mesh = jax.make_mesh(sizes, names, devices=jax.devices()[:math.prod(sizes)])

    def spec(placements: list[str]) -> P:
        if "P" in placements:
            raise ValueError("Partial has no PartitionSpec")
        dims = [tuple(a for a, p in zip(names, placements, strict=True) if p == f"S{d}")
                for d in range(len(case["shape"]))]
        return P(*[None if not d else d[0] if len(d) == 1 else d for d in dims])

    n = math.prod(case["shape"])
    dtype = {"float32": jnp.float32, "int32": jnp.int32, "bfloat16": jnp.bfloat16}[case["dtype"]]
    base = np.arange(n) % 251 if case["dtype"] == "bfloat16" else np.arange(n)
    x = np.asarray(base.reshape(case["shape"])).astype(dtype)
    try:
        src = jax.device_put(x, NamedSharding(mesh, spec(case["src"])))
        y = jax.device_put(src, NamedSharding(mesh, spec(case["dst"])))
        y.block_until_ready()
    except ValueError as e:          # uneven extents: JAX refuses them, by design
        return "unsupported: " + str(e).split("\n")[0][:160]
    for shard in y.addressable_shards:
        coords = [int(c[0]) for c in np.nonzero(np.asarray(mesh.devices) == shard.device)]
        want = []
        for d in range(len(case["shape"])):
            mdims = [m for m, p in enumerate(case["dst"]) if p == f"S{d}"]
            k = 0
            for m in mdims:
                k = k * sizes[m] + coords[m]
            want.append(slice(*nested_blocks(case["shape"][d], [sizes[m] for m in mdims])[k]))
        if not np.array_equal(np.asarray(shard.data), x[tuple(want)]):
            return f"wrong: device {shard.device.id} holds a different block"
    if not np.array_equal(np.asarray(y), x):
        return "wrong: the global array differs"
    return "ok"


# ---- one case through all engines ---------------------------------------------------------

def verdicts(case: dict, server, with_jax: bool = True) -> dict[str, str]:
    """Per engine: "ok", or a short class of what went wrong ("wrong ...", "error ...",
    "refused ...", "unsupported ...")."""
    a = server.run(case)
    r, d = a["redist"], a.get("dtensor", {})
    out = {}
    if r.get("ok"):
        out["redist"] = "ok"
    elif "refused" in r:
        out["redist"] = "refused: " + r["refused"][:120]
    else:
        out["redist"] = f"wrong: ranks {r.get('bad_ranks')}"
    if d.get("ok"):
        out["dtensor"] = "ok"
    elif "error" in d:
        out["dtensor"] = "error: " + d["error"].split(":")[0]
    else:
        what = "; ".join(d.get("what", []))[:160]
        full = "wrong full_tensor" if "full_tensor" in what else "wrong block"
        out["dtensor"] = f"{full}: ranks {d.get('bad_ranks')}: {what}"
    if with_jax:
        out["jax"] = jax_verdict(case)
    return out


def _nested(case: dict) -> bool:
    """DTensor's pieces are not §11's ceil blocks in src or dst (nested uneven split)."""
    from redist.core.model.layout import Layout
    from redist.core.model.mesh import Mesh
    from redist.core.model.nested import regrids

    mesh = Mesh(tuple((a, s) for a, s in case["mesh"]))
    for side in ("src", "dst"):
        dims = tuple(tuple(a for a, p in zip(mesh.names, case[side], strict=True)
                           if p == f"S{d}") for d in range(len(case["shape"])))
        if regrids(mesh, tuple(case["shape"]), Layout(dims), to_dtensor=False):
            return True
    return False


def _kind(verdict: str) -> str:
    return verdict.split(":")[0]


def diverges(v: str) -> bool:
    return v.startswith("wrong") or v.startswith("error") or v.startswith("hang")


def _smaller(case: dict) -> list[dict]:
    """Candidate simplifications of a case, most aggressive first."""
    out = []
    for d, n in enumerate(case["shape"]):
        for m in sorted({1, n // 2, n - 1} - {0, n}):
            c = json.loads(json.dumps(case))
            c["shape"][d] = m
            out.append(c)
    for side in ("src", "dst"):
        for i, p in enumerate(case[side]):
            if p != "R":
                c = json.loads(json.dumps(case))
                c[side][i] = "R"
                out.append(c)
    if case["dtype"] != "float32":
        out.append(dict(json.loads(json.dumps(case)), dtype="float32"))
    return out


def shrink(case: dict, engine: str, kind: str, server, budget: int = 40) -> dict:
    """A smaller case on which `engine` still goes wrong the same way (greedy)."""
    tries = 0
    progress = True
    while progress and tries < budget:
        progress = False
        for c in _smaller(case):
            tries += 1
            try:
                v = verdicts(c, server, with_jax=engine == "jax")[engine]
            except RedistError:
                return case          # the job died: keep what we have
            if _kind(v) == _kind(kind):
                case, progress = c, True
                break
            if tries >= budget:
                break
    return case


def versions() -> dict[str, str]:
    import jax
    import jaxlib
    import torch

    import redist
    return {"torch": torch.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "redist": getattr(redist, "__version__", "checkout")}


# ---- the run ------------------------------------------------------------------------------

def run(cases: int, minutes: float, seed: int, out: str) -> dict:
    from redist.torch_serve import random_cases

    todo = random_cases(seed, cases)
    tallies = {e: Counter() for e in ("redist", "dtensor", "jax")}
    nested: Counter = Counter()       # redist's verdicts on DTensor's nested uneven splits
    found: list[dict] = []
    seen: set[tuple[str, str]] = set()
    server = torch_server(8, timeout=300)
    t0 = time.perf_counter()
    done = 0
    try:
        for k, case in enumerate(todo):
            if time.perf_counter() - t0 > minutes * 60:
                break
            try:
                v = verdicts(case, server)
            except RedistError as e:        # a hang or a dead job: start a new one
                v = {"redist": f"hang: {e}"[:120], "dtensor": "hang (same job)", "jax": "-"}
                server.close()
                server = torch_server(8, timeout=300)
            done += 1
            if _nested(case):
                nested[_kind(v["redist"]).split(" ")[0]] += 1
            for engine, verdict in v.items():
                tallies[engine][_kind(verdict).split(" ")[0]] += 1
                if diverges(verdict) and not verdict.startswith("hang"):
                    key = (engine, _kind(verdict), "flatten" in case and case["flatten"])
                    entry = {"engine": engine, "verdict": verdict, "case": case, "index": k}
                    if key not in seen:          # shrink the first of each kind
                        seen.add(key)
                        entry["minimal"] = shrink(case, engine, verdict, server)
                        os.makedirs(os.path.join(out, REPRO), exist_ok=True)
                        path = os.path.join(out, REPRO, f"{engine}-{len(seen)}.json")
                        with open(path, "w") as f:
                            json.dump(entry, f, indent=1)
                        entry["saved"] = os.path.relpath(path, os.getcwd())
                    found.append(entry)
            if done % 100 == 0:
                print(f"{done} cases, {time.perf_counter() - t0:.0f} s: "
                      + "; ".join(f"{e} {dict(c)}" for e, c in tallies.items()), flush=True)
    finally:
        server.close()
    return {"cases": done, "planned": cases, "seconds": time.perf_counter() - t0,
            "tallies": {e: dict(c) for e, c in tallies.items()}, "nested": dict(nested),
            "divergences": found}


def report(result: dict, info: dict) -> str:
    t = result["tallies"]
    lines = [f"# Differential fuzzing: DTensor, JAX, redist ({info['date']})", "",
             f"`{info['command']}` on {info['machine']}, shared with other jobs. Versions: "
             + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".", "",
             f"**{result['cases']} cases run** of {result['planned']} planned, in "
             f"{result['seconds'] / 60:.1f} min (8 gloo ranks under torchrun for DTensor "
             "and redist, 8 host devices for JAX). Every result is compared block by "
             "block with the blocks DTensor's rule gives.", "",
             "| engine | ok | wrong values | error | refused (clear error) | "
             "unsupported input |", "|---|---|---|---|---|---|"]
    for e in ("redist", "dtensor", "jax"):
        c = t.get(e, {})
        lines.append(f"| {e} | {c.get('ok', 0)} | {c.get('wrong', 0)} | {c.get('error', 0)} "
                     f"| {c.get('refused', 0)} | {c.get('unsupported', 0)} |")
    hangs = t.get("redist", {}).get("hang", 0)
    nested = result.get("nested", {})
    lines += ["", f"Hangs (job restarted): {hangs}.", "",
              f"DTensor's nested uneven splits (several mesh dims on one tensor dim, extent "
              f"not divisible: DTensor chunks the chunks, where redist's plans use ceil "
              f"blocks of the whole extent; redist.torch moves the rows between the two at "
              f"the boundary, docs/python.md): {sum(nested.values())} cases, redist "
              + ", ".join(f"{k} {v}" for k, v in sorted(nested.items())) + ". JAX's "
              "`unsupported` cases are uneven extents, which `jax.device_put` refuses.", ""]
    kinds: dict[tuple[str, str], list[dict]] = {}
    for d in result["divergences"]:
        kinds.setdefault((d["engine"], _kind(d["verdict"])), []).append(d)
    lines.append("## Divergences")
    lines.append("")
    if not kinds:
        lines.append("None found.")
    for (engine, kind), ds in sorted(kinds.items()):
        first = next((d for d in ds if "minimal" in d), ds[0])
        m = first.get("minimal", first["case"])
        flat = sum(1 for d in ds if d["case"].get("flatten"))
        lines.append(f"- **{engine}** {kind}: {len(ds)} cases ({flat} on meshes with "
                     f"flattened dims); minimal: mesh {m['mesh']}"
                     f"{' flattened' if m.get('flatten') else ''}, shape {m['shape']} "
                     f"{m['dtype']}, {m['src']} -> {m['dst']}; first seen: "
                     f"{first['verdict'][:200]} (`{first.get('saved', '')}`)")
    return "\n".join(lines) + "\n"


def replay(path: str) -> None:
    with open(path) as f:
        entry = json.load(f)
    server = torch_server(8)
    try:
        for name in ("case", "minimal"):
            if name in entry:
                print(name, entry[name], verdicts(entry[name], server))
    finally:
        server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--minutes", type=float, default=60.0, help="stop after this long")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--replay", metavar="FILE", help="rerun a saved reproducer")
    args = ap.parse_args()
    if args.replay:
        replay(args.replay)
        return
    info = report_io.meta("fuzz_engines", versions=versions())
    result = run(args.cases, args.minutes, args.seed, args.out)
    report_io.write(args.out, "fuzz-engines", info, result, report(result, info))


if __name__ == "__main__":
    main()
