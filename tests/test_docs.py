"""Every code block of the README and docs/ runs: Python blocks (as programs; under
mpiexec when their first line says `mpiexec -n N`, under torchrun when it says
`torchrun --nproc-per-node N`; printed output checked against the `#`
lines that follow a print), `redist` command lines of sh blocks (exit code 0 unless the
line says `# exit N`; their output checked: the `text` block that follows a one-command sh
block line by line, else what each subcommand promises), and plan files in json blocks
(they must parse)."""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from redist.core.plans.planjson import plan_from_json
from redist.runtime.launch import find_mpiexec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ["README.md"] + sorted(f"docs/{f}" for f in os.listdir(os.path.join(ROOT, "docs"))
                               if f.endswith(".md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(kind: str) -> list[tuple[str, int, str]]:
    out = []
    for f in FILES:
        text = open(os.path.join(ROOT, f), encoding="utf-8").read()
        for k, m in enumerate(FENCE.finditer(text)):
            if m.group(1) == kind:
                out.append((f, k, m.group(2)))
    return out


def _expected(code: str) -> list[str]:
    """The `# ...` lines that follow a print() (the output the block promises)."""
    out, after_print = [], False
    for line in code.splitlines():
        s = line.strip()
        if after_print and s.startswith("# "):
            out.append(s[2:])
            continue
        after_print = "print(" in s
    return out


def _env() -> dict:
    return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")


@pytest.mark.parametrize("where,k,code", blocks("python"),
                         ids=[f"{f}#{k}" for f, k, _ in blocks("python")])
def test_python_blocks_run(where, k, code, tmp_path):
    if "import jax" in code:
        pytest.importorskip("jax")
    if "import torch" in code:
        pytest.importorskip("torch")
    path = tmp_path / "example.py"
    path.write_text(code)
    first = code.splitlines()[0]
    m = re.search(r"mpiexec -n (\d+)", first)
    t = re.search(r"torchrun --nproc-per-node (\d+)", first)
    cmd = ([find_mpiexec(), "-n", m.group(1), sys.executable, str(path)] if m
           else [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                 t.group(1), str(path)] if t
           else [sys.executable, str(path)])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env=_env(), start_new_session=True)
    assert r.returncode == 0, f"{where} block {k}:\n{r.stderr[-2000:]}"
    want = _expected(code)
    got = [line.strip() for line in r.stdout.splitlines() if line.strip()]
    assert got[:len(want)] == want or all(w in got for w in want), (where, got, want)


def _commands():
    out = []
    for f, k, code in blocks("sh"):
        for line in code.splitlines():
            if line.startswith("redist ") and "skip-test" not in line:
                out.append((f, k, line))
    return out


def _shown_output(where: str, k: int) -> list[str] | None:
    """The lines of the `text` block right after sh block k of `where`, if that block holds
    one command (the output the docs show for it)."""
    text = open(os.path.join(ROOT, where), encoding="utf-8").read()
    fences = list(FENCE.finditer(text))
    sh = fences[k]
    if k + 1 >= len(fences) or fences[k + 1].group(1) != "text" or \
            text[sh.end():fences[k + 1].start()].strip() or \
            len([c for c in sh.group(2).splitlines() if c.strip()]) != 1:
        return None
    return fences[k + 1].group(2).splitlines()


def _shows(got: list[str], shown: list[str]) -> bool:
    """The docs' lines are the output's, in order: the first run of them its first lines,
    and a line `…` alone stands for lines left out (each later run must follow)."""
    runs: list[list[str]] = [[]]
    for line in shown:
        if line.strip() == "…":
            runs.append([])
        else:
            runs[-1].append(line)
    if got[:len(runs[0])] != runs[0]:
        return False
    at = len(runs[0])
    for run in runs[1:]:
        starts = [i for i in range(at, len(got) - len(run) + 1) if got[i:i + len(run)] == run]
        if not starts:
            return False
        at = starts[0] + len(run)
    return True


def _normalized(line: str) -> str:
    """Timings and the solver's version vary between machines; nothing else may."""
    line = re.sub(r"\s*\[\d+ ms\]", "", line.rstrip())
    return re.sub(r"^claims \((\w+) [^)]*\)", r"claims (\1)", line)


def _ceil_blocks(n: int, k: int) -> str:
    c = -(-n // k)
    return " ".join(f"[{min(b * c, n)},{min(b * c + c, n)})" for b in range(k))


def check_output(args: list[str], out: str, code: int) -> None:
    """What each subcommand promises to print (docs/cli.md)."""
    cmd = args[0]
    if cmd in ("plan", "verify") and "--json" in args and "--dst-mesh" in args:
        from redist.core.cross.planjson import cross_plan_from_json  # two meshes
        doc = json.loads(out)
        plan = cross_plan_from_json(doc)
        assert doc["verdict"]["all_proved"] is (code == 0)
        assert doc["figures"]["cross_mesh_bytes"] == plan.figures().cross_mesh_bytes
    elif cmd in ("plan", "verify") and "--json" in args:
        doc = json.loads(out)
        plan = plan_from_json(doc)
        assert plan.final_layout == plan.problem.dst
        assert doc["verdict"]["all_proved"] is (code == 0)
        assert doc["figures"]["volume_bytes"] == plan.figures().volume_bytes
    elif cmd in ("plan", "verify"):
        if code == 0:
            assert "verdict: all five claims proved" in out
            assert re.search(r"^peak .* -> memory-efficient$", out, re.M) or \
                "--show" in args and re.search(r"^peak [\d.]+ \w+ per device \(bound", out, re.M)
        else:
            assert "verdict: NOT verified" in out
            assert re.search(r"^  REFUTED .*\n {11}-> \S", out, re.M)   # with its reason
        if "--certificate" in args:
            where = args[args.index("--certificate") + 1]
            assert f"certificate written to {where}" in out and os.path.exists(where)
        if "--method" in args and args[args.index("--method") + 1] == "optimal":
            assert re.search(r"proved optimal among plans of (up to|one transfer)", out)
    elif cmd == "show":
        # every dim's block ranges, computed here from the ceil convention (DESIGN §11)
        shape = [int(n) for n in args[args.index("--shape") + 1].split(",")]
        for d, n in enumerate(shape):
            m = re.search(rf"^dim {d} \({n}\): (split (\d+) ways by \S+: (.*)|held whole.*)$",
                          out, re.M)
            assert m, (d, out)
            if m.group(2):
                assert m.group(3) == _ceil_blocks(n, int(m.group(2)))
    elif cmd == "certify":
        assert "certificate checks: all five claims proved" in out
    elif cmd == "run":
        assert re.search(r"^elements +all match the expected dst blocks$", out, re.M)
        assert re.search(r"^time +median [\d.]+ ms", out, re.M)
    elif cmd == "audit":
        # XLA's plan as a table with its verdict, redist's certified plan beside it; exit 0
        # exactly when XLA's plan is proved on all five claims
        assert re.search(r"^XLA's plan", out, re.M), out
        rows = dict(re.findall(r"^(XLA|redist) +\S.* (proved|REFUTED|\S+) *$", out, re.M))
        assert rows.get("redist") == "proved", out
        assert (rows.get("XLA") == "proved") == (code == 0), (code, rows)
    elif cmd == "regress":
        assert re.search(r"failures +0 *$", out, re.M)
        n = args[args.index("--examples") + 1]
        assert re.search(rf"every element compared +{n} *$", out, re.M), out
    else:
        raise AssertionError(f"no output check for `redist {cmd}`: add one")


@pytest.mark.parametrize("where,k,line", _commands(), ids=[c[2][:60] for c in _commands()])
def test_command_lines_run(where, k, line, tmp_path):
    code_wanted = 0
    m = re.search(r"#\s*exit (\d+)", line)
    if m:
        code_wanted = int(m.group(1))
    args = shlex.split(line.split("  #")[0].split(" # ")[0])[1:]
    r = subprocess.run([sys.executable, "-m", "redist", *args], capture_output=True,
                       text=True, timeout=600, cwd=tmp_path, env=_env())
    assert r.returncode == code_wanted, f"{where}: {line}\n{r.stdout[-1500:]}{r.stderr[-1500:]}"
    assert "Traceback" not in r.stderr
    check_output(args, r.stdout, r.returncode)
    shown = _shown_output(where, k)
    if shown is not None:
        got = [_normalized(x) for x in r.stdout.splitlines()]
        assert _shows(got, [_normalized(x) for x in shown]), f"{where}: {line}\n{r.stdout}"


@pytest.mark.parametrize("where,k,text", blocks("json"),
                         ids=[f"{f}#{k}" for f, k, _ in blocks("json")])
def test_json_blocks_are_valid(where, k, text):
    doc = json.loads(text)
    if doc.get("format") == "redist.plan/1" and "dst_mesh" in doc:
        from redist.core.cross.planjson import cross_plan_from_json  # two meshes
        assert cross_plan_from_json(doc).typing_error() is None
    elif doc.get("format") == "redist.plan/1":
        plan = plan_from_json(doc)
        assert plan.final_layout == plan.problem.dst
