"""`redist regress` (DESIGN §13) is how the suite runs its property checks: the same
function, the same strategies. Also its command line: summary, failure shrinking, the
saved plan file and replay command, and the example database replayed first."""

import io
import json
import subprocess
import sys
from contextlib import redirect_stdout

from hypothesis import HealthCheck, given, settings

from redist import regress
from redist.cli import main
from redist.core.plans.planjson import load
from redist.strategies import problems


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(problems(generous="uneven", sub_axes=True, distinct=False, max_elements=1 << 13))
def test_every_property_holds_on_random_problems(problem):
    assert regress.check_problem(problem) == []


def test_command_runs_on_mpi_ranks_and_summarises(tmp_path):
    r = subprocess.run([sys.executable, "-m", "redist", "regress", "--examples", "12", "--np",
                        "4", "--seed", "3", "--no-database", "--json", "-"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["checked"] >= 12 and doc["mpi_runs"] == doc["checked"] and doc["failures"] == 0


def test_a_failure_is_shrunk_saved_replayable_and_replayed_first(tmp_path, monkeypatch):
    """A planted bug (every uneven problem 'fails'): the minimal problem is saved as a plan
    file, the replay command reproduces it, and the next run meets it first."""
    real = regress.check_problem

    # Every other problem passes without its checks: what is tested here is the search,
    # the shrinking, the saved file and the replays, not the checks (the property test above
    # runs those), and shrinking tries many problems.
    def buggy(problem, *a, **k):
        return ["planted failure"] if problem.uneven else []
    monkeypatch.setattr(regress, "check_problem", buggy)
    monkeypatch.chdir(tmp_path)
    db = str(tmp_path / "db")
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["regress", "--examples", "200", "--database", db])
    text = out.getvalue()
    assert code == 1 and "FAILED on mesh" in text and "planted failure" in text
    saved = next(tmp_path.glob("redist-regress-failure-*.json"))
    assert f"redist regress --replay {saved.name}" in text
    p = load(str(saved)).problem
    assert p.uneven and sum(p.shape) <= 8            # shrunk to a small problem
    with redirect_stdout(io.StringIO()):
        assert main(["regress", "--replay", str(saved)]) == 1
    first = regress.run(examples=200, database=db, use_database=True)
    assert first.failure and first.tally.checked <= 3   # the kept example comes first
    monkeypatch.setattr(regress, "check_problem", real)
    with redirect_stdout(io.StringIO()):
        assert main(["regress", "--replay", str(saved)]) == 0
