"""`redist audit` (DESIGN §16): the HLO parser on real XLA output (fixtures from jax 0.10
on 8 host devices), every replica-group form, async pairs, dynamic slices at partition-id
offsets inside fusions, the reconstruction compared with executing XLA's program, the
CLI's exit codes and one-line errors on bad HLO."""

import json
import math
import os
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redist.cli import main
from redist.core.audit.groups import axes_of_groups, parse_groups
from redist.core.audit.hlo import parse_module
from redist.core.audit.interpret import interpret
from redist.core.audit.reconstruct import fine_mesh, reconstruct
from redist.core.errors import RedistError
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh
from redist.core.ops import AllGather, AllPermute, AllSlice, AllToAll
from redist.core.plans import simulator
from redist.core.semantics.blocks import device_coords
from redist.core.smt.verify import verify

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "hlo")
# fixture -> (mesh, shape, src, dst), as compiled by jax 0.10.2 on 8 host CPU devices
FIXTURES = {
    "transpose": ("x=2,y=4", (64, 64), "[{x},{y}]", "[{y},{x}]"),
    "replace_axis": ("x=2,y=4", (64, 64), "[{x},{}]", "[{},{y}]"),
    "gather_all": ("x=2,y=2,z=2", (8, 8, 8), "[{x},{y},{z}]", "[{},{},{}]"),
    "swap3d": ("x=2,y=2,z=2", (8, 8, 8), "[{x,y},{z},{}]", "[{},{z},{y,x}]"),
    "reorder": ("x=4,y=2", (64, 64), "[{x,y},{}]", "[{y,x},{}]"),
    "mesh81b": ("x=8,y=1", (64, 16), "[{x},{}]", "[{},{x}]"),
    "rank4": ("x=2,y=2,z=2", (4, 4, 4, 4), "[{x},{},{y},{z}]", "[{z},{y},{},{x}]"),
}


def _text(name: str) -> str:
    with open(os.path.join(HERE, f"{name}.txt"), encoding="utf-8") as f:
        return f.read()


def _problem(mesh, shape, src, dst) -> Problem:
    return Problem(parse_mesh(mesh), shape, "float32", parse_layout(src), parse_layout(dst))


# --- parser ---------------------------------------------------------------------------

def test_tuple_all_to_all_with_mesh_groups_and_sub_axis():
    m = parse_module(_text("transpose"))
    a2a = next(i for i in m.entry.instructions if i.opcode == "all-to-all")
    assert len(a2a.operands) == 2 and isinstance(a2a.shape, tuple) and len(a2a.shape) == 2
    groups = parse_groups(a2a.attrs, a2a.attr("replica_groups"), 8, "t")
    assert groups == [[0, 1], [2, 3], [4, 5], [6, 7]]
    # on x=2,y=4 those are the groups of the minor half of y
    assert axes_of_groups(fine_mesh(parse_mesh("x=2,y=4")), groups) == ("y(2)2",)


@pytest.mark.parametrize("raw,want", [
    ("{{0,1},{2,3},{4,5},{6,7}}", [[0, 1], [2, 3], [4, 5], [6, 7]]),
    ("{{0,4},{1,5},{2,6},{3,7}}", [[0, 4], [1, 5], [2, 6], [3, 7]]),
    ("{}", [list(range(8))]),
    ("[2,4]<=[8]", [[0, 1, 2, 3], [4, 5, 6, 7]]),
    ("[4,2]<=[2,4]T(1,0)", [[0, 4], [1, 5], [2, 6], [3, 7]]),
    ("mesh['axis_0'=2,'axis_1'=1,'axis_2'=4] {'axis_0'}", [[0, 4], [1, 5], [2, 6], [3, 7]]),
    ("mesh['axis_0'=1,'axis_1'=2,'axis_2'=4], device_ids=([4,2]T(1,0)) {'axis_2'}",
     [[0, 2, 4, 6], [1, 3, 5, 7]]),
    ("mesh['axis_0'=2,'axis_1'=4] {'axis_1':(1)2}", [[0, 2], [1, 3], [4, 6], [5, 7]]),
    ("mesh['axis_0'=2,'axis_1'=4] {'axis_1','axis_0'}", [[0, 4, 1, 5, 2, 6, 3, 7]]),
])
def test_replica_group_forms(raw, want):
    assert parse_groups(f"replica_groups={raw}", raw, 8, "t") == want


