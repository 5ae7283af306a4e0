"""The PostgreSQL driver, measured where the gateway uses it (why psycopg 3, docs/scaling.md).

Two shapes of work, against a durable PostgreSQL server on this machine:
- a flow's unit of work, synchronous code in a pipeline pool process: a prescription's
  registration + DMP filing is ~40 statements in one transaction (here: 40 INSERT/SELECT and
  a COMMIT). psycopg's sync API runs it as it is; asyncpg has only an async API, so sync code
  must drive an event loop per unit (`loop.run_until_complete`);
- the mail side's short reads from an asyncio worker (an IMAP command's folder look-up): one
  primary-key SELECT, with psycopg's sync API (blocking the loop for a loopback round trip),
  psycopg's async API, and asyncpg.
asyncpg is not a dependency: the asyncpg rows print only where it is installed
(`pip install asyncpg` in the venv, for this comparison). Loopback only, ~20 s.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from tests.postgres_server import PostgresServer  # noqa: E402

UNITS = int(os.environ.get("BENCH_UNITS", "300"))
READS = int(os.environ.get("BENCH_READS", "3000"))
SCHEMA = ("CREATE TABLE t (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, k TEXT,"
          " v BYTEA); CREATE TABLE f (id INT PRIMARY KEY, name TEXT);"
          " INSERT INTO f SELECT g, 'INBOX' || g FROM generate_series(1, 1000) g")


def per(label: str, n: int, seconds: float, cpu: float) -> None:
    print(f"{label:58s} {seconds / n * 1e6:8.0f} us wall, {cpu / n * 1e6:6.0f} us client CPU")


def psycopg_units(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(UNITS):
            with conn.transaction():
                for j in range(20):
                    conn.execute("INSERT INTO t (k, v) VALUES (%s, %s)", (f"{i}-{j}", b"x" * 200))
                    conn.execute("SELECT name FROM f WHERE id = %s", (j + 1,)).fetchone()
        per("unit of work (40 statements), psycopg sync", UNITS,
            time.perf_counter() - t0, time.process_time() - c0)


def asyncpg_units(dsn: str) -> None:
    import asyncpg

    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(dsn))

    async def unit(i: int) -> None:
        async with conn.transaction():
            for j in range(20):
                await conn.execute("INSERT INTO t (k, v) VALUES ($1, $2)", f"{i}-{j}", b"x" * 200)
                await conn.fetchrow("SELECT name FROM f WHERE id = $1", j + 1)

    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(UNITS):
        loop.run_until_complete(unit(i))  # sync flow code driving the async driver
    per("unit of work (40 statements), asyncpg from sync code", UNITS,
        time.perf_counter() - t0, time.process_time() - c0)
    loop.run_until_complete(conn.close())
    loop.close()


def reads(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(READS):
            conn.execute("SELECT name FROM f WHERE id = %s", (i % 1000 + 1,)).fetchone()
        per("primary-key read, psycopg sync (blocks the loop)", READS,
            time.perf_counter() - t0, time.process_time() - c0)

    async def psycopg_async() -> None:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(READS):
            cur = await conn.execute("SELECT name FROM f WHERE id = %s", (i % 1000 + 1,))
            await cur.fetchone()
        per("primary-key read, psycopg async", READS, time.perf_counter() - t0,
            time.process_time() - c0)
        await conn.close()

    asyncio.run(psycopg_async())
    try:
        import asyncpg
    except ImportError:
        print("(asyncpg not installed: its rows are skipped)")
        return

    async def asyncpg_reads() -> None:
        conn = await asyncpg.connect(dsn)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(READS):
            await conn.fetchrow("SELECT name FROM f WHERE id = $1", i % 1000 + 1)
        per("primary-key read, asyncpg", READS, time.perf_counter() - t0,
            time.process_time() - c0)
        await conn.close()

    asyncio.run(asyncpg_reads())
    asyncpg_units(dsn)


def main() -> int:
    server = PostgresServer(durable=True).start()
    try:
        dsn = server.dsn(server.create_database())
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
        psycopg_units(dsn)
        reads(dsn)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
