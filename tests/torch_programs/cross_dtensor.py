"""One torchrun job of 6 gloo ranks (tests/test_cross_torch.py): DTensors moved between two
DeviceMeshes of the world by redist.torch_cross.redistribute_between, each rank's block
compared with what DTensor's own rule gives for the full tensor on the dst mesh
(distribute_tensor with src_data_rank=None: every rank slices the full tensor itself).
Rank 0 prints one JSON line per case, then DONE."""

import json
import logging
import warnings

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Partial, Replicate, Shard, distribute_tensor

from redist.core.errors import RedistError
from redist.torch_cross import plan_between, redistribute_between

R = Replicate()


def S(d):
    return Shard(d)


def main() -> None:
    logging.getLogger("torch.distributed.tensor").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    dist.init_process_group("gloo")
    me = dist.get_rank()
    assert dist.get_world_size() == 6

    def mesh(ranks, shape, names):
        return DeviceMesh("cpu", torch.tensor(ranks).reshape(shape), mesh_dim_names=names)

    # Every rank builds every mesh, in one order (each is collective over the world).
    m = {
        "fsdp2tp2@0-3": mesh([0, 1, 2, 3], (2, 2), ("fsdp", "tp")),
        "dp2@4-5": mesh([4, 5], (2,), ("dp",)),
        "x2@0-1": mesh([0, 1], (2,), ("x",)),
        "dp2tp2@2-5": mesh([2, 3, 4, 5], (2, 2), ("dp", "tp")),
        "x4@0-3": mesh([0, 1, 2, 3], (4,), ("x",)),
        "y2z2@2-5": mesh([2, 3, 4, 5], (2, 2), ("y", "z")),
        "x2y2@0-3": mesh([0, 1, 2, 3], (2, 2), ("x", "y")),
        "t2@5,4": mesh([5, 4], (2,), ("t",)),
        "x2@4-5": mesh([4, 5], (2,), ("x",)),
        "y2@2-3": mesh([2, 3], (2,), ("y",)),
        "y2@0-1": mesh([0, 1], (2,), ("y",)),
    }
    cases = [
        # name, src mesh, src placements, dst mesh, dst placements, shape, dtype, method
        ("disjoint-fan-out", "fsdp2tp2@0-3", [S(0), S(1)], "dp2@4-5", [R], (8, 6),
         torch.float32, "normal"),
        ("disjoint-2d", "x2@0-1", [S(0)], "dp2tp2@2-5", [R, S(1)], (8, 6), torch.float32,
         "normal"),
        ("overlapping", "x4@0-3", [S(0)], "y2z2@2-5", [R, S(0)], (8, 6), torch.float32,
         "normal"),
        ("uneven", "x4@0-3", [S(1)], "dp2tp2@2-5", [S(0), R], (5, 7), torch.int32,
         "normal"),
        ("nested-src-bf16", "x2y2@0-3", [S(0), S(0)], "t2@5,4", [S(1)], (6, 3),
         torch.bfloat16, "normal"),
        ("nested-dst", "x2@4-5", [S(1)], "x2y2@0-3", [S(0), S(0)], (6, 4), torch.float32,
         "normal"),
        ("idle-ranks", "x2@0-1", [S(0)], "y2@2-3", [S(1)], (4, 6), torch.float32, "normal"),
        ("optimal", "x2@0-1", [S(0)], "dp2tp2@2-5", [R, S(1)], (8, 6), torch.float32,
         "optimal"),
        # colocated: the normal plan holds both blocks on ranks 0, 1; optimal's plan stays
        # within the bound with an all_to_all on B (a process group of ranks 0, 1 only)
        ("optimal-all-to-all", "x4@0-3", [S(0)], "y2@0-1", [S(1)], (8, 6), torch.float32,
         "optimal"),
        ("cached", "fsdp2tp2@0-3", [S(0), S(1)], "dp2@4-5", [R], (8, 6), torch.float32,
         "normal"),
    ]
    for name, a, src, b, dst, shape, dtype, method in cases:
        full = (torch.arange(1, 1 + torch.Size(shape).numel()) % 251).reshape(shape).to(dtype)
        x = distribute_tensor(full, m[a], src, src_data_rank=None)
        report = {"name": name}
        try:
            y = redistribute_between(x, m[b], dst, method)
            want = distribute_tensor(full, m[b], dst, src_data_rank=None).to_local()
            mine = (torch.equal(y.to_local(), want) and tuple(y.placements) == tuple(dst)
                    and y.device_mesh is m[b] and tuple(y.shape) == shape
                    and y.dtype == dtype)
            fig = plan_between(x, m[b], dst, method).figures()
            report["cross_at_lower_bound"] = (fig.cross_mesh_bytes
                                              == fig.cross_mesh_lower_bound_bytes)
            steps = plan_between(x, m[b], dst, method).b_plan.steps
            report["b_steps"] = [s.op for s in steps]
            report["memory_efficient"] = fig.memory_efficient
        except RedistError as e:
            mine, report["error"] = False, str(e)
        every = [None] * 6
        dist.all_gather_object(every, mine)
        report["ok"] = all(every)
        report["bad_ranks"] = [r for r, v in enumerate(every) if not v]
        if me == 0:
            print(json.dumps(report), flush=True)

    # Ranks that ask for different moves all fail, none hangs.
    full = torch.arange(48.0).reshape(8, 6)
    x = distribute_tensor(full, m["x2@0-1"], [S(0)], src_data_rank=None)
    try:
        redistribute_between(x, m["y2@2-3"], [S(1)] if me != 3 else [S(0)])
        refused = ""
    except RedistError as e:
        refused = str(e)
    every = [None] * 6
    dist.all_gather_object(every, refused)
    # A pending sum is refused between meshes, on every rank, before anything moves.
    try:
        p = distribute_tensor(full, m["x2@0-1"], [Partial()], src_data_rank=None)
        redistribute_between(p, m["y2@2-3"], [S(1)])
        partial = ""
    except RedistError as e:
        partial = str(e)
    if me == 0:
        print(json.dumps({"name": "disagree", "refused": every}), flush=True)
        print(json.dumps({"name": "partial", "refused": partial}), flush=True)
        print("DONE", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
