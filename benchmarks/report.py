"""Writing a benchmark's results: DIR/<stem>-<date>.json with the rows and metadata, and
DIR/<stem>-<date>.md with the report text (also printed)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys


def meta(command: str, **extra: str) -> dict:
    return {"date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                       f"Python {platform.python_version()}",
            "command": f"python -m benchmarks.{command} " + " ".join(sys.argv[1:]), **extra}


def write(out: str, stem: str, info: dict, payload: dict, text: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{stem}-{info['date']}.json"), "w") as f:
        json.dump({"meta": info, **payload}, f, indent=1)
    with open(os.path.join(out, f"{stem}-{info['date']}.md"), "w") as f:
        f.write(text)
    print(text)