@pytest.mark.parametrize("raw", ["{{0,1},{1,2}}", "[2,3]<=[6]", "{{0,1}", "mesh['a'=8] {'b'}",
                                 "mesh['a'=8] {'a':(3)2}", "[2,4]<=[8]T(0,0)"])
def test_bad_replica_groups_are_one_line_errors(raw):
    with pytest.raises(RedistError) as e:
        parse_groups(f"replica_groups={raw}", raw, 8, "t")
    assert "\n" not in str(e.value)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["x=2,y=4", "x=4,y=2", "x=2,y=2,z=2", "x=8"]), st.data())
def test_groups_of_any_axes_map_back_to_them(mesh_text, data):
    """Groups built from the definition (devices differing only in the named atoms,
    members in mixed-radix order) map back to exactly those atoms, in order."""
    fine = fine_mesh(parse_mesh(mesh_text))
    axes = tuple(data.draw(st.permutations(fine.names)))[:data.draw(
        st.integers(1, len(fine.names)))]
    coords = device_coords(fine)
    rest = [a for a in fine.names if a not in axes]
    groups: dict[tuple, list[tuple[int, int]]] = {}
    for dev in range(fine.num_devices):
        key = tuple(int(coords[a][dev]) for a in rest)
        pos = 0
        for a in axes:
            pos = pos * fine.size(a) + int(coords[a][dev])
        groups.setdefault(key, []).append((pos, dev))
    listed = [[d for _, d in sorted(g)] for g in groups.values()]
    listed = data.draw(st.permutations(listed))
    assert axes_of_groups(fine, list(listed)) == axes


def test_async_pairs_and_fusion_dynamic_slice():
    """-start/-done forms run like the synchronous ones; the partition-id offsets of the
    fused dynamic-slice are computed per device."""
    text = _text("replace_axis").replace(
        "%all-gather = f32[64,64]{1,0} all-gather(%param)",
        "%ag-start = (f32[32,64]{1,0}, f32[64,64]{1,0}) all-gather-start(%param)").replace(
        ", use_global_device_ids=true\n",
        ", use_global_device_ids=true\n  %all-gather = f32[64,64]{1,0} all-gather-done("
        "%ag-start)\n", 1)
    assert "all-gather-start" in text and "all-gather-done" in text
    p = _problem(*FIXTURES["replace_axis"])
    sync = reconstruct(p, _text("replace_axis"))
    asyn = reconstruct(p, text)
    assert asyn.plan is not None and asyn.plan.steps == sync.plan.steps
    assert [type(s) for s in sync.plan.steps] == [AllGather, AllSlice]
    # collective-permute-start/done
    text = _text("reorder").replace(
        "ROOT %collective-permute = f32[8,64]{1,0} collective-permute(%param)",
        "%cp = (f32[8,64]{1,0}, f32[8,64]{1,0}, u32[], u32[]) "
        "collective-permute-start(%param)")
    text = text.replace("{7,7}}\n", "{7,7}}\n  ROOT %done = f32[8,64]{1,0} "
                        "collective-permute-done(%cp)\n")
    r = reconstruct(_problem(*FIXTURES["reorder"]), text)
    assert r.plan is not None and [type(s) for s in r.plan.steps] == [AllPermute]


# --- reconstruction on the fixtures -----------------------------------------------------

@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixtures_reconstruct_with_every_claim_decided(name):
    p = _problem(*FIXTURES[name])
    r = reconstruct(p, _text(name))
    assert r.plan is not None and not r.inexpressible
    assert r.plan.final_layout == r.plan.problem.dst
    verdict = verify(r.plan)
    assert all(c.status in ("proved", "refuted") for c in verdict.results)
    # the steps' volume is what XLA's collectives receive
    assert sum(r.hlo_volume) == r.plan.figures().volume_bytes
    # and the plan delivers every dst element (simulated through the source maps)
    assert simulator.wrong_device(r.plan) is None
    if name == "replace_axis":          # the involuntary full rematerialization
        assert not verdict.get("memory_efficient").status == "proved"
        assert "exceeds the bound" in verdict.get("memory_efficient").detail
        assert verdict.get("no_discard").status == "refuted"
    else:
        assert verdict.all_proved


