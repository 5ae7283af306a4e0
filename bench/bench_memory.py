"""The memory an operator sees: total RSS of every process of `mssgw serve` (supervisor, worker
processes, their pool processes) at start, after 1,000 distinct first-time logins over IMAP with
the 1,000 connections held idle (logged in, INBOX selected), at once and once the idle sessions'
stores have rested (`gateway.store.mailstore.REST_AFTER`), and once they are closed; and the
login rate (logins/s, each one a full scrypt verification: distinct accounts, nothing cached).

Memory (RSS) does not depend on the machine's load; the login rate does (run it on a quiet
machine). Goal (issue 12): under 300 MB in all, with logins no slower. Loopback only, bounded
(about two minutes: BENCH_LOGINS sets the number of logins, 1000 by default). Every mailbox gets
the same scrypt hash (one computed instead of 1,000: the bench spent most of its time there);
logins still verify each one in full, since the credential cache is keyed by address.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_imap import Client  # noqa: E402

from gateway.cli import main as cli  # noqa: E402
from gateway.config import Config, load_config  # noqa: E402
from gateway.directory.passwords import hash_password  # noqa: E402
from gateway.imap.service import REST_EVERY  # noqa: E402
from gateway.pki.tls import client_context  # noqa: E402
from gateway.store.mailstore import REST_AFTER  # noqa: E402

LOGINS = int(os.environ.get("BENCH_LOGINS", "1000"))
CONCURRENCY = 20
PASSWORD = "bench-password-123"  # noqa: S105


def make_home(tmp: Path) -> Config:
    home = tmp / "gw"
    home.mkdir()
    (home / "config.toml").write_text(
        '[gateway]\ndomain = "bench.localhost"\nhostname = "mx.bench.localhost"\n'
        '[smtp]\nsubmission = "127.0.0.1:0"\nsubmission_tls = "127.0.0.1:0"\n'
        'relay = "127.0.0.1:0"\n'
        '[imap]\nstarttls = ""\ntls = "127.0.0.1:0"\n'
        "[auth]\ncache_ttl = 300\n"
    )
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli(["init", "--config", str(home / "config.toml")]) == 0
    return load_config(home / "config.toml")


def register(config: Config, n: int) -> list[str]:
    """`n` mailboxes with the same scrypt hash (as `set-password` writes it)."""
    from gateway.directory import open_directory
    from gateway.directory.model import Application

    addresses = [f"user{i}@bench.localhost" for i in range(n)]
    directory = open_directory(config, actor="bench")
    for address in addresses:
        directory.add_application(address, Application(name=address.split("@")[0]))
    directory.close()
    conn = sqlite3.connect(config.database_path)
    with conn:
        conn.execute("UPDATE directory_mailbox SET password_hash = ?", (hash_password(PASSWORD),))
    conn.close()
    return addresses


def serve(config: Config) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config.source)],
        stderr=subprocess.PIPE, start_new_session=True,
    )
    assert proc.stderr is not None
    port = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(rb"listening: imap tls on 127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
        if b"worker process(es) ready" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, port
    proc.kill()
    raise RuntimeError("mssgw serve did not start")


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


async def login_all(port: int, ctx: object, addresses: list[str]) -> tuple[list[Client], float]:
    clients: list[Client] = []
    queue = list(reversed(addresses))

    async def one_by_one() -> None:
        while queue:
            address = queue.pop()
            c = Client()
            await c.connect(port, ctx)
            await c.cmd(f'LOGIN {address} "{PASSWORD}"')
            await c.cmd("SELECT INBOX")
            clients.append(c)

    started = time.perf_counter()
    await asyncio.gather(*(one_by_one() for _ in range(CONCURRENCY)))
    return clients, time.perf_counter() - started


async def run(config: Config, addresses: list[str]) -> None:
    proc, port = serve(config)
    try:
        await asyncio.sleep(2)  # the workers settle (imports, TLS contexts)
        start = rss_mb(proc.pid)
        ctx = client_context(config, present_certificate=False)
        clients, seconds = await login_all(port, ctx, addresses)
        await asyncio.sleep(2)
        held = rss_mb(proc.pid)
        await asyncio.sleep(REST_AFTER + REST_EVERY + 2)  # the idle sessions' stores rest
        rested = rss_mb(proc.pid)
        for c in clients:
            c.close()
        await asyncio.sleep(3)
        closed = rss_mb(proc.pid)
        processes = len(tree(proc.pid))
        print(f"mssgw serve, {processes} processes ({os.cpu_count()} cores): total RSS at start "
              f"{start:.0f} MB")
        print(f"after {len(addresses)} distinct logins, connections held idle: {held:.0f} MB "
              f"at once, {rested:.0f} MB once their stores rest (target < 300 MB); once they "
              f"are closed: {closed:.0f} MB")
        print(f"logins (IMAP over TLS, {CONCURRENCY} at a time, each a scrypt check): "
              f"{len(addresses) / seconds:.1f}/s")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = LOGINS + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    with tempfile.TemporaryDirectory() as tmp:
        config = make_home(Path(tmp))
        addresses = register(config, LOGINS)
        asyncio.run(run(config, addresses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
