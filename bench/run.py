"""`make bench`: run every bench/bench_*.py in turn and print their figures.

Each benchmark is a script that prints its own figures; it must be bounded in time and talk only
to servers on 127.0.0.1 that it starts and stops itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


# Storage-bound benches run once per storage backend (bench/backend.py), the others once.
PER_BACKEND = {"bench_journey", "bench_smtp", "bench_imap"}
BACKENDS = ("embedded", "postgresql")


def main() -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if not scripts:
        print("no benchmark yet")
        return 0
    failed = 0
    for script in scripts:
        for backend in BACKENDS if script.stem in PER_BACKEND else ("embedded",):
            suffix = f" [{backend}]" if script.stem in PER_BACKEND else ""
            print(f"== {script.stem}{suffix}", flush=True)
            r = subprocess.run([sys.executable, str(script)], cwd=HERE.parent,
                               env={**os.environ, "BENCH_BACKEND": backend})
            failed += r.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
