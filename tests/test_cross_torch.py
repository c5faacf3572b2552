"""redist.torch_cross (DESIGN §15, §17): DTensors moved between two DeviceMeshes of one
world. One torchrun launch of 6 gloo ranks (tests/torch_programs/cross_dtensor.py) runs
every case and compares each rank's block with DTensor's own rule for the full tensor."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'redist[torch]')")

PROGRAM = os.path.join(os.path.dirname(__file__), "torch_programs", "cross_dtensor.py")
CASES = {"disjoint-fan-out", "disjoint-2d", "overlapping", "uneven", "nested-src-bf16",
         "nested-dst", "idle-ranks", "optimal", "optimal-all-to-all", "cached"}


def test_torchrun_6_ranks_between_two_device_meshes():
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                           "6", PROGRAM], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("DONE"), proc.stderr[-3000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    by_name = {x["name"]: x for x in lines}
    assert set(by_name) == CASES | {"disagree", "partial"}
    for name in CASES:
        r = by_name[name]
        # every rank of the world: its block equals DTensor's for the full tensor
        assert r["ok"] and not r["bad_ranks"], r
        assert r["cross_at_lower_bound"] and r["memory_efficient"], r
    # the cases run the steps on B the plans have (a fan-out, an all_to_all in a group of
    # two of the six ranks), not only the transfer
    assert by_name["disjoint-2d"]["b_steps"] == ["all_gather"]
    assert by_name["optimal-all-to-all"]["b_steps"] == ["all_to_all"]
    refused = by_name["disagree"]["refused"]
    assert len(refused) == 6 and all("asked for a different redistribution" in e
                                     for e in refused)
    assert "pending sums between two meshes are not supported" in by_name["partial"]["refused"]


def test_bad_arguments_are_one_line_errors_before_any_communication():
    import torch

    from redist.core.errors import RedistError
    from redist.torch_cross import redistribute_between

    with pytest.raises(RedistError, match="method must be one of"):
        redistribute_between(torch.zeros(2), None, [], method="naive")
    with pytest.raises(RedistError, match="takes a DTensor, not Tensor"):
        redistribute_between(torch.zeros(2), None, [])
