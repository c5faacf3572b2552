"""A torchrun job that runs DTensor redistributions on demand, through redist.torch and
through DTensor's own `redistribute`, and checks both shard by shard (for `redist regress
--torch`, the DTensor tests and `benchmarks.fuzz_engines`). Rank 0 reads one case (JSON)
per line on stdin (torchrun hands its stdin to the workers) and answers one JSON line on
stdout; an empty line ends the job.

    torchrun --nproc-per-node 8 -m redist.torch_serve

A case: {"mesh": [[name, size], ...], "shape": [...], "dtype": "float32",
"src": ["S0", "R", ...], "dst": [...]} with one placement per mesh dim ("R", "S<d>", "P"
for Partial); "flatten": true also flattens every run of adjacent mesh dims (DTensor
then uses one collective over them). "dst_on_rank": {"r": [...]} gives rank r other dst
placements (to test that ranks which disagree get an error, not a hang); "forget_on_rank":
[r, ...] makes those ranks drop their plans first (redist.plan_cache.clear). The expected
block of every rank is computed here from DTensor's documented rule (torch.chunk, again
for each further mesh dim), independently of both engines.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import traceback
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import (
    DTensor,
    Partial,
    Replicate,
    Shard,
    distribute_tensor,
)

from redist import plan_cache
from redist.core.errors import RedistError
from redist.torch import redistribute_with_stats

READY = "@@redist-torch-serve-ready@@"
MESHES = [((8,), ("x",)), ((2, 4), ("x", "y")), ((4, 2), ("x", "y")),
          ((2, 2, 2), ("x", "y", "z"))]

_meshes: dict[tuple, Any] = {}


def placement(text: str) -> Any:
    if text == "R":
        return Replicate()
    if text == "P":
        return Partial()
    return Shard(int(text[1:]))


def random_cases(seed: int, n: int, max_extent: int = 13, partial: bool = False
                 ) -> list[dict]:
    """n random cases on 8 devices (1-D to 3-D meshes), ranks 1 to 3, extents from 1 to
    max_extent (mostly not divisible by the mesh) or multiples of 8 (a third), placements
    Shard or Replicate; on half the meshes of several dims, DTensor is given flattened
    dims too (it then gathers several mesh dims in one collective)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        sizes, names = rng.choice(MESHES)
        rank = rng.randint(1, 3)
        shape = [rng.randint(1, max_extent) if rng.random() < 2 / 3 else 8 * rng.randint(1, 3)
                 for _ in range(rank)]
        choices = ["R"] + [f"S{d}" for d in range(rank)] + (["P"] if partial else [])
        out.append({"mesh": [[a, s] for a, s in zip(names, sizes, strict=True)],
                    "shape": shape, "dtype": rng.choice(["float32", "int32", "bfloat16"]),
                    "src": [rng.choice(choices) for _ in sizes],
                    "dst": [rng.choice(choices) for _ in sizes],
                    "flatten": len(sizes) > 1 and rng.random() < 0.5})
    return out


def expected_block(x: torch.Tensor, sizes: tuple[int, ...], placements: list[str],
                   coords: tuple[int, ...]) -> torch.Tensor:
    """This device's block under DTensor's rule: a tensor dim sharded by mesh dims
    m1 < m2 < ... is torch.chunk'ed by m1, each piece again by m2, and so on (written
    with torch.chunk itself, apart from the code redist runs)."""
    for d in range(x.ndim):
        for m, p in enumerate(placements):
            if p == f"S{d}":
                pieces = x.chunk(sizes[m], dim=d) if x.shape[d] else ()
                x = pieces[coords[m]] if coords[m] < len(pieces) else x.narrow(d, 0, 0)
    return x


def _mesh(sizes: tuple[int, ...], names: tuple[str, ...], flatten: bool) -> Any:
    key = (sizes, names, flatten)
    if key not in _meshes:
        mesh = init_device_mesh("cpu", sizes, mesh_dim_names=names)
        if flatten:
            for i in range(len(names)):
                for j in range(i + 2, len(names) + 1):
                    mesh[names[i:j]]._flatten()
        _meshes[key] = mesh
    return _meshes[key]


def _global(shape: list[int], dtype: str) -> torch.Tensor:
    n = math.prod(shape)
    x = torch.arange(n, dtype=torch.int64) % 251 if dtype == "bfloat16" else torch.arange(n)
    return x.reshape(shape).to(getattr(torch, dtype))


