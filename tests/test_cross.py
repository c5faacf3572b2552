"""Two meshes (DESIGN §15): placed meshes, the transfer step, synthesis, the five claims,
the plan file form and bad input. MPI runs are in test_cross_mpi.py."""

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_bad_input import GOOD_PLAN, run_cli

from redist.core.cross.model import CrossProblem, PlacedMesh, parse_placed_mesh, parse_ranks
from redist.core.cross.plan import CrossPlan, receive_bytes, staged
from redist.core.cross.planjson import cross_plan_from_json, cross_plan_to_json
from redist.core.cross.simulate import final_blocks, wrong_rank
from redist.core.cross.synthesize import certified_cross, mid_layout, synthesize_cross
from redist.core.cross.verify import verify_cross
from redist.core.errors import RedistError
from redist.core.model.layout import Layout
from redist.core.model.mesh import Mesh
from redist.core.model.syntax import parse_layout
from redist.core.ops import transfer as T
from redist.core.plans.planjson import plan_from_json


def problem(a, b, shape, src, dst, dtype="float32", world=None):
    return CrossProblem(parse_placed_mesh(a), parse_placed_mesh(b), shape, dtype,
                        parse_layout(src), parse_layout(dst), world)


DONE_WHEN = ("fsdp=4,tp=2@0-7", "tp=4@8-11", (64, 64), "[{fsdp},{tp}]", "[{},{tp}]")


# --- placed meshes ---------------------------------------------------------------------

def test_placed_mesh_forms():
    assert parse_placed_mesh("x=2,y=2@4-7").devices == (4, 5, 6, 7)
    assert parse_placed_mesh("x=4@0,2,4,6").devices == (0, 2, 4, 6)
    assert parse_placed_mesh("x=4@9,0-2").devices == (9, 0, 1, 2)
    plain = parse_placed_mesh("x=2,y=2")
    assert plain.devices == (0, 1, 2, 3) and not plain.explicit and str(plain) == "x=2,y=2"
    assert str(parse_placed_mesh("x=4@0,2,3,4")) == "x=4@0,2-4"


@pytest.mark.parametrize("text, words", [
    ("x=4@0,1,1,2", "listed twice"),
    ("x=4@0-2", "names 3 ranks"),
    ("x=2@0-4", "names 5 ranks"),
    ("x=2@", "nothing after"),
    ("x=2@a,b", "not a rank"),
    ("x=2@3-1", "empty"),
    ("x=2@0@1", "more than one"),
])
def test_placed_mesh_bad_input(text, words):
    with pytest.raises(RedistError, match=words):
        parse_placed_mesh(text)


def test_ranks_beyond_the_world():
    with pytest.raises(RedistError, match="uses rank 10 but the world has 10 ranks"):
        problem(*DONE_WHEN, world=10)
    assert problem(*DONE_WHEN, world=16).ranks == 16
    assert problem(*DONE_WHEN).ranks == 12


def test_parse_ranks_is_order_preserving():
    assert parse_ranks("3,1-2") == (3, 1, 2)


# --- figures, against brute force over element sets -------------------------------------

def _elements(mesh, shape, layout, device):
    sl = layout.block_slices(mesh, shape, device)
    return set(itertools.product(*[range(s.start, s.stop) for s in sl]))


def brute_cross_lower_bound(cp):
    pa, pb = cp.a_problem, cp.b_problem
    in_b = set()
    for r in cp.b.devices:
        if r in cp.a:
            in_b |= _elements(pa.mesh, cp.shape, pa.src, cp.a.position[r])
    blocks = {frozenset(_elements(pb.mesh, cp.shape, pb.dst, j))
              for j in range(cp.b.mesh.num_devices)}
    return sum(len(b - in_b) for b in blocks) * cp.itemsize


def brute_lower_bound(cp):
    pa, pb = cp.a_problem, cp.b_problem
    total = 0
    for j, r in enumerate(cp.b.devices):
        need = _elements(pb.mesh, cp.shape, pb.dst, j)
        if r in cp.a:
            need -= _elements(pa.mesh, cp.shape, pa.src, cp.a.position[r])
        total += len(need)
    return total * cp.itemsize


