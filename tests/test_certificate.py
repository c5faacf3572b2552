"""Certificates: written, checked, and every kind of tampering caught without running
anything the certificate contains (DESIGN §4)."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from functools import partial
from types import SimpleNamespace

import pytest

from redist.core.errors import RedistError
from redist.core.plans.plan import Plan
from redist.core.plans.planjson import plan_from_json
from redist.core.smt.certificate import (
    check_certificate,
    sha256,
    statement_sha256,
    write_certificate,
)
from redist.core.smt.obligations import obligations
from redist.core.synthesis.synthesize import naive, normal

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


def _edit(path, fn, rehash=False):
    with open(path) as f:
        doc = json.load(f)
    fn(doc)
    if rehash:
        doc["sha256"] = statement_sha256(doc)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


def _cert_json(d):
    return os.path.join(d, "certificate.json")


def _claim(doc, name):
    return next(c for c in doc["claims"] if c["claim"] == name)


def _rejected(report, fragment):
    assert not report.ok and not report.genuine, report.table()
    assert any(fragment in p for p in report.problems), report.problems


def test_fresh_certificate_checks(cert):
    r = check_certificate(cert)
    assert r.ok and r.genuine, r.problems
    assert [row["claim"] for row in r.rows] == ["well_typed", "reaches_dst", "element_correct",
                                                "memory_efficient", "no_discard"]
    assert all(ans == "unsat" for row in r.rows for ans in row["answers"].values())
    assert "memory claim proved against the bound" in r.table()


def test_changed_plan_is_rejected(cert):
    _edit(os.path.join(cert, "plan.json"), lambda d: d.update(dtype="float64") or d.pop("figures"))
    _rejected(check_certificate(cert), "plan was changed")


def test_changed_plan_with_recomputed_hashes_still_rejected(cert):
    """Re-hashing an edited plan does not help: its obligations no longer follow."""
    path = os.path.join(cert, "plan.json")
    _edit(path, lambda d: d.update(dtype="float64") or d.pop("figures"))
    text = open(path).read()
    _edit(_cert_json(cert), lambda d: d.update(plan_sha256=sha256(text)), rehash=True)
    _rejected(check_certificate(cert), "memory_limit says the bound is 8388608 bytes")
    _edit(_cert_json(cert), lambda d: d["memory_limit"].update(bytes=2 * 8388608), rehash=True)
    _rejected(check_certificate(cert), "does not follow from the plan")


def test_changed_obligation_is_rejected(cert):
    path = os.path.join(cert, "obligations", "memory_efficient.smt2")
    open(path, "w").write(open(path).read().replace("8388608", "9388608"))
    _rejected(check_certificate(cert), "memory_efficient: obligation SHA-256 mismatch")


def test_changed_obligation_with_recomputed_hashes_is_rejected(cert):
    path = os.path.join(cert, "obligations", "memory_efficient.smt2")
    text = open(path).read().replace("8388608", "9388608")
    open(path, "w").write(text)
    _edit(_cert_json(cert), lambda d: _claim(d, "memory_efficient").update(sha256=sha256(text)),
          rehash=True)
    _rejected(check_certificate(cert), "memory_efficient: the stored obligation does not follow")


def test_swapped_obligations_are_rejected(cert):
    a = os.path.join(cert, "obligations", "element_correct.smt2")
    b = os.path.join(cert, "obligations", "no_discard.smt2")
    ta, tb = open(a).read(), open(b).read()
    open(a, "w").write(tb)
    open(b, "w").write(ta)

    def swap(d):
        _claim(d, "element_correct")["sha256"] = sha256(tb)
        _claim(d, "no_discard")["sha256"] = sha256(ta)
    _edit(_cert_json(cert), swap, rehash=True)
    _rejected(check_certificate(cert), "element_correct: the stored obligation does not follow")


def test_missing_obligation_file_and_missing_claim(cert):
    os.remove(os.path.join(cert, "obligations", "reaches_dst.smt2"))
    _rejected(check_certificate(cert), "cannot read reaches_dst obligation")
    _edit(_cert_json(cert), lambda d: d.update(
        claims=[c for c in d["claims"] if c["claim"] != "reaches_dst"]), rehash=True)
    _rejected(check_certificate(cert), "'claims' must list the 5 claims")


def test_unknown_format_is_rejected(cert):
    _edit(_cert_json(cert), lambda d: d.update(format="redist.certificate/99"), rehash=True)
    _rejected(check_certificate(cert), "unknown certificate format")


def test_refuted_claim_relabelled_proved_is_rejected(tmp_path):
    """A naive plan's memory claim is refuted; relabelling it proved must fail."""
    d = str(tmp_path / "naive")
    write_certificate(naive(case("transpose")), None, d)
    honest = check_certificate(d)
    assert honest.genuine and not honest.ok
    assert honest.refuted == ["memory_efficient", "no_discard"]
    assert "records claims that are not proved: memory_efficient, no_discard" in honest.table()

    def relabel(doc):
        c = _claim(doc, "memory_efficient")
        assert c["status"] == "refuted"
        c["status"], c["answer"] = "proved", "unsat"
    _edit(_cert_json(d), relabel, rehash=True)
    _rejected(check_certificate(d), "memory_efficient: recorded proved but z3 answers sat")


