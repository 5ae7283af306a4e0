"""Directory and authentication figures: lookups, logins (scrypt vs cache), whitelist import.

Bounded: each loop runs for about one second. Prints one line per figure. Loopback-free: it only
touches a temporary SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.cli import main  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.directory import demo, open_directory  # noqa: E402
from gateway.directory.auth import Authenticator, SQLiteThrottle  # noqa: E402
from gateway.directory.passwords import hash_password, verify_password  # noqa: E402

SHARED = Path(os.environ.get("MSSGW_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def rate(label: str, fn: Callable[[], object], seconds: float = 1.0) -> None:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    print(f"{label}: {n / elapsed:,.0f}/s ({elapsed / n * 1000:.3f} ms each, n={n})")


async def concurrent_logins(auth: Authenticator, address: str, password: str, n: int) -> float:
    start = time.perf_counter()
    results = await asyncio.gather(
        *(auth.authenticate(address, password, f"192.0.2.{i % 250}") for i in range(n))
    )
    assert all(r.ok for r in results)
    return time.perf_counter() - start


def main_bench() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "config.toml"
        cfg.write_text('[gateway]\ndomain = "bench.localhost"\n[auth]\ncache_ttl = 300\n')
        os.environ["MSSGW_CONFIG"] = str(cfg)
        with contextlib.redirect_stdout(io.StringIO()):
            main(["init", "--demo", "--config", str(cfg)])
        config = load_config(cfg)
        directory = open_directory(config)
        doctor = demo.doctor_address("bench.localhost")
        directory.set_password(doctor, "bench password 123")

        rate("directory.get (PER mailbox)", lambda: directory.get(doctor))
        rate("directory.credentials (state + hash)", lambda: directory.credentials(doctor))
        rate("directory.find_by_ins", lambda: directory.find_by_ins(demo.PATIENT_INS))
        rate("is_trusted_domain", lambda: directory.is_trusted_domain("bench.localhost"))
        encoded = hash_password("bench password 123")
        rate("scrypt verify (ln=14, r=8, p=1), one core",
             lambda: verify_password("bench password 123", encoded))

        auth = Authenticator(directory, SQLiteThrottle.open(config.database_path), config.auth)
        first = auth.authenticate_sync(doctor, "bench password 123", "192.0.2.1")
        assert first.ok and not first.cached
        rate("login, cache hit (lockout + state checks included)",
             lambda: auth.authenticate_sync(doctor, "bench password 123", "192.0.2.1"))
        auth.settings = type(auth.settings)(cache_ttl=0, client_max_failures=0)
        n = 4 * (os.cpu_count() or 1)
        elapsed = asyncio.run(concurrent_logins(auth, doctor, "bench password 123", n))
        print(f"logins without cache, {n} concurrent on the event loop's executor:"
              f" {n / elapsed:,.1f}/s ({os.cpu_count()} cores)")

        whitelist = SHARED / "mssante" / "listeblanchemssante.xml"
        if whitelist.is_file():
            start = time.perf_counter()
            change = directory.import_whitelist(str(whitelist))
            print(f"whitelist import ({change.entries} entries, {change.domains} domains):"
                  f" {(time.perf_counter() - start) * 1000:.0f} ms")
            start = time.perf_counter()
            directory.import_whitelist(str(whitelist))
            print(f"whitelist re-import (no change): {(time.perf_counter() - start) * 1000:.0f} ms")
        else:
            print(f"whitelist import: skipped ({whitelist} not found)")


if __name__ == "__main__":
    main_bench()