def brute_cross_bytes(plan):
    """Elements each B rank's mid block gets from a rank outside B, from the simulator's
    view of who holds what (element sets, not the transfer's boxes)."""
    cp, mid = plan.problem, plan.mid
    pa = cp.a_problem
    total = 0
    for a, b in plan.transfer.pairs:
        if a in cp.b:
            continue
        got = _elements(pa.mesh, cp.shape, pa.src, cp.a.position[a]) & _elements(
            mid.mesh, cp.shape, mid.src, cp.b.position[b])
        total += len(got)
    return total * cp.itemsize


AXES = st.sampled_from([(("x", 2),), (("x", 4),), (("x", 2), ("y", 2)), (("x", 2), ("y", 3)),
                        (("x", 4), ("y", 2)), (("x", 1),)])


@st.composite
def cross_problems(draw):
    a_axes = draw(AXES)
    b_axes = tuple((n.replace("x", "u").replace("y", "v"), s) for n, s in draw(AXES))
    a, b = Mesh(a_axes), Mesh(b_axes)
    rank = draw(st.integers(1, 2))
    shape = tuple(draw(st.sampled_from([4, 6, 8, 12, 7])) for _ in range(rank))

    def layout(mesh):
        dims = [[] for _ in range(rank)]
        for name, _ in mesh.axes:
            d = draw(st.integers(-1, rank - 1))
            if d >= 0:
                dims[d].append(name)
        return Layout(tuple(tuple(d) for d in dims))
    world = a.num_devices + b.num_devices
    overlap = draw(st.sampled_from(["disjoint", "overlap", "same"]))
    a_ranks = tuple(draw(st.permutations(range(a.num_devices))))
    if overlap == "disjoint":
        b_ranks = tuple(range(a.num_devices, world))
    elif overlap == "same":
        b_ranks = tuple(draw(st.permutations(range(b.num_devices))))
    else:
        start = draw(st.integers(0, a.num_devices))
        b_ranks = tuple(range(start, start + b.num_devices))
    return CrossProblem(PlacedMesh(a, a_ranks), PlacedMesh(b, b_ranks), shape, "int32",
                        layout(a), layout(b))


@settings(max_examples=25, deadline=None)
@given(cross_problems())
def test_synthesized_plans_are_right_and_meet_the_bounds(cp):
    plan = synthesize_cross(cp)
    assert plan.typing_error() is None
    assert wrong_rank(plan) is None                              # the simulator agrees
    fig = plan.figures()
    assert fig.cross_mesh_lower_bound_bytes == brute_cross_lower_bound(cp)
    assert fig.lower_bound_bytes == brute_lower_bound(cp)
    assert fig.cross_mesh_bytes == brute_cross_bytes(plan)
    assert fig.cross_mesh_bytes >= fig.cross_mesh_lower_bound_bytes
    mid, pb = plan.mid, cp.b_problem
    split_all = math.prod(mid.src.shards(mid.mesh, d) for d in range(len(cp.shape))) == \
        cp.b.mesh.num_devices
    if split_all:
        # Every replica of a dst block gets a different piece: each piece crosses once.
        assert fig.cross_mesh_bytes == fig.cross_mesh_lower_bound_bytes
    if any(not d for d in cp.dst.dims):
        # A dim dst holds whole takes any replicated axis, cut by valid elements even when
        # it divides nothing: cross-mesh bytes are the bound. (An axis is left uncut only
        # where cutting it on the chosen dim moves no fewer bytes: replicas keep their block.)
        assert fig.cross_mesh_bytes == fig.cross_mesh_lower_bound_bytes
    # What a rank holds during the transfer, as the runtime allocates it: a rank of both
    # meshes holds the larger of its A block and receive buffer when the plan is staged.
    for r, t, bound in zip(fig.ranks, fig.transfer_per_rank, fig.bound_per_rank,
                           strict=True):
        a = cp.a_block_bytes() if r in cp.a else 0
        m = receive_bytes(plan) if r in cp.b else 0
        assert t == (max(a, m) if a and m and staged(plan) else a + m)
        if staged(plan) or not (r in cp.a and r in cp.b):
            assert t <= bound or (r in cp.b and m > cp.b_block_bytes())
    # No rank holds more than its A block and its mid block; none more than its dst block
    # after the transfer; no funnel: a rank holds the whole array only if a layout says so.
    a_bytes, m_bytes = cp.a_block_bytes(), mid.local_bytes(mid.src)
    for r, peak in zip(fig.ranks, fig.peak_per_rank, strict=True):
        assert peak <= (a_bytes if r in cp.a else 0) + max(
            m_bytes, pb.local_bytes(pb.dst) if r in cp.b else 0)
    verdict = verify_cross(plan, None if fig.memory_efficient else fig.runtime_peak_bytes)
    assert verdict.all_proved, verdict.table()
    if not (set(cp.a.devices) & set(cp.b.devices)):
        assert fig.memory_efficient