def test_transpose_is_an_all_to_all_of_a_sub_axis_then_a_permute():
    r = reconstruct(_problem(*FIXTURES["transpose"]), _text("transpose"))
    a, b = r.plan.steps
    assert isinstance(a, AllToAll) and (a.src_dim, a.dst_dim) == (1, 0)
    assert r.plan.problem.show_axes(a.axes) == ("y(2)2",)
    assert isinstance(b, AllPermute)


_AR = ("  ROOT %all-reduce = f32[32,64]{1,0} all-reduce(%param), channel_id=1, "
       "replica_groups=[4,2]<=[2,4]T(1,0), use_global_device_ids=true, to_apply=%add")
ALL_REDUCE = """HloModule m, num_partitions=8

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %s = f32[] add(%a, %b)
}

ENTRY %main (param: f32[32,64]) -> f32[32,64] {
  %param = f32[32,64]{1,0} parameter(0)
AR
}
""".replace("AR", _AR.strip(), 1)


def test_reductions_and_arithmetic_are_named_not_guessed():
    p = _problem("x=2,y=4", (64, 64), "[{x},{}]", "[{x},{}]")
    r = reconstruct(p, ALL_REDUCE)
    assert r.plan is None
    assert [i.line for i in r.inexpressible] == [
        ALL_REDUCE.splitlines()[-2].strip()]
    assert "all-reduce" in r.inexpressible[0].why
    # a multiply of the data is not a resharding
    text = _text("reorder").replace("collective-permute(%param)", "collective-permute(%m)")
    text = text.replace("  ROOT %collective", "  %m = f32[8,64]{1,0} multiply(%param, %param)"
                        "\n  ROOT %collective")
    r = reconstruct(_problem(*FIXTURES["reorder"]), text)
    assert r.plan is None and "multiply" in r.inexpressible[0].line


def test_a_collective_whose_groups_are_not_the_steps_is_inexpressible():
    # the gather of replace_axis over x, with groups that pair devices of different x and y
    text = _text("replace_axis").replace(
        "replica_groups=mesh['axis_0'=2,'axis_1'=1,'axis_2'=4] {'axis_0'}",
        "replica_groups={{0,5},{1,4},{2,7},{3,6}}")
    r = reconstruct(_problem(*FIXTURES["replace_axis"]), text)
    assert r.plan is None and "all-gather" in r.inexpressible[0].line


@pytest.mark.parametrize("text,what", [
    ("", "HloModule"),
    ("HloModule m\nENTRY %e (p: f32[4]) -> f32[4] {\n  %p = f32[4]{0} parameter(0)\n", "closed"),
    ("HloModule m\n%c (p: f32[4]) -> f32[4] {\n  %p = f32[4]{0} parameter(0)\n}\n", "ENTRY"),
    ("HloModule m, num_partitions=8\nENTRY %e (p: f32[4]) -> f32[4] {\n  %p = f32[?]{0} "
     "parameter(0)\n}\n", "dimension"),
    ("HloModule m, num_partitions=8\nENTRY %e (p: f32[4]) -> f32[4] {\n  garbage\n}\n",
     "not an instruction"),
    ("HloModule m, num_partitions=8\nENTRY %e (p: f32[4]) -> f32[4] {\n  %p = f32[4]{0} "
     "parameter(0\n}\n", "unbalanced"),
])
def test_bad_hlo_is_a_one_line_error(text, what):
    with pytest.raises(RedistError) as e:
        reconstruct(_problem("x=2,y=4", (64,), "[{x}]", "[{y}]"), text)
    assert what in str(e.value) and "\n" not in str(e.value)


def test_hlo_of_another_problem_is_refused():
    with pytest.raises(RedistError, match="not this resharding"):
        reconstruct(_problem("x=2,y=4", (64, 64), "[{y},{x}]", "[{x},{y}]"),
                    _text("transpose"))
    with pytest.raises(RedistError, match="num_partitions"):
        reconstruct(_problem("x=2,y=2", (64, 64), "[{x},{y}]", "[{y},{x}]"),
                    _text("transpose"))