def test_raised_budget_without_rehash_is_rejected(cert):
    _edit(_cert_json(cert), lambda d: d.update(memory_limit={"kind": "budget", "bytes": 10**18}))
    _rejected(check_certificate(cert), "a field was changed")


def test_raised_budget_with_rehash_is_rejected(cert):
    _edit(_cert_json(cert), lambda d: d.update(memory_limit={"kind": "budget", "bytes": 10**18}),
          rehash=True)
    _rejected(check_certificate(cert), "memory_efficient: the stored obligation does not follow")


def test_bound_that_is_not_the_plans_bound_is_rejected(cert):
    _edit(_cert_json(cert), lambda d: d["memory_limit"].update(bytes=10**18), rehash=True)
    _rejected(check_certificate(cert), "memory_limit says the bound is")


def test_a_genuine_budget_certificate_says_it_is_a_budget(tmp_path):
    """Proving memory against a huge budget is a true statement: the report must say it is a
    budget, not the bound, so nobody reads it as memory-efficient."""
    d = str(tmp_path / "budget")
    write_certificate(normal(case("transpose")).plan, None, d, memory_budget=10**18)
    r = check_certificate(d)
    assert r.ok
    assert r.limit == {"kind": "budget", "bytes": 10**18}
    assert "a budget of 1,000,000,000,000,000,000 bytes per device (the plan's bound is" in \
        r.table()


@pytest.mark.parametrize("ref,fragment", [
    ("/etc/passwd", "is not a path inside the certificate"),
    ("../../../../etc/passwd", "is not a path inside the certificate"),
    ("/dev/zero", "is not a path inside the certificate"),
    (["plan.json"], "the path must be a non-empty string"),
    (7, "the path must be a non-empty string"),
    ("plan.json/", "not a path inside the directory"),       # a directory, by POSIX
    (".//plan.json", "not a path inside the directory"),
    ("obligations", "is not a regular file"),
])
def test_plan_paths_outside_are_rejected(cert, ref, fragment):
    _edit(_cert_json(cert), lambda d: d.update(plan=ref), rehash=True)
    _rejected(check_certificate(cert), fragment)


def test_symlink_leading_outside_is_rejected(cert, tmp_path):
    outside = tmp_path / "secret.json"
    shutil.copy(os.path.join(cert, "plan.json"), outside)
    os.remove(os.path.join(cert, "plan.json"))
    os.symlink(outside, os.path.join(cert, "plan.json"))
    _rejected(check_certificate(cert), "is a symbolic link (not followed)")


def test_symlink_to_a_device_inside_is_rejected(cert):
    os.symlink("/dev/zero", os.path.join(cert, "zero"))
    _edit(_cert_json(cert), lambda d: d.update(plan="zero"), rehash=True)
    _rejected(check_certificate(cert), "is a symbolic link (not followed)")


def test_fifo_obligation_is_rejected_without_blocking(cert):
    path = os.path.join(cert, "obligations", "no_discard.smt2")
    os.remove(path)
    os.mkfifo(path)
    _rejected(check_certificate(cert), "is not a regular file")