def _partial(x: torch.Tensor, mesh: Any, sizes: tuple[int, ...], src: list[str],
             coords: tuple[int, ...]) -> Any:
    """A DTensor whose Partial("sum") mesh dims hold different integer addends of x:
    member 0 of every Partial dim holds the block, and on each Partial dim m the members
    add w·noise_m with integer weights w summing to 0 (1, ..., 1, -(G-1)), so a sum that
    takes a wrong piece or a wrong member's addend differs from x."""
    block = expected_block(x, sizes, src, coords)
    parts = [m for m, p in enumerate(src) if p == "P"]
    local = block if all(coords[m] == 0 for m in parts) else torch.zeros_like(block)
    for m in parts:
        w = 1 if coords[m] < sizes[m] - 1 else -(sizes[m] - 1)
        noise = (block.to(torch.int64) * 3 + m + 1) % 7 - 3
        local = local + (w * noise).to(block.dtype)
    return DTensor.from_local(local, mesh, [placement(p) for p in src], run_check=False,
                              shape=x.shape, stride=x.stride())


def _verdicts(ok: bool, what: str) -> list:
    box: list = [None] * dist.get_world_size()
    dist.all_gather_object(box, (ok, what))
    return box


def run_case(case: dict) -> dict:
    sizes = tuple(s for _, s in case["mesh"])
    names = tuple(a for a, _ in case["mesh"])
    mesh = _mesh(sizes, names, bool(case.get("flatten")))
    rank = dist.get_rank()
    coords = tuple(int(c) for c in mesh.get_coordinate())
    x = _global(case["shape"], case["dtype"])
    src = [placement(p) for p in case["src"]]
    dst_text = case.get("dst_on_rank", {}).get(str(rank), case["dst"])
    dst = [placement(p) for p in dst_text]
    answer: dict = {}
    mine = None
    if rank in case.get("forget_on_rank", []):
        plan_cache.clear()
    t = (_partial(x, mesh, sizes, case["src"], coords) if "P" in case["src"]
         else distribute_tensor(x, mesh, src))
    want = expected_block(x, sizes, dst_text, coords)
    # redist
    try:
        y, stats = redistribute_with_stats(t, dst)
        got = mine = y.to_local()
        good = tuple(got.shape) == tuple(want.shape) and torch.equal(got, want)
        per_rank = _verdicts(good, f"shape {tuple(got.shape)}, want {tuple(want.shape)}")
        bad = [r for r, (g, _) in enumerate(per_rank) if not g]
        answer["redist"] = {"ok": not bad, "bad_ranks": bad, "peak_bytes": stats.peak_bytes,
                            "cached": stats.cached, "steps": stats.steps,
                            "placements_ok": tuple(y.placements) == tuple(dst)}
    except RedistError as e:      # raised alike on every rank (checks on agreed data)
        answer["redist"] = {"ok": False, "refused": str(e)}
    if "dst_on_rank" in case:
        return answer             # DTensor itself would wait forever on such ranks
    # DTensor itself (its errors are not redist's: reported, not raised)
    try:
        z = t.redistribute(mesh, dst)
        got = z.to_local()
        good = tuple(got.shape) == tuple(want.shape) and torch.equal(got, want)
        full = z.full_tensor()
        full_ok = tuple(full.shape) == tuple(x.shape) and torch.equal(full, x)
        same = mine is not None and mine.shape == got.shape and torch.equal(mine, got)
        per_rank = _verdicts(good and full_ok, ("same" if same else "") +
                             ("" if good else f" block {tuple(got.shape)} want "
                              f"{tuple(want.shape)}") + ("" if full_ok else " full_tensor"))
        answer["dtensor"] = {"ok": all(g for g, _ in per_rank),
                             "bad_ranks": [r for r, (g, _) in enumerate(per_rank) if not g],
                             "what": sorted({w.removeprefix("same").strip()
                                             for g, w in per_rank if not g})}
        if mine is not None:     # redist's block equals DTensor's on every rank
            answer["redist"]["same_as_dtensor"] = all(w.startswith("same")
                                                      for _, w in per_rank)
    except Exception as e:
        answer["dtensor"] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
    return answer


def main() -> None:
    # DTensor logs a warning per sequential all-gather on every rank: keep stderr for errors.
    logging.getLogger("torch.distributed.tensor").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    if rank == 0:
        print(READY, flush=True)
    while True:
        box = [sys.stdin.readline() if rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        line = box[0]
        if not line or not line.strip():
            break
        answer = run_case(json.loads(line))
        if rank == 0:
            print(json.dumps(answer), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        print(f"redist: rank {dist.get_rank() if dist.is_initialized() else '?'} failed:\n"
              f"{traceback.format_exc()}", file=sys.stderr, flush=True)
        sys.exit(1)