@settings(max_examples=20, deadline=None)
@given(cross_problems())
def test_senders_are_balanced(cp):
    """A rank outside B sends at most one piece more than any other holder of its block
    (greedy least-loaded choice), so no A rank becomes a funnel."""
    plan = synthesize_cross(cp)
    counts = T.pair_elements(cp, plan.mid, plan.transfer)
    sent = {r: 0 for r in cp.a.devices}
    biggest = max(counts, default=0)
    for (a, _), n in zip(plan.transfer.pairs, counts, strict=True):
        if a not in cp.b:
            sent[a] += n
    pa = cp.a_problem
    holders = {}
    for r in cp.a.devices:
        if r in cp.b:
            continue
        key = tuple(s.start for s in pa.src.block_slices(pa.mesh, cp.shape, cp.a.position[r]))
        holders.setdefault(key, []).append(sent[r])
    for loads in holders.values():
        assert max(loads) - min(loads) <= biggest


def test_done_when_case_figures():
    plan, verdict, budget = certified_cross(problem(*DONE_WHEN))
    fig = plan.figures()
    assert verdict.all_proved and budget is None
    assert fig.cross_mesh_bytes == fig.cross_mesh_lower_bound_bytes == 64 * 64 * 4
    assert {a for a, _ in plan.transfer.pairs} == set(range(8))    # every A rank sends
    assert fig.peak_per_rank == (2048,) * 8 + (4096,) * 4


def test_replicas_on_b_fan_out_with_a_gather():
    cp = problem("fsdp=4,tp=2@0-7", "dp=2,tp=4@8-15", (64, 64), "[{fsdp},{tp}]", "[{},{tp}]")
    plan = synthesize_cross(cp)
    assert mid_layout(cp) == parse_layout("[{dp},{tp}]")
    assert [s.op for s in plan.steps] == ["transfer", "all_gather"]
    fig = plan.figures()
    assert fig.cross_mesh_bytes == fig.cross_mesh_lower_bound_bytes == 64 * 64 * 4
    assert fig.volume_bytes == fig.lower_bound_bytes          # the gather moves the rest


def test_overlap_keeps_what_it_holds():
    cp = problem("fsdp=4,tp=2@0-7", "tp=4@0-3", (64, 64), "[{fsdp},{tp}]", "[{},{tp}]")
    plan, verdict, budget = certified_cross(cp)
    fig = plan.figures()
    assert (0, 0) in plan.transfer.pairs                  # rank 0 keeps its own part
    assert fig.cross_mesh_bytes == fig.cross_mesh_lower_bound_bytes
    assert fig.lower_bound_bytes == brute_lower_bound(cp) == fig.volume_bytes
    # Ranks 0-3 hold both blocks while the transfer runs: over the bound, said so, and
    # proved against their peak instead.
    assert not fig.memory_efficient and budget == fig.runtime_peak_bytes
    assert verdict.all_proved
    assert verify_cross(plan).get("memory_efficient").status == "refuted"
    assert "rank 0 holds 6144 bytes" in verify_cross(plan).get("memory_efficient").detail


@pytest.mark.parametrize("a,b,shape,src,dst", [
    ("x=2,y=2@3,0,2,1", "u=2@0-1", (4,), "[{}]", "[{}]"),      # every B rank holds it all
    ("x=1@0", "u=2@0-1", (4,), "[{x}]", "[{}]"),               # one sender, B fans out
    ("x=2@0-1", "u=2,v=2@0-3", (8, 6), "[{},{}]", "[{u},{}]"),  # replicas keep theirs
])
def test_replicas_that_hold_their_block_keep_it(a, b, shape, src, dst):
    # Cutting a replicated B axis pays only when a piece would otherwise cross twice; where
    # the B ranks already hold (or are sent whole) their block, it would only add a gather.
    plan, verdict, budget = certified_cross(problem(a, b, shape, src, dst))
    fig = plan.figures()
    assert verdict.all_proved and budget is None
    assert fig.volume_bytes == fig.lower_bound_bytes
    assert fig.cross_mesh_bytes == fig.cross_mesh_lower_bound_bytes


