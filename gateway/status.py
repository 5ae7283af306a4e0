"""The gateway at a glance, for the console's dashboard and `GET /api/v1/status`.

Listeners as configured (the process serving this answer runs them all), the outbound queue's
depth and oldest message, today's prescriptions registered, refused and dispensed (counted from
the audit log's tail: what today wrote, not the whole log), certificates expiring within 30
days, mailboxes by kind and the national whitelist's date.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any

from gateway import audit
from gateway.admins.model import Caller
from gateway.config import Config
from gateway.directory.repository import Directory
from gateway.pki.admin import EXPIRING_DAYS, CertificateService
from gateway.store.admin import QueueService
from gateway.store.interfaces import OutboundQueue

_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[\w.-]+):\d+$")
LISTENER_SECTIONS = ("smtp", "imap", "http")


def listeners(config: Config) -> list[dict[str, str]]:
    out = []
    for section_name in LISTENER_SECTIONS:
        section = getattr(config, section_name, None)
        if section is None or not dataclasses.is_dataclass(section):
            continue
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, str) and _HOSTPORT.match(value):
                out.append({"name": f"{section_name} {f.name}", "address": value})
    return out


class StatusService:
    resource = "status"

    def __init__(self, config: Config, directory: Directory, caller: Caller, *,
                 log: audit.AuditLog, queue: OutboundQueue) -> None:
        self.config = config
        self.directory = directory
        self.caller = caller
        self.log = log
        self.queue = queue

    def status(self) -> dict[str, Any]:
        self.caller.require(self.resource)
        now = datetime.now(UTC)
        midnight = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
        counts = {"registered": 0, "refused": 0, "dispensed": 0}
        actions = {"prescription.register": "registered", "prescription.refuse": "refused",
                   "prescription.dispense": "dispensed"}
        for e in self.log.since(midnight):
            key = actions.get(e.action)
            if key and (key != "dispensed" or e.details.get("outcome") == "recorded"):
                counts[key] += 1
        reader = dataclasses.replace(self.caller, scopes=None)  # the dashboard's own reads
        depth, oldest = QueueService(self.config, self.queue, audit.no_record, reader).depth()
        expiring = CertificateService(self.config, audit.no_record, reader).expiring()
        kinds = {k.value: n for k, n in sorted(self.directory.count_by_kind().items())}
        return {
            "at": now.isoformat(timespec="seconds"),
            "domain": self.config.gateway.domain,
            "hostname": self.config.gateway.hostname,
            "listeners": listeners(self.config),
            "queue": {"depth": depth, "oldest_seconds": int(oldest) if oldest else None},
            "prescriptions_today": counts,
            "certificates_expiring": [
                {"serial": r.serial, "subject": r.subject_dn, "email": r.email,
                 "not_after": r.not_after.isoformat(), "kind": r.kind}
                for r in expiring.items
            ],
            "certificates_expiring_total": expiring.total,
            "expiring_within_days": EXPIRING_DAYS,
            "mailboxes": kinds,
            "whitelist_generated": self.directory.whitelist_generated(),
        }
