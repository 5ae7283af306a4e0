"""What an administrator may do with the outbound queue, for the CLI, the API and the console.

List and show what waits for other operators, retry now, delete (no DSN), or bounce: return the
message to its sender with a DSN (RFC 3464) saying an administrator stopped it, then remove it.
Each entry is changed under its flock, the one the delivery runner takes, so a message being
delivered is never changed behind its back. Changes are audited; showing a message's header is
a read of what may be patient data (a subject naming a patient), audited too.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from gateway.admins.model import Caller
from gateway.admins.paging import Page, paginate
from gateway.audit import Recorder
from gateway.config import Config
from gateway.directory import own_domains
from gateway.errors import Conflict
from gateway.store.interfaces import Intake, OutboundQueue
from gateway.store.queue import PENDING, Record, check_id
from gateway.texts import t

LOCK_WAIT = 10.0  # seconds to wait for the delivery worker to release an entry


def when(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def summary(r: Record) -> dict[str, Any]:
    return {
        "id": r.id,
        "kind": r.kind,
        "sender": r.sender,
        "created": when(r.created),
        "age_seconds": int(time.time() - r.created),
        "next_attempt": when(r.next_attempt),
        "recipients": [
            {
                "address": x.address,
                "state": x.state,
                "attempts": x.attempts,
                "next_attempt": when(x.next_attempt) if x.state == PENDING else None,
                "last_error": x.last_error,
                "status": x.status,
                "remote_mta": x.remote_mta,
            }
            for x in r.recipients
        ],
    }


class QueueService:
    resource = "queue"

    def __init__(self, config: Config, queue: OutboundQueue, audit: Recorder, caller: Caller,
                 intake: Intake | None = None) -> None:
        self.config = config
        self.queue = queue
        self.audit = audit
        self.caller = caller
        self.intake = intake  # for bounce's DSN

    def page(self, *, offset: int | None = None, limit: int | None = None) -> Page[Record]:
        self.caller.require(self.resource)
        return paginate(self.queue.records(), offset, limit)

    def records(self) -> list[Record]:
        self.caller.require(self.resource)
        return self.queue.records()

    def depth(self) -> tuple[int, float | None]:
        """(messages waiting, age in seconds of the oldest), for the dashboard."""
        self.caller.require(self.resource)
        records = self.queue.records()
        oldest = min((r.created for r in records), default=None)
        return len(records), (time.time() - oldest) if oldest else None

    def show(self, queue_id: str) -> tuple[Record, bytes]:
        """The entry and its header block (the body stays in the queue)."""
        self.caller.require(self.resource)
        record = self.queue.load(check_id(queue_id))
        data = self.queue.message(record.id)
        self.audit(self.caller.actor, "queue.show", record.id, {"via": self.caller.via})
        return record, data.split(b"\r\n\r\n", 1)[0]

    def size(self, queue_id: str) -> int:
        return len(self.queue.message(check_id(queue_id)))

    def _locked_change(self, qid: str) -> Any:
        self.queue.load(qid)  # NotFound names the id
        return self.queue.locked(qid, wait=LOCK_WAIT)

    def retry(self, queue_id: str | None = None) -> list[str]:
        """Retry one entry (or all when None) at the next scan; returns the ids."""
        self.caller.require(self.resource, write=True)
        ids = self.queue.ids() if queue_id is None else [check_id(queue_id)]
        for qid in ids:
            with self._locked_change(qid) as held:
                if not held:
                    raise Conflict(t("queue: {id} is being delivered right now; try again", id=qid))
                record = self.queue.load(qid)
                for x in record.recipients:
                    if x.state == PENDING:
                        x.next_attempt = 0.0
                self.queue.save(record)
            self.audit(self.caller.actor, "queue.retry", qid, {})
        return ids

    def delete(self, queue_id: str) -> str:
        self.caller.require(self.resource, write=True)
        qid = check_id(queue_id)
        with self._locked_change(qid) as held:
            if not held:
                raise Conflict(t("queue: {id} is being delivered right now; try again", id=qid))
            record = self.queue.load(qid)
            self.queue.remove(qid)
        self.audit(self.caller.actor, "queue.delete", qid,
                   {"sender": record.sender, "recipients": [r.address for r in record.pending]})
        return qid

    def bounce(self, queue_id: str) -> str:
        """Return the message to its sender with a DSN (none for a DSN itself), then remove it."""
        from gateway.smtp.dsn import Failure, build_dsn
        from gateway.store.queue import Entry, new_queue_id

        if self.intake is None:
            raise RuntimeError("QueueService.bounce needs the intake (where the DSN goes)")
        self.caller.require(self.resource, write=True)
        qid = check_id(queue_id)
        with self._locked_change(qid) as held:
            if not held:
                raise Conflict(t("queue: {id} is being delivered right now; try again", id=qid))
            record = self.queue.load(qid)
            data = self.queue.message(qid)
            now = time.time()
            failures = [
                Failure(r.address, "5.3.0", "returned to the sender by the gateway's administrator"
                        + (f"; last error: {r.last_error}" if r.last_error else ""),
                        r.remote_mta, now)
                for r in record.pending
            ]
            if record.sender and record.kind != "dsn" and failures:
                dsn = build_dsn(
                    hostname=self.config.gateway.hostname, domain=self.config.gateway.domain,
                    sender=record.sender, queue_id=record.id, arrival=record.created,
                    failures=failures, original=data,
                )
                domain = record.sender.rpartition("@")[2].lower()
                if domain in own_domains(self.config):
                    self.intake.store([(record.sender, dsn)], [])
                else:
                    entry = Entry(new_queue_id(), "", [record.sender], dsn, "dsn")
                    self.intake.store([], [entry])
            self.queue.remove(qid)
        self.audit(self.caller.actor, "queue.bounce", qid,
                   {"sender": record.sender, "recipients": [f.recipient for f in failures]})
        return qid
