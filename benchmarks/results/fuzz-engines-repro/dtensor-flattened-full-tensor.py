# DTensor (torch 2.13.0) minimal reproducer found by benchmarks.fuzz_engines: with mesh dims
# x,y flattened, full_tensor() of a 2-element dim on [Shard(1), Shard(1), Replicate()] returns
# [0, 0] instead of [0, 1]. Run: torchrun --nproc-per-node 8 dtensor-flattened-full-tensor.py
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

dist.init_process_group("gloo")
mesh = init_device_mesh("cpu", (2, 2, 2), mesh_dim_names=("x", "y", "z"))
mesh["x", "y"]._flatten()
x = torch.arange(2.0).reshape(1, 2, 1)
t = distribute_tensor(x, mesh, [Replicate()] * 3)
y = t.redistribute(mesh, [Shard(1), Shard(1), Replicate()])
f = y.full_tensor()
if dist.get_rank() == 0:
    print("local", y.to_local().flatten().tolist(), "full", f.shape, f.flatten().tolist())
