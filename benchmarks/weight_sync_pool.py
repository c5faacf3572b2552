"""Pool several runs of benchmarks.weight_sync (their JSON files): per case and method, the
median over every repetition of every run, each run's median ratio to redist, and the
A/A spread where two methods run the same plan (on cases whose src blocks have one holder
each, `alpa` sends exactly redist's pairs: their ratio is this machine's noise).

    python -m benchmarks.weight_sync_pool RUN.json [RUN.json ...] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

METHODS = ("redist", "alpa", "bcast", "funnel", "redist-spin", "bcast-nap")


def pool(docs: list[dict]) -> str:
    by: dict[tuple[str, str], list[dict]] = {}
    for doc in docs:
        for row in doc["rows"]:
            if "failed" not in row:
                by.setdefault((row["case"], row["method"]), []).append(row)
    cases = list(dict.fromkeys(c for c, _ in by))
    lines = [f"Pooled over {len(docs)} runs of `python -m benchmarks.weight_sync` "
             f"({', '.join(d['meta']['command'] for d in docs)}).", "",
             "Per cell: median over all repetitions of all runs (ms), then each run's median "
             "ratio to redist's (above 1: redist faster).", "",
             "| case | " + " | ".join(m for m in METHODS) + " |",
             "|---|" + "---|" * len(METHODS)]
    for c in cases:
        red = by[(c, "redist")]
        cells = []
        for m in METHODS:
            runs = by.get((c, m))
            if not runs:
                cells.append("-")
                continue
            every = [s for r in runs for s in r["seconds"]]
            ratios = [r["median_s"] / q["median_s"] for r, q in zip(runs, red, strict=True)]
            cells.append(f"{statistics.median(every) * 1e3:.1f} ("
                         + ", ".join(f"{x:.2f}" for x in ratios) + ")")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    same = [c for c in cases if (c, "alpa") in by and one_holder_each(by[(c, "redist")][0])]
    if same:
        lines += ["", "A/A (alpa runs redist's own pairs on " + ", ".join(same) + "): its "
                  "ratios above are the spread of one run's median on this machine."]
    return "\n".join(lines) + "\n"


def one_holder_each(row: dict) -> bool:
    """Whether every src block has one holder: then Alpa's first-holder senders are
    redist's senders, and the two methods run the same plan."""
    from redist.core.cross.coerce import between
    from redist.core.semantics.blocks import block_ids
    cp = between(row["a"], row["b"], row["shape"], row["dtype"], row["src"], row["dst"])
    keys = [tuple(k) for k in block_ids(cp.a_problem.mesh, cp.a_problem.src).tolist()]
    return len(set(keys)) == len(keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out")
    args = ap.parse_args()
    docs = []
    for path in args.runs:
        with open(path) as f:
            docs.append(json.load(f))
    text = pool(docs)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
