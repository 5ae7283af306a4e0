"""`make bench`: run every bench/bench_*.py in turn and print their figures.

Each benchmark is a script that prints its own figures; it must be bounded in time and talk only
to servers on 127.0.0.1 that it starts and stops itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if not scripts:
        print("no benchmark yet")
        return 0
    failed = 0
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        r = subprocess.run([sys.executable, str(script)], cwd=HERE.parent)
        failed += r.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