# --- CLI --------------------------------------------------------------------------------

def _cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_exit_codes_on_hlo_files(capsys, tmp_path):
    m, s, a, b = FIXTURES["transpose"]
    shape = ",".join(map(str, s))
    code, out, _ = _cli(capsys, "audit", "--mesh", m, "--shape", shape, "--src", a, "--dst",
                        b, "--hlo", os.path.join(HERE, "transpose.txt"))
    assert code == 0 and "all five claims proved" in out
    m, s, a, b = FIXTURES["replace_axis"]
    target = tmp_path / "audit.json"
    code, out, _ = _cli(capsys, "audit", "--mesh", m, "--shape", "64,64", "--src", a,
                        "--dst", b, "--hlo", os.path.join(HERE, "replace_axis.txt"),
                        "--json", str(target))
    assert code == 1 and "REFUTED  memory_efficient" in out
    doc = json.loads(target.read_text())
    claims = {c["claim"]: c["status"] for c in doc["xla"]["plan"]["verdict"]["claims"]}
    assert claims["memory_efficient"] == "refuted" and doc["xla"]["inexpressible"] == []
    red = doc["redist"]["plan"]
    assert red["verdict"]["all_proved"] and red["figures"]["memory_efficient"]
    assert red["figures"]["volume_bytes"] < doc["xla"]["plan"]["figures"]["volume_bytes"]
    # an inexpressible collective: exit 1, its line in the JSON
    bad = tmp_path / "reduce.txt"
    bad.write_text(ALL_REDUCE)
    code, out, _ = _cli(capsys, "audit", "--mesh", "x=2,y=4", "--shape", "64,64", "--src",
                        "[{x},{}]", "--dst", "[{x},{}]", "--hlo", str(bad), "--json", "-")
    assert code == 1
    doc = json.loads(out)
    assert doc["xla"]["plan"] is None and "all-reduce(%param)" in doc["xla"]["inexpressible"][0]


@pytest.mark.parametrize("content,what", [
    (None, "cannot read"), ("not hlo at all", "HloModule"), ("\xff", None)])
def test_cli_bad_hlo_input(capsys, tmp_path, content, what):
    path = tmp_path / "in.txt"
    if content == "\xff":
        path.write_bytes(b"HloModule \xff\xfe")
        what = "UTF-8"
    elif content is not None:
        path.write_text(content)
    code, out, err = _cli(capsys, "audit", "--mesh", "x=2,y=4", "--shape", "64,64",
                          "--src", "[{x},{}]", "--dst", "[{},{y}]", "--hlo", str(path))
    assert code == 2 and err.startswith("redist: error:") and what in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --- against XLA itself ----------------------------------------------------------------

jax = pytest.importorskip("jax")
needs8 = pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 host devices")

LIVE = [("x=2,y=4", (16, 32), "[{x},{}]", "[{},{y}]"),          # gather then slice
        ("x=2,y=2,z=2", (8, 4, 8), "[{x,y},{z},{}]", "[{},{z},{y,x}]"),
        ("x=8,y=1", (16, 8), "[{},{x}]", "[{x},{}]"),
        ("x=2,y=4", (8, 16, 8), "[{},{y},{x}]", "[{y},{x},{}]")]


@pytest.fixture(scope="module")
def compiled():
    """XLA's compiled program for each LIVE problem, its HLO and its output on the array
    whose elements are their own flat index."""
    from jax.sharding import NamedSharding

    from redist.audit import compiled_hlo
    from redist.jax import to_jax_mesh, to_named_sharding

    out = []
    for case in LIVE:
        p = _problem(*case)
        text = compiled_hlo(p)
        jm = to_jax_mesh(p.base, jax.devices()[:8])
        x = jax.device_put(np.arange(math.prod(p.shape), dtype=np.float32).reshape(p.shape),
                           to_named_sharding(jm, p.show(p.src)))
        dst = to_named_sharding(jm, p.show(p.dst))
        y = jax.jit(lambda a: a, out_shardings=dst)(x)
        assert isinstance(y.sharding, NamedSharding)
        order = list(jm.devices.flat)
        shards = {order.index(s.device): np.asarray(s.data) for s in y.addressable_shards}
        out.append((p, text, shards))
    return out


