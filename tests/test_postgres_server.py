"""The PostgreSQL test server itself: it starts as the tests need it (password over TCP on
loopback only, one database per test) and leaves nothing running."""

from __future__ import annotations

import subprocess

import pytest


def test_fresh_database_per_test_and_password_required(postgres_server, pg_dsn) -> None:
    db = pg_dsn.rsplit("/", 1)[1]
    assert postgres_server.psql("SELECT current_database()", db) == db
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    assert postgres_server.psql(tables, db) == "0"
    assert postgres_server.psql("SHOW listen_addresses") == "127.0.0.1"
    # scram over TCP: without the password the server refuses the connection.
    wrong = postgres_server.dsn(db).replace(postgres_server.password, "not-the-password")
    with pytest.raises(subprocess.CalledProcessError) as exc:
        subprocess.run(["psql", "-X", "-d", wrong, "-c", "SELECT 1"], check=True,
                       capture_output=True, text=True, timeout=30)
    assert "password authentication failed" in exc.value.stderr


def test_databases_are_isolated(postgres_server, pg_dsn) -> None:
    db = pg_dsn.rsplit("/", 1)[1]
    postgres_server.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)", db)
    other = postgres_server.create_database()
    try:
        assert postgres_server.psql("SELECT to_regclass('public.t') IS NULL", other) == "t"
    finally:
        postgres_server.drop_database(other)
