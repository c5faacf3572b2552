"""redist.plan_cache: a problem is proved once per process; the disk cache serves a
restarted process without proving, and rejects (with a warning, then re-proves) every entry
it cannot authenticate or that is not a proved plan of the problem asked for."""

import json
import os

import pytest

from redist import plan_cache
from redist.core.errors import RedistError
from redist.core.model.problem import Problem
from redist.core.model.syntax import parse_layout, parse_mesh

from cases import case


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(plan_cache.ENV_KEY, str(tmp_path / "key"))
    monkeypatch.delenv(plan_cache.ENV_DIR, raising=False)
    plan_cache.clear()
    yield str(tmp_path / "plans")
    plan_cache.clear()


@pytest.fixture
def proofs(monkeypatch):
    """The problems proved from now on."""
    seen = []
    real = plan_cache.prove
    monkeypatch.setattr(plan_cache, "prove", lambda p, *a: seen.append(p) or real(p, *a))
    return seen


PROBLEMS = ["transpose", "replace-axis", "gather-all", "swap-3d", "reorder", "paper-1d"]


@pytest.mark.parametrize("name", PROBLEMS)
def test_a_problem_is_proved_once_per_process(name, cache, proofs):
    p = case(name, "48,48" if name in ("transpose", "replace-axis", "reorder") else
             ("12" if name == "paper-1d" else "8,8,8"))
    a = plan_cache.verified_plan(p)
    b = plan_cache.verified_plan(Problem(p.base, p.shape, p.dtype, p.show(p.src),
                                         p.show(p.dst)))      # an equal problem, rebuilt
    assert a is b and proofs == [p]


def test_a_restarted_process_reads_the_disk_and_proves_nothing(cache, proofs, monkeypatch):
    p = case("transpose", "64,64")
    first = plan_cache.verified_plan(p, cache_dir=cache)
    assert len(os.listdir(cache)) == 1 and proofs == [p]
    plan_cache.clear()                                   # as after a restart
    again = plan_cache.verified_plan(p, cache_dir=cache)
    assert again == first and proofs == [p]
    plan_cache.clear()
    monkeypatch.setenv(plan_cache.ENV_DIR, cache)        # the environment variable too
    assert plan_cache.verified_plan(p) == first and proofs == [p]


def _entry(cache):
    (name,) = os.listdir(cache)
    path = os.path.join(cache, name)
    with open(path) as f:
        return path, json.load(f)


def _rewrite(path, entry, payload=None, mac=None):
    doc = json.loads(entry["payload"])
    if payload:
        payload(doc)
    entry = dict(entry, payload=json.dumps(doc, sort_keys=True))
    if mac is not None:
        entry["hmac"] = mac(entry["payload"])
    with open(path, "w") as f:
        json.dump(entry, f)


def _swap_steps(doc):
    doc["plan"]["steps"] = doc["plan"]["steps"][::-1]


def _other_version(doc):
    doc["redist"] = "0.0.0-other"


def _refuted(doc):
    doc["plan"]["verdict"]["claims"][2]["status"] = "refuted"


@pytest.mark.parametrize("tamper,why", [
    (lambda path, e: _rewrite(path, e, _swap_steps), "MAC does not match"),
    (lambda path, e: _rewrite(path, e, None, lambda s: "0" * 64), "MAC does not match"),
    (lambda path, e: _rewrite(path, e, _other_version, plan_cache._mac), "another problem"),
    (lambda path, e: _rewrite(path, e, _refuted, plan_cache._mac), "not a proved plan"),
    (lambda path, e: _rewrite(path, e, _swap_steps, plan_cache._mac), "layout_after|src to dst"),
    (lambda path, e: open(path, "w").write("{not json"), "not valid JSON"),
    (lambda path, e: open(path, "w").write(json.dumps({"format": "x"})), "not a redist"),
])
def test_a_bad_entry_is_refused_and_the_problem_proved_again(cache, proofs, tamper, why):
    p = case("transpose", "64,64")
    good = plan_cache.verified_plan(p, cache_dir=cache)
    path, entry = _entry(cache)
    tamper(path, entry)
    plan_cache.clear()
    with pytest.warns(UserWarning, match=why):
        again = plan_cache.verified_plan(p, cache_dir=cache)
    assert again == good and proofs == [p, p]
    plan_cache.clear()                                   # the entry was rewritten: good again
    assert plan_cache.verified_plan(p, cache_dir=cache) == good and len(proofs) == 2


def test_an_entry_under_another_key_is_not_trusted(cache, proofs, tmp_path, monkeypatch):
    p = case("reorder", "64,64")
    plan_cache.verified_plan(p, cache_dir=cache)
    monkeypatch.setenv(plan_cache.ENV_KEY, str(tmp_path / "someone-else"))
    plan_cache.clear()
    with pytest.warns(UserWarning, match="MAC does not match"):
        plan_cache.verified_plan(p, cache_dir=cache)
    assert proofs == [p, p]
    assert oct(os.stat(tmp_path / "someone-else").st_mode & 0o777) == "0o600"


def test_an_unverified_plan_is_refused_and_never_cached(cache):
    p = Problem(parse_mesh("x=2,y=4"), (64, 64), "float32", parse_layout("[{x},{y}]"),
                parse_layout("[{y},{x}]"))
    with pytest.raises(RedistError, match="refusing to compile an unverified plan"):
        plan_cache.verified_plan(p, method="naive", cache_dir=cache)
    assert not os.path.exists(cache) or not os.listdir(cache)


def test_an_unwritable_cache_is_a_warning(cache, tmp_path, proofs):
    blocker = tmp_path / "file"
    blocker.write_text("")
    p = case("transpose", "64,64")
    with pytest.warns(UserWarning, match="cannot write the plan cache"):
        plan = plan_cache.verified_plan(p, cache_dir=str(blocker / "sub"))
    assert plan.problem.show(plan.final_layout) == p.show(p.dst) and proofs == [p]


def test_the_exchange_fallback_is_its_own_entry(cache, proofs):
    """redist.torch's policy: where no portable plan fits the bound, the all_exchange plan
    proved against its own runtime peak; cached under its own key, on disk too, and never
    handed to a caller (redist.jax) that did not ask for it."""
    p = Problem(parse_mesh("x=2,y=4"), (10, 6), "float32", parse_layout("[{x},{y}]"),
                parse_layout("[{y},{x}]"))
    with pytest.raises(RedistError, match="unverified"):
        plan_cache.verified_plan(p, cache_dir=cache)
    plan = plan_cache.verified_plan(p, cache_dir=cache, exchange_fallback=True)
    assert [s.op for s in plan.steps] == ["all_exchange"]
    assert plan_cache.cached(p, exchange_fallback=True) is plan
    assert plan_cache.cached(p) is None
    path, entry = _entry(cache)
    assert json.loads(entry["payload"])["exchange_fallback"] is True
    plan_cache.clear()
    assert plan_cache.verified_plan(p, cache_dir=cache, exchange_fallback=True) == plan
    assert len(proofs) == 2                  # the refused call and the first fallback call
    # the same entry, presented as a plain entry (MAC recomputed), is not taken
    plain = plan_cache.entry_path(cache, p, "normal", None)
    os.replace(path, plain)

    def _drop(doc):
        doc.pop("exchange_fallback")
        doc["exchange_fallback_was"] = True
    _rewrite(plain, entry, _drop, plan_cache._mac)
    plan_cache.clear()
    with pytest.warns(UserWarning, match="another problem"), \
            pytest.raises(RedistError, match="unverified"):
        plan_cache.verified_plan(p, cache_dir=cache)
