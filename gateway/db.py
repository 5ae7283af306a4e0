"""SQLite (WAL) connections and versioned, per-component schema migrations.

Each capability (directory, drugs, prescriptions, dmp...) owns its tables and its list of
migrations, so components evolve independently: `schema_version` holds one row per component.
The PostgreSQL backend runs the same repositories, and the same versioned migrations (its own
DDL per component, `gateway.postgresql.schema`), through `apply_migrations`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the database in WAL mode with foreign keys on and autocommit (explicit transactions)."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    # FULL: a committed transaction survives power loss (we promise nothing acknowledged is lost).
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception: a change is whole or absent."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def atomic(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Like `transaction`, but inside a transaction the caller opened it is a SAVEPOINT: the
    caller's COMMIT decides, and a failure here undoes only this part. Lets a flow make several
    repositories' changes (e.g. register a prescription and file it in the DMP) one commit."""
    if not conn.in_transaction:
        with transaction(conn):
            yield conn
        return
    conn.execute("SAVEPOINT atomic_part")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK TO atomic_part")
        conn.execute("RELEASE atomic_part")
        raise
    conn.execute("RELEASE atomic_part")


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Several SELECTs that see one consistent state (WAL readers take no lock); inside an open
    transaction they already do."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, component: str, migrations: Sequence[str]) -> int:
    """Apply the migrations of `component` not applied yet; return how many were applied.

    `migrations[i]` is the SQL script taking the component from version i to i+1. Never edit a
    released migration: append a new one. On a PostgreSQL connection (`gateway.postgresql.sql`)
    a store opening checks instead that `mssgw init` brought its component's own schema up to
    date (migrations there run once, for the cluster, not as each node's process opens).
    """
    if not isinstance(conn, sqlite3.Connection):
        conn.require_schema(component)  # type: ignore[attr-defined]
        return 0
    return apply_migrations(conn, component, migrations)


def apply_migrations(conn: sqlite3.Connection, component: str, migrations: Sequence[str]) -> int:
    """The versioned runner both backends use: one row per component in `schema_version`, the
    scripts not applied yet run in one transaction with the new version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    applied = 0
    with transaction(conn):
        row = conn.execute(
            "SELECT version FROM schema_version WHERE component = ?", (component,)
        ).fetchone()
        current = row[0] if row else 0
        if current > len(migrations):
            raise RuntimeError(
                f"database schema of {component} is version {current}, newer than this program"
            )
        for version in range(current, len(migrations)):
            if isinstance(conn, sqlite3.Connection):
                for statement in _statements(migrations[version]):
                    conn.execute(statement)
            else:
                conn.executescript(migrations[version])
            applied += 1
        if applied:
            conn.execute(
                "INSERT INTO schema_version(component, version) VALUES (?, ?)"
                " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                (component, len(migrations)),
            )
    return applied


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction; split on complete statements instead.
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