def test_uneven_replicas_split_by_valid_elements():
    # dp divides no local extent of dst (3 and 7): it cuts the dim dst holds whole, pieces
    # of 4 and 3 columns; each element crosses once (it used to cross twice: 280 B).
    cp = problem("x=2@0,1", "dp=2,tp=4@2-9", (10, 7), "[{x},{}]", "[{tp},{}]", "float16")
    plan, verdict, budget = certified_cross(cp)
    fig = plan.figures()
    assert mid_layout(cp) == parse_layout("[{tp},{dp}]")
    assert fig.cross_mesh_bytes == fig.cross_mesh_lower_bound_bytes == 140
    assert verdict.all_proved and budget is None and fig.memory_efficient
    assert max(fig.peak_per_rank) == fig.bound_bytes       # no padded gather buffer


def test_mid_dim_by_cost():
    # EP x PP -> TP x DP: dp on the layer dim (each replica's piece comes from the 4 ranks
    # of one stage, and is one contiguous run), not on the largest dim (8 senders each).
    cp = problem("pp=2,ep=4@0-7", "dp=2,tp=4@8-15", (4, 8, 16, 32), "[{pp},{ep},{},{}]",
                 "[{},{},{},{tp}]")
    plan = synthesize_cross(cp)
    assert mid_layout(cp) == parse_layout("[{dp},{},{},{tp}]")
    assert len(plan.transfer.pairs) == 32
    fig = plan.figures()
    assert fig.cross_mesh_bytes == fig.cross_mesh_lower_bound_bytes


def test_overlap_staged_within_the_bound():
    # Ranks 2, 3 are in both meshes; senders among them form no cycle, so each sends,
    # turns its A block into its dst block, then receives: never both blocks at once.
    cp = problem("x=4@0-3", "y=2,z=2@2-5", (8, 8), "[{x},{}]", "[{},{y}]")
    plan, verdict, budget = certified_cross(cp)
    fig = plan.figures()
    assert staged(plan) and fig.memory_efficient and budget is None and verdict.all_proved
    assert fig.peak_per_rank == fig.bound_per_rank == (64, 64, 128, 128, 128, 128)
    # Colocated FSDP8 -> TP4: ranks 0-3 need each other's rows (a cycle): not staged.
    cyc = synthesize_cross(problem("fsdp=8@0-7", "tp=4@0-3", (64, 64), "[{fsdp},{}]",
                                   "[{},{tp}]"))
    assert not staged(cyc) and not cyc.figures().memory_efficient


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.data())
def test_merged_box_types_select_the_same_elements(shape, data):
    from redist.runtime.execute import _collapsed
    lo = [data.draw(st.integers(0, n - 1)) for n in shape]
    hi = [data.draw(st.integers(a + 1, n)) for a, n in zip(lo, shape, strict=True)]
    x = np.arange(math.prod(shape)).reshape(shape)
    n, sub, start = _collapsed(shape, [b - a for a, b in zip(lo, hi, strict=True)], lo)
    assert len(n) <= len(shape)
    got = x.reshape(n)[tuple(slice(o, o + k) for o, k in zip(start, sub, strict=True))]
    assert np.array_equal(got.ravel(), x[tuple(map(slice, lo, hi))].ravel())


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.data())
def test_shift_box_moves_the_box_in_place_without_a_temporary(shape, data):
    # A staged rank moves its kept piece to its place in the receive buffer (cross.py):
    # the box [0, ext) lands at [to, to + ext), every other element untouched, and NumPy
    # allocates no copy of the box on the way (tracemalloc sees its data buffers). Elements
    # of 256 bytes make a copy stand out from the interpreter's own few KiB (frames,
    # specialised bytecode), which made a fixed 4 KiB threshold flaky on small boxes.
    import tracemalloc

    from redist.runtime.cross import _shift_box
    ext = [data.draw(st.integers(1, n)) for n in shape]
    to = [data.draw(st.integers(0, n - e)) for n, e in zip(shape, ext, strict=True)]
    wide = np.dtype([("v", np.int64, (32,))])
    x = np.arange(math.prod(shape) * 32, dtype=np.int64).view(wide).reshape(shape)
    want = x.copy()
    want[tuple(slice(t, t + e) for t, e in zip(to, ext, strict=True))] = \
        x[tuple(slice(0, e) for e in ext)].copy()
    box = math.prod(ext) * wide.itemsize
    _shift_box(x.copy(), ext, to)            # warm (first calls specialise the bytecode)
    tracemalloc.start()
    try:
        _shift_box(x, ext, to)
        extra = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(x["v"], want["v"])
    if box >= 16384:                          # a copy of the box would be >= 16 KiB
        assert extra < box // 2, (extra, box)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.data())