def test_oversized_plan_is_rejected_before_reading(cert):
    path = os.path.join(cert, "plan.json")
    with open(path, "r+b") as f:
        f.truncate(5 << 20)               # sparse: costs nothing to write
    _rejected(check_certificate(cert), "over the limit")


def test_stored_solver_commands_are_never_run(cert, tmp_path):
    """An obligation that asks z3 to write a file is compared, not run: nothing is written."""
    target = tmp_path / "pwned.txt"
    path = os.path.join(cert, "obligations", "element_correct.smt2")
    evil = (f'(set-option :regular-output-channel "{target}")\n(echo "owned")\n'
            + open(path).read())
    open(path, "w").write(evil)
    _edit(_cert_json(cert), lambda d: _claim(d, "element_correct").update(sha256=sha256(evil)),
          rehash=True)
    _rejected(check_certificate(cert), "element_correct: the stored obligation does not follow")
    assert not target.exists()


def test_check_commands_refuses_solver_options():
    from redist.core.smt.solvers import check_commands, solve_z3
    with pytest.raises(ValueError, match="not allowed"):
        check_commands('(set-option :regular-output-channel "/tmp/x")')
    with pytest.raises(ValueError):
        solve_z3('(echo "hi")')
    check_commands(obligations(normal(case("reorder")).plan)[2].smt2())   # ours pass


@pytest.mark.parametrize("answer", ["sat", "unsat; rm -rf /", 17, None])
def test_garbage_or_wrong_recorded_answers_are_rejected(cert, answer):
    _edit(_cert_json(cert), lambda d: _claim(d, "no_discard").update(answer=answer),
          rehash=True)
    _rejected(check_certificate(cert), "no_discard: recorded answer")


@pytest.mark.parametrize("edit,fragment", [
    (lambda d: d["claims"].__setitem__(0, {**d["claims"][0], "claim": ["well_typed"]}),
     "claim 'well_typed' is missing"),
    (lambda d: d.update(claims="all proved"), "'claims' must list the 5 claims"),
    (lambda d: d.update(memory_limit=None), "'memory_limit' must be"),
    (lambda d: d.update(memory_limit={"kind": "budget", "bytes": -5}), "'memory_limit' must be"),
    (lambda d: d.update(memory_limit={"kind": "budget", "bytes": True}), "'memory_limit' must be"),
    (lambda d: d.update(plan_sha256=5), "'plan_sha256' must be a string"),
    (lambda d: _claim(d, "reaches_dst").update(status="maybe"), "status 'maybe' is not proved"),
])
def test_malformed_fields_are_rejected(cert, edit, fragment):
    _edit(_cert_json(cert), edit, rehash=True)
    _rejected(check_certificate(cert), fragment)


@pytest.mark.parametrize("content,fragment", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not UTF-8 text"),
    (b"[" * 5000 + b"]" * 5000, "nested 5000 deep"),
    (b'{"format": "redist.certificate/3", "memory_limit": {"kind": "budget", "bytes": '
     + b"9" * 5000 + b"}}", "not acceptable JSON"),
    (b"[1, 2, 3]", "must be a JSON object"),
])
def test_unreadable_certificate_documents_are_rejected(cert, content, fragment):
    with open(_cert_json(cert), "wb") as f:
        f.write(content)
    _rejected(check_certificate(cert), fragment)


def test_single_file_certificate(tmp_path):
    f = str(tmp_path / "cert.json")
    write_certificate(normal(case("swap-3d")).plan, None, f)
    assert check_certificate(f).ok
    _edit(f, lambda d: d["plan"].update(shape=[32, 64, 64]) or d["plan"].pop("figures"))
    _rejected(check_certificate(f), "plan was changed")


def test_single_file_with_integer_obligation_is_rejected(tmp_path):
    f = str(tmp_path / "cert.json")
    write_certificate(normal(case("swap-3d")).plan, None, f)
    _edit(f, lambda d: _claim(d, "reaches_dst").update(smt2=12), rehash=True)
    _rejected(check_certificate(f), "reaches_dst: 'smt2' must be the obligation text")


