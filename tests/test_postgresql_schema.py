"""The PostgreSQL schema keeps up with the SQLite one: the repositories shared by both
backends (gateway/postgresql/sql.py) read and write the same columns, so a migration added to
a SQLite component needs its PostgreSQL twin in gateway/postgresql/schema.py. `mssgw init`
migrates an older PostgreSQL schema, and a store refuses a schema it does not know."""

from __future__ import annotations

import pytest

from gateway.db import connect
from gateway.errors import GatewayError

SHARED = {  # component -> the embedded module holding its SQLite migrations
    "directory": "gateway.directory.sqlite",
    "auth": "gateway.directory.auth",
    "smtp": "gateway.smtp.conversations",
    "prescriptions": "gateway.prescriptions.sqlite_registry",
    "dmp": "gateway.dmp.sqlite",
    "flows": "gateway.flows.sqlite",
    "pki": "gateway.pki.store",
    "admins": "gateway.admins.sqlite",
}
EXTRA = {"dispensations": {"rowid"}}  # SQLite's implicit rowid, a real column on PostgreSQL


def sqlite_columns(tmp_path, component: str) -> dict[str, set[str]]:
    import importlib

    from gateway.db import apply_migrations

    conn = connect(tmp_path / f"{component}.db")
    apply_migrations(conn, component, importlib.import_module(SHARED[component]).MIGRATIONS)
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'schema_version'")]
    out = {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    conn.close()
    return out


def test_every_shared_table_has_the_same_columns_on_both(tmp_path, pg_dsn):
    from gateway.config import config_from_dict
    from gateway.postgresql.storage import PostgreSQLStorage

    storage = PostgreSQLStorage(config_from_dict(
        {"storage": {"backend": "postgresql", "dsn": pg_dsn}}, tmp_path))
    storage.initialise()
    conn = storage.connection()
    differ: list[str] = []
    try:
        for component in SHARED:
            for table, columns in sqlite_columns(tmp_path, component).items():
                pg = {r[0] for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                    (table,))} - EXTRA.get(table, set())
                if pg != columns:
                    differ.append(f"{component}.{table}: only on SQLite {sorted(columns - pg)},"
                                  f" only on PostgreSQL {sorted(pg - columns)}")
    finally:
        conn.close()
    assert not differ, "add the migrations to gateway/postgresql/schema.py: " + "; ".join(differ)


def test_init_migrates_and_a_store_refuses_an_unknown_schema(tmp_path, pg_dsn):
    from gateway.config import config_from_dict
    from gateway.postgresql import schema
    from gateway.postgresql.storage import PostgreSQLStorage

    storage = PostgreSQLStorage(config_from_dict(
        {"storage": {"backend": "postgresql", "dsn": pg_dsn}}, tmp_path))
    with pytest.raises(GatewayError, match="run `mssgw init`"):
        storage.directory("test")  # nothing made yet
    assert any("directory at version" in line for line in storage.initialise())
    assert not [x for x in storage.initialise() if x.startswith("database schema")]  # idempotent
    conn = storage.connection()
    conn.execute("UPDATE schema_version SET version = version + 1 WHERE component = 'dmp'")
    conn.close()
    with pytest.raises(GatewayError, match="newer than this program"):
        storage.records(storage.audit_log())
    conn = storage.connection()
    conn.execute("UPDATE schema_version SET version = version - 1 WHERE component = 'dmp'")
    conn.close()
    assert len(schema.MIGRATIONS["dmp"]) >= 1