def test_transfer_messages_are_the_box(shape, data):
    # A box that is one contiguous run travels as a plain slice of the buffer (no derived
    # type); any other as a subarray type. Either way the message is exactly the box.
    from redist.runtime.cross import _message
    lo = [data.draw(st.integers(0, n - 1)) for n in shape]
    hi = [data.draw(st.integers(a + 1, n)) for a, n in zip(lo, shape, strict=True)]
    x = np.zeros(shape, np.int32)
    msg, t = _message(x, tuple(lo), tuple(hi))
    box = np.zeros(shape, bool)
    box[tuple(map(slice, lo, hi))] = True
    contiguous = np.flatnonzero(box.ravel())
    run = contiguous[-1] - contiguous[0] + 1 == contiguous.size
    assert (t is None) == run
    if t is None:
        msg[0][...] = 1                          # a view: writes land in the box, only there
        assert np.array_equal(x.astype(bool), box)
    else:
        assert t.Get_size() == box.sum() * 4
        t.Free()


# --- the proofs can fail -----------------------------------------------------------------

def test_ill_typed_transfers_are_refuted():
    plan = synthesize_cross(problem(*DONE_WHEN))
    cases = {
        "not a device of mesh": ((99, 8),),
        "not a device of dst": ((0, 3),),
        "needs 1024 elements": tuple(p for p in plan.transfer.pairs if p != (0, 8)),
        "no element": plan.transfer.pairs + ((1, 8),),
    }
    for words, pairs in cases.items():
        bad = CrossPlan(plan.problem, T.Transfer(pairs), plan.b_plan)
        v = verify_cross(bad)
        assert v.get("well_typed").status == "refuted" and words in v.get("well_typed").detail
        assert not v.all_proved


def test_two_holders_of_one_block_are_refuted():
    cp = problem("dp=2@0-1", "tp=2@2-3", (8,), "[{}]", "[{tp}]")
    plan = synthesize_cross(cp)
    bad = CrossPlan(cp, T.Transfer(((0, 2), (1, 2), (1, 3))), plan.b_plan)
    assert "hold the same block" in str(bad.typing_error())


def test_a_wrong_source_map_is_caught(monkeypatch):
    """Mutation: the transfer reads one element too far; the solver refutes element_correct
    and the simulator disagrees."""
    plan = synthesize_cross(problem(*DONE_WHEN))
    real = T.source

    def shifted(cp, mid, t, coords, index, alg):
        a, c, i = real(cp, mid, t, coords, index, alg)
        return a, c, [i[0], alg.mod(i[1] + 1, 32)]
    monkeypatch.setattr(T, "source", shifted)
    v = verify_cross(plan)
    assert v.get("element_correct").status == "refuted"
    assert "expected global element" in v.get("element_correct").detail
    assert wrong_rank(plan) is not None


def test_simulator_delivers_dst_blocks():
    plan = synthesize_cross(problem("x=2@0-1", "u=2,v=2@1-4", (6, 4), "[{x},{}]", "[{v},{}]"))
    x = np.arange(24).reshape(6, 4)
    got = final_blocks(plan, x)
    assert [g.tolist() for g in got] == [x[:3].tolist(), x[3:].tolist()] * 2


# --- file form -------------------------------------------------------------------------