def test_ill_typed_plan_cannot_be_certified(tmp_path):
    from redist.core.ops import AllGather
    p = case("transpose")
    with pytest.raises(RedistError, match="not well-typed"):
        write_certificate(Plan(p, (AllGather((("x",), ("x",))),)), None, str(tmp_path / "x"))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "redist", "certify", "check", *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_exit_codes(cert, tmp_path):
    assert _cli(cert).returncode == 0
    r = _cli(str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "no certificate at" in r.stderr and "no such file" in r.stderr
    d = str(tmp_path / "naive")
    write_certificate(naive(case("transpose")), None, d)
    r = _cli(d)
    assert r.returncode == 1 and "memory_efficient" in r.stdout
    os.remove(os.path.join(cert, "plan.json"))
    r = _cli(cert, "--json", "-")
    assert r.returncode == 1 and json.loads(r.stdout)["genuine"] is False


def test_obligations_run_under_z3_command_line(cert):
    z3 = os.path.join(os.path.dirname(sys.executable), "z3")
    if not os.path.exists(z3):
        pytest.skip("z3 command line not installed beside Python")
    for name in os.listdir(os.path.join(cert, "obligations")):
        out = subprocess.run([z3, os.path.join(cert, "obligations", name)],
                             capture_output=True, text=True, timeout=120).stdout.strip()
        assert out == "unsat", name


def _mesh_of_axes(n):
    from hypothesis import strategies as st

    from redist.core.model.mesh import Mesh
    return st.lists(st.integers(1, 4), min_size=n, max_size=n).filter(
        lambda s: math.prod(s) <= 16).map(lambda s: Mesh(tuple(zip("xyzw", s, strict=False))))


@pytest.mark.parametrize("n_axes", [1, 2, 3, 4])
def test_genuine_certificates_check_with_cvc5(tmp_path_factory, n_axes):
    """Every obligation is standard SMT-LIB: cvc5 (strict parsing) re-solves genuine
    certificates of random problems on meshes of 1-4 axes to the recorded answers. One-axis
    meshes once printed a one-argument (+ t) that cvc5 refuses."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from redist.core.smt.solvers import cvc5_version
    from redist.strategies import problems
    assert cvc5_version() is not None, "cvc5 is a test dependency: pip install '.[test]'"

    @settings(max_examples=3, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        mesh = data.draw(_mesh_of_axes(n_axes))
        p = data.draw(problems(generous=data.draw(st.sampled_from([True, "uneven"])),
                               mesh=mesh, max_elements=2048, sub_axes=True))
        plan = normal(p).plan if data.draw(st.booleans()) else naive(p)
        f = str(tmp_path_factory.mktemp("cvc5") / "cert.json")
        write_certificate(plan, None, f)
        r = check_certificate(f)
        assert r.genuine, r.problems
        for row in r.rows:
            assert set(row["answers"]) == {"z3", "cvc5"}, row
            assert not any(a.startswith("error") for a in row["answers"].values()), row
    check()


def test_no_one_argument_applications_in_obligations():
    """The printed text itself: no (+ t), (* t), (and t), (or t) or bare `and`/`or`."""
    from redist.core.model.coerce import problem
    p = problem("x=8", "50257,1024", "bfloat16", "[{x},{}]", "[{},{x}]")
    for plan in (normal(p).plan, naive(p)):
        for o in obligations(plan):
            text = o.smt2()
            assert not re.search(r"\((\+|\*|and|or|distinct) [^()\s]+\)", text), o.claim
            assert not re.search(r"[\s(](and|or)\)", text), o.claim


_WRONG = [None, True, 0, -7, 2.5, 10 ** 400, "", "x" * 300, [], ["proved"], {}, {"a": 1}]


def _paths(node, path=()):
    """Every field and list entry of a JSON document, as a path of keys and indices."""
    if path:
        yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, path + (k,))
    elif isinstance(node, list):
        for k, v in enumerate(node):
            yield from _paths(v, path + (k,))


def _set(doc, path, value):
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


@pytest.mark.parametrize("single", [False, True])
def test_every_field_with_a_wrong_type_is_rejected_in_one_line(tmp_path, single):
    """The class, not one example: each field of a genuine certificate (the inline plan's
    too) replaced by values of other JSON types, the hashes recomputed as a forger would:
    always a rejection with a one-line reason, never an exception."""
    path = str(tmp_path / ("c.json" if single else "c"))
    write_certificate(normal(case("paper-1d")).plan, None, path)
    doc_file = path if single else _cert_json(path)
    original = json.load(open(doc_file))
    tried = 0
    for p in _paths(original):
        old = original
        for k in p:
            old = old[k]
        for value in _WRONG:
            if type(value) is type(old) and not isinstance(old, (dict, list)):
                continue                   # same type: not a wrong-typed field
            doc = json.loads(json.dumps(original))
            _set(doc, p, value)
            if single and p[0] == "plan" and isinstance(doc.get("plan"), dict):
                doc["plan_sha256"] = sha256(json.dumps(doc["plan"], indent=1,
                                                       sort_keys=True) + "\n")
            if p != ("sha256",):
                doc["sha256"] = statement_sha256(doc)
            with open(doc_file, "w") as f:
                json.dump(doc, f)
            r = check_certificate(path)
            tried += 1
            if r.genuine and p[0] == "plan":
                # an optional part of the inline plan emptied ({} for figures): the same
                # plan, so the same statement, not a forgery
                assert plan_from_json(doc["plan"]) == plan_from_json(original["plan"]), p
                continue
            assert not r.genuine and not r.ok, (p, value)
            assert len(r.problems) == 1 and "\n" not in r.problems[0], (p, value, r.problems)
    assert tried > 100


@pytest.mark.parametrize("edit,fragment", [
    (lambda d: d.update(solver={"name": "z3", "version": ["4"]}), "'solver' must be"),
    (lambda d: d.update(solver={"name": "cvc5", "version": "1.0"}), "'solver' must be"),
    (lambda d: d.update(solver="z3"), "'solver' must be"),
    (lambda d: d.update(note="all claims proved for every mesh"), "a field the format does not "
                                                                 "define: 'note'"),
    (lambda d: d["claims"][0].update(checked_by="cvc5"), "a field the format does not define"),
    (lambda d: _claim(d, "reaches_dst").update(status=["proved"]), "status ['proved'] is not"),
    (lambda d: _claim(d, "reaches_dst").update(status={"proved": 1}), "is not proved, refuted"),
])
def test_forged_fields_are_rejected(cert, edit, fragment):
    _edit(_cert_json(cert), edit, rehash=True)
    _rejected(check_certificate(cert), fragment)


def test_solver_field_is_part_of_the_statement(cert):
    """Changing the recorded solver without recomputing the statement hash is detected."""
    _edit(_cert_json(cert), lambda d: d["solver"].update(version="0.0.1"))
    _rejected(check_certificate(cert), "a field was changed")


@pytest.mark.parametrize("where", ["top", "claim", "memory_limit", "solver"])
def test_duplicate_json_keys_are_rejected(cert, where):
    """A repeated key means different things to different JSON readers (first or last
    wins): the certificate is rejected, whichever copy would win."""
    text = open(_cert_json(cert)).read()
    dup = {"top": ('"format"', '"format": "redist.certificate/3", "format"'),
           "claim": ('"status"', '"status": "refuted", "status"'),
           "memory_limit": ('"bytes"', '"bytes": 1, "bytes"'),
           "solver": ('"version"', '"version": "x", "version"')}[where]
    open(_cert_json(cert), "w").write(text.replace(*dup, 1))
    _rejected(check_certificate(cert), "appears twice in one JSON object")


def test_standard_smt2_rewrites_only_short_applications():
    """One-argument +, *, and, or become their argument, a bare operator its unit, a short
    distinct `true`; everything else (spacing, quoted symbols, lets) is kept as printed."""
    from redist.core.smt.solvers import solve_cvc5, solve_z3
    from redist.core.smt.standard import standard_smt2

    text = ("; c\n(declare-fun x () Int)\n(declare-fun b () Bool)\n"
            "(assert\n (let ((?t1 (+ x)))\n (> (* ?t1) 0)))\n(assert (and b))\n"
            "(assert (or (and (or b)) or))\n(assert (distinct x))\n"
            "(assert (= (+ x 1) (+ (+ x) 1)))\n(assert and)\n(check-sat)\n")
    out = standard_smt2(text)
    assert out == ("; c\n(declare-fun x () Int)\n(declare-fun b () Bool)\n"
                   "(assert\n (let ((?t1 x))\n (> ?t1 0)))\n(assert b)\n"
                   "(assert (or b false))\n(assert true)\n"
                   "(assert (= (+ x 1) (+ x 1)))\n(assert true)\n(check-sat)\n")
    assert solve_z3(out) == solve_cvc5(out) == "sat"
    assert solve_cvc5(text).startswith("error")          # cvc5 (strict) refuses the original
    with pytest.raises(ValueError):
        standard_smt2("(assert (and b)")


@pytest.mark.parametrize("inside", [False, True])
def test_symlink_in_the_middle_of_a_path_is_not_followed(cert, tmp_path, inside):
    """obligations/ replaced by a link to a genuine copy, outside or inside the certificate:
    no component of a path in a certificate is followed through a link."""
    target = os.path.join(cert, "copy") if inside else str(tmp_path / "outside")
    shutil.move(os.path.join(cert, "obligations"), target)
    os.symlink(target, os.path.join(cert, "obligations"))
    _rejected(check_certificate(cert), "'obligations' is not a directory (symbolic links are "
                                       "not followed)")


def test_hard_link_to_a_file_elsewhere_is_judged_by_its_content(cert, tmp_path):
    """Decision (docs/proofs.md): a hard link is the file itself, not a pointer elsewhere;
    its bytes are hashed and regenerated like any other, so a genuine one checks and a
    changed one is rejected."""
    plan = os.path.join(cert, "plan.json")
    elsewhere = tmp_path / "elsewhere.json"
    os.link(plan, elsewhere)
    assert os.stat(plan).st_nlink == 2
    assert check_certificate(cert, use_cvc5=False).ok
    with open(elsewhere, "a") as f:
        f.write(" ")
    _rejected(check_certificate(cert, use_cvc5=False), "plan was changed")


SWAP_LOOP = """
import os, sys
cert, outside = sys.argv[1:]
obl, real, link = (os.path.join(cert, n) for n in ("obligations", "real", "link"))
while True:
    os.symlink(outside, link)
    os.rename(obl, real)
    os.rename(link, obl)
    os.unlink(obl)
    os.rename(real, obl)
"""


def test_directory_swapped_for_a_link_while_checking_never_reads_outside(cert, tmp_path,
                                                                        monkeypatch):
    """Another process swaps obligations/ for a link to a genuine copy outside, back and
    forth, while checks run. Every file the checker opens is looked up in /proc: none may
    lie outside the certificate (the old resolve-then-open check read outside, or crashed)."""
    from redist.core.smt import certificate

    outside = str(tmp_path / "outside")
    shutil.copytree(os.path.join(cert, "obligations"), outside)
    with open(os.path.join(cert, "plan.json")) as f:
        plan = plan_from_json(json.load(f))
    # Reading is under test, not regenerating or solving: both are stubbed to be cheap.
    generated = [SimpleNamespace(claim=o.claim, smt2=partial(str, o.smt2()))
                 for o in obligations(plan, None)]
    monkeypatch.setattr(certificate, "obligations", lambda p, b: generated)
    monkeypatch.setattr(certificate, "solve_z3", lambda text, ms: "unsat")
    real_open, opened_outside = os.open, []

    def spy(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if os.readlink(f"/proc/self/fd/{fd}").startswith(outside):
            opened_outside.append(path)
        return fd

    monkeypatch.setattr(os, "open", spy)
    swapper = subprocess.Popen([sys.executable, "-c", SWAP_LOOP, cert, outside])
    outcomes = []
    try:
        for _ in range(200):
            r = check_certificate(cert, use_cvc5=False)
            outcomes.append("ok" if r.ok else r.problems[0])
    finally:
        swapper.kill()
        swapper.wait()
    assert opened_outside == []
    rejected = [p for p in outcomes if p != "ok"]
    assert all("symbolic link" in p or "No such file" in p for p in rejected), \
        set(rejected)
    assert 0 < len(rejected) < len(outcomes)     # the race really ran


def test_each_solver_call_gets_what_is_left_of_the_checks_time(cert, monkeypatch):
    """Per obligation at most `timeout_ms`, all together at most `total_seconds` (a fake
    clock advancing 40 s per solver call): the third call gets the 20 s left, the fourth
    would start past the deadline, so the check stops there and reports that claim
    unconfirmed."""
    from redist.core.smt import certificate

    clock = [0.0]
    given = []

    def slow_unsat(text, ms):
        given.append(ms)
        clock[0] += 40
        return "unsat"

    monkeypatch.setattr(certificate, "_now", lambda: clock[0])
    monkeypatch.setattr(certificate, "solve_z3", slow_unsat)
    r = check_certificate(cert, use_cvc5=False, timeout_ms=60_000, total_seconds=100)
    assert given == [60_000, 60_000, 20_000]
    _rejected(r, "memory_efficient: recorded proved, but z3 answers unknown within its limits")


def test_a_solver_that_gives_up_leaves_the_claim_unconfirmed(cert, monkeypatch):
    from redist.core.smt import certificate

    monkeypatch.setattr(certificate, "solve_z3", lambda text, ms: "unknown")
    _rejected(check_certificate(cert, use_cvc5=False), "well_typed: recorded proved, but z3 "
              "answers unknown within its limits (60 s per obligation, 300 s for the whole "
              "check): not confirmed")


def test_claims_recorded_unknown_are_not_re_solved(tmp_path, monkeypatch):
    """An unknown claim claims nothing: re-solving it (minutes on a 20-axis plan) would
    confirm nothing."""
    from redist.core.smt import certificate
    from redist.core.smt.verify import verify

    plan = normal(case("transpose")).plan
    v = verify(plan)
    unknown = type(v)(tuple(r if r.claim != "element_correct" else
                            type(r)(**{**r.__dict__, "status": "unknown", "answer": "unknown"})
                            for r in v.results))
    d = str(tmp_path / "c")
    write_certificate(plan, unknown, d)
    solved = []
    real = certificate.solve_z3
    monkeypatch.setattr(certificate, "solve_z3", lambda text, ms: solved.append(1) or
                        real(text, ms))
    r = check_certificate(d, use_cvc5=False)
    assert r.genuine and not r.ok and r.refuted == ["element_correct"] and len(solved) == 4
    assert "not re-solved (an unknown claim claims nothing)" in r.table()


def _late_slices_plan() -> Plan:
    """Two slices after communication: no_discard uses its one-chain encoding."""
    from redist.core.model.problem import Problem
    from redist.core.model.syntax import parse_layout, parse_mesh
    from redist.core.ops import AllGather, AllSlice, AllToAll

    p = Problem(parse_mesh("x=2,y=2,z=2"), (8, 8), "float32", parse_layout("[{x},{y}]"),
                parse_layout("[{z},{y,x}]"))
    return Plan(p, (AllToAll(0, 1, ("x",)), AllSlice(((), ("z",))), AllGather(((), ("z",))),
                    AllSlice((("z",), ()))))


def test_a_certificate_with_the_earlier_no_discard_text_still_checks(tmp_path):
    """Certificates written before no_discard's one-chain encoding recorded one chain per
    slice: that text is regenerated too and accepted (the same claim); anything else is
    still rejected."""
    from redist.core.smt.obligations import _over_bitvectors, no_discard

    plan = _late_slices_plan()
    lays = plan.layouts()
    old = _over_bitvectors(no_discard(plan, lays, legacy=True)).smt2()
    new = _over_bitvectors(no_discard(plan, lays)).smt2()
    assert old != new
    d = str(tmp_path / "c")
    write_certificate(plan, None, d)
    path = os.path.join(d, "obligations", "no_discard.smt2")
    assert open(path).read() == new
    assert check_certificate(d).genuine
    with open(path, "w") as f:
        f.write(old)
    _edit(_cert_json(d), lambda doc: _claim(doc, "no_discard").update(sha256=sha256(old)),
          rehash=True)
    assert check_certificate(d).genuine
    with open(path, "w") as f:
        f.write(old + " ")
    _edit(_cert_json(d), lambda doc: _claim(doc, "no_discard").update(
        sha256=sha256(old + " ")), rehash=True)
    _rejected(check_certificate(d), "no_discard: the stored obligation does not follow")
