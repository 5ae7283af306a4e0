"""The storage backend a bench runs on: `BENCH_BACKEND=embedded` (the default: SQLite,
Maildir) or `BENCH_BACKEND=postgresql` (a PostgreSQL server on this same machine, started and
stopped by the bench with fsync and synchronous commits on: `durable=True`, Debian's
binaries, tests/postgres_server.py). `make bench` runs the storage-bound benches once each.

The server's CPU is counted apart (`database_cpu`): on this 2-core machine the database shares
the cores with the gateway and the clients.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKEND = os.environ.get("BENCH_BACKEND", "embedded")
_server = None
_database = ""


def label() -> str:
    return ("PostgreSQL (same machine, fsync on)" if BACKEND == "postgresql"
            else "embedded (SQLite + Maildir)")


@contextlib.contextmanager
def database() -> Iterator[str]:
    """The configuration text selecting the backend ("" for the embedded one); for PostgreSQL,
    a durable server and a fresh database for the length of the block."""
    global _server, _database
    if BACKEND != "postgresql":
        yield ""
        return
    sys.path.insert(0, str(ROOT))
    from tests.postgres_server import PostgresServer

    server = PostgresServer(durable=True).start()
    _server = server
    try:
        name = _database = server.create_database()
        yield f'[storage]\nbackend = "postgresql"\ndsn = "{server.dsn(name)}"\n'
    finally:
        _server = None
        server.stop()


def database_cpu() -> float:
    """CPU seconds the PostgreSQL server's processes used so far (0 for the embedded one)."""
    if _server is None:
        return 0.0
    try:
        pid = int((_server.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError):
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        todo += [int(c) for c in children]
    return total


def database_bytes() -> tuple[int, int]:
    """(WAL bytes written so far, the database's size on disk) of the PostgreSQL server ((0, 0)
    for the embedded one): their growth over a run is what the database writes and keeps per
    unit of work (docs/scaling.md sizes the primary and its standby from them)."""
    if _server is None:
        return 0, 0
    import psycopg

    with psycopg.connect(_server.dsn(_database), autocommit=True) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,"
                           " pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def messages_in(config_path: Path, address: str) -> int:
    """Messages in the mailbox's INBOX, whatever the backend (deliveries not yet indexed
    included on the embedded one)."""
    from gateway.config import load_config
    from gateway.runtime import storage_for

    config = load_config(config_path)
    if config.storage.backend != "postgresql":
        from gateway.store.maildir import mailbox_path

        root = mailbox_path(config.mailboxes_path, address)
        return sum(len(os.listdir(root / d)) for d in ("new", "cur") if (root / d).is_dir())
    stores = storage_for(config).mail_stores()
    try:
        store = stores.acquire(address)
        inbox = store.folder("INBOX")
        return len(store.view(inbox).uids) if inbox else 0
    finally:
        stores.close()