def test_plan_json_round_trip_and_tampering():
    plan = synthesize_cross(problem("fsdp=4,tp=2@0-7", "dp=2,tp=4@8-15", (64, 64),
                                    "[{fsdp},{tp}]", "[{},{tp}]"))
    doc = json.loads(json.dumps(cross_plan_to_json(plan)))
    assert doc["devices"] == list(range(8)) and doc["dst_devices"] == list(range(8, 16))
    assert cross_plan_from_json(doc) == plan
    edited = json.loads(json.dumps(doc))
    edited["figures"]["cross_mesh_bytes"] = 1
    with pytest.raises(RedistError, match="cross_mesh_bytes"):
        cross_plan_from_json(edited)
    edited = json.loads(json.dumps(doc))
    edited["steps"][1]["layout_after"] = [["dp"], ["tp"]]
    with pytest.raises(RedistError, match="layout_after"):
        cross_plan_from_json(edited)
    edited = json.loads(json.dumps(doc))
    edited["dst_devices"] = [8, 8, 9, 10, 11, 12, 13, 14]
    with pytest.raises(RedistError, match="listed twice"):
        cross_plan_from_json(edited)
    edited = json.loads(json.dumps(doc))
    edited["steps"].append({"op": "transfer", "layout": [[], ["tp"]], "pairs": []})
    with pytest.raises(RedistError, match="one transfer"):
        cross_plan_from_json(edited)
    # Each reader refuses the other's documents.
    with pytest.raises(RedistError, match="two-mesh plan"):
        plan_from_json(doc)
    with pytest.raises(RedistError, match="not a two-mesh plan"):
        cross_plan_from_json(GOOD_PLAN)


def test_one_mesh_plan_files_are_unchanged():
    """A one-mesh plan is written exactly as before: no key of the two-mesh form."""
    code, out, _ = run_cli(["plan", "--mesh", "x=2,y=4", "--shape", "16,16", "--src",
                            "[{x},{y}]", "--dst", "[{y},{x}]", "--json", "-"])
    doc = json.loads(out)
    assert code == 0 and not {"devices", "dst_mesh", "dst_devices"} & set(doc)
    assert list(doc)[:7] == ["format", "mesh", "shape", "dtype", "src", "dst", "steps"]


# --- CLI ---------------------------------------------------------------------------------

def test_cli_plan_and_verify(tmp_path):
    path = tmp_path / "p.json"
    code, out, err = run_cli(["plan", "--mesh", DONE_WHEN[0], "--dst-mesh", DONE_WHEN[1],
                              "--shape", "64,64", "--src", DONE_WHEN[3], "--dst", DONE_WHEN[4],
                              "--json", str(path)])
    assert code == 0, err
    assert "cross-mesh  16.0 KiB from outside the dst mesh (lower bound 16.0 KiB)" in out
    assert "all five claims proved" in out
    code, out, err = run_cli(["verify", str(path)])
    assert code == 0 and "all five claims proved" in out, err
    doc = json.loads(path.read_text())
    doc["verdict"]["claims"][2]["status"] = "refuted"
    path.write_text(json.dumps(doc))
    code, out, _ = run_cli(["verify", str(path)])
    assert code == 1 and "REJECTED" in out


@pytest.mark.parametrize("mesh, dst_mesh, words", [
    ("fsdp=4,tp=2@0-7", "tp=4@8,9,9,10", "rank 9 is listed twice"),
    ("fsdp=4,tp=2@0-6", "tp=4@8-11", "has 8 devices but its device list names 7"),
    ("fsdp=4,tp=2@0-7", "tp=4@8-11,12", "has 4 devices but its device list names 5"),
    ("fsdp=4,tp=2@0-7", "tp=4@9-12", "uses rank 12 but the world has 12 ranks"),
    ("fsdp=4,tp=2@0-7", "tp=4@8-11x", "not a rank"),
])
def test_cli_bad_meshes(mesh, dst_mesh, words):
    code, out, err = run_cli(["run", "--np", "12", "--mesh", mesh, "--dst-mesh", dst_mesh,
                              "--shape", "64,64", "--src", "[{fsdp},{tp}]", "--dst",
                              "[{},{tp}]"])
    assert code == 2 and words in err, err
    assert err.count("\n") == 1 and err.startswith("redist: error:")


@pytest.mark.parametrize("src, dst", [("[{fsdp},{}]+{tp}", "[{},{tp}]"),
                                      ("[{fsdp},{tp}]", "[{},{}]+{tp}")])
