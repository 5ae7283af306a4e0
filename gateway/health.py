"""Is this gateway ready to take mail? The checks behind `/readyz` and the systemd watchdog.

Ready means all of:
- storage: the database answers a query; the mailbox and queue folders are writable and their
  file systems have room for at least two messages of the largest accepted size (PostgreSQL:
  the shared database answers and is the primary, not a read-only standby);
- queue moving: no recipient in the outbound queue is overdue (its next attempt due) by more
  than STALLED_AFTER seconds: the queue runner is alive and reaches the queue. Mail that waits
  for a peer (retries backing off) is moving; mail nobody tries is not;
- own certificate: the server certificate verifies now (chain, dates, CRL) for TLS servers.

Each check runs in a thread (it touches the disk) and never raises: a failure is a `Check`
with `ok=False` and a reason an operator can act on. Results are kept for CACHE_SECONDS so a
load balancer polling every worker costs next to nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import Config
from gateway.store.interfaces import OutboundQueue

STALLED_AFTER = 300.0  # seconds a due delivery may wait for the queue runner
CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail}


def check_database(config: Config) -> Check:
    """The PostgreSQL backend: the shared database answers, and takes writes (not a standby
    left read-only after a failover the DSN does not follow)."""
    from gateway.postgresql.connection import connect, where

    try:
        with connect(config, autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    except Exception as exc:  # GatewayError (unreachable), psycopg.Error
        return Check("storage", False, f"database {where(config)}: {exc}")
    if row and row[0]:
        return Check("storage", False, f"database {where(config)} is a read-only standby")
    return Check("storage", True, f"database {where(config)} answers and takes writes")


def check_storage(config: Config) -> Check:
    from gateway import db

    if config.storage.backend == "postgresql":
        return check_database(config)
    try:
        conn = db.connect(config.database_path, readonly=True)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except Exception as exc:  # sqlite3.Error, OSError: the database is not usable
        return Check("storage", False, f"database {config.database_path}: {exc}")
    need = 2 * config.smtp.max_message_size
    for what, path in (("mailboxes", config.mailboxes_path), ("queue", config.queue_path)):
        if not path.is_dir():
            return Check("storage", False, f"{what} folder {path} is missing")
        if not os.access(path, os.W_OK | os.X_OK):
            return Check("storage", False, f"{what} folder {path} is not writable")
        free = shutil.disk_usage(path).free
        if free < need:
            return Check("storage", False,
                         f"{what} folder {path}: {free // 2**20} MiB free, under {need // 2**20}")
    return Check("storage", True, "database, mailboxes and queue usable")


def check_queue(queue: OutboundQueue, now: float | None = None) -> Check:
    now = time.time() if now is None else now
    records = queue.records()
    overdue = [
        (now - r.next_attempt, rec.id)
        for rec in records for r in rec.pending if now - r.next_attempt > STALLED_AFTER
    ]
    if overdue:
        late, qid = max(overdue)
        return Check("queue", False, f"{len(overdue)} delivery(ies) overdue; {qid} by "
                                     f"{int(late)} s: is the queue runner alive?")
    return Check("queue", True, f"{len(records)} message(s) queued, none overdue")


def check_certificate(config: Config) -> Check:
    from cryptography import x509

    from gateway.pki.ca import server_credentials
    from gateway.pki.verify import verify_certificate

    try:
        creds = server_credentials(config)
        chain = x509.load_pem_x509_certificates(creds.cert_path.read_bytes())
    except Exception as exc:  # no certificate, unreadable file
        return Check("certificate", False, f"server certificate: {exc}")
    result = verify_certificate(config, chain[0], chain[1:], "server")
    days = (chain[0].not_valid_after_utc.timestamp() - time.time()) / 86400
    if not result.ok:
        return Check("certificate", False, f"server certificate {creds.serial}: {result.reason}")
    return Check("certificate", True,
                 f"server certificate {creds.serial} {result.reason}, {int(days)} day(s) left")


def check_all(config: Config, queue: OutboundQueue) -> list[Check]:
    checks: list[tuple[str, Callable[[], Check]]] = [
        ("storage", lambda: check_storage(config)),
        ("queue", lambda: check_queue(queue)),
        ("certificate", lambda: check_certificate(config)),
    ]
    out = []
    for name, check in checks:
        try:
            out.append(check())
        except Exception as exc:  # a check's own bug must not make the probe answer 500
            out.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
    return out


class Readiness:
    """The checks of one process, cached for CACHE_SECONDS, run off the event loop."""

    def __init__(self, config: Config, queue: OutboundQueue,
                 cache_seconds: float = CACHE_SECONDS) -> None:
        self.config = config
        self.queue = queue
        self.cache_seconds = cache_seconds
        self._last: tuple[float, list[Check]] | None = None
        self._running: asyncio.Future[list[Check]] | None = None

    async def checks(self) -> list[Check]:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.cache_seconds:
            return self._last[1]
        if self._running is None:  # concurrent probes share one run
            self._running = asyncio.ensure_future(
                asyncio.to_thread(check_all, self.config, self.queue))
        running = self._running
        try:
            result = await asyncio.shield(running)
        finally:
            if self._running is running and running.done():
                self._running = None
        self._last = (time.monotonic(), result)
        return result
