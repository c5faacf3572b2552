"""Certificates: written, checked, and tampering caught (DESIGN §4)."""

import json
import os
import shutil

import pytest

from redist.core.errors import RedistError
from redist.core.plans.plan import Plan
from redist.core.smt.certificate import check_certificate, sha256, write_certificate
from redist.core.synthesis.search import naive, normal

from cases import case


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("cert") / "c")
    write_certificate(normal(case("transpose")).plan, None, d)
    return d


@pytest.fixture
def cert(cert_dir, tmp_path):
    d = str(tmp_path / "c")
    shutil.copytree(cert_dir, d)
    return d


def _edit_json(path, fn):
    with open(path) as f:
        doc = json.load(f)
    fn(doc)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


def test_fresh_certificate_checks(cert):
    r = check_certificate(cert)
    assert r.ok, r.problems
    assert {row["claim"] for row in r.rows} == {"well_typed", "reaches_dst",
                                                "element_correct", "memory_efficient",
                                                "no_discard"}
    assert all(ans == "unsat" for row in r.rows for ans in row["answers"].values())


def test_changed_plan_is_rejected(cert):
    _edit_json(os.path.join(cert, "plan.json"), lambda d: d.update(dtype="float64")
               or d.pop("figures"))
    r = check_certificate(cert)
    assert not r.ok
    assert any("plan was changed" in p for p in r.problems)
    assert any("does not follow from the plan" in p for p in r.problems)


def test_changed_plan_with_recomputed_hash_still_rejected(cert):
    """Re-hashing an edited plan does not help: the obligations no longer follow."""
    path = os.path.join(cert, "plan.json")
    _edit_json(path, lambda d: d.update(dtype="float64") or d.pop("figures"))
    text = open(path).read()
    _edit_json(os.path.join(cert, "certificate.json"),
               lambda d: d.update(plan_sha256=sha256(text)))
    r = check_certificate(cert)
    assert not r.ok and any("does not follow" in p for p in r.problems)


def test_changed_obligation_is_rejected(cert):
    path = os.path.join(cert, "obligations", "memory_efficient.smt2")
    text = open(path).read()
    open(path, "w").write(text.replace("8388608", "9388608"))
    r = check_certificate(cert)
    assert not r.ok
    assert any("memory_efficient: obligation SHA-256 mismatch" in p for p in r.problems)


def test_swapped_obligations_are_rejected(cert):
    a = os.path.join(cert, "obligations", "element_correct.smt2")
    b = os.path.join(cert, "obligations", "no_discard.smt2")
    ta, tb = open(a).read(), open(b).read()
    open(a, "w").write(tb)
    open(b, "w").write(ta)

    def swap_hashes(d):
        for c in d["claims"]:
            if c["claim"] == "element_correct":
                c["sha256"] = sha256(tb)
            if c["claim"] == "no_discard":
                c["sha256"] = sha256(ta)
    _edit_json(os.path.join(cert, "certificate.json"), swap_hashes)
    r = check_certificate(cert)
    assert not r.ok
    assert any("element_correct: the stored obligation does not follow" in p
               for p in r.problems)


def test_missing_obligation_is_rejected(cert):
    os.remove(os.path.join(cert, "obligations", "reaches_dst.smt2"))
    assert not check_certificate(cert).ok
    _edit_json(os.path.join(cert, "certificate.json"),
               lambda d: d.update(claims=[c for c in d["claims"]
                                          if c["claim"] != "reaches_dst"]))
    r = check_certificate(cert)
    assert any("'reaches_dst' is missing" in p for p in r.problems)


def test_unknown_format_is_rejected(cert):
    _edit_json(os.path.join(cert, "certificate.json"),
               lambda d: d.update(format="redist.certificate/99"))
    r = check_certificate(cert)
    assert not r.ok and "unknown certificate format" in r.problems[0]


def test_proved_claim_with_sat_obligation_is_rejected(tmp_path):
    """A naive plan's memory claim is refuted; relabelling it proved must fail."""
    d = str(tmp_path / "naive")
    write_certificate(naive(case("transpose")), None, d)
    assert check_certificate(d).ok        # honest certificate of a refuted claim

    def relabel(doc):
        for c in doc["claims"]:
            if c["claim"] == "memory_efficient":
                assert c["status"] == "refuted"
                c["status"], c["answer"] = "proved", "unsat"
    _edit_json(os.path.join(d, "certificate.json"), relabel)
    r = check_certificate(d)
    assert not r.ok
    assert any("memory_efficient: marked proved but z3 answers sat" in p for p in r.problems)


def test_single_file_certificate(tmp_path):
    f = str(tmp_path / "cert.json")
    write_certificate(normal(case("swap-3d")).plan, None, f)
    assert check_certificate(f).ok
    _edit_json(f, lambda d: d["plan"].update(shape=[32, 64, 64]) or d["plan"].pop("figures"))
    assert not check_certificate(f).ok


def test_ill_typed_plan_cannot_be_certified(tmp_path):
    from redist.core.semantics.collectives import AllGather
    p = case("transpose")
    with pytest.raises(RedistError, match="not well-typed"):
        write_certificate(Plan(p, (AllGather((("x",), ("x",))),)), None, str(tmp_path / "x"))


def test_obligations_run_under_z3_command_line(cert):
    import subprocess
    import sys
    z3 = os.path.join(os.path.dirname(sys.executable), "z3")
    if not os.path.exists(z3):
        pytest.skip("z3 command line not installed beside Python")
    for name in os.listdir(os.path.join(cert, "obligations")):
        out = subprocess.run([z3, os.path.join(cert, "obligations", name)],
                             capture_output=True, text=True, timeout=120).stdout.strip()
        assert out == "unsat", name