def test_pending_sums_between_meshes_are_refused_not_moved_as_values(src, dst):
    """A transfer copies values; a pending sum moved that way would drop the reduction."""
    code, _, err = run_cli(["plan", "--mesh", "fsdp=4,tp=2@0-7", "--dst-mesh", "tp=4@8-11",
                            "--shape", "64,64", "--src", src, "--dst", dst])
    assert code == 2 and "pending sums between two meshes" in err, err
    assert err.count("\n") == 1 and err.startswith("redist: error:")


def test_cli_placed_mesh_needs_a_dst_mesh():
    code, _, err = run_cli(["plan", "--mesh", "x=2@0-1", "--shape", "4", "--src", "[{x}]",
                            "--dst", "[{}]"])
    assert code == 2 and "give --dst-mesh too" in err


# --- certificates ------------------------------------------------------------------------

def test_certificates_check_with_both_solvers_and_catch_tampering(tmp_path):
    from redist.core.smt.certificate import check_certificate, write_certificate
    from redist.core.smt.solvers import cvc5_version

    cp = problem("x=2,y=2@0-3", "u=2,v=2@2-5", (8, 8), "[{x},{y}]", "[{},{v}]")
    plan, verdict, budget = certified_cross(cp)
    path = str(tmp_path / "cert.json")
    write_certificate(plan, verdict, path, budget)
    report = check_certificate(path)
    assert report.ok, report.table()
    solvers = {k for r in report.rows for k in r["answers"]}
    assert solvers == ({"z3", "cvc5"} if cvc5_version() else {"z3"})
    doc = json.loads(open(path).read())
    # Move one pair's sender: the plan hash no longer matches.
    doc["plan"]["steps"][0]["pairs"][0][0] = 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert not check_certificate(str(bad)).genuine


def test_t1x_harness_catches_an_unsound_source_map(monkeypatch):
    """T1x proves the transfer's rule sound at a tiny bound, and fails when the source map
    reads the wrong local index."""
    from redist.proofs.transfer import t1_transfer

    r = t1_transfer(meshes=((("x", 2),),), shapes=((4,),))
    assert r.proved and r.cases > 0
    real = T.source

    def shifted(cp, mid, t, coords, index, alg):
        a, c, i = real(cp, mid, t, coords, index, alg)
        return a, c, [alg.mod(i[0] + 1, 2)]
    monkeypatch.setattr(T, "source", shifted)
    r = t1_transfer(meshes=((("x", 2),),), shapes=((4,),))
    assert not r.proved and r.failures


def test_the_gate_needs_no_collective_once_rank_0_has_verified():
    # _agree tells every rank whether rank 0 verified the plan already; only then does the
    # gate skip its broadcast. A refuted plan is never remembered: refused every time.
    from types import SimpleNamespace

    from mpi4py import MPI

    from redist.runtime.api import _agree, _gate, _gate_key
    comm, calls = MPI.COMM_SELF, []

    def prove(plan, budget):
        calls.append(plan)
        ok = plan == "good"
        return SimpleNamespace(all_proved=ok, results=[SimpleNamespace(
            claim="memory_efficient", status="proved" if ok else "refuted")])
    for plan, digest in (("good", "ab" * 32), ("bad", "cd" * 32)):
        for call in range(2):
            known = _agree(comm, digest, "", _gate_key(digest, 7))
            assert known == (plan == "good" and call == 1)
            if plan == "bad":
                with pytest.raises(RedistError, match="unverified plan: memory_efficient "
                                                      "refuted"):
                    _gate(comm, plan, digest, 7, prove, known)
            else:
                _gate(comm, plan, digest, 7, prove, known)
    assert calls == ["good", "bad", "bad"]
    assert not _agree(comm, "ab" * 32, "", _gate_key("ab" * 32, None))   # another budget


def test_transfer_waits_nap_only_on_plain_messages(monkeypatch):
    # A derived type moves in pieces that advance only inside a poll (execute.wait_all):
    # the transfer naps only while all its messages are plain slices, and only if asked.
    from mpi4py import MPI

    import redist.runtime.cross as rc
    seen = []
    monkeypatch.setattr(rc, "wait_all", lambda reqs, nap: seen.append(nap))
    t = MPI.INT.Create_contiguous(2)
    t.Commit()
    rc._wait([], [], True)
    rc._wait([], [t], True)
    rc._wait([], [], False)
    assert seen == [True, False, False] and t == MPI.DATATYPE_NULL      # freed by _wait
