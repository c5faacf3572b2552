"""The general theorems of proofs/ (docs/proofs.md). The default run proves them at small bounds
in seconds; `.ci/run` runs `python -m redist.proofs` at the full bounds as its own step.
The harness tests check that a broken source map or synthesizer is caught."""

import sys

import pytest

from redist.core.ops import AllToAll
from redist.proofs import soundness, theorems
from redist.proofs.theorems import run_all, t1_soundness, t1_uneven, t3_uneven


@pytest.fixture(scope="module")
def quick_results():
    return run_all(quick=True, processes=1)


def test_every_theorem_holds_at_small_bounds(quick_results):
    results = quick_results
    assert [r.name.split()[0] for r in results] == ["T0", "T1", "T1u", "T2", "T3", "T3u",
                                                       "T1x", "T1p", "T1pu", "T3p"]
    for r in results:
        assert r.proved, (r.line(), r.failures[:5])
        assert r.cases > 0
    by = {r.name.split()[0]: r for r in results}
    # Divisible extents: nearly all for every size at once (each query has a fixed resource
    # limit, so this share does not depend on the machine's load).
    assert by["T1"].symbolic >= 0.9 * by["T1"].cases
    assert by["T2"].symbolic == by["T2"].cases


def test_t1_harness_catches_an_unsound_source_map(monkeypatch):
    real = soundness.source

    def broken(step, mesh, shape, before, after, coords, index, alg):
        c, i = real(step, mesh, shape, before, after, coords, index, alg)
        if isinstance(step, AllToAll):
            i[step.dst_dim] = index[step.dst_dim]
        return c, i
    monkeypatch.setattr(soundness, "source", broken)
    # One axis is enough for the harness to meet all-to-alls (34 configurations, 2 wrong);
    # the true map is proved on two axes in the quick run and on three in CI's theorem step.
    r = t1_soundness(max_axes=1, max_rank=2, max_size=2, processes=1)
    assert not r.proved
    assert any("AllToAll" in f for f in r.failures)


def test_t1u_catches_a_source_map_wrong_only_on_uneven_extents(monkeypatch):
    """A map that is right for divisible extents but reads padding as data when a dim is
    held whole: only the uneven theorem sees it."""
    from redist.core.plans import simulator
    real = simulator.source

    def broken(step, mesh, shape, before, after, coords, index, alg):
        c, i = real(step, mesh, shape, before, after, coords, index, alg)
        if isinstance(step, AllToAll) and shape[step.dst_dim] % 2:
            i[step.dst_dim] = i[step.dst_dim] + 1
        return c, i
    monkeypatch.setattr(simulator, "source", broken)
    r = t1_uneven(max_axes=1, max_rank=2, processes=1)
    assert not r.proved and any("AllToAll" in f for f in r.failures)


def test_t3u_catches_a_synthesizer_that_hides_a_missed_bound(monkeypatch):
    from dataclasses import replace

    from redist.core.synthesis import synthesize
    real = synthesize.normal

    def silent(problem, *a, **k):
        s = real(problem, *a, **k)
        return replace(s, reason=None)          # never says why
    monkeypatch.setattr(theorems, "normal", silent)
    r = t3_uneven(max_axes=2, max_rank=1, sizes=(2, 3), processes=1)
    assert not r.proved and any("does not fit the plan" in f for f in r.failures)


def test_proofs_entry_point_reports(capsys, monkeypatch, quick_results):
    """`python -m redist.proofs` prints every theorem and exits 0 only when all hold
    (on the results just proved, and on the same with one failure)."""
    import redist.proofs.__main__ as entry
    monkeypatch.setattr(sys, "argv", ["redist.proofs", "--quick", "--processes", "1"])
    monkeypatch.setattr(entry, "run_all", lambda **kw: quick_results)
    assert entry.main() == 0
    out = capsys.readouterr().out
    assert out.count("PROVED") == 10 and "FAILED" not in out
    from dataclasses import replace
    broken = [replace(quick_results[0], failures=["a planted failure"])] + quick_results[1:]
    monkeypatch.setattr(entry, "run_all", lambda **kw: broken)
    assert entry.main() == 1
    assert "FAILED: a planted failure" in capsys.readouterr().out
