"""The general theorems of proofs/ at the bounds stated in PROOFS.md (a few minutes)."""

import pytest

from redist.core.semantics.collectives import AllToAll
from redist.proofs import soundness
from redist.proofs.theorems import t1_soundness, t2_normal_form_memory, t3_synthesizer


def _assert_proved(r):
    assert r.proved, (r.line(), r.failures[:5])
    assert r.cases > 0


def test_t1_collective_soundness():
    r = t1_soundness()
    _assert_proved(r)
    assert r.cases == 3584 and r.symbolic >= 3500


def test_t2_normal_form_memory_and_no_discard():
    r = t2_normal_form_memory()
    _assert_proved(r)
    assert r.symbolic == r.cases


def test_t3_synthesizer_exhaustive():
    r = t3_synthesizer()
    _assert_proved(r)
    assert r.cases == 152640


def test_t1_harness_catches_an_unsound_source_map(monkeypatch):
    real = soundness.source

    def broken(step, mesh, shape, before, after, coords, index, alg):
        c, i = real(step, mesh, shape, before, after, coords, index, alg)
        if isinstance(step, AllToAll):
            i[step.dst_dim] = index[step.dst_dim]
        return c, i
    monkeypatch.setattr(soundness, "source", broken)
    r = t1_soundness(max_axes=2, max_rank=2, max_size=2)
    assert not r.proved
    assert any("AllToAll" in f for f in r.failures)


@pytest.mark.parametrize("quick", [True])
def test_proofs_entry_point_reports(quick, capsys):
    import sys

    from redist.proofs.__main__ import main
    sys.argv = ["redist.proofs", "--quick"]
    assert main() == 0
    out = capsys.readouterr().out
    assert out.count("PROVED") == 3