@needs8
def test_reconstruction_matches_executing_xla(compiled):
    """Tagged execution of the HLO equals XLA's own output on every device, and the
    reconstructed plan delivers the same blocks; the gather-then-slice is refuted on
    memory with redist's plan within the bound."""
    from redist.audit import audit_hlo

    for p, text, shards in compiled:
        r = reconstruct(p, text)
        assert r.plan is not None, r.inexpressible
        src = p.src.local_shape(p.mesh, p.shape)
        tags = simulator.expected_from_index(p.mesh, p.shape, p.src)
        trace = interpret(parse_module(text), [tags[d].reshape(src) for d in range(8)])
        want = simulator.final_blocks(r.plan, np.arange(math.prod(p.shape)).reshape(p.shape))
        for d in range(8):
            assert np.array_equal(trace.root[d][0], shards[d]), (p, d)
            assert np.array_equal(want[d], shards[d]), (p, d)
    p, text, _ = compiled[0]
    a = audit_hlo(p, text)
    assert a.verdict.get("memory_efficient").status == "refuted"
    assert a.redist.verified and a.redist.plan.figures().memory_efficient
    assert not a.proved


@needs8
def test_python_audit_of_a_jax_array():
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from redist.jax import audit

    mesh = jax.make_mesh((2, 4), ("x", "y"))
    x = jax.device_put(np.zeros((16, 16), np.float32), NamedSharding(mesh, P("x", "y")))
    report = audit(x, NamedSharding(mesh, P("y", "x")))
    assert report.proved and report.xla.plan is not None
    assert re.search(r"XLA\s+\S+ \S+\s+2\s+1\.00\s+proved", report.text())
    assert report.to_json()["xla"]["plan"]["verdict"]["all_proved"]


def test_an_all_to_all_over_two_dim_pairs_is_named_with_its_line():
    """XLA moves x dim 2->0 and z dim 3->1 in one all-to-all: no single redist step."""
    p = _problem("x=2,y=2,z=2", (8, 8, 4, 4), "[{},{},{x},{z}]", "[{y},{x},{},{}]")
    r = reconstruct(p, _text("two_dim_all_to_all"))
    assert r.plan is None and len(r.inexpressible) == 1
    assert r.inexpressible[0].line.startswith("%all-to-all.1 = (f32[1,4,4,2,2]")
    assert "several pairs of dims" in r.inexpressible[0].why


def test_a_permute_that_resends_held_blocks_is_counted_as_xla_runs_it():
    """[{z}] -> [{x}]: XLA's collective-permute also sends to devices that already hold
    their block; the audit reports XLA's bytes beside the step's minimal figure."""
    from redist.audit import audit_hlo

    p = _problem("x=2,y=2,z=2", (8,), "[{z}]", "[{x}]")
    a = audit_hlo(p, _text("permute_extra"))
    assert a.proved
    fig = a.xla.plan.figures()
    assert fig.volume_bytes == fig.lower_bound_bytes == 64
    assert a.xla.hlo_volume == (96,)
    assert "XLA's collectives receive 96 B (the steps' figure is 64 B)" in a.text()


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(FIXTURES)), st.lists(st.tuples(
    st.integers(0, 10**6), st.sampled_from(["del", "ins", "line"]),
    st.sampled_from(list("{}[](),=%0123456789-:'T<x"))), min_size=1, max_size=3))
def test_mutated_hlo_is_reconstructed_or_a_one_line_error(name, edits):
    """HLO text is untrusted: any corruption of a real module is either still a valid
    resharding, or a one-line RedistError, never another exception."""
    text = _text(name)
    for at, kind, ch in edits:
        k = at % len(text)
        if kind == "del":
            text = text[:k] + text[k + 1 + at % 4:]
        elif kind == "ins":
            text = text[:k] + ch + text[k:]
        else:
            lines = text.splitlines()
            del lines[at % len(lines)]
            text = "\n".join(lines)
    try:
        r = reconstruct(_problem(*FIXTURES[name]), text)
    except RedistError as e:
        assert "\n" not in str(e)
        return
    assert r.plan is not None or r.inexpressible
