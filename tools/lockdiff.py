"""Print the installed distributions whose version differs from requirements.lock.

`make test-latest` runs it in its venv of the newest allowed versions, so the suite's result can
be read against what changed since the lock was made.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(lock: str) -> int:
    locked: dict[str, str] = {}
    with open(lock, encoding="utf-8") as f:
        for line in f:
            m = PIN.match(line)
            if m:
                locked[canonical(m.group(1))] = m.group(2)
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    changed = [
        f"  {name} {installed.get(name, 'not installed')} (lock: {version})"
        for name, version in sorted(locked.items())
        if installed.get(name) != version and name not in ("pip",)
    ]
    added = [
        f"  {name} {version} (not in the lock)"
        for name, version in sorted(installed.items())
        if name not in locked and name not in ("pip", "mssgw")
    ]
    if changed or added:
        print("newest allowed versions that differ from requirements.lock:")
        print("\n".join(changed + added))
    else:
        print("the newest allowed versions are the locked ones")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "requirements.lock"))
